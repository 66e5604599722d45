//! Point-in-time consistency: writes made while a backup runs all land in
//! `oplog.bson`, which holds exactly the server's oplog entries between the recorded
//! start and end points; the dump plus the oplog account for every document. A server
//! without an oplog is dumped without one, and the manifest and output say so.
//!
//! Peer: SecantusDB (replica set with `local.oplog.rs`; `--standalone` for none). Its
//! lack of applyOps keeps stock `mongorestore --oplogReplay` out of this test; the
//! replay below is the minimal one needed to prove nothing is missing.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use bson::{doc, Document, RawDocumentBuf};
use common::Server;

fn ts_of(entry: &bson::RawDocument) -> (u32, u32) {
    let ts = entry.get_timestamp("ts").unwrap();
    (ts.time, ts.increment)
}

fn ts_field(value: &serde_json::Value) -> (u32, u32) {
    (value["t"].as_u64().unwrap() as u32, value["i"].as_u64().unwrap() as u32)
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_a_backup_are_captured_in_oplog_bson() {
    let server = Server::start();
    let client = server.client().await;
    let shop = client.database("shop");
    shop.collection::<Document>("orders").insert_many((0..100).map(|i| doc! { "_id": i, "status": "new" })).await.unwrap();
    shop.collection::<Document>("customers").insert_many((0..20).map(|i| doc! { "_id": i, "tier": 1 })).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let release = work.path().join("release");
    let store = work.path().join("store");
    let hook = format!("before-oplog-end:{}", release.display());
    let mut child =
        common::spawn(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);

    // Every collection has been read; now write to the server before the end point.
    let orders = shop.collection::<Document>("orders");
    orders.insert_many((1000..1005).map(|i| doc! { "_id": i, "status": "late" })).await.unwrap();
    orders.update_one(doc! { "_id": 1 }, doc! { "$set": { "status": "shipped" } }).await.unwrap();
    orders.delete_one(doc! { "_id": 2 }).await.unwrap();
    shop.create_collection("audit").await.unwrap();
    shop.collection::<Document>("audit").insert_one(doc! { "_id": "a1", "event": "created during backup" }).await.unwrap();
    shop.collection::<Document>("customers").update_one(doc! { "_id": 3 }, doc! { "$set": { "tier": 2 } }).await.unwrap();
    std::fs::write(&release, b"").unwrap();

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["oplog"], true);
    let (start, end) = (ts_field(&result["consistency"]["start"]), ts_field(&result["consistency"]["end"]));

    let name = result["name"].as_str().unwrap();
    let members = common::archive_members(result["archive"].as_str().unwrap());
    let oplog_bytes = &members[&format!("data/db/dump/{name}/oplog.bson")];
    let entries = common::split_bson(oplog_bytes);
    assert_eq!(entries.len() as u64, result["consistency"]["oplog_entries"].as_u64().unwrap());
    assert!(entries.iter().all(|e| (start..=end).contains(&ts_of(e))), "every entry lies between the start and end points");
    assert_eq!(ts_of(entries.last().unwrap()), end, "the end point is the newest captured entry");

    // Exactly the server's oplog between the two points, byte for byte.
    let window =
        doc! { "ts": { "$gte": bson::Timestamp { time: start.0, increment: start.1 }, "$lte": bson::Timestamp { time: end.0, increment: end.1 } } };
    let mut cursor = client.database("local").collection::<RawDocumentBuf>("oplog.rs").find(window).await.unwrap();
    let mut server_entries = Vec::new();
    while cursor.advance().await.unwrap() {
        server_entries.push(cursor.current().to_raw_document_buf());
    }
    assert_eq!(entries, server_entries, "oplog.bson holds exactly the server's entries in the window");

    // Each write is there: inserts, update, delete, the new collection and its insert.
    let decoded: Vec<Document> = entries.iter().map(|e| bson::from_slice(e.as_bytes()).unwrap()).collect();
    let has = |op: &str, ns: &str, check: &dyn Fn(&Document) -> bool| {
        decoded.iter().any(|e| e.get_str("op") == Ok(op) && e.get_str("ns") == Ok(ns) && check(e))
    };
    for id in 1000..1005 {
        assert!(has("i", "shop.orders", &|e| e.get_document("o").unwrap().get_i32("_id") == Ok(id)), "insert {id}");
    }
    assert!(has("u", "shop.orders", &|e| e.get_document("o2").unwrap().get_i32("_id") == Ok(1)), "update of order 1");
    assert!(has("d", "shop.orders", &|e| e.get_document("o").unwrap().get_i32("_id") == Ok(2)), "delete of order 2");
    assert!(has("c", "shop.$cmd", &|e| e.get_document("o").unwrap().get_str("create") == Ok("audit")), "create of shop.audit");
    assert!(has("i", "shop.audit", &|_| true), "insert into the new collection");
    assert!(has("u", "shop.customers", &|e| e.get_document("o2").unwrap().get_i32("_id") == Ok(3)), "update of customer 3");

    // Dump plus oplog account for every live document of shop.orders.
    let dumped: BTreeSet<i32> =
        common::split_bson(&members[&format!("data/db/dump/{name}/shop/orders.bson")]).iter().map(|d| d.get_i32("_id").unwrap()).collect();
    let mut replayed = dumped.clone();
    for entry in decoded.iter().filter(|e| e.get_str("ns") == Ok("shop.orders")) {
        let id = |field: &str| entry.get_document(field).ok().and_then(|d| d.get_i32("_id").ok());
        match entry.get_str("op").unwrap() {
            "i" => {
                replayed.insert(id("o").unwrap());
            }
            "d" => {
                replayed.remove(&id("o").unwrap());
            }
            _ => {}
        }
    }
    let live: BTreeSet<i32> = common::documents_by_id(&client, "shop", "orders")
        .await
        .keys()
        .map(|k| k.trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap())
        .collect();
    assert_eq!(replayed, live, "dump plus oplog yields the live set of orders");
    assert!(!members.keys().any(|k| k.ends_with("shop/audit.bson")), "the collection created after listing is only in the oplog");

    if let Some(tools) = common::mongo_tools_or_skip("oplog.bson read by bsondump") {
        let path = work.path().join("oplog.bson");
        std::fs::write(&path, oplog_bytes).unwrap();
        let out = Command::new(tools.join("bsondump")).arg("--outFile=/dev/null").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.contains(&format!("{} objects found", entries.len())), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_oplog_is_dumped_without_one_and_says_so() {
    let server = Server::start_standalone();
    let client = server.client().await;
    client.database("shop").collection::<Document>("orders").insert_one(doc! { "_id": 1 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let output = common::run(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["oplog"], false);
    assert!(result["consistency"]["reason"].as_str().unwrap().contains("replica-set"), "{result}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no oplog"), "the human output says so");
    let members = common::archive_members(result["archive"].as_str().unwrap());
    assert!(!members.keys().any(|k| k.ends_with("oplog.bson")));
    assert!(members.keys().any(|k| k.ends_with("shop/orders.bson")));
}
