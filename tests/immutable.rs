//! Immutable backups on a real S3 server (MinIO, buckets created with Object Lock):
//! `backup --lock-mode` locks every object of a backup (and verification records copy
//! the lock); a locked version cannot be deleted before its date; `prune` leaves a
//! locked backup in place as `locked`, removes it (every version) once the lock has
//! expired, and extends the locks of the backups it keeps to the end of their tier,
//! never shortening one; compliance locks resist even the bucket owner; legal holds
//! outlast retention; buckets that cannot hold the lock are refused before the database
//! is read; each job's printed IAM policy lets it work and refuses a delete.
//!
//! Peers: SecantusDB (the source), MinIO (with users created through its admin API).

mod common;

use std::time::Duration;

use aws_sdk_s3::types::{DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule};
use bson::doc;
use chrono::{DateTime, Timelike, Utc};
use common::minio::{self, Minio, SECRET_KEY};
use common::s3_server::S3Server;
use common::Server;
use serde_json::Value;

const LOCKED: &str = "locked-backups";

async fn source() -> Server {
    let server = Server::start();
    let client = server.client().await;
    let docs: Vec<bson::Document> = (0..50).map(|i| doc! { "_id": i, "payload": format!("record {i}") }).collect();
    client.database("ingest").collection("events").insert_many(docs).await.unwrap();
    server
}

/// Runs the tool; returns exit code, the `--json` document (if any) and all output.
fn run(args: &[&str], env: &[(String, String)]) -> (i32, Value, String) {
    let output = common::run_with_env(args, env);
    let text = common::all_output(&output);
    assert!(!text.contains(SECRET_KEY), "the secret key was printed: {text}");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), json, text)
}

fn backup(uri: &str, store: &str, env: &[(String, String)], extra: &[&str]) -> Value {
    let mut args = vec!["backup", "--uri", uri, "--store", store, "--json"];
    args.extend_from_slice(extra);
    let (code, json, text) = run(&args, env);
    assert_eq!(code, 0, "backup failed: {text}");
    json
}

fn prune(store: &str, env: &[(String, String)], extra: &[&str]) -> Value {
    let mut args = vec!["prune", "--store", store, "--json"];
    args.extend_from_slice(extra);
    let (code, json, text) = run(&args, env);
    assert_eq!(code, 0, "prune failed: {text}");
    json
}

fn verdict<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["backups"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{name} not in {report}"))
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap_or_else(|| panic!("not a time: {value}")).parse().unwrap()
}

/// The retention mode and date of the current version of `key`.
async fn retention(minio: &Minio, bucket: &str, key: &str) -> (Option<String>, Option<i64>) {
    let head = minio.client().head_object().bucket(bucket).key(key).send().await.unwrap();
    (head.object_lock_mode().map(|m| m.as_str().to_string()), head.object_lock_retain_until_date().map(|d| d.secs()))
}

/// The version ids of `key` (delete markers excluded).
async fn versions(minio: &Minio, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let listed = minio.client().list_object_versions().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut found: Vec<(String, String)> =
        listed.versions().iter().map(|v| (v.key().unwrap().to_string(), v.version_id().unwrap().to_string())).collect();
    found.extend(listed.delete_markers().iter().map(|m| (m.key().unwrap().to_string(), format!("marker {}", m.version_id().unwrap()))));
    found
}

