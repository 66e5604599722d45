//! Restoring dump directories that older mongodump releases (or hand-made dumps) leave
//! behind, as `restore --no-manifest` of a legacy tarball: `.bson` files without any
//! `.metadata.json`, an empty `.metadata.json`, an escaped collection name and a pre-3.0
//! `system.indexes.bson`. The native restore must put exactly what the official
//! `mongorestore` puts into a fresh server (namespaces, documents, index names), and a
//! tarball holding nothing restorable must fail with exit 1, naming why, having written
//! nothing (never "complete: 0 documents").
//!
//! Peers: SecantusDB (the targets), the official mongorestore.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bson::{doc, Document};
use common::Server;

const NAME: &str = "2018-04-04T11_37";

fn write_bson(path: &Path, documents: &[Document]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = Vec::new();
    for document in documents {
        bytes.extend(bson::to_vec(document).unwrap());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Packs `staging/data/db/dump/NAME` as the original scripts did, into `store`.
fn pack(staging: &Path, store: &Path) {
    std::fs::create_dir_all(store).unwrap();
    let status =
        Command::new("tar").args(["-czf", store.join(format!("{NAME}.tar.gz")).to_str().unwrap(), "data"]).current_dir(staging).status().unwrap();
    assert!(status.success());
}

/// Every user namespace of a server: its documents by `_id` and its index names.
async fn contents(server: &Server) -> BTreeMap<String, (BTreeMap<String, Vec<u8>>, Vec<String>)> {
    let client = server.client().await;
    let mut found = BTreeMap::new();
    for database in client.list_database_names().await.unwrap() {
        if matches!(database.as_str(), "admin" | "local" | "config") {
            continue;
        }
        for collection in client.database(&database).list_collection_names().await.unwrap() {
            let mut indexes = client.database(&database).collection::<Document>(&collection).list_index_names().await.unwrap();
            indexes.sort();
            found.insert(format!("{database}.{collection}"), (common::documents_by_id(&client, &database, &collection).await, indexes));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn dumps_without_metadata_restore_as_mongorestore_restores_them() {
    let Some(tools) = common::mongo_tools_or_skip("dumps_without_metadata_restore_as_mongorestore_restores_them") else { return };
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    let dump = staging.join(format!("data/db/dump/{NAME}"));
    // No metadata at all.
    write_bson(&dump.join("shop/orders.bson"), &(0..50).map(|i| doc! { "_id": i, "sku": format!("sku-{i}") }).collect::<Vec<_>>());
    // An empty metadata file.
    write_bson(&dump.join("shop/log.bson"), &(0..7).map(|i| doc! { "_id": format!("l{i}"), "at": i }).collect::<Vec<_>>());
    std::fs::write(dump.join("shop/log.metadata.json"), b"").unwrap();
    // An escaped name: the collection is `events 2018`.
    write_bson(&dump.join("audit/events%202018.bson"), &[doc! { "_id": 1, "what": "login" }]);
    // A collection with ordinary metadata beside them.
    write_bson(&dump.join("audit/users.bson"), &[doc! { "_id": "u1", "email": "a@example.org" }]);
    let metadata = r#"{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"email":1},"name":"email_1","unique":true}],"collectionName":"users","type":"collection"}"#;
    std::fs::write(dump.join("audit/users.metadata.json"), metadata).unwrap();
    let store = work.path().join("store");
    pack(&staging, &store);

    let native = Server::start();
    let (code, report, log) =
        common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", &native.uri(), "--json"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["documents"], 59, "{report}");

    let official = Server::start();
    let output = Command::new(tools.join("mongorestore")).arg(format!("--uri={}", official.uri())).arg(&dump).output().unwrap();
    assert!(output.status.success(), "mongorestore: {}", String::from_utf8_lossy(&output.stderr));

    let ours = contents(&native).await;
    let theirs = contents(&official).await;
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["audit.events 2018", "audit.users", "shop.log", "shop.orders"]);
    assert_eq!(ours, theirs, "the native restore equals mongorestore's");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tarball_with_nothing_restorable_fails_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    let dump = staging.join(format!("data/db/dump/{NAME}"));
    std::fs::create_dir_all(&dump).unwrap();
    std::fs::write(dump.join("README.txt"), b"not a dump").unwrap();
    let store = work.path().join("store");
    pack(&staging, &store);
    let target = Server::start();
    let (code, report, log) =
        common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", &target.uri(), "--json"]);
    assert_eq!(code, 1, "{log}");
    assert!(report["error"].as_str().unwrap().contains("holds nothing that can be restored"), "{report}");
    assert!(contents(&target).await.is_empty(), "nothing was written");

    // Index definitions of a pre-3.0 dump alone are named as not read.
    write_bson(&dump.join("old/system.indexes.bson"), &[doc! { "v": 1, "key": { "_id": 1 }, "name": "_id_", "ns": "old.things" }]);
    pack(&staging, &store);
    let (code, report, _) =
        common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", &target.uri(), "--json"]);
    assert_eq!(code, 1);
    assert!(report["error"].as_str().unwrap().contains("older than MongoDB 3.0"), "{report}");
}
