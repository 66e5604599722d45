//! `verify` against real servers: an intact backup passes; a flipped byte inside a
//! `.bson` member, a truncated archive, a deleted sidecar and an edited sidecar hash
//! each fail naming the namespace or object; writes after the backup are reported as
//! changed (SecantusDB keeps an oplog) and pass; the same difference on a standalone
//! server (no oplog) is undetermined, a warning that `--strict` turns into a failure;
//! a difference no oplog write explains (a different database with the same
//! collection names) fails. (The S3 store's verification is in `tests/s3.rs`.)
//!
//! Peers: SecantusDB, replica set and standalone.

mod common;

use std::path::Path;

use bson::{doc, Document};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};

async fn load_sample(server: &Server, seed: u64) {
    sample::load(&server.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed }).await.unwrap();
    let notes = (0..20).map(|i| doc! { "_id": i, "text": format!("hello world {i}") });
    server.client().await.database("ingest").collection::<Document>("notes").insert_many(notes).await.unwrap();
}

fn verify(store: &Path, name: &str, uri: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["verify", name, "--store", store.to_str().unwrap(), "--uri", uri, "--json"];
    args.extend_from_slice(extra);
    common::run_json(&args)
}

fn status_of<'a>(report: &'a serde_json::Value, namespace: &str) -> &'a serde_json::Value {
    let rows = report["live"]["namespaces"].as_array().expect("a live comparison");
    &rows.iter().find(|r| r["namespace"] == namespace).unwrap_or_else(|| panic!("{namespace} in {rows:?}"))["status"]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_intact_backup_passes_and_the_result_is_recorded_for_list() {
    let server = Server::start();
    load_sample(&server, 1).await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&server.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();

    let (code, report, output) = verify(store.path(), "latest", &server.uri(), &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["status"], "passed");
    assert_eq!(report["name"], name.as_str());
    assert_eq!(report["archive"]["intact"], true);
    let manifest = common::sidecar(store.path(), &name);
    assert_eq!(
        report["archive"]["documents"].as_u64().unwrap(),
        manifest["totals"]["documents"].as_u64().unwrap() + manifest["consistency"]["oplog_entries"].as_u64().unwrap()
    );
    assert!(report["live"]["namespaces"].as_array().unwrap().iter().all(|n| n["status"] == "identical"), "{report}");
    assert!(output.contains("ingest.notes") && output.contains("identical"), "the table names each namespace: {output}");

    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(store.path().join(format!("{name}.verify.json"))).unwrap()).unwrap();
    assert_eq!(recorded["status"], "passed");
    let (code, list, _) = common::run_json(&["list", "--store", store.path().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(list["backups"][0]["verification"]["status"], "passed");

    // Archive only: no server needed.
    let (code, report, output) = common::run_json(&["verify", &name, "--store", store.path().to_str().unwrap(), "--archive-only", "--json"]);
    assert_eq!(code, 0, "{output}");
    assert!(report["live"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_archives_and_sidecars_fail_naming_what_is_wrong() {
    let server = Server::start();
    load_sample(&server, 2).await;
    let root = tempfile::tempdir().unwrap();
    let fresh_backup = |label: &str| {
        let store = root.path().join(label);
        let name = common::backup(&server.uri(), &store, &[])["name"].as_str().unwrap().to_string();
        let archive = store.join(format!("{name}.tar.gz"));
        (store, name, archive)
    };
    let archive_only = |store: &Path, name: &str| common::run_json(&["verify", name, "--store", store.to_str().unwrap(), "--archive-only", "--json"]);

    // One flipped byte inside ingest.notes' .bson member; the archive is repacked and
    // the sidecar's archive digest updated, so only the per-namespace check can see it.
    let (store, name, archive) = fresh_backup("flipped");
    common::repack(&archive, |path, mut bytes| {
        if path.ends_with("/ingest/notes.bson") {
            common::flip_first(&mut bytes, b"hello");
        }
        Some(bytes)
    });
    let stored = std::fs::read(&archive).unwrap();
    let mut sidecar = common::sidecar(&store, &name);
    sidecar["archive"]["size"] = stored.len().into();
    sidecar["archive"]["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored)).into();
    std::fs::write(store.join(format!("{name}.manifest.json")), serde_json::to_vec(&sidecar).unwrap()).unwrap();
    let (code, report, output) = archive_only(&store, &name);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["status"], "failed");
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["subject"] == "ingest.notes" && f["field"] == "sha256"), "{findings:?}");
    assert!(findings.iter().any(|f| f["subject"] == "ingest.notes" && f["field"] == "content_hash"), "{findings:?}");
    assert!(findings.iter().all(|f| f["subject"] == "ingest.notes"), "nothing else differs: {findings:?}");
    assert!(output.contains("ERROR ingest.notes: sha256"), "{output}");

    // A truncated archive.
    let (store, name, archive) = fresh_backup("truncated");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let (code, report, output) = archive_only(&store, &name);
    assert_eq!(code, 1, "{output}");
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["subject"] == "archive" && f["field"] == "stream"), "{findings:?}");
    assert!(output.contains("truncated or corrupt"), "{output}");

    // A sidecar whose archive hash was edited.
    let (store, name, _) = fresh_backup("edited");
    let mut sidecar = common::sidecar(&store, &name);
    sidecar["archive"]["sha256"] = "0".repeat(64).into();
    std::fs::write(store.join(format!("{name}.manifest.json")), serde_json::to_vec(&sidecar).unwrap()).unwrap();
    let (code, report, output) = archive_only(&store, &name);
    assert_eq!(code, 1, "{output}");
    assert!(report["findings"].as_array().unwrap().iter().any(|f| f["subject"] == "archive" && f["field"] == "sha256"), "{report}");

    // A deleted sidecar: the backup is incomplete, and `verify latest` says so.
    let (store, name, _) = fresh_backup("no-sidecar");
    std::fs::remove_file(store.join(format!("{name}.manifest.json"))).unwrap();
    let (code, report, output) = archive_only(&store, "latest");
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["name"], name.as_str(), "latest is the newest backup, complete or not");
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["subject"] == format!("{name}.manifest.json").as_str() && f["actual"] == "missing"));
    assert!(output.contains("incomplete"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_after_the_backup_are_drift_when_the_oplog_explains_them() {
    let server = Server::start();
    load_sample(&server, 3).await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&server.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();
    let client = server.client().await;
    let notes = client.database("ingest").collection::<Document>("notes");
    notes.insert_many((100..105).map(|i| doc! { "_id": i })).await.unwrap();
    notes.update_one(doc! { "_id": 1 }, doc! { "$set": { "text": "edited" } }).await.unwrap();
    client.database("ingest").collection::<Document>("created_later").insert_one(doc! { "_id": 1 }).await.unwrap();

    let (code, report, output) = verify(store.path(), &name, &server.uri(), &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["status"], "passed", "{report}");
    assert_eq!(status_of(&report, "ingest.notes"), "changed");
    let notes_row = report["live"]["namespaces"].as_array().unwrap().iter().find(|r| r["namespace"] == "ingest.notes").unwrap();
    assert_eq!(notes_row["delta"], 5, "the count delta is reported");
    assert_eq!(status_of(&report, "ingest.created_later"), "changed", "a namespace created since the backup is drift");
    assert_eq!(status_of(&report, "ingest.project"), "identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_oplog_the_same_difference_is_undetermined_not_passed_silently() {
    let server = Server::start_standalone();
    load_sample(&server, 4).await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&server.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();
    server.client().await.database("ingest").collection::<Document>("notes").delete_one(doc! { "_id": 3 }).await.unwrap();

    let (code, report, output) = verify(store.path(), &name, &server.uri(), &[]);
    assert_eq!(code, 0, "a warning, not a failure: {output}");
    assert_eq!(report["status"], "passed_with_warnings");
    assert_eq!(status_of(&report, "ingest.notes"), "undetermined");
    assert!(report["findings"].as_array().unwrap().iter().any(|f| f["severity"] == "warning" && f["subject"] == "ingest.notes"));
    assert!(output.contains("WARNING ingest.notes") && output.contains("no oplog"), "{output}");

    let (code, report, _) = verify(store.path(), &name, &server.uri(), &["--strict"]);
    assert_eq!(code, 1);
    assert_eq!(report["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_difference_the_oplog_cannot_explain_fails() {
    // Another deployment with the same collection names, started (so its oplog begins)
    // before the backup: its oplog reaches back and shows no writes after the backup.
    let other = Server::start();
    load_sample(&other, 6).await;
    let server = Server::start();
    load_sample(&server, 5).await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&server.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();

    let (code, report, output) = verify(store.path(), &name, &other.uri(), &[]);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["archive"]["intact"], true, "the archive itself is fine");
    assert_eq!(status_of(&report, "ingest.project"), "unexplained");
    assert!(output.contains("UNEXPLAINED"), "{output}");
}

/// Runs `verify` with its stderr going to a file the test can read while it runs.
fn spawn_verify(args: &[&str], log: &Path) -> std::process::Child {
    std::process::Command::new(common::binary())
        .args(args)
        .env_remove("MONGO_URI")
        .env_remove("S3_BUCKET")
        .env_remove("VERIFY_WAIT_FOR_RUNNING")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `log` contains `text`, failing if `child` exits first.
fn wait_for_log(log: &Path, text: &str, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let seen = std::fs::read_to_string(log).unwrap_or_default();
        if seen.contains(text) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("verify exited ({status}) before logging {text:?}: {seen}");
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {text:?} in {seen}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unverified_waits_for_the_running_backup_and_verifies_it_not_the_one_before() {
    let server = Server::start();
    load_sample(&server, 5).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap().to_string();
    let uri = server.uri();

    // Yesterday's backup, verified; then the last complete one, not verified yet.
    let older = common::backup(&uri, &store, &[])["name"].as_str().unwrap().to_string();
    let (code, _, all) = verify(&store, &older, &uri, &[]);
    assert_eq!(code, 0, "{all}");
    let previous = common::backup(&uri, &store, &[])["name"].as_str().unwrap().to_string();

    // Tonight's backup holds the store: paused after its archive was started.
    let release = work.path().join("release");
    let hook = format!("before-collections:{}", release.display());
    let mut running = common::spawn(&["backup", "--uri", &uri, "--store", &store_arg, "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut running);
    assert!(common::file_names(&store).iter().any(|f| f.ends_with(".tar.gz.partial")), "the running backup is visible in the store");

    // Without waiting, `unverified` could only pick the previous backup.
    let (code, report, all) = common::run_json(&["verify", "unverified", "--store", &store_arg, "--archive-only", "--json"]);
    assert_eq!((code, report["name"].as_str()), (0, Some(previous.as_str())), "{all}");

    // The scheduled verification waits for the running backup, then verifies it.
    let log = work.path().join("verify.log");
    let mut verifying = spawn_verify(
        &["verify", "unverified", "--store", &store_arg, "--uri", &uri, "--wait-for-running", "10m", "--poll-interval", "100ms", "--json"],
        &log,
    );
    wait_for_log(&log, "still being written: waiting for it", &mut verifying);
    std::fs::write(&release, b"").unwrap();
    let backed_up = running.wait_with_output().unwrap();
    assert!(backed_up.status.success(), "{}", String::from_utf8_lossy(&backed_up.stderr));
    let tonight = serde_json::from_slice::<serde_json::Value>(&backed_up.stdout).unwrap()["name"].as_str().unwrap().to_string();
    assert!(tonight > previous, "{tonight} is newer than {previous}");
    let verified = verifying.wait_with_output().unwrap();
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(verified.status.code(), Some(0), "{seen}");
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["name"], tonight.as_str(), "the backup that just finished was verified: {seen}");
    assert_eq!(report["status"], "passed");
    assert!(store.join(format!("{tonight}.verify.json")).exists());

    // Nothing left to verify: no backup finished since the last verification, which is a failure.
    let (code, _, all) = common::run_json(&["verify", "unverified", "--store", &store_arg, "--archive-only"]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("no backup finished since the last verification"), "{all}");

    // The wait is bounded: a backup still running after it fails the verification, naming it.
    let release = work.path().join("release-2");
    let hook = format!("before-collections:{}", release.display());
    let mut stuck = common::spawn(&["backup", "--uri", &uri, "--store", &store_arg, "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release-2.waiting"), &mut stuck);
    let (code, _, all) =
        common::run_json(&["verify", "unverified", "--store", &store_arg, "--archive-only", "--wait-for-running", "1s", "--poll-interval", "100ms"]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("is still being written after waiting 1s") && all.contains("nothing was verified"), "{all}");
    std::fs::write(&release, b"").unwrap();
    assert!(stuck.wait_with_output().unwrap().status.success());
}
