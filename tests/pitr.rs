//! Point-in-time recovery against SecantusDB (a replica set with an oplog): a full
//! backup, then inserts, updates, deletes, a collection created and one dropped, an
//! index built and a multi-document transaction, with `ingest-backup oplog` slices
//! taken between some of them; `restore --to-time` of several recorded points into
//! fresh servers gives exactly the state captured at each point. Also: `list` shows the
//! restorable range, `verify --pitr` passes and fails on a damaged slice, a target
//! outside every range is refused before anything is written, an oplog rollover
//! between two slices is a gap (exit 1, alert with stage `pitr`, restore into it
//! refused), SIGTERM mid-slice leaves nothing, and a server without an oplog
//! (standalone, FerretDB) is refused with exit 2.
//!
//! SecantusDB has no `applyOps`, so the official `mongorestore --oplogReplay` cannot
//! replay a slice here; the slices are replayed natively.
//!
//! Peers: SecantusDB (replica set and standalone), FerretDB.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::http_sink::HttpSink;
use common::Server;
use mongodb::Client;

const COLLECTIONS: [&str; 3] = ["orders", "audit", "legacy"];

/// The timestamp of the server's newest oplog entry, as `T.I` (SecantusDB's
/// `hello.lastWrite` is a tick ahead of it).
async fn last_write(client: &Client) -> String {
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let newest = oplog.find_one(doc! {}).sort(doc! { "$natural": -1 }).await.unwrap().unwrap();
    let ts = newest.get_timestamp("ts").unwrap();
    format!("{}.{}", ts.time, ts.increment)
}

/// Whether the oldest entry of the server's oplog is after `ts` (`T.I`).
async fn oplog_starts_after(client: &Client, ts: &str) -> bool {
    let (t, i) = ts.split_once('.').unwrap();
    let ts = (t.parse::<u32>().unwrap(), i.parse::<u32>().unwrap());
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let oldest = oplog.find_one(doc! {}).sort(doc! { "$natural": 1 }).await.unwrap().unwrap();
    let oldest = oldest.get_timestamp("ts").unwrap();
    (oldest.time, oldest.increment) > ts
}

/// The documents of every test collection, and the index names of `orders`.
async fn state(client: &Client) -> (BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>, Vec<String>) {
    let mut documents = BTreeMap::new();
    for collection in COLLECTIONS {
        documents.insert(collection, common::documents_by_id(client, "shop", collection).await);
    }
    let mut indexes = client.database("shop").collection::<Document>("orders").list_index_names().await.unwrap_or_default();
    indexes.sort();
    (documents, indexes)
}

fn run(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    common::run_with_env(args, env)
}

