//! The image itself, and every command run in it the way the chart's pods run it:
//! against SecantusDB and MinIO on the host's loopback, read-only, as uid 65532, with no
//! capabilities, the chart's memory limit and a tmpfs spool.

use std::path::Path;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use bson::doc;

use super::common::minio::{Minio, BUCKET, SECRET_KEY};
use super::common::{self, dataset, Server};
use super::engine::{self, http_get, Engine, SPOOL};
use super::s3_fault_proxy::S3FaultProxy;

/// The largest the image may be, in MB (10^6 bytes), as README.md states it.
pub const SIZE_BUDGET_MB: u64 = 67;

/// The chart's `terminationGracePeriodSeconds` (values.yaml).
const CHART_GRACE_SECONDS: u64 = 120;

/// The tool's output, failing the test when it failed or printed the S3 secret.
fn succeeded(output: &std::process::Output, what: &str) -> String {
    let text = common::all_output(output);
    assert!(output.status.success(), "{what} failed in the container: {text}");
    assert!(!text.contains(SECRET_KEY), "{what} printed the S3 secret");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_image_has_no_shell_runs_as_65532_fits_its_budget_and_prints_help() {
    let Some(engine) = Engine::or_skip("the_image_has_no_shell_runs_as_65532_fits_its_budget_and_prints_help") else { return };
    let inspect = json(&engine.ok(&["image", "inspect", &engine.image]));
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "the image's user: {config}");
    assert_eq!(config["Entrypoint"][0], "/usr/local/bin/ingest-backup");
    let size = inspect[0]["Size"].as_u64().unwrap();
    eprintln!("image {}: {:.1} MB", engine.image, size as f64 / 1e6);
    assert!(size <= SIZE_BUDGET_MB * 1_000_000, "the image is {size} bytes, over its budget of {SIZE_BUDGET_MB} MB");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&format!("under {SIZE_BUDGET_MB} MB")), "README.md states the image budget ({SIZE_BUDGET_MB} MB)");

    // No shell: neither sh nor bash can be started.
    for shell in ["/bin/sh", "/bin/bash", "/usr/bin/sh", "/busybox/sh"] {
        let output = engine.output(&["run", "--rm", "--entrypoint", shell, &engine.image, "-c", "true"]);
        assert!(!output.status.success(), "{shell} ran in the image");
    }

    // --help (the default command) works under the hardening.
    let output = engine.run_tool(&[], &[], &[]);
    let help = succeeded(&output, "the default command");
    assert!(help.contains("backup") && help.contains("restore") && help.contains("schedule"), "--help lists the commands: {help}");

    // The spool directory: owned by the runtime user and private to it.
    let name = "ingest-backup-test-spool-mode";
    engine.remove(name);
    engine.ok(&["create", "--name", name, &engine.image]);
    let listing = engine.command().args(["export", name]).output().unwrap();
    engine.remove(name);
    assert!(listing.status.success(), "export of the image's filesystem failed");
    let mut archive = tar::Archive::new(listing.stdout.as_slice());
    let spool = SPOOL.trim_start_matches('/');
    let entry = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy().trim_end_matches('/').trim_start_matches("./") == spool)
        .unwrap_or_else(|| panic!("{SPOOL} is not in the image"));
    let header = entry.header();
    assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (65532, 65532), "owner of {SPOOL}");
    assert_eq!(header.mode().unwrap() & 0o777, 0o700, "mode of {SPOOL}: {:o}", header.mode().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hardened_image_loads_backs_up_lists_verifies_restores_and_replays_the_oplog() {
    let test = "the_hardened_image_loads_backs_up_lists_verifies_restores_and_replays_the_oplog";
    let Some(engine) = Engine::or_skip(test) else { return };
    let Some(minio_binary) = common::minio::binary_or_skip(test) else { return };
    let minio = Minio::start(minio_binary).await;
    let source = Server::start();
    let target = Server::start();
    let store = format!("s3://{BUCKET}/container");
    let mut env = minio.env();
    env.push(("MONGO_URI".into(), source.uri()));

    let started = Instant::now();
    succeeded(&engine.run_tool(&env, &[], &["sample-data", "--size-mb", "5"]), "sample-data");
    let source_client = source.client().await;
    let databases = source_client.list_database_names().await.unwrap();
    assert!(databases.iter().any(|d| d == "ingest"), "sample-data loaded the ingest database: {databases:?}");

    let backup = json(&succeeded(&engine.run_tool(&env, &[], &["backup", "--store", &store, "--json"]), "backup"));
    let name = backup["name"].as_str().unwrap().to_string();
    let listed = json(&succeeded(&engine.run_tool(&env, &[], &["list", "--store", &store, "--json"]), "list"));
    assert!(
        listed["backups"].as_array().unwrap().iter().any(|b| b["name"] == name.as_str() && b["complete"] == true),
        "list shows {name} complete: {listed}"
    );
    succeeded(&engine.run_tool(&env, &[], &["verify", &name, "--store", &store]), "verify");

    let mut restore_env = minio.env();
    restore_env.push(("MONGO_URI".into(), target.uri()));
    succeeded(&engine.run_tool(&restore_env, &[], &["restore", &name, "--store", &store, "--uri", &target.uri()]), "restore");
    let manifest = sidecar(&minio, &format!("container/{name}.manifest.json")).await;
    let target_client = target.client().await;
    let compared = common::assert_restored_identical(&source_client, &target_client, &manifest, |db| db.to_string()).await;
    assert!(compared >= 6, "the restore compared {compared} collections");

    // An oplog slice after new writes, and a restore to its end.
    let orders = source_client.database("shop").collection::<bson::Document>("after_backup");
    for n in 0..25 {
        orders.insert_one(doc! { "_id": n, "step": "after the backup" }).await.unwrap();
    }
    let slice = json(&succeeded(&engine.run_tool(&env, &[], &["oplog", "--store", &store, "--json"]), "oplog"));
    assert!(!slice["slice"].is_null(), "the slice holds the new writes: {slice}");
    let end = slice["slice"]["end"].clone();
    let to_time = format!("{}.{}", end["t"], end["i"]);
    let pitr_target = Server::start();
    succeeded(
        &engine.run_tool(&restore_env, &[], &["restore", "--to-time", &to_time, "--store", &store, "--uri", &pitr_target.uri()]),
        "restore --to-time",
    );
    let replayed = common::documents_by_id(&pitr_target.client().await, "shop", "after_backup").await;
    assert_eq!(replayed, common::documents_by_id(&source_client, "shop", "after_backup").await, "restore --to-time {to_time} replays the slice");

    // Encrypted: the backup job holds only the recipient; the identity is mounted
    // read-only for verify alone.
    let keys = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let key_file = keys.path().join("backup-key.txt");
    std::fs::write(&key_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    make_readable_by_the_image(keys.path(), &key_file);
    let recipient = identity.to_public().to_string();
    let encrypted_store = format!("s3://{BUCKET}/encrypted");
    let sealed = json(&succeeded(
        &engine.run_tool(&env, &[], &["backup", "--store", &encrypted_store, "--encrypt-to", &recipient, "--json"]),
        "encrypted backup",
    ));
    let sealed_name = sealed["name"].as_str().unwrap();
    let mount = engine::read_only_mount(keys.path(), "/keys");
    let verified = engine.run_tool(&env, &mount, &["verify", sealed_name, "--store", &encrypted_store, "--identity", "/keys/backup-key.txt"]);
    let text = succeeded(&verified, "verify of the encrypted backup");
    assert!(!common::all_output(&verified).contains("AGE-SECRET-KEY-"), "verify printed the identity: {text}");
    let without = engine.run_tool(&env, &[], &["verify", sealed_name, "--store", &encrypted_store]);
    assert_eq!(without.status.code(), Some(2), "verify of an encrypted backup without the identity: {}", common::all_output(&without));
    eprintln!(
        "image: sample-data, backup, list, verify, restore, oplog, restore --to-time, encrypted backup and verify in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The sidecar manifest stored at `key` in the test bucket.
async fn sidecar(minio: &Minio, key: &str) -> serde_json::Value {
    let object = minio.client().get_object().bucket(BUCKET).key(key).send().await.unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap()
}

/// The container runs as 65532: the key's directory and file must be readable by it,
/// as a Kubernetes Secret volume with `defaultMode` would make them.
fn make_readable_by_the_image(dir: &Path, file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_serves_health_and_metrics_and_a_sigterm_mid_backup_aborts_the_upload() {
    let test = "the_scheduler_serves_health_and_metrics_and_a_sigterm_mid_backup_aborts_the_upload";
    let Some(engine) = Engine::or_skip(test) else { return };
    let Some(minio_binary) = common::minio::binary_or_skip(test) else { return };
    let minio = Minio::start(minio_binary).await;
    let source = Server::start();
    dataset::load(&source.client().await, 12).await;

    // Every part of the archive is held unanswered: the backup is mid-upload when the
    // scheduler is told to stop. The default grace period (25 s) runs out first.
    let proxy = S3FaultProxy::start(&minio, &["part:stall"]);
    let port = common::free_port();
    let name = "ingest-backup-test-schedule";
    engine.start_tool(name, &scheduler_env(&proxy, &source, port, "mid-upload"), &[], &["schedule"]);
    let _cleanup = Removed { engine: &engine, name };

    engine.wait_until(name, Duration::from_secs(60), "/healthz never answered 200", || {
        http_get(port, "/healthz").is_some_and(|(status, _)| status == 200)
    });
    let (status, body) = http_get(port, "/healthz").unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("ingest_backup_runs_total{operation=\"backup\",outcome=\"success\"}"), "/metrics: {metrics}");
    let healthcheck = engine.output(&["exec", name, "/usr/local/bin/ingest-backup", "healthcheck"]);
    assert!(healthcheck.status.success(), "the healthcheck subcommand inside the container: {}", common::all_output(&healthcheck));

    engine.wait_until(name, Duration::from_secs(120), "the scheduled backup never reached its upload", || proxy.stats().fired("part:stall") > 0);
    let (status, took, logs) = stop(&engine, name);
    eprintln!("schedule: SIGTERM mid-upload to exit {status} in {:.1} s", took.as_secs_f64());
    assert_eq!(status, 1, "a SIGTERM that had to abort a run exits 1: {logs}");
    assert_nothing_left(&minio, "mid-upload/").await;

    // The store stops answering at the run's very first write (its lock object): the
    // stop still ends within the grace period (here 2 s) plus the abort.
    drop(_cleanup);
    let proxy = S3FaultProxy::start(&minio, &["put:stall"]);
    let mut env = scheduler_env(&proxy, &source, common::free_port(), "at-the-lock");
    env.push(("GRACE_PERIOD".into(), "2s".into()));
    engine.start_tool(name, &env, &[], &["schedule"]);
    let _cleanup = Removed { engine: &engine, name };
    engine.wait_until(name, Duration::from_secs(60), "the scheduled backup never wrote its lock", || proxy.stats().fired("put:stall") > 0);
    let (status, took, logs) = stop(&engine, name);
    eprintln!("schedule: SIGTERM while the store holds the lock request, to exit {status} in {:.1} s", took.as_secs_f64());
    assert_eq!(status, 1, "a SIGTERM that had to abort a run exits 1: {logs}");
    assert!(took < Duration::from_secs(30), "a store that stopped answering held the stop for {took:?}: {logs}");
}

/// The scheduler's environment: a backup on start into `prefix` through `proxy`,
/// /healthz and /metrics on `port`.
fn scheduler_env(proxy: &S3FaultProxy, source: &Server, port: u16, prefix: &str) -> Vec<(String, String)> {
    let mut env = proxy.env();
    env.extend(
        [
            ("MONGO_URI", source.uri()),
            ("S3_BUCKET", BUCKET.to_string()),
            ("BACKUP_DIR", prefix.to_string()),
            ("RUN_ON_START", "true".to_string()),
            ("CRON_SCHEDULE", "0 0 * * *".to_string()),
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

/// Sends SIGTERM to the scheduler's container and waits (up to the chart's grace
/// period) for it to exit: its status, how long that took and its log, which must not
/// hold the S3 secret.
fn stop(engine: &Engine, name: &str) -> (i32, Duration, String) {
    let stopping = Instant::now();
    engine.ok(&["kill", "--signal", "TERM", name]);
    let status = engine.wait_exit(name, Duration::from_secs(CHART_GRACE_SECONDS));
    let took = stopping.elapsed();
    let logs = engine.logs(name);
    assert!(!logs.contains(SECRET_KEY), "the scheduler logged the S3 secret");
    (status, took, logs)
}

/// Asserts that no object under `prefix` (not even the run's lock) and no open
/// multipart upload is in the bucket.
async fn assert_nothing_left(minio: &Minio, prefix: &str) {
    let client = minio.client();
    let uploads = client.list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "an upload was left open: {:?}", uploads.uploads());
    let objects = client.list_objects_v2().bucket(BUCKET).prefix(prefix).send().await.unwrap();
    let left: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert!(left.is_empty(), "objects were left: {left:?}");
}

/// Removes a container when the test ends, passed or not.
struct Removed<'a> {
    engine: &'a Engine,
    name: &'a str,
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        self.engine.remove(self.name);
    }
}
