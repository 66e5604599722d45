//! The tool killed with SIGKILL (no chance to clean up) on MinIO: mid-upload (parts
//! stored, the multipart upload open) and with the archive stored whole but its sidecar
//! not yet written. Either way the store never shows a complete backup that is not
//! whole, `verify` and `restore` refuse the leftover, the next backup succeeds beside
//! it, and `prune --stale-after` removes it (the open upload aborted, the archive
//! without a sidecar deleted). (SIGKILL mid-prune is in `tests/prune.rs`.)
//!
//! Peers: SecantusDB, MinIO.

mod common;

use std::path::Path;
use std::process::Child;

use common::minio::Minio;
use common::s3_server::S3Server;
use common::Server;
use ingest_backup::sample::{self, SampleSpec};

const STORE: &str = "s3://ingest-backups/prod";

fn env(minio: &Minio) -> Vec<(String, String)> {
    let mut env = minio.env();
    // A dead run's lock is stale after two seconds (the default is minutes).
    env.push(("INGEST_BACKUP_LOCK_TTL".to_string(), "2s".to_string()));
    env
}

fn run(minio: &Minio, args: &[&str]) -> (i32, serde_json::Value, String) {
    let output = common::run_with_env(args, &env(minio));
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), json, common::all_output(&output))
}

/// The store's keys, run locks aside.
async fn backup_keys(minio: &Minio) -> Vec<String> {
    minio.keys().await.into_iter().filter(|key| !key.starts_with("prod/locks/")).collect()
}

/// A backup paused at `stage`, started after one clean backup; returns it once paused.
fn paused_backup(minio: &Minio, source: &Server, work: &Path, stage: &str) -> Child {
    let (code, _, output) = run(minio, &["backup", "--uri", &source.uri(), "--store", STORE, "--json", "--ns-include", "ingest.project"]);
    assert_eq!(code, 0, "{output}");
    let hook = format!("{stage}:{}", work.join("release").display());
    let env = env(minio);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("INGEST_BACKUP_TEST_PAUSE", &hook));
    let mut child = common::spawn(&["backup", "--uri", &source.uri(), "--store", STORE, "--level", "0", "--part-size-mb", "5"], &env);
    common::wait_for_file(&work.join("release.waiting"), &mut child);
    child
}

fn complete_backups(listing: &serde_json::Value) -> Vec<String> {
    listing["backups"].as_array().unwrap().iter().filter(|b| b["complete"] == true).map(|b| b["name"].as_str().unwrap().to_string()).collect()
}

/// After the kill: what `list` says, then the next backup, then the prune that removes the leftover.
async fn after_the_kill(minio: &Minio, source: &Server, complete_before: &[String]) {
    let (code, listing, output) = run(minio, &["list", "--store", STORE, "--json"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(complete_backups(&listing), complete_before, "no complete backup that is not whole: {listing}");

    std::thread::sleep(std::time::Duration::from_millis(2500)); // the killed backup's run lock is stale
    let (code, next, output) = run(minio, &["backup", "--uri", &source.uri(), "--store", STORE, "--json", "--ns-include", "ingest.project"]);
    assert_eq!(code, 0, "the next backup runs beside the leftover: {output}");
    let next = next["name"].as_str().unwrap().to_string();

    let (code, pruned, output) = run(minio, &["prune", "--store", STORE, "--keep-last", "5", "--stale-after", "0s", "--json"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(minio.open_uploads().await, 0, "no open multipart upload left: {pruned}");
    let (_, listing, _) = run(minio, &["list", "--store", STORE, "--json"]);
    let names: Vec<&str> = listing["backups"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = complete_before.iter().map(String::as_str).collect();
    expected.insert(0, &next);
    assert_eq!(names, expected, "only whole backups remain: {listing}");
    for key in backup_keys(minio).await {
        let name = key.trim_start_matches("prod/").split('.').next().unwrap().to_string();
        assert!(expected.contains(&name.as_str()), "{key} belongs to no whole backup");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_upload_leaves_an_open_upload_that_prune_aborts() {
    let Some(binary) = common::minio::binary_or_skip("sigkill_mid_upload_leaves_an_open_upload_that_prune_aborts") else { return };
    let minio = Minio::start(binary).await;
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 3 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut child = paused_backup(&minio, &source, work.path(), "before-oplog-end");
    assert_eq!(minio.open_uploads().await, 1, "the archive's parts are being uploaded");
    let (_, listing, _) = run(&minio, &["list", "--store", STORE, "--json"]);
    let complete_before = complete_backups(&listing);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(minio.open_uploads().await, 1, "a killed process aborts nothing");
    after_the_kill(&minio, &source, &complete_before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_before_the_sidecar_leaves_an_incomplete_archive_that_is_never_restored_and_prune_removes() {
    let Some(binary) = common::minio::binary_or_skip("sigkill_before_the_sidecar") else { return };
    let minio = Minio::start(binary).await;
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 4 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (_, listing, _) = run(&minio, &["list", "--store", STORE, "--json"]);
    assert!(complete_backups(&listing).is_empty());
    let mut child = paused_backup(&minio, &source, work.path(), "before-sidecar");
    let (_, listing, _) = run(&minio, &["list", "--store", STORE, "--json"]);
    let complete_before = complete_backups(&listing);
    let paused: Vec<String> =
        listing["backups"].as_array().unwrap().iter().filter(|b| b["complete"] == false).map(|b| b["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(paused.len(), 1, "the archive is stored whole, without its sidecar: {listing}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(backup_keys(&minio).await.contains(&format!("prod/{}.tar.gz", paused[0])), "the archive stays: nobody removed it");

    let target = Server::start();
    let (code, _, output) = run(&minio, &["restore", &paused[0], "--uri", &target.uri(), "--store", STORE]);
    assert_eq!(code, 1, "an archive without its sidecar is never restored: {output}");
    assert!(output.contains("has no sidecar manifest") && output.contains("incomplete"), "{output}");
    let (code, _, output) = run(&minio, &["verify", &paused[0], "--store", STORE, "--archive-only"]);
    assert_ne!(code, 0, "an incomplete backup never verifies: {output}");
    after_the_kill(&minio, &source, &complete_before).await;
    assert!(!backup_keys(&minio).await.iter().any(|key| key.contains(&paused[0])), "prune removed the archive without a sidecar");
}
