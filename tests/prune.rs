//! `prune` against real stores holding real backups: a directory and MinIO, each with
//! twelve backups of a SecantusDB server taken at chosen times (the test clock,
//! `INGEST_BACKUP_TEST_NOW`), one verified, one with a failed verification, an
//! incomplete archive of a run that died, a young one that may still be finishing,
//! and an orphan verification record.
//!
//! Checked: the dry run removes nothing and plans exactly what the prune then does;
//! the kept set is the policy's, the newest complete and newest verified backups
//! survive; a prune killed (SIGKILL) at each step leaves no complete backup without
//! its archive, and the next prune finishes the work; two prunes at once and a prune
//! during a backup are refused with exit 1; open uploads older than --stale-after are
//! warned about by `list` and aborted by `prune`; no keep rule at all is exit 2.
//!
//! Peers: SecantusDB (replica set), MinIO.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::minio::{Minio, BUCKET};
use common::Server;

/// The time every prune here is judged at.
const NOW: &str = "2026-12-01T06:00:00Z";

/// The backups of the history, by start time (name = the UTC minute).
const HISTORY: [&str; 12] = [
    "2026-09-10T00:00:00Z",
    "2026-10-15T00:00:00Z",
    "2026-11-21T00:00:00Z",
    "2026-11-22T00:00:00Z",
    "2026-11-23T00:00:00Z",
    "2026-11-24T00:00:00Z",
    "2026-11-25T00:00:00Z",
    "2026-11-26T00:00:00Z",
    "2026-11-27T00:00:00Z",
    "2026-11-28T00:00:00Z",
    "2026-11-29T00:00:00Z",
    "2026-11-30T00:00:00Z",
];

/// The policy of every prune here.
const POLICY: [&str; 6] = ["--keep-daily", "3", "--keep-monthly", "2", "--keep-within", "2d"];

/// What the policy keeps of the history. 11-30 failed its verification, so it fills
/// no slot but is the newest complete backup (and within 2 days); the three days are
/// 11-29, 11-28, 11-27; the two months November (11-29) and October (10-15); 11-25 is
/// the newest backup that passed verification.
const KEPT: [&str; 6] = ["2026-11-30T00_00", "2026-11-29T00_00", "2026-11-28T00_00", "2026-11-27T00_00", "2026-11-25T00_00", "2026-10-15T00_00"];

/// The incomplete archive of a backup that died days ago (removed) and of one that
/// may still be finishing (kept).
const STALE_INCOMPLETE: &str = "2026-11-20T00_00";
const YOUNG_INCOMPLETE: &str = "2026-12-01T05_30";

fn name_of(time: &str) -> String {
    time[..16].replace(':', "_")
}

fn removed() -> BTreeSet<String> {
    HISTORY.iter().map(|t| name_of(t)).filter(|n| !KEPT.contains(&n.as_str())).chain([STALE_INCOMPLETE.to_string()]).collect()
}

fn run(args: &[&str], env: &[(String, String)]) -> Output {
    common::run_with_env(args, env)
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("not JSON: {}", common::all_output(output)))
}

fn with_clock(env: &[(String, String)], time: &str) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.push(("INGEST_BACKUP_TEST_NOW".into(), time.into()));
    env
}

/// Twelve backups of a small database into `store`, 11-25 verified (passed) and 11-30
/// with a failed verification record.
async fn make_history(server: &Server, store: &str, env: &[(String, String)]) {
    let notes = (0..50).map(|i| doc! { "_id": i, "text": format!("note {i}") });
    server.client().await.database("ingest").collection::<Document>("notes").insert_many(notes).await.unwrap();
    for time in HISTORY {
        let output = run(&["backup", "--uri", &server.uri(), "--store", store, "--json"], &with_clock(env, time));
        assert!(output.status.success(), "backup at {time}: {}", common::all_output(&output));
        assert_eq!(json_of(&output)["name"], name_of(time));
    }
    let output = run(&["verify", "2026-11-25T00_00", "--archive-only", "--store", store], env);
    assert!(output.status.success(), "{}", common::all_output(&output));
}

