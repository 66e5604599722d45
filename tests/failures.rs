//! Failure is a feature: a server killed mid-dump, SIGTERM mid-dump and bad input
//! each end with a clear message and a non-zero exit, leave no `.partial` file and no
//! sidecar, never touch an earlier backup, and never print a password.
//!
//! Peer: SecantusDB.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::file_names(dir).into_iter().map(|name| (name.clone(), std::fs::read(dir.join(&name)).unwrap())).collect()
}

async fn server_with_data(megabytes: u64) -> Server {
    let server = Server::start();
    let client = server.client().await;
    sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: megabytes << 20, seed: 3 }).await.unwrap();
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_server_mid_dump_exits_1_and_leaves_nothing() {
    let mut server = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    common::backup(&server.uri(), &store, &[]);
    let earlier = snapshot(&store);
    assert_eq!(earlier.len(), 2, "archive and sidecar: {:?}", earlier.keys());

    let release = work.path().join("release");
    let hook = format!("before-collections:{}", release.display());
    let mut child = common::spawn(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap()], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    assert!(common::file_names(&store).iter().any(|f| f.ends_with(".partial")), "the archive is being written");
    server.kill();
    std::fs::write(&release, b"").unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: MongoDB: "), "the error names the server as the cause: {stderr}");
    assert_eq!(snapshot(&store), earlier, "no .partial, no sidecar, the earlier backup untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_dump_exits_1_and_leaves_nothing() {
    let server = server_with_data(12).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    common::backup(&server.uri(), &store, &["--ns-include", "ingest.protocol"]);
    let earlier = snapshot(&store);

    // A real mid-stream signal: SIGTERM as soon as the archive is being written.
    let mut child = common::spawn(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--parallel", "1"], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::file_names(&store).iter().any(|f| f.ends_with(".partial")) {
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be interrupted");
        assert!(Instant::now() < deadline, "no .partial appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SIGTERM received") && stderr.contains("interrupted by a signal"), "{stderr}");
    assert_eq!(snapshot(&store), earlier, "no .partial, no sidecar, the earlier backup untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_paused_mid_dump_also_cleans_up() {
    let server = Server::start();
    server.client().await.database("shop").collection::<Document>("orders").insert_one(doc! { "_id": 1 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let release = work.path().join("release");
    let hook = format!("before-oplog-end:{}", release.display());
    let mut child =
        common::spawn(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json reports the failure as JSON");
    assert_eq!(result["status"], "error");
    assert!(common::file_names(&store).is_empty(), "{:?}", common::file_names(&store));
}

#[test]
fn bad_input_names_the_cause_exits_non_zero_and_never_prints_the_password() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store = store.to_str().unwrap();
    let unreachable = format!("mongodb://admin:hunter2@127.0.0.1:{}/?serverSelectionTimeoutMS=1000", common::free_port());
    let cases: [(&[&str], i32, &str); 6] = [
        (&["backup", "--uri", "mongodb://admin:hunter2@host:notaport/", "--store", store], 2, "is not valid"),
        (&["backup", "--uri", "postgres://admin:hunter2@host/", "--store", store], 2, "is not valid"),
        (&["backup", "--uri", &unreachable, "--store", store], 1, "cannot reach the server"),
        (&["backup", "--uri", "mongodb://admin:hunter2@h/", "--store", "s3://Bad_Bucket/x"], 2, "not a valid S3 bucket name"),
        (&["backup", "--uri", "mongodb://admin:hunter2@h/", "--store", store, "--ns-include", "nodot"], 2, "db.collection"),
        (&["backup", "--uri", "mongodb://admin:hunter2@h/", "--store", store, "--parallel", "0"], 2, "--parallel"),
    ];
    for (args, code, message) in cases {
        let output = common::run(args);
        let text = common::all_output(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {text}");
        assert!(text.contains(message), "{args:?} should say {message:?}: {text}");
        assert!(!text.contains("hunter2"), "{args:?} printed the password: {text}");
    }
    let leftovers = if Path::new(store).exists() { common::file_names(Path::new(store)) } else { vec![] };
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
