//! Injected faults, survived: a transient fault (a connection closed on a `getMore`,
//! a transient error code, a connection cut by the network, a port refusing for a
//! while, a connection that goes silent) does not fail a backup, whose archive then
//! holds exactly what a clean run's holds; a persistent one exits 1 naming the
//! namespace and leaves nothing in the store; `verify` retries the same way and never
//! passes a damaged backup; a restore stopped by a fault says what it wrote, and
//! running it again with `--drop` converges.
//!
//! Peer: SecantusDB started with `--enable-test-commands`, whose `configureFailPoint`
//! `failCommand` supports `closeConnection`, `errorCode`, `errorLabels`,
//! `blockConnection`/`blockTimeMS`, modes `alwaysOn`, `{times}`, `{skip, times}`, and
//! `appName` scoping (used here so that only the tool's connections, application name
//! `ingest-backup`, are failed and the test's own client keeps working). Faults of
//! the network itself (bytes cut mid-reply, silence, refusals) go through
//! `common/fault_proxy.rs`.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use common::Server;
use fault_proxy::{Fault, FaultProxy};
use ingest_backup::sample::{self, SampleSpec};
use mongodb::Client;

/// A replica-set SecantusDB with fault injection and `megabytes` of sample data.
async fn server_with_data(megabytes: u64) -> (Server, Client) {
    let server = Server::start_with(None, &["--enable-test-commands"]);
    let client = server.client().await;
    sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: megabytes << 20, seed: 11 }).await.unwrap();
    (server, client)
}

/// Arms `failCommand` for the tool's connections only.
async fn fail_command(client: &Client, mode: impl Into<Bson>, mut data: Document) {
    data.insert("appName", "ingest-backup");
    client.database("admin").run_command(doc! { "configureFailPoint": "failCommand", "mode": mode.into(), "data": data }).await.unwrap();
}

async fn fail_command_off(client: &Client) {
    client.database("admin").run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" }).await.unwrap();
}

fn run_backup(uri: &str, store: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["backup", "--uri", uri, "--store", store.to_str().unwrap(), "--json", "--batch-size", "50"];
    args.extend_from_slice(extra);
    common::run(&args)
}

