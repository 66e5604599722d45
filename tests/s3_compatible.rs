//! The S3 store on a second S3-compatible server, versitygw, besides MinIO: the store
//! conformance suite (conditional create, multipart with abort, listing of open
//! uploads, streamed reads), a backup in several parts listed, verified and restored,
//! with the SDK's default checksums and with `S3_CHECKSUM=when_required`. The S3 tests
//! of tests/s3.rs run on versitygw too.
//!
//! Peers: SecantusDB (source and restore target), versitygw.

mod common;

use common::s3_server::{S3Server, BUCKET};
use common::versitygw::{self, Versitygw, SECRET_KEY};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use ingest_backup::store::conformance;
use ingest_backup::store::s3::{S3Settings, S3Store};

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
    assert_eq!(gateway.open_uploads().await, 0);
}