/// The verdicts of a prune report, by name.
fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_string(), b["action"].as_str().unwrap().to_string()))
        .collect()
}

fn names_with(report: &serde_json::Value, action: &str) -> BTreeSet<String> {
    verdicts(report).into_iter().filter(|(_, a)| a == action).map(|(n, _)| n).collect()
}

fn prune(store: &str, env: &[(String, String)], extra: &[&str]) -> Output {
    let mut args = vec!["prune", "--store", store, "--json"];
    args.extend_from_slice(&POLICY);
    args.extend_from_slice(extra);
    run(&args, &with_clock(env, NOW))
}

/// Every file of a directory store, sorted.
fn files(dir: &Path) -> BTreeSet<String> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(root, &path));
        } else {
            found.insert(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in files(from) {
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&file), target).unwrap();
    }
}

/// The backups a store's files hold, each with its files: no sidecar may be without
/// its archive (a complete-looking backup that cannot be restored).
fn assert_no_sidecar_without_archive(store: &Path) {
    let files = files(store);
    for sidecar in files.iter().filter(|f| f.ends_with(".manifest.json")) {
        let name = sidecar.trim_end_matches(".manifest.json");
        assert!(files.contains(&format!("{name}.tar.gz")), "{sidecar} lost its archive: {files:?}");
    }
}

/// The files the kept backups (and the young incomplete archive) consist of.
fn kept_files(store: &Path) -> BTreeSet<String> {
    files(store).into_iter().filter(|f| !f.starts_with("locks/")).collect()
}

fn expected_files() -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = KEPT.iter().flat_map(|n| [format!("{n}.tar.gz"), format!("{n}.manifest.json")]).collect();
    expected.insert("2026-11-25T00_00.verify.json".into());
    expected.insert("2026-11-30T00_00.verify.json".into());
    expected.insert(format!("{YOUNG_INCOMPLETE}.tar.gz"));
    expected
}

