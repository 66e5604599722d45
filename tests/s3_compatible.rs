//! The S3 store on a second S3-compatible server, versitygw, besides MinIO: the store
//! conformance suite (conditional create, multipart with abort, listing of open
//! uploads, streamed reads), a backup in several parts listed, verified and restored,
//! with the SDK's default checksums and with `S3_CHECKSUM=when_required`, and SIGTERM
//! mid-upload leaving no object and no open upload.
//!
//! Peers: SecantusDB (source and restore target), versitygw.

mod common;

use common::versitygw::{self, Versitygw, SECRET_KEY};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use ingest_backup::store::conformance;
use ingest_backup::store::s3::{S3Settings, S3Store};

const BUCKET: &str = "compat-backups";

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_store_conforms_on_versitygw() {
    let Some(binary) = versitygw::binary_or_skip("the_s3_store_conforms_on_versitygw") else { return };
    let gateway = Versitygw::start(binary, BUCKET).await;
    let mut settings = S3Settings::from_env(5, 2).unwrap();
    settings.endpoint = Some(gateway.endpoint());
    let store = S3Store::with_client(gateway.client(), BUCKET, "conformance", settings).await.expect("open the bucket");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_in_several_parts_round_trips_on_versitygw_with_either_checksum_setting() {
    let Some(binary) = versitygw::binary_or_skip("a_backup_in_several_parts_round_trips_on_versitygw_with_either_checksum_setting") else { return };
    let gateway = Versitygw::start(binary, BUCKET).await;
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 30 }).await.unwrap();
    for checksum in ["when_supported", "when_required"] {
        let store = format!("s3://{BUCKET}/{checksum}");
        let mut env = gateway.env();
        env.push(("S3_CHECKSUM".into(), checksum.into()));
        let output =
            common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store, "--level", "0", "--part-size-mb", "5", "--json"], &env);
        let text = common::all_output(&output);
        assert!(output.status.success(), "{checksum}: backup: {text}");
        assert!(!text.contains(SECRET_KEY));
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(result["archive_bytes"].as_u64().unwrap() > 10 << 20, "several 5 MiB parts: {result}");
        let output = common::run_with_env(&["verify", "latest", "--uri", &source.uri(), "--store", &store], &env);
        assert!(output.status.success(), "{checksum}: verify: {}", common::all_output(&output));
        let target = Server::start();
        let output = common::run_with_env(&["restore", "latest", "--uri", &target.uri(), "--store", &store], &env);
        assert!(output.status.success(), "{checksum}: restore: {}", common::all_output(&output));
        let manifest = gateway
            .client()
            .get_object()
            .bucket(BUCKET)
            .key(format!("{checksum}/{}.manifest.json", result["name"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.body.collect().await.unwrap().into_bytes()).unwrap();
        let compared = common::assert_restored_identical(&source.client().await, &target.client().await, &manifest, |db| db.to_string()).await;
        assert!(compared >= 3);
    }
    assert_eq!(gateway.open_uploads(BUCKET).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_upload_to_versitygw_leaves_no_object_and_no_open_upload() {
    let Some(binary) = versitygw::binary_or_skip("sigterm_mid_upload_to_versitygw_leaves_no_object_and_no_open_upload") else { return };
    let gateway = Versitygw::start(binary, BUCKET).await;
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 31 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let hook = format!("before-oplog-end:{}", work.path().join("release").display());
    let env = gateway.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("INGEST_BACKUP_TEST_PAUSE", &hook));
    let store = format!("s3://{BUCKET}/prod");
    let mut child = common::spawn(&["backup", "--uri", &source.uri(), "--store", &store, "--level", "0", "--part-size-mb", "5"], &env);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    assert_eq!(gateway.open_uploads(BUCKET).await, 1, "the archive is being uploaded");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert_eq!(gateway.open_uploads(BUCKET).await, 0, "the multipart upload was aborted");
    let keys: Vec<String> = gateway.keys(BUCKET).await.into_iter().filter(|k| !k.starts_with("prod/locks/")).collect();
    assert!(keys.is_empty(), "no object of the backup: {keys:?}");
}