fn slice(server: &Server, store: &Path, env: &[(String, String)]) -> serde_json::Value {
    let output = run(&["oplog", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"], env);
    assert!(output.status.success(), "oplog: {}", common::all_output(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn restore_to(store: &Path, time: &str, target: &Server) -> std::process::Output {
    run(&["restore", "--to-time", time, "--uri", &target.uri(), "--store", store.to_str().unwrap(), "--json"], &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_to_time_gives_the_state_at_each_recorded_point() {
    let server = Server::start();
    let client = server.client().await;
    let shop = client.database("shop");
    let orders = shop.collection::<Document>("orders");
    orders.insert_many((0..100).map(|i| doc! { "_id": i, "sku": format!("sku-{i}"), "qty": i })).await.unwrap();
    shop.collection::<Document>("legacy").insert_many((0..5).map(|i| doc! { "_id": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    common::backup(&server.uri(), &store, &[]);

    // Point 1: inserts, updates, deletes.
    orders.insert_many((100..120).map(|i| doc! { "_id": i, "sku": format!("sku-{i}"), "qty": i })).await.unwrap();
    orders.update_many(doc! { "_id": { "$lt": 10 } }, doc! { "$inc": { "qty": 1000 }, "$set": { "state": "shipped" } }).await.unwrap();
    orders.delete_many(doc! { "_id": { "$gte": 90, "$lt": 95 } }).await.unwrap();
    let point1 = (last_write(&client).await, state(&client).await);
    let first = slice(&server, &store, &[]);
    assert!(first["slice"]["entries"].as_u64().unwrap() >= 3, "{first}");

    // Point 2: a collection created, one dropped, an index built.
    shop.collection::<Document>("audit").insert_many((0..7).map(|i| doc! { "_id": format!("a{i}"), "by": "test" })).await.unwrap();
    shop.collection::<Document>("legacy").drop().await.unwrap();
    orders.create_index(mongodb::IndexModel::builder().keys(doc! { "sku": 1 }).build()).await.unwrap();
    let point2 = (last_write(&client).await, state(&client).await);

    // Point 3: a multi-document transaction, then more writes, then one slice for both.
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    orders.insert_one(doc! { "_id": 500, "sku": "in-a-transaction" }).session(&mut session).await.unwrap();
    orders.update_one(doc! { "_id": 11 }, doc! { "$set": { "state": "in-a-transaction" } }).session(&mut session).await.unwrap();
    session.commit_transaction().await.unwrap();
    let point3 = (last_write(&client).await, state(&client).await);
    orders.update_many(doc! {}, doc! { "$set": { "late": true } }).await.unwrap();
    let final_point = (last_write(&client).await, state(&client).await);
    let second = slice(&server, &store, &[]);
    assert_eq!(second["slice"]["start"], first["slice"]["end"], "each slice starts where the previous ended");
    let none = slice(&server, &store, &[]);
    assert!(none["slice"].is_null() || none["slice"]["entries"].as_u64().unwrap() <= 2, "a quiet window writes little or nothing: {none}");

    let listed = run(&["list", "--store", store.to_str().unwrap(), "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["pitr"].as_array().unwrap().len(), 1, "{listed}");
    let text = common::all_output(&run(&["list", "--store", store.to_str().unwrap()], &[]));
    assert!(text.contains("PITR: "), "{text}");
    // The table's columns line up under their headers, sizes in human units.
    let header = text.lines().find(|line| line.starts_with("NAME")).expect("a header");
    let row = text.lines().find(|line| line.ends_with("complete")).expect("a backup row");
    assert_eq!(header.find("STATUS"), row.find("complete"), "{text}");
    assert_eq!(header.find("SIZE").map(|i| i + 4), row.find("iB").map(|i| i + 2), "sizes end under SIZE, in KiB/MiB: {text}");

    let verified = run(&["verify", "--pitr", "--store", store.to_str().unwrap()], &[]);
    assert!(verified.status.success(), "{}", common::all_output(&verified));

    for (label, (time, expected)) in [("point 1", &point1), ("point 2", &point2), ("point 3", &point3), ("the end", &final_point)] {
        let target = Server::start();
        let output = restore_to(&store, time, &target);
        assert!(output.status.success(), "{label} ({time}): {}", common::all_output(&output));
        let got = state(&target.client().await).await;
        assert_eq!(got.0, expected.0, "{label} ({time}): the documents at that point");
        assert_eq!(got.1, expected.1, "{label} ({time}): the indexes at that point");
    }

    // Namespace filters and a rename apply to the replay as to the backup.
    let target = Server::start();
    let output =
        run(&["restore", "--to-time", &point3.0, "--ns-include", "shop.orders", "--uri", &target.uri(), "--store", store.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", common::all_output(&output));
    let target_client = target.client().await;
    assert_eq!(target_client.database("shop").list_collection_names().await.unwrap(), ["orders"], "only the included collection");
    assert_eq!(common::documents_by_id(&target_client, "shop", "orders").await, point3.1 .0["orders"], "orders at point 3");
    let target = Server::start();
    let args =
        ["restore", "--to-time", &point3.0, "--ns-from", "shop", "--ns-to", "shop_copy", "--uri", &target.uri(), "--store", store.to_str().unwrap()];
    let output = run(&args, &[]);
    assert!(output.status.success(), "{}", common::all_output(&output));
    let target_client = target.client().await;
    assert_eq!(common::documents_by_id(&target_client, "shop_copy", "orders").await, point3.1 .0["orders"], "renamed, replay included");
    assert!(!target_client.list_database_names().await.unwrap().contains(&"shop".to_string()), "nothing under the old name");

    // Outside every range: refused before anything is written.
    let target = Server::start();
    let refused = restore_to(&store, "2001-01-01T00:00:00Z", &target);
    assert_eq!(refused.status.code(), Some(2), "{}", common::all_output(&refused));
    assert!(common::all_output(&refused).contains("restorable ranges are"), "{}", common::all_output(&refused));
    assert!(!target.client().await.list_database_names().await.unwrap().contains(&"shop".to_string()), "nothing written");

    // A damaged slice fails verify --pitr, naming it, and stops a restore through it.
    let damaged = work.path().join("damaged");
    copy_dir(&store, &damaged);
    let slice_file = damaged.join(first["slice"]["file"].as_str().unwrap());
    let mut bytes = std::fs::read(&slice_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&slice_file, bytes).unwrap();
    let verified = run(&["verify", "--pitr", "--store", damaged.to_str().unwrap()], &[]);
    assert_eq!(verified.status.code(), Some(1));
    assert!(common::all_output(&verified).contains(first["slice"]["file"].as_str().unwrap()), "{}", common::all_output(&verified));
    let target = Server::start();
    let output = restore_to(&damaged, &point2.0, &target);
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("is damaged"), "{}", common::all_output(&output));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollover_between_slices_is_a_loud_gap_and_sigterm_leaves_nothing() {
    let server = Server::start_with(None, &["--oplog-max-entries", "200"]);
    let client = server.client().await;
    let orders = client.database("shop").collection::<Document>("orders");
    orders.insert_many((0..20).map(|i| doc! { "_id": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    common::backup(&server.uri(), &store, &[]);
    orders.insert_one(doc! { "_id": 1000 }).await.unwrap();
    let covered = last_write(&client).await;
    let first = slice(&server, &store, &[]);

    // SIGTERM while a slice waits to be uploaded: nothing is written.
    orders.insert_one(doc! { "_id": 1001 }).await.unwrap();
    let release = work.path().join("slice.release");
    let pause = format!("slice-before-upload:{}", release.display());
    let child = common::spawn(&["oplog", "--uri", &server.uri(), "--store", store.to_str().unwrap()], &[("INGEST_BACKUP_TEST_PAUSE", &pause)]);
    let marker = work.path().join("slice.release.waiting");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the slice never paused");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before: Vec<_> = std::fs::read_dir(store.join("oplog")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(unsafe_free_kill(child.id()), 0);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    let after: Vec<_> = std::fs::read_dir(store.join("oplog")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "SIGTERM mid-slice left nothing");

    // More writes than the oplog holds: the next slice is a gap.
    // SecantusDB trims its oplog now and then, not at every write: write until it has.
    let mut chunk = 0;
    while !oplog_starts_after(&client, &covered).await {
        assert!(chunk < 50, "the oplog never rolled over past {covered}");
        orders.insert_many((0..100).map(|i| doc! { "_id": 2000 + chunk * 100 + i })).await.unwrap();
        chunk += 1;
    }
    let sink = HttpSink::start();
    let env = vec![("ALERT_WEBHOOK_URL".to_string(), sink.url("/hooks/pitr"))];
    let output = run(&["oplog", "--uri", &server.uri(), "--store", store.to_str().unwrap()], &env);
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    let text = common::all_output(&output);
    assert!(text.contains("gap in point-in-time recovery") && text.contains("Run a full backup now"), "{text}");
    let alert = sink.wait_for(1)[0].json();
    assert_eq!(alert["stage"], "pitr", "{alert}");
    assert_eq!(std::fs::read_dir(store.join("oplog")).unwrap().count(), after.len(), "nothing written for the lost span");

    // A restore into the gap is refused; one inside the chain works.
    let gap_time = last_write(&client).await;
    let target = Server::start();
    let refused = restore_to(&store, &gap_time, &target);
    assert_eq!(refused.status.code(), Some(2), "{}", common::all_output(&refused));
    let output = restore_to(&store, &covered, &target);
    assert!(output.status.success(), "{}", common::all_output(&output));
    assert!(first["slice"]["entries"].as_u64().unwrap() >= 1);

    // After a new full backup the chain restarts from it.
    common::backup(&server.uri(), &store, &[]);
    orders.insert_one(doc! { "_id": 9999 }).await.unwrap();
    let restarted = slice(&server, &store, &[]);
    assert_ne!(restarted["base_backup"], first["base_backup"], "{restarted}");
}

/// SIGTERM to a child process, without `unsafe` (the style forbids it): `kill -TERM`.
fn unsafe_free_kill(pid: u32) -> i32 {
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_an_oplog_is_refused() {
    let standalone = Server::start_standalone();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let output = run(&["oplog", "--uri", &standalone.uri(), "--store", store.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("is not a replica set member"), "{}", common::all_output(&output));

    let Some(binary) = common::ferretdb::binary_or_skip("a_server_without_an_oplog_is_refused") else { return };
    let ferret = common::ferretdb::FerretDb::start(&binary);
    let output = run(&["oplog", "--uri", &ferret.uri(), "--store", store.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("point-in-time recovery needs a replica"), "{}", common::all_output(&output));
}