/// A backup that must succeed: its `--json` result and its stderr.
fn backup_ok(uri: &str, store: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let output = run_backup(uri, store, extra);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "the backup failed: {stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

/// The content of a backup of `uri` made with no fault, into `work`/clean: what every
/// faulted run must equal.
fn clean_content(uri: &str, work: &Path) -> (serde_json::Value, BTreeMap<String, Vec<u8>>) {
    let store = work.join("clean");
    let (result, _) = backup_ok(uri, &store, &[]);
    content(&result, &store)
}

/// What must be equal between two backups of the same data: the manifest's
/// namespace entries (counts, bytes, SHA-256 and content hash of every `.bson`,
/// options, indexes, UUIDs) and the bytes of every `.bson` and `.metadata.json`
/// member, keyed by their path under the dump root.
fn content(result: &serde_json::Value, store: &Path) -> (serde_json::Value, BTreeMap<String, Vec<u8>>) {
    let name = result["name"].as_str().unwrap();
    let manifest = common::sidecar(store, name);
    let root = manifest["dump_root"].as_str().unwrap().to_string();
    let members = common::archive_members(result["archive"].as_str().unwrap())
        .into_iter()
        .filter_map(|(path, bytes)| {
            let relative = path.strip_prefix(&root)?.to_string();
            ((relative.ends_with(".bson") && relative != "oplog.bson") || relative.ends_with(".metadata.json")).then_some((relative, bytes))
        })
        .collect::<BTreeMap<_, _>>();
    (manifest["namespaces"].clone(), members)
}

fn assert_same_content(clean: &(serde_json::Value, BTreeMap<String, Vec<u8>>), faulted: &(serde_json::Value, BTreeMap<String, Vec<u8>>)) {
    assert!(clean.1.keys().any(|path| path.ends_with(".bson")), "the clean run dumped collections: {:?}", clean.1.keys());
    assert_eq!(faulted.0, clean.0, "the manifest's namespaces (counts, sha256, content hashes) equal a clean run's");
    assert_eq!(faulted.1.keys().collect::<Vec<_>>(), clean.1.keys().collect::<Vec<_>>(), "the same members");
    for (path, bytes) in &clean.1 {
        assert!(faulted.1[path] == *bytes, "{path} differs from the clean run's");
    }
}

fn retried(stderr: &str) -> usize {
    stderr.matches("Transient error: trying again.").count()
}

/// Nothing at all in the store: no archive, no `.partial`, no sidecar.
fn assert_store_empty(store: &Path) {
    let left = if store.exists() { common::file_names(store) } else { Vec::new() };
    assert!(left.is_empty(), "the failed run left {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_on_getmore_is_retried_and_the_archive_equals_a_clean_runs() {
    let (server, client) = server_with_data(2).await;
    let work = tempfile::tempdir().unwrap();
    let clean = clean_content(&server.uri(), work.path());

    fail_command(&client, doc! { "times": 2 }, doc! { "failCommands": ["getMore"], "closeConnection": true }).await;
    let store = work.path().join("faulted");
    let (result, stderr) = backup_ok(&server.uri(), &store, &[]);
    assert!(retried(&stderr) >= 2, "each closed connection was a retry: {stderr}");
    assert!(stderr.contains("network"), "the retry names the error kind: {stderr}");
    assert_same_content(&clean, &content(&result, &store));
    assert_eq!(common::file_names(&store).len(), 2, "archive and sidecar only");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_error_code_on_find_is_retried_and_the_archive_equals_a_clean_runs() {
    let (server, client) = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();
    let clean = clean_content(&server.uri(), work.path());

    // 89 NetworkTimeout: the driver retries a read once by itself, so two failures
    // reach the tool's own retry once.
    fail_command(&client, doc! { "times": 2 }, doc! { "failCommands": ["find"], "errorCode": 89 }).await;
    let store = work.path().join("faulted");
    let (result, stderr) = backup_ok(&server.uri(), &store, &[]);
    assert!(retried(&stderr) >= 1, "{stderr}");
    assert!(stderr.contains("server error 89"), "the retry names the error kind: {stderr}");
    assert_same_content(&clean, &content(&result, &store));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_cut_by_the_network_mid_reply_are_retried_and_the_archive_equals_a_clean_runs() {
    let (server, _client) = server_with_data(2).await;
    let work = tempfile::tempdir().unwrap();
    let clean = clean_content(&server.uri(), work.path());

    let proxy = FaultProxy::start(server.port, Fault::ResetAfter { bytes: 300 << 10, times: Some(2) });
    let store = work.path().join("faulted");
    let (result, stderr) = backup_ok(&proxy.uri(), &store, &[]);
    assert_eq!(proxy.resets(), 2, "both cuts happened");
    assert!(retried(&stderr) >= 1, "{stderr}");
    assert_same_content(&clean, &content(&result, &store));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_refusing_connections_for_a_while_is_waited_out() {
    let (server, _client) = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();
    let clean = clean_content(&server.uri(), work.path());

    let proxy = FaultProxy::start(server.port, Fault::RefuseUntil { until: Instant::now() + Duration::from_secs(4) });
    let store = work.path().join("faulted");
    let (result, stderr) = backup_ok(&proxy.uri(), &store, &[]);
    assert!(proxy.refusals() > 0, "connections were refused");
    assert!(retried(&stderr) >= 1, "the unreachable server was retried: {stderr}");
    assert_same_content(&clean, &content(&result, &store));
}

/// A connection that goes silent (a stall longer than any timeout): the Rust driver
/// has no socket timeout, but a heartbeat that times out (`connectTimeoutMS`)
/// interrupts every read in flight, which is then retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_connection_is_abandoned_and_retried_and_the_archive_equals_a_clean_runs() {
    let (server, _client) = server_with_data(2).await;
    let work = tempfile::tempdir().unwrap();
    let clean = clean_content(&server.uri(), work.path());

    let proxy = FaultProxy::start(server.port, Fault::StallAfter { bytes: 300 << 10 });
    let uri = format!("{}&connectTimeoutMS=2000&heartbeatFrequencyMS=500", proxy.uri());
    let store = work.path().join("faulted");
    let mut child = common::spawn(&["backup", "--uri", &uri, "--store", store.to_str().unwrap(), "--json", "--batch-size", "50"], &[]);
    // A guard against a hang, not a timed assertion: a stalled read that is never
    // abandoned would otherwise block the test run for ever.
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the backup hung on the stalled connection");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "the backup failed: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(proxy.stalls() > 0, "the stall happened");
    assert!(retried(&stderr) >= 1, "{stderr}");
    assert_same_content(&clean, &content(&result, &store));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_fault_exits_1_names_the_namespace_and_leaves_nothing() {
    let (server, client) = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();

    fail_command(&client, "alwaysOn", doc! { "failCommands": ["getMore"], "closeConnection": true }).await;
    let store = work.path().join("store");
    let output = run_backup(&server.uri(), &store, &["--ns-include", "ingest.file", "--retries", "2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: MongoDB: reading ingest.file"), "the error names the namespace: {stderr}");
    assert!(stderr.contains("gave up after 2 retries"), "{stderr}");
    assert!(retried(&stderr) >= 2, "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["status"], "error");
    assert_store_empty(&store);
    fail_command_off(&client).await;

    // The network failing for good: every 64 KiB a connection is cut.
    let proxy = FaultProxy::start(server.port, Fault::ResetAfter { bytes: 64 << 10, times: None });
    let output = run_backup(&proxy.uri(), &store, &["--retries", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gave up after 1 retries"), "{stderr}");
    assert_store_empty(&store);
}

fn run_verify(uri: &str, store: &Path) -> (i32, serde_json::Value, String) {
    common::run_json(&["verify", "latest", "--uri", uri, "--store", store.to_str().unwrap(), "--json"])
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_retries_a_transient_fault_and_passes_an_intact_backup() {
    let (server, client) = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    backup_ok(&server.uri(), &store, &[]);

    fail_command(&client, doc! { "times": 1 }, doc! { "failCommands": ["getMore"], "closeConnection": true }).await;
    let (code, report, output) = run_verify(&server.uri(), &store);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["status"], "passed", "{output}");
    assert!(retried(&output) >= 1, "the live scan was interrupted and started again: {output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_never_passes_a_damaged_backup_or_an_unfinished_live_check() {
    let (server, client) = server_with_data(1).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let (result, _) = backup_ok(&server.uri(), &store, &[]);

    // The live check cannot finish: the verification fails, it does not pass.
    fail_command(&client, "alwaysOn", doc! { "failCommands": ["getMore"], "closeConnection": true }).await;
    let (code, report, output) =
        common::run_json(&["verify", "latest", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json", "--retries", "1"]);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["status"], "failed", "{output}");
    assert!(output.contains("gave up after 1 retries"), "{output}");
    fail_command_off(&client).await;

    // A damaged archive, verified through a transient fault: retried, and failed.
    let archive = PathBuf::from(result["archive"].as_str().unwrap());
    common::repack(&archive, |path, mut bytes| {
        if path.ends_with("/ingest/file.bson") {
            let last = bytes.len() - 2;
            bytes[last] ^= 0x01;
        }
        Some(bytes)
    });
    fail_command(&client, doc! { "times": 1 }, doc! { "failCommands": ["getMore"], "closeConnection": true }).await;
    let (code, report, output) = run_verify(&server.uri(), &store);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["status"], "failed", "{output}");
    assert!(retried(&output) >= 1, "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_stopped_by_a_fault_reports_what_it_wrote_and_a_rerun_with_drop_converges() {
    let source = Server::start();
    let source_client = source.client().await;
    sample::load(&source_client, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed: 5 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let (result, _) = backup_ok(&source.uri(), &store, &[]);
    let manifest = common::sidecar(&store, result["name"].as_str().unwrap());

    let target = Server::start_with(None, &["--enable-test-commands"]);
    let target_client = target.client().await;
    // Three inserts succeed, then every insert fails (89 NetworkTimeout, labelled
    // retryable: the driver's own retry fails too).
    fail_command(&target_client, doc! { "skip": 3 }, doc! { "failCommands": ["insert"], "errorCode": 89 }).await;
    let (target_uri, store_arg) = (target.uri(), store.to_str().unwrap().to_string());
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "latest", "--uri", &target_uri, "--store", &store_arg, "--json", "--batch-size", "100", "--parallel", "1"];
        args.extend_from_slice(extra);
        common::run_json(&args)
    };
    let (code, report, output) = restore(&[]);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["status"], "error", "{output}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("the restore stopped after writing") && error.contains("--drop"), "{error}");
    let written: BTreeMap<String, u64> = report["written"].as_object().unwrap().iter().map(|(ns, n)| (ns.clone(), n.as_u64().unwrap())).collect();
    // Three insert commands succeeded (each at most 100 documents; the small
    // collections' batches are smaller), so the target holds some documents.
    assert!(written.values().sum::<u64>() > 0, "three inserts were written: {written:?}");
    for (namespace, count) in &written {
        let (db, coll) = namespace.split_once('.').unwrap();
        let actual = target_client.database(db).collection::<Document>(coll).count_documents(doc! {}).await.unwrap();
        assert_eq!(actual, *count, "{namespace}: the report says what the target holds");
    }

    fail_command_off(&target_client).await;
    let (code, _, output) = restore(&["--drop"]);
    assert_eq!(code, 0, "{output}");
    let compared = common::assert_restored_identical(&source_client, &target_client, &manifest, |db| db.to_string()).await;
    assert!(compared >= 6, "{compared}");
}
