//! `events` against SecantusDB (a replica set with an oplog): a backup, then inserts, a
//! 5000-document deleteMany, an index drop, a rename and a drop, in an oplog slice;
//! `events` finds each with its namespace and time, and `restore --to-time` with the
//! value suggested for the drop gives back the collection as it was just before it.
//! Filters, `--burst`, an encrypted slice without `--identity`, an empty store and bad
//! flags are checked too.
//!
//! Peers: SecantusDB.

mod common;

use bson::{doc, Document};
use common::Server;

fn run(args: &[&str]) -> std::process::Output {
    common::run_with_env(args, &[])
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", common::all_output(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The timestamp of the oldest oplog entry matching `filter`.
async fn oplog_ts(client: &mongodb::Client, filter: Document) -> (u32, u32) {
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let entry = oplog.find_one(filter).sort(doc! { "$natural": 1 }).await.unwrap().expect("the entry is in the oplog");
    let ts = entry.get_timestamp("ts").unwrap();
    (ts.time, ts.increment)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_operation_is_found_and_the_suggested_time_restores_the_state_before_it() {
    let server = Server::start();
    let client = server.client().await;
    let shop = client.database("shop");
    shop.collection::<Document>("orders").insert_many((0..6000).map(|i| doc! { "_id": i, "v": i })).await.unwrap();
    shop.collection::<Document>("keep").insert_many((0..30).map(|i| doc! { "_id": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    json(&run(&["backup", "--uri", &server.uri(), "--store", store_arg, "--json"]));

    // The script: more inserts, a bulk delete, an index drop, a rename, a drop.
    shop.collection::<Document>("keep").insert_many((30..40).map(|i| doc! { "_id": i })).await.unwrap();
    shop.collection::<Document>("orders").delete_many(doc! { "_id": { "$lt": 5000 } }).await.unwrap();
    shop.collection::<Document>("keep").create_index(mongodb::IndexModel::builder().keys(doc! { "v": 1 }).build()).await.unwrap();
    shop.run_command(doc! { "dropIndexes": "keep", "index": "v_1" }).await.unwrap();
    client.database("admin").run_command(doc! { "renameCollection": "shop.orders", "to": "shop.orders_old" }).await.unwrap();
    shop.collection::<Document>("keep").insert_one(doc! { "_id": "last before the drop" }).await.unwrap();
    let keep_before_drop = common::documents_by_id(&client, "shop", "keep").await;
    shop.collection::<Document>("keep").drop().await.unwrap();
    let delete_ts = oplog_ts(&client, doc! { "op": "d", "ns": "shop.orders" }).await;
    let drop_ts = oplog_ts(&client, doc! { "op": "c", "o.drop": "keep" }).await;
    json(&run(&["oplog", "--uri", &server.uri(), "--store", store_arg, "--json"]));

    let report = json(&run(&["events", "--store", store_arg, "--json"]));
    let events = report["events"].as_array().unwrap();
    let found: Vec<(&str, &str)> = events.iter().map(|e| (e["op"].as_str().unwrap(), e["ns"].as_str().unwrap())).collect();
    assert_eq!(found, [("deletes", "shop.orders"), ("dropIndexes", "shop.keep"), ("rename", "shop.orders"), ("drop", "shop.keep")], "{report}");
    assert_eq!(events[0]["documents"], 5000, "{report}");
    assert_eq!(events[0]["to_time"], format!("{}.{}", delete_ts.0, delete_ts.1 - 1), "one tick before the first delete");
    assert_eq!(events[2]["detail"], "shop.orders_old");
    let drop = &events[3];
    assert_eq!(drop["ts"], format!("{}.{}", drop_ts.0, drop_ts.1));
    assert_eq!(drop["time"], chrono::DateTime::from_timestamp(i64::from(drop_ts.0), 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

    // The suggested --to-time, accepted as is, gives back the collection as it was just before the drop.
    let target = Server::start();
    let to_time = drop["to_time"].as_str().unwrap();
    let restored = run(&["restore", "--to-time", to_time, "--uri", &target.uri(), "--store", store_arg, "--json"]);
    assert!(restored.status.success(), "{}", common::all_output(&restored));
    let target_client = target.client().await;
    assert_eq!(common::documents_by_id(&target_client, "shop", "keep").await, keep_before_drop, "shop.keep as it was before the drop");
    assert_eq!(common::documents_by_id(&target_client, "shop", "orders_old").await.len(), 1000, "the rename and the delete happened before");

    // Text: a table with the restore value of each event.
    let text = String::from_utf8(run(&["events", "--store", store_arg]).stdout).unwrap();
    assert!(text.starts_with("4 events in "), "{text}");
    assert!(text.contains(&format!("--to-time {to_time}")), "{text}");

    // Filters, --burst and a range.
    let only_keep = json(&run(&["events", "--store", store_arg, "--ns-include", "shop.keep", "--json"]));
    let ops: Vec<&str> = only_keep["events"].as_array().unwrap().iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["dropIndexes", "drop"], "{only_keep}");
    let high_burst = json(&run(&["events", "--store", store_arg, "--burst", "6000", "--json"]));
    assert!(high_burst["events"].as_array().unwrap().iter().all(|e| e["op"] != "deletes"), "{high_burst}");
    let after_rename = json(&run(&["events", "--store", store_arg, "--from", drop["ts"].as_str().unwrap(), "--json"]));
    assert_eq!(after_rename["events"].as_array().unwrap().len(), 1, "only the drop is at or after its own time: {after_rename}");

    for (args, named) in [
        (vec!["--burst", "0"], "--burst"),
        (vec!["--from", "yesterday"], "--from"),
        (vec!["--from", "2030-01-01T00:00:00Z", "--to", "2020-01-01T00:00:00Z"], "--from is after --to"),
        (vec!["--ns-include", "nodot"], "db.collection"),
    ] {
        let mut full = vec!["events", "--store", store_arg];
        full.extend(args.iter().copied());
        let output = run(&full);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", common::all_output(&output));
        assert!(common::all_output(&output).contains(named), "{args:?}: {}", common::all_output(&output));
    }
    let empty = work.path().join("empty");
    let output = run(&["events", "--store", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("holds no oplog slice"), "{}", common::all_output(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_slices_are_read_with_the_identity_and_refused_without() {
    let server = Server::start();
    let client = server.client().await;
    client.database("shop").collection::<Document>("orders").insert_one(doc! { "_id": 1 }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let identity = age::x25519::Identity::generate();
    let key_file = work.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    }
    let recipient = identity.to_public().to_string();
    json(&run(&["backup", "--uri", &server.uri(), "--store", store_arg, "--encrypt-to", &recipient, "--json"]));
    client.database("shop").collection::<Document>("orders").drop().await.unwrap();
    json(&run(&["oplog", "--uri", &server.uri(), "--store", store_arg, "--encrypt-to", &recipient, "--json"]));
    let output = run(&["events", "--store", store_arg]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("--identity"), "{}", common::all_output(&output));
    let report = json(&run(&["events", "--store", store_arg, "--identity", key_file.to_str().unwrap(), "--json"]));
    assert_eq!(report["events"][0]["op"], "drop", "{report}");
    assert_eq!(report["events"][0]["ns"], "shop.orders", "{report}");
}