fn wait_past(until: DateTime<Utc>) {
    let left = (until - Utc::now()).num_milliseconds() + 1500;
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_backup_outlives_every_delete_until_its_date_and_prune_waits_for_it() {
    let Some(binary) = minio::binary_or_skip("a_locked_backup_outlives_every_delete_until_its_date_and_prune_waits_for_it") else { return };
    let minio = Minio::start(binary).await;
    minio.create_locked_bucket(LOCKED).await;
    let source = source().await;
    let env = minio.env();
    let store = format!("s3://{LOCKED}/prod");
    let lock = ["--lock-mode", "governance", "--lock-days", "25s"];

    let first = backup(&source.uri(), &store, &env, &lock);
    let name = first["name"].as_str().unwrap().to_string();
    assert_eq!(first["lock_mode"], "governance");
    let until = time(&first["locked_until"]);
    assert!(until > Utc::now() && until < Utc::now() + chrono::Duration::seconds(40), "{until}");
    for key in [format!("prod/{name}.tar.gz"), format!("prod/{name}.manifest.json")] {
        assert_eq!(retention(&minio, LOCKED, &key).await, (Some("GOVERNANCE".into()), Some(until.timestamp())), "{key}");
    }
    // Without a bypass, not even the bucket's root user deletes a locked version.
    let archive_versions = versions(&minio, LOCKED, &format!("prod/{name}.tar.gz")).await;
    let refused = minio.client().delete_object().bucket(LOCKED).key(format!("prod/{name}.tar.gz")).version_id(&archive_versions[0].1).send().await;
    assert!(refused.is_err(), "a locked version was deleted");

    // A verification record is locked like its backup.
    let (code, _, text) = run(&["verify", &name, "--archive-only", "--store", &store], &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(retention(&minio, LOCKED, &format!("prod/{name}.verify.json")).await, (Some("GOVERNANCE".into()), Some(until.timestamp())));
    // So is a drill record.
    let scratch = Server::start();
    let (code, _, text) = run(&["drill", &name, "--uri", &scratch.uri(), "--store", &store], &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(retention(&minio, LOCKED, &format!("prod/{name}.drill.json")).await, (Some("GOVERNANCE".into()), Some(until.timestamp())));
    // The exporter reads the locks: the one complete backup is covered.
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let env_pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut exporter = common::spawn(&["exporter", "--store", &store, "--listen", &listen, "--interval", "1s"], &env_pairs);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let page = loop {
        assert!(exporter.try_wait().unwrap().is_none(), "the exporter exited");
        let page = scrape(&listen);
        if page.contains("ingest_backup_lock_coverage_ratio") || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    exporter.kill().unwrap();
    exporter.wait().unwrap();
    assert!(page.lines().any(|line| line == "ingest_backup_lock_coverage_ratio 1.0"), "{page}");

    let second = backup(&source.uri(), &store, &env, &lock);
    let newer = second["name"].as_str().unwrap().to_string();
    // Verified too, so that the first is no longer the newest verified backup.
    let (code, _, text) = run(&["verify", &newer, "--archive-only", "--store", &store], &env);
    assert_eq!(code, 0, "{text}");

    // The policy lets the first go, its lock does not: left in place, exit 0.
    let report = prune(&store, &env, &["--keep-last", "1"]);
    assert_eq!(report["object_lock"], true);
    assert_eq!(verdict(&report, &name)["action"], "locked");
    assert_eq!(time(&verdict(&report, &name)["locked_until"]), until);
    assert!(verdict(&report, &name)["reason"].as_str().unwrap().contains("locked until"), "{report}");
    assert_eq!(verdict(&report, &newer)["action"], "keep");
    assert_eq!((report["removed_backups"].as_u64(), report["locked_backups"].as_u64()), (Some(0), Some(1)));
    let (code, _, table) = run(&["prune", "--store", &store, "--keep-last", "1", "--dry-run"], &env);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("LOCKED UNTIL") && table.contains("EXTENDED TO") && table.contains(" locked "), "{table}");
    let (code, listed, text) = run(&["list", "--store", &store, "--json"], &env);
    assert_eq!(code, 0, "{text}");
    let listed_first = listed["backups"].as_array().unwrap().iter().find(|b| b["name"] == name.as_str()).unwrap();
    assert_eq!((time(&listed_first["locked_until"]), &listed_first["legal_hold"]), (until, &Value::Bool(false)));
    let (_, _, text) = run(&["list", "--store", &store], &env);
    assert!(text.contains("LOCKED UNTIL") && text.contains("HOLD"), "{text}");

    // Once the lock has expired, the next prune removes the backup: every version, and the delete markers.
    wait_past(until);
    let report = prune(&store, &env, &["--keep-last", "1"]);
    assert_eq!(verdict(&report, &name)["action"], "remove", "{report}");
    assert!(report["noncurrent_versions_removed"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(versions(&minio, LOCKED, &format!("prod/{name}.")).await, Vec::<(String, String)>::new(), "nothing of the backup is left");
    assert!(minio.client().head_object().bucket(LOCKED).key(format!("prod/{newer}.tar.gz")).send().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_extends_kept_locks_to_the_end_of_their_tier_and_never_shortens_them() {
    let Some(binary) = minio::binary_or_skip("prune_extends_kept_locks_to_the_end_of_their_tier_and_never_shortens_them") else { return };
    let minio = Minio::start(binary).await;
    minio.create_locked_bucket(LOCKED).await;
    let source = source().await;
    let env = minio.env();
    let store = format!("s3://{LOCKED}/tiers");
    let taken = backup(&source.uri(), &store, &env, &["--lock-mode", "governance", "--lock-days", "30s"]);
    let name = taken["name"].as_str().unwrap().to_string();
    let written = time(&taken["locked_until"]);

    // Two hours later the backup's hour is over: keep-hourly 3 keeps its slot until three hours after that hour began.
    let later = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let mut clock = env.clone();
    clock.push(("INGEST_BACKUP_TEST_NOW".into(), later));
    let dry = prune(&store, &clock, &["--keep-hourly", "3", "--dry-run"]);
    let (_, _, table) = run(&["prune", "--store", &store, "--keep-hourly", "3", "--dry-run"], &clock);
    println!("{table}");
    let started = time(&verdict(&dry, &name)["time"]);
    let hour = started.with_minute(0).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap();
    let slot_end = hour + chrono::Duration::hours(3);
    assert_eq!(time(&verdict(&dry, &name)["lock_extended_to"]), slot_end, "{dry}");
    assert_eq!(retention(&minio, LOCKED, &format!("tiers/{name}.tar.gz")).await.1, Some(written.timestamp()), "a dry run extends nothing");

    let report = prune(&store, &clock, &["--keep-hourly", "3"]);
    assert_eq!(verdict(&report, &name)["action"], "keep");
    for key in [format!("tiers/{name}.tar.gz"), format!("tiers/{name}.manifest.json")] {
        assert_eq!(retention(&minio, LOCKED, &key).await, (Some("GOVERNANCE".into()), Some(slot_end.timestamp())), "{key}");
    }
    // A shorter tier never shortens a lock.
    let report = prune(&store, &clock, &["--keep-hourly", "1"]);
    assert_eq!(verdict(&report, &name)["lock_extended_to"], Value::Null, "{report}");
    assert_eq!(time(&verdict(&report, &name)["locked_until"]), slot_end);
    assert_eq!(retention(&minio, LOCKED, &format!("tiers/{name}.tar.gz")).await.1, Some(slot_end.timestamp()));
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_locks_resist_the_bucket_owner_and_a_legal_hold_outlasts_them() {
    let Some(binary) = minio::binary_or_skip("compliance_locks_resist_the_bucket_owner_and_a_legal_hold_outlasts_them") else { return };
    let minio = Minio::start(binary).await;
    minio.create_locked_bucket(LOCKED).await;
    let source = source().await;
    // Checksums only where required: a locked write still carries the one S3 demands.
    let mut env = minio.env();
    env.push(("S3_CHECKSUM".into(), "when_required".into()));
    let store = format!("s3://{LOCKED}/held");
    let first = backup(&source.uri(), &store, &env, &["--lock-mode", "compliance", "--lock-days", "15s"]);
    let name = first["name"].as_str().unwrap().to_string();
    let until = time(&first["locked_until"]);
    let key = format!("held/{name}.tar.gz");
    assert_eq!(retention(&minio, LOCKED, &key).await.0.as_deref(), Some("COMPLIANCE"));
    let version = versions(&minio, LOCKED, &key).await.remove(0).1;
    let bypass = minio.client().delete_object().bucket(LOCKED).key(&key).version_id(&version).bypass_governance_retention(true).send().await;
    assert!(bypass.is_err(), "a compliance lock gave way to the root user's governance bypass");

    let (code, held, text) = run(&["hold", &name, "--store", &store, "--json"], &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(held["legal_hold"], true);
    assert!(held["objects"].as_array().unwrap().len() >= 2, "{held}");
    let (_, listed, _) = run(&["list", "--store", &store, "--json"], &env);
    assert_eq!(listed["backups"][0]["legal_hold"], true, "{listed}");

    backup(&source.uri(), &store, &env, &[]);
    wait_past(until);
    let report = prune(&store, &env, &["--keep-last", "1"]);
    assert_eq!(verdict(&report, &name)["action"], "locked", "the hold keeps it after the date: {report}");
    assert!(verdict(&report, &name)["reason"].as_str().unwrap().contains("legal hold"), "{report}");

    let (code, released, text) = run(&["release", &name, "--store", &store, "--json"], &env);
    assert_eq!((code, &released["legal_hold"]), (0, &Value::Bool(false)), "{text}");
    let report = prune(&store, &env, &["--keep-last", "1"]);
    assert_eq!(verdict(&report, &name)["action"], "remove", "{report}");
    assert!(versions(&minio, LOCKED, &format!("held/{name}.")).await.is_empty());

    // A store that cannot lock says so.
    let plain = tempfile::tempdir().unwrap();
    let (code, _, text) = run(&["hold", "latest", "--store", plain.path().to_str().unwrap()], &env);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("Object Lock"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_mode_refuses_a_bucket_that_cannot_hold_it_before_reading_the_database() {
    let Some(binary) = minio::binary_or_skip("lock_mode_refuses_a_bucket_that_cannot_hold_it_before_reading_the_database") else { return };
    let minio = Minio::start(binary).await;
    let env = minio.env();
    // Nothing listens on this port: a refusal that names the bucket proves the database was never read.
    let nowhere = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=2000", common::free_port());
    let plain = format!("s3://{}/prod", minio::BUCKET);
    let (code, _, text) = run(&["backup", "--uri", &nowhere, "--store", &plain, "--lock-mode", "governance", "--keep-daily", "7"], &env);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("does not have Object Lock enabled") && text.contains("--object-lock-enabled-for-bucket"), "{text}");
    assert!(minio.keys().await.is_empty(), "nothing was written: {:?}", minio.keys().await);

    // A bucket whose default retention outlasts every backup the policy keeps.
    minio.create_locked_bucket(LOCKED).await;
    let rule =
        ObjectLockRule::builder().default_retention(DefaultRetention::builder().mode(ObjectLockRetentionMode::Governance).days(400).build()).build();
    let configuration = ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).rule(rule).build();
    minio.client().put_object_lock_configuration().bucket(LOCKED).object_lock_configuration(configuration).send().await.unwrap();
    let store = format!("s3://{LOCKED}/prod");
    let (code, _, text) = run(&["backup", "--uri", &nowhere, "--store", &store, "--lock-mode", "governance", "--keep-daily", "7"], &env);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("by default for 400 days") && text.contains("put-object-lock-configuration"), "{text}");
    // keep-last alone, on an empty store, says nothing about time.
    let (code, _, text) = run(&["backup", "--uri", &nowhere, "--store", &store, "--lock-mode", "governance", "--keep-last", "3"], &env);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--lock-days"), "{text}");
    let (code, _, text) = run(&["backup", "--uri", &nowhere, "--store", &store, "--lock-mode", "forever"], &env);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("governance") && text.contains("compliance"), "{text}");

    // Without --lock-mode, the bucket's own default locks are respected by prune.
    let source = source().await;
    let old = backup(&source.uri(), &store, &env, &[]);
    backup(&source.uri(), &store, &env, &[]);
    let report = prune(&store, &env, &["--keep-last", "1"]);
    let old = verdict(&report, old["name"].as_str().unwrap());
    assert_eq!(old["action"], "locked", "{report}");
    assert!(time(&old["locked_until"]) > Utc::now() + chrono::Duration::days(399));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_jobs_iam_policy_lets_it_work_and_refuses_a_delete() {
    let Some(binary) = minio::binary_or_skip("each_jobs_iam_policy_lets_it_work_and_refuses_a_delete") else { return };
    let minio = Minio::start(binary).await;
    minio.create_locked_bucket(LOCKED).await;
    let source = source().await;
    let store = format!("s3://{LOCKED}/prod");
    let mut env_of = std::collections::BTreeMap::new();
    for role in ["backup", "prune", "verify", "restore"] {
        let (code, policy, text) = run(&["iam-policy", "--role", role, "--bucket", LOCKED, "--prefix", "prod", "--json"], &[]);
        assert_eq!(code, 0, "{text}");
        let actions = policy["Statement"].to_string();
        if role == "backup" {
            assert!(!actions.contains("Delete") && !actions.contains("Bypass"), "{actions}");
        }
        let secret = format!("{role}-Secret-0123");
        minio.add_user(&format!("{role}-job"), &secret, &policy.to_string());
        env_of.insert(role, (minio.env_as(&format!("{role}-job"), &secret), minio.client_as(&format!("{role}-job"), &secret)));
    }
    let lock = ["--lock-mode", "governance", "--lock-days", "20s"];

    // The backup job works with its policy (its run lock is left as released, not deleted) ...
    let (backup_env, backup_client) = &env_of["backup"];
    let first = backup(&source.uri(), &store, backup_env, &lock);
    let name = first["name"].as_str().unwrap().to_string();
    backup(&source.uri(), &store, backup_env, &lock);
    // ... and cannot delete.
    let denied = backup_client.delete_object().bucket(LOCKED).key(format!("prod/{name}.tar.gz")).send().await;
    assert!(denied.is_err(), "the backup job's credentials deleted a backup");
    assert!(minio.client().head_object().bucket(LOCKED).key(format!("prod/{name}.tar.gz")).send().await.is_ok());

    let (verify_env, verify_client) = &env_of["verify"];
    let (code, report, text) = run(&["verify", "latest", "--archive-only", "--store", &store, "--json"], verify_env);
    assert_eq!((code, report["status"].as_str()), (0, Some("passed")), "{text}");
    assert!(!text.contains("Cannot record") && !text.contains("Cannot lock"), "{text}");
    let overwrite = verify_client.put_object().bucket(LOCKED).key(format!("prod/{name}.tar.gz")).body(Vec::new().into()).send().await;
    assert!(overwrite.is_err(), "the verify job's credentials overwrote an archive");
    assert!(verify_client.delete_object().bucket(LOCKED).key(format!("prod/{}.verify.json", report["name"].as_str().unwrap())).send().await.is_err());

    let (restore_env, restore_client) = &env_of["restore"];
    let target = Server::start();
    let (code, _, text) = run(&["restore", &name, "--uri", &target.uri(), "--store", &store], restore_env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(target.client().await.database("ingest").collection::<bson::Document>("events").count_documents(doc! {}).await.unwrap(), 50);
    assert!(restore_client.put_object().bucket(LOCKED).key("prod/x.json").body(Vec::new().into()).send().await.is_err());
    assert!(restore_client.delete_object().bucket(LOCKED).key(format!("prod/{name}.manifest.json")).send().await.is_err());

    // Prune deletes (here: nothing yet, the older backup is locked) and clears the released run locks; it cannot bypass a lock.
    let (prune_env, prune_client) = &env_of["prune"];
    let report = prune(&store, prune_env, &["--keep-last", "1"]);
    assert_eq!(verdict(&report, &name)["action"], "locked", "{report}");
    let run_locks = minio.client().list_objects_v2().bucket(LOCKED).prefix("prod/locks/").send().await.unwrap();
    assert_eq!(run_locks.key_count(), Some(0), "the released run locks are gone: {:?}", run_locks.contents());
    let version = versions(&minio, LOCKED, &format!("prod/{name}.tar.gz")).await.remove(0).1;
    let bypass = prune_client
        .delete_object()
        .bucket(LOCKED)
        .key(format!("prod/{name}.tar.gz"))
        .version_id(version)
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(bypass.is_err(), "the prune job's credentials bypassed a governance lock");
    wait_past(time(&first["locked_until"]));
    let report = prune(&store, prune_env, &["--keep-last", "1"]);
    assert_eq!(verdict(&report, &name)["action"], "remove", "{report}");
    assert!(versions(&minio, LOCKED, &format!("prod/{name}.")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_killed_on_a_locked_store_leaves_no_backup_half_deleted() {
    let Some(binary) = minio::binary_or_skip("a_prune_killed_on_a_locked_store_leaves_no_backup_half_deleted") else { return };
    let minio = Minio::start(binary).await;
    minio.create_locked_bucket(LOCKED).await;
    let source = source().await;
    let mut env = minio.env();
    env.push(("INGEST_BACKUP_LOCK_TTL".into(), "2s".into()));
    let store = format!("s3://{LOCKED}/killed");
    let old = backup(&source.uri(), &store, &env, &["--lock-mode", "governance", "--lock-days", "5s"]);
    let name = old["name"].as_str().unwrap().to_string();
    let newer = backup(&source.uri(), &store, &env, &["--lock-mode", "governance", "--lock-days", "5s"]);
    wait_past(time(&old["locked_until"]));

    // Killed (SIGKILL) right after the sidecar of the backup it removes.
    let work = tempfile::tempdir().unwrap();
    let release = work.path().join("release");
    let pause = format!("prune-after-sidecar:{}", release.display());
    let mut child_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    child_env.push(("INGEST_BACKUP_TEST_PAUSE", &pause));
    let mut child = common::spawn(&["prune", "--store", &store, "--keep-last", "1"], &child_env);
    let waiting = work.path().join("release.waiting");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !waiting.exists() {
        assert!(std::time::Instant::now() < deadline, "the prune never reached its pause");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Half way, the backup is listed as what it now is: incomplete, never complete without its sidecar.
    let (code, listed, text) = run(&["list", "--store", &store, "--json"], &env);
    assert_eq!(code, 0, "{text}");
    let entry = listed["backups"].as_array().unwrap().iter().find(|b| b["name"] == name.as_str()).expect("its archive is still there");
    assert_eq!(entry["complete"], false, "{listed}");

    // The next prune takes the dead one's lock over and finishes: nothing of the backup is left, in any version.
    std::thread::sleep(Duration::from_millis(2500));
    let report = prune(&store, &env, &["--keep-last", "1"]);
    assert_eq!(report["stale_locks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(verdict(&report, &name)["action"], "remove", "{report}");
    assert!(versions(&minio, LOCKED, &format!("killed/{name}.")).await.is_empty());
    let newer = newer["name"].as_str().unwrap();
    let (code, _, text) = run(&["verify", newer, "--archive-only", "--store", &store], &env);
    assert_eq!(code, 0, "the kept backup is intact: {text}");
}

/// The `/metrics` page at `listen` (empty while nothing answers there).
fn scrape(listen: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(listen) else { return String::new() };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}