/// A directory store with the history, the failed verification, the incomplete
/// archives and the orphan record.
async fn local_history(server: &Server, dir: &Path) {
    let store = dir.to_str().unwrap();
    make_history(server, store, &[]).await;
    std::fs::write(dir.join("2026-11-30T00_00.verify.json"), br#"{"status":"failed","name":"2026-11-30T00_00"}"#).unwrap();
    std::fs::copy(dir.join("2026-11-29T00_00.tar.gz"), dir.join(format!("{STALE_INCOMPLETE}.tar.gz"))).unwrap();
    std::fs::copy(dir.join("2026-11-29T00_00.tar.gz"), dir.join(format!("{YOUNG_INCOMPLETE}.tar.gz"))).unwrap();
    std::fs::write(dir.join("2026-08-01T00_00.verify.json"), br#"{"status":"passed"}"#).unwrap();
}

fn wait_for(marker: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", marker.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_directory_store_keeps_the_policys_backups_and_survives_a_prune_killed_at_each_step() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let history = work.path().join("history");
    local_history(&server, &history).await;

    // No keep rule: refused before anything is touched.
    let before = files(&history);
    let output = run(&["prune", "--store", history.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("--keep-last"));
    for bad in [&["--keep-daily", "3", "--timezone", "Mars/Olympus"][..], &["--keep-within", "3 fortnights"][..]] {
        let mut args = vec!["prune", "--store", history.to_str().unwrap()];
        args.extend_from_slice(bad);
        let output = run(&args, &[]);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {}", common::all_output(&output));
    }

    // The dry run plans, removes nothing.
    let dry = prune(history.to_str().unwrap(), &[], &["--dry-run"]);
    assert!(dry.status.success(), "{}", common::all_output(&dry));
    assert_eq!(files(&history), before, "a dry run removes nothing");
    let dry = json_of(&dry);
    assert_eq!(names_with(&dry, "keep"), KEPT.iter().map(|n| n.to_string()).chain([YOUNG_INCOMPLETE.to_string()]).collect());
    assert_eq!(names_with(&dry, "remove"), removed());
    let newest = &dry["backups"][1];
    assert_eq!(newest["name"], "2026-11-30T00_00");
    assert_eq!(newest["rules"], serde_json::json!(["within", "newest complete"]));
    let verified = dry["backups"].as_array().unwrap().iter().find(|b| b["name"] == "2026-11-25T00_00").unwrap();
    assert_eq!(verified["rules"], serde_json::json!(["newest verified"]));

    // Killed at each step, then pruned again: the same end state every time.
    let ttl = vec![("INGEST_BACKUP_LOCK_TTL".to_string(), "2s".to_string())];
    for stage in ["prune-before-delete", "prune-after-sidecar", "prune-after-archive"] {
        let dir = work.path().join(stage);
        copy_dir(&history, &dir);
        let release = work.path().join(format!("{stage}.release"));
        let pause = format!("{stage}:{}", release.display());
        let mut args = vec!["prune", "--store", dir.to_str().unwrap()];
        args.extend_from_slice(&POLICY);
        let mut child =
            common::spawn(&args, &[("INGEST_BACKUP_TEST_PAUSE", &pause), ("INGEST_BACKUP_TEST_NOW", NOW), ("INGEST_BACKUP_LOCK_TTL", "2s")]);
        wait_for(&work.path().join(format!("{stage}.release.waiting")));

        // A second prune while the first holds the store: exit 1, naming it.
        let second = prune(dir.to_str().unwrap(), &[], &[]);
        assert_eq!(second.status.code(), Some(1), "{}", common::all_output(&second));
        assert!(common::all_output(&second).contains("locked by prune"), "{}", common::all_output(&second));

        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_no_sidecar_without_archive(&dir);
        let listed = json_of(&run(&["list", "--store", dir.to_str().unwrap(), "--json"], &[]));
        let first_removed = "2026-11-26T00_00";
        let entry = listed["backups"].as_array().unwrap().iter().find(|b| b["name"] == first_removed);
        match stage {
            "prune-before-delete" => assert_eq!(entry.unwrap()["complete"], true),
            "prune-after-sidecar" => assert_eq!(entry.unwrap()["complete"], false, "the sidecar goes first: INCOMPLETE"),
            _ => assert!(entry.is_none(), "the archive is gone"),
        }

        std::thread::sleep(Duration::from_millis(2500)); // the dead prune's lock expires
        let again = prune(dir.to_str().unwrap(), &ttl, &[]);
        assert!(again.status.success(), "{stage}: {}", common::all_output(&again));
        let again = json_of(&again);
        assert_eq!(again["stale_locks"].as_array().unwrap().len(), 1, "{stage}: the dead prune's lock is reported");
        assert_eq!(kept_files(&dir), expected_files(), "{stage}: the next prune finished the work");
        assert!(files(&dir).iter().all(|f| !f.starts_with("locks/")), "{stage}: the lock is released");
        assert_no_sidecar_without_archive(&dir);
    }

    // A prune while a backup runs: exit 1 naming the backup; the backup completes.
    let release = work.path().join("backup.release");
    let pause = format!("before-collections:{}", release.display());
    let live = work.path().join("prune-before-delete");
    let mut backup = common::spawn(&["backup", "--uri", &server.uri(), "--store", live.to_str().unwrap()], &[("INGEST_BACKUP_TEST_PAUSE", &pause)]);
    wait_for(&work.path().join("backup.release.waiting"));
    let blocked = prune(live.to_str().unwrap(), &[], &[]);
    assert_eq!(blocked.status.code(), Some(1), "{}", common::all_output(&blocked));
    assert!(common::all_output(&blocked).contains("locked by backup"), "{}", common::all_output(&blocked));
    std::fs::write(&release, b"").unwrap();
    assert!(backup.wait().unwrap().success());

    // The real prune of the original history does what its dry run said.
    let real = prune(history.to_str().unwrap(), &[], &[]);
    assert!(real.status.success(), "{}", common::all_output(&real));
    let real = json_of(&real);
    assert_eq!(verdicts(&real), verdicts(&dry));
    assert_eq!(kept_files(&history), expected_files(), "orphan record and stale incomplete archive removed too");
    let output = run(&["verify", "2026-10-15T00_00", "--archive-only", "--store", history.to_str().unwrap()], &[]);
    assert!(output.status.success(), "a kept backup is intact: {}", common::all_output(&output));
}

#[tokio::test]
async fn an_s3_store_is_pruned_the_same_way_and_its_stale_uploads_are_aborted() {
    let Some(binary) = common::minio::binary_or_skip("an_s3_store_is_pruned_the_same_way_and_its_stale_uploads_are_aborted") else { return };
    let minio = Minio::start(binary).await;
    let server = Server::start();
    let env = minio.env();
    let store = format!("s3://{BUCKET}/stage");
    make_history(&server, &store, &env).await;
    let client = minio.client();
    let put = |key: &str, body: &'static [u8]| client.put_object().bucket(BUCKET).key(format!("stage/{key}")).body(body.to_vec().into()).send();
    put("2026-11-30T00_00.verify.json", br#"{"status":"failed"}"#).await.unwrap();
    put(&format!("{STALE_INCOMPLETE}.tar.gz"), b"the archive of a backup that died").await.unwrap();
    put("2026-08-01T00_00.verify.json", br#"{"status":"passed"}"#).await.unwrap();
    let upload = client.create_multipart_upload().bucket(BUCKET).key("stage/2026-11-19T00_00.tar.gz").send().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let listed = run(&["list", "--store", &store, "--stale-after", "1s"], &env);
    assert!(listed.status.success(), "{}", common::all_output(&listed));
    assert!(common::all_output(&listed).contains("WARNING: 2026-11-19T00_00.tar.gz is an upload open since"), "{}", common::all_output(&listed));

    let dry = prune(&store, &env, &["--dry-run", "--stale-after", "1s"]);
    assert!(dry.status.success(), "{}", common::all_output(&dry));
    let dry = json_of(&dry);
    assert_eq!(names_with(&dry, "keep"), KEPT.iter().map(|n| n.to_string()).collect());
    assert_eq!(names_with(&dry, "remove"), removed());

    // Killed after the first sidecar, then finished by the next prune.
    let release = std::env::temp_dir().join(format!("prune-s3-{}.release", std::process::id()));
    let pause = format!("prune-after-sidecar:{}", release.display());
    let mut args = vec!["prune", "--store", &store, "--stale-after", "1s"];
    args.extend_from_slice(&POLICY);
    let mut child_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    child_env.extend([("INGEST_BACKUP_TEST_PAUSE", pause.as_str()), ("INGEST_BACKUP_TEST_NOW", NOW), ("INGEST_BACKUP_LOCK_TTL", "2s")]);
    let mut child = common::spawn(&args, &child_env);
    wait_for(&PathBuf::from(format!("{}.waiting", release.display())));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(format!("{}.waiting", release.display()));
    std::thread::sleep(Duration::from_millis(2500));
    let mut ttl_env = env.clone();
    ttl_env.push(("INGEST_BACKUP_LOCK_TTL".into(), "2s".into()));
    let real = prune(&store, &ttl_env, &["--stale-after", "1s"]);
    assert!(real.status.success(), "{}", common::all_output(&real));
    let real = json_of(&real);
    assert_eq!(real["stale_locks"].as_array().unwrap().len(), 1);

    let objects = client.list_objects_v2().bucket(BUCKET).prefix("stage/").send().await.unwrap();
    let keys: BTreeSet<String> = objects.contents().iter().map(|o| o.key().unwrap().trim_start_matches("stage/").to_string()).collect();
    let mut expected = expected_files();
    expected.remove(&format!("{YOUNG_INCOMPLETE}.tar.gz"));
    assert_eq!(keys, expected);
    let uploads = client.list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(uploads.uploads().iter().all(|u| u.upload_id() != upload.upload_id()), "the stale upload is aborted");
    let output = run(&["verify", "latest", "--archive-only", "--store", &store], &env);
    assert!(output.status.success(), "the newest backup is intact: {}", common::all_output(&output));
}
