//! The S3 store against real S3 servers, each test once on MinIO and once on versitygw
//! (a second S3-compatible implementation): the original ingest backup scripts' variables select the
//! bucket; the original ingest backup scripts' restore steps with stock tools (`aws s3 cp`, `tar -xzf`, the
//! official `mongorestore`) get every document back; large archives go up as real
//! multipart uploads matching their sidecar; a server killed mid-upload and SIGTERM
//! mid-upload leave no open multipart upload and no new backup; bad credentials, a
//! missing bucket and an unreachable endpoint fail clearly without printing the secret.
//!
//! Assuming a role through STS and a bucket in another region stay MinIO-only: versitygw
//! has no STS endpoint and serves one region.
//!
//! Peers: SecantusDB (source and restore target), MinIO, versitygw.

mod common;

use std::process::Command;

use bson::Document;
use common::minio::{self, Minio, BUCKET};
use common::s3_server::S3Server;
use common::versitygw::{self, Versitygw};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use sha2::{Digest, Sha256};

async fn source_with_sample(megabytes: u64) -> Server {
    let server = Server::start();
    sample::load(&server.client().await, &SampleSpec { database: "ingest".into(), target_bytes: megabytes << 20, seed: 5 }).await.unwrap();
    server
}

fn env_with(minio: &impl S3Server, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = minio.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn backup_json(minio: &impl S3Server, output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "backup to {} failed: {}", minio.name(), common::all_output(output));
    assert!(!common::all_output(output).contains(minio.secret()), "the secret key was printed");
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn backup_to_s3_restores_with_the_seeds_stock_tools(minio: &impl S3Server) {
    let source = source_with_sample(2).await;
    // No --store: S3_BUCKET and BACKUP_DIR select s3://$S3_BUCKET/$BACKUP_DIR, as in the original ingest backup scripts.
    let env = env_with(minio, &[("S3_BUCKET", BUCKET), ("BACKUP_DIR", "dev")]);
    let result = backup_json(minio, &common::run_with_env(&["backup", "--uri", &source.uri(), "--json"], &env));
    let name = result["name"].as_str().unwrap();
    assert_eq!(result["archive"], format!("s3://{BUCKET}/dev/{name}.tar.gz"));
    let keys = minio.keys().await;
    assert!(keys.contains(&format!("dev/{name}.tar.gz")) && keys.contains(&format!("dev/{name}.manifest.json")), "{keys:?}");

    // The original ingest backup scripts' restore: aws s3 cp, tar -xzf, mongorestore.
    let work = tempfile::tempdir().unwrap();
    let aws = Command::new("aws")
        .args(["--endpoint-url", &minio.endpoint(), "s3", "cp", result["archive"].as_str().unwrap(), "."])
        .current_dir(work.path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("the AWS CLI is installed");
    assert!(aws.status.success(), "aws s3 cp: {}", common::all_output(&aws));
    let archive = work.path().join(format!("{name}.tar.gz"));
    let sidecar = minio.client().get_object().bucket(BUCKET).key(format!("dev/{name}.manifest.json")).send().await.unwrap();
    let sidecar: serde_json::Value = serde_json::from_slice(&sidecar.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(sidecar["archive"]["sha256"], hex::encode(Sha256::digest(std::fs::read(&archive).unwrap())));
    common::untar(archive.to_str().unwrap(), work.path());
    let dump = work.path().join(format!("data/db/dump/{name}"));
    assert!(dump.join("ingest/project.bson").exists());

    // The tool's own route: verify the S3 backup (streamed from MinIO) against the
    // source, then restore it natively into a fresh server.
    let verified = common::run_with_env(&["verify", "latest", "--uri", &source.uri(), "--json"], &env);
    assert!(verified.status.success(), "verify: {}", common::all_output(&verified));
    assert!(!common::all_output(&verified).contains(minio.secret()));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!((report["status"].as_str(), report["name"].as_str()), (Some("passed"), Some(name)));
    assert!(minio.keys().await.contains(&format!("dev/{name}.verify.json")), "the result is recorded beside the backup");
    let native = Server::start();
    let restored = common::run_with_env(&["restore", "latest", "--uri", &native.uri(), "--json"], &env);
    assert!(restored.status.success(), "restore: {}", common::all_output(&restored));
    for collection in sample::COLLECTIONS {
        assert_eq!(
            common::documents_by_id(&native.client().await, "ingest", collection).await,
            common::documents_by_id(&source.client().await, "ingest", collection).await,
            "ingest.{collection} restored from S3"
        );
    }

    let Some(tools) = common::mongo_tools_or_skip("mongorestore of the S3 backup") else { return };
    let target = Server::start();
    let restore = Command::new(tools.join("mongorestore")).arg(format!("--uri={}", target.uri())).arg(&dump).output().unwrap();
    assert!(restore.status.success(), "{}", common::all_output(&restore));
    let (source_client, target_client) = (source.client().await, target.client().await);
    for collection in sample::COLLECTIONS {
        let expected = common::documents_by_id(&source_client, "ingest", collection).await;
        assert!(!expected.is_empty());
        assert_eq!(common::documents_by_id(&target_client, "ingest", collection).await, expected, "ingest.{collection}");
    }

    let listing = common::run_with_env(&["list", "--json"], &env);
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(listing["backups"][0]["name"], name);
    assert_eq!(listing["backups"][0]["complete"], true);
    assert_eq!(listing["backups"][0]["verification"]["status"], "passed");
}

async fn a_large_archive_is_a_real_multipart_upload_matching_its_sidecar(minio: &impl S3Server) {
    let source = source_with_sample(24).await;
    let store = format!("s3://{BUCKET}/multi");
    let args = ["backup", "--uri", &source.uri(), "--store", &store, "--json", "--level", "0", "--part-size-mb", "5", "--parts-in-flight", "2"];
    let result = backup_json(minio, &common::run_with_env(&args, &minio.env()));
    let key = format!("multi/{}.tar.gz", result["name"].as_str().unwrap());
    let object = minio.client().get_object().bucket(BUCKET).key(&key).send().await.unwrap();
    let etag = object.e_tag().unwrap().trim_matches('"').to_string();
    let parts: u32 = etag.rsplit_once('-').expect("a multipart ETag ends in -<parts>").1.parse().unwrap();
    assert!(parts >= 4, "{parts} parts");
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(result["archive_sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(result["archive_bytes"], bytes.len() as u64);
    assert_eq!(minio.open_uploads().await, 0);
}

/// Starts a backup to MinIO that pauses after every collection went into the archive
/// (so parts are already uploaded), and returns it with the earlier backup's keys.
async fn paused_upload(minio: &impl S3Server, source: &Server, work: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let store = format!("s3://{BUCKET}/prod");
    let earlier = backup_json(
        minio,
        &common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store, "--json", "--ns-include", "ingest.project"], &minio.env()),
    );
    assert!(earlier["name"].is_string());
    let keys_before = minio.keys().await;
    let hook = format!("before-oplog-end:{}", work.join("release").display());
    let env = minio.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("INGEST_BACKUP_TEST_PAUSE", &hook));
    let mut child = common::spawn(&["backup", "--uri", &source.uri(), "--store", &store, "--level", "0", "--part-size-mb", "5"], &env);
    common::wait_for_file(&work.join("release.waiting"), &mut child);
    (child, keys_before)
}

async fn killing_the_s3_server_mid_upload_leaves_no_upload_and_no_backup(minio: &mut impl S3Server) {
    let source = source_with_sample(12).await;
    let work = tempfile::tempdir().unwrap();
    let (child, keys_before) = paused_upload(minio, &source, work.path()).await;
    minio.kill();
    std::fs::write(work.path().join("release"), b"").unwrap();
    // Down long enough for the part retries to give up (5 attempts, about 3 s of
    // backoff), back while the tool is still trying to abort its upload (60 s).
    std::thread::sleep(std::time::Duration::from_secs(10));
    minio.restart();
    let output = child.wait_with_output().unwrap();
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot reach the S3 endpoint") || text.contains("S3"), "{text}");
    assert!(!text.contains(minio.secret()));
    assert_eq!(minio.open_uploads().await, 0, "no multipart upload left behind: {text}");
    assert_eq!(minio.keys().await, keys_before, "no new object; the earlier backup untouched");
}

async fn sigterm_mid_upload_aborts_it_and_leaves_no_backup(minio: &impl S3Server) {
    let source = source_with_sample(12).await;
    let work = tempfile::tempdir().unwrap();
    let (child, keys_before) = paused_upload(minio, &source, work.path()).await;
    assert_eq!(minio.open_uploads().await, 1, "the archive is being uploaded");
    // The open multipart upload is a backup being written: `verify unverified` waits for
    // it (bounded) instead of verifying the earlier backup.
    let store = format!("s3://{BUCKET}/prod");
    let unverified = |extra: &[&str]| {
        let mut args = vec!["verify", "unverified", "--store", store.as_str(), "--archive-only"];
        args.extend_from_slice(extra);
        let output = common::run_with_env(&args, &minio.env());
        (output.status.code(), common::all_output(&output))
    };
    let (code, text) = unverified(&["--wait-for-running", "1s", "--poll-interval", "100ms"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is still being written after waiting 1s") && text.contains("nothing was verified"), "{text}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert_eq!(minio.open_uploads().await, 0, "the multipart upload was aborted");
    assert_eq!(minio.keys().await, keys_before, "no new object; the earlier backup untouched");
    let listing = common::run_with_env(&["list", "--store", &format!("s3://{BUCKET}/prod"), "--json"], &minio.env());
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(listing["backups"].as_array().unwrap().len(), 1, "{listing}");
    // With the upload aborted nothing is being written: the earlier backup is verified.
    let (code, text) = unverified(&["--wait-for-running", "10s", "--poll-interval", "100ms"]);
    assert_eq!(code, Some(0), "{text}");
}

async fn bad_credentials_bucket_and_endpoint_fail_clearly_without_the_secret(minio: &impl S3Server) {
    let source = Server::start();
    source.client().await.database("shop").collection::<Document>("orders").insert_one(bson::doc! { "_id": 1 }).await.unwrap();
    let uri = source.uri();
    let good = minio.env();
    let with = |key: &str, value: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = good.iter().filter(|(k, _)| k != key).cloned().collect();
        env.push((key.to_string(), value.to_string()));
        env
    };
    let wrong_secret = "Wrong-Secret-Also-Never-Printed";
    let unreachable = format!("http://127.0.0.1:{}", common::free_port());
    let cases = [
        (format!("s3://{BUCKET}/x"), with("AWS_SECRET_ACCESS_KEY", wrong_secret), "credentials were rejected"),
        (format!("s3://{BUCKET}/x"), with("AWS_ACCESS_KEY_ID", "nobody"), "credentials were rejected"),
        ("s3://no-such-bucket/x".to_string(), good.clone(), "bucket does not exist"),
        (format!("s3://{BUCKET}/x"), with("S3_ENDPOINT", &unreachable), "cannot reach the S3 endpoint"),
        (format!("s3://{BUCKET}/x"), with("S3_ENDPOINT", "minio:9000"), "S3_ENDPOINT"),
        (format!("s3://{BUCKET}/x"), with("S3_SSE", "rot13"), "S3_SSE"),
    ];
    for (store, env, message) in cases {
        let output = common::run_with_env(&["backup", "--uri", &uri, "--store", &store], &env);
        let text = common::all_output(&output);
        assert!(matches!(output.status.code(), Some(1 | 2)), "{store} {message}: {text}");
        assert!(text.contains(message), "expected {message:?}: {text}");
        assert!(!text.contains(minio.secret()) && !text.contains(wrong_secret), "a secret was printed: {text}");
    }
    assert!(minio.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_is_assumed_through_sts_before_touching_the_bucket() {
    let Some(binary) = minio::binary_or_skip("a_role_is_assumed_through_sts_before_touching_the_bucket") else { return };
    let minio = Minio::start(binary).await;
    let source = Server::start();
    source.client().await.database("shop").collection::<Document>("orders").insert_one(bson::doc! { "_id": 1 }).await.unwrap();
    let store = format!("s3://{BUCKET}/role");
    let role = env_with(&minio, &[("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ingest-backup"), ("AWS_ROLE_SESSION_NAME", "ci-test")]);
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store, "--json"], &role);
    let result = backup_json(&minio, &output);
    assert!(minio.keys().await.contains(&format!("role/{}.manifest.json", result["name"].as_str().unwrap())));

    // Base credentials that cannot assume anything: a clear refusal naming the role.
    let mut refused = role.clone();
    for (key, value) in refused.iter_mut() {
        if key == "AWS_SECRET_ACCESS_KEY" {
            *value = "Not-The-Secret-0000".into();
        }
    }
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store], &refused);
    let text = common::all_output(&output);
    assert!(matches!(output.status.code(), Some(1 | 2)), "{text}");
    assert!(text.contains("AWS_ROLE_ARN") || text.contains("rejected"), "{text}");
    assert!(!text.contains(minio.secret()) && !text.contains("Not-The-Secret-0000"), "{text}");

    let malformed = env_with(&minio, &[("AWS_ROLE_ARN", "ingest-backup-role")]);
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store], &malformed);
    assert_eq!(output.status.code(), Some(2));
    assert!(common::all_output(&output).contains("is not a role ARN"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_in_another_region_is_named_as_the_cause() {
    let Some(binary) = minio::binary_or_skip("a_bucket_in_another_region_is_named_as_the_cause") else { return };
    let minio = Minio::start_in_region(binary, "eu-west-1").await;
    let env = env_with(&minio, &[("AWS_REGION", "us-east-1")]);
    let output = common::run_with_env(&["list", "--store", &format!("s3://{BUCKET}/x")], &env);
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("another region; set AWS_REGION"), "{text}");
    assert!(!text.contains(minio.secret()));
}

async fn checksums_only_where_required_still_round_trip_and_bad_settings_are_named(minio: &impl S3Server) {
    let source = source_with_sample(1).await;
    let store = format!("s3://{BUCKET}/checksums");
    // when_required: what S3-compatible servers that reject the SDK's default CRCs need.
    let env = env_with(minio, &[("S3_CHECKSUM", "when_required"), ("S3_FORCE_PATH_STYLE", "true")]);
    let result = backup_json(minio, &common::run_with_env(&["backup", "--uri", &source.uri(), "--store", &store, "--json"], &env));
    let name = result["name"].as_str().unwrap();
    let verified = common::run_with_env(&["verify", name, "--uri", &source.uri(), "--store", &store], &env);
    assert!(verified.status.success(), "verify: {}", common::all_output(&verified));

    for (variable, value, named) in [("S3_CHECKSUM", "sometimes", "when_required"), ("S3_FORCE_PATH_STYLE", "maybe", "true or false")] {
        let env = env_with(minio, &[(variable, value)]);
        let output = common::run_with_env(&["list", "--store", &store], &env);
        assert_eq!(output.status.code(), Some(2), "{variable}={value}: {}", common::all_output(&output));
        let text = common::all_output(&output);
        assert!(text.contains(variable) && text.contains(named), "{text}");
    }
}

/// Runs each named test body once against MinIO and once against versitygw, as
/// `<name>::on_minio` and `<name>::on_versitygw`.
macro_rules! on_each_s3_server {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn on_minio() {
                let Some(binary) = minio::binary_or_skip(concat!(stringify!($test), "::on_minio")) else { return };
                #[allow(unused_mut)]
                let mut server = Minio::start(binary).await;
                super::$test(&mut server).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn on_versitygw() {
                let Some(binary) = versitygw::binary_or_skip(concat!(stringify!($test), "::on_versitygw")) else { return };
                #[allow(unused_mut)]
                let mut server = Versitygw::start(binary, BUCKET).await;
                super::$test(&mut server).await;
            }
        }
    )*};
}

on_each_s3_server!(
    backup_to_s3_restores_with_the_seeds_stock_tools,
    a_large_archive_is_a_real_multipart_upload_matching_its_sidecar,
    killing_the_s3_server_mid_upload_leaves_no_upload_and_no_backup,
    sigterm_mid_upload_aborts_it_and_leaves_no_backup,
    bad_credentials_bucket_and_endpoint_fail_clearly_without_the_secret,
    checksums_only_where_required_still_round_trip_and_bad_settings_are_named,
);
