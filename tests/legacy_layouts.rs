//! Restoring every dump directory a user may hold, as `restore --no-manifest` of a
//! tarball: `.bson` files without any `.metadata.json`, an empty `.metadata.json`,
//! escaped and truncated collection names, a pre-3.0 `system.indexes.bson`,
//! `prelude.json`, a time-series collection's `system.buckets.<name>.bson`, metadata in
//! the legacy Extended JSON and shell formats, and one database's directory restored
//! with `--db`. The native restore must put exactly what the official `mongorestore`
//! puts into a fresh server (namespaces, types, options, documents, index specs), and a
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

/// What a restore put into a namespace: its type and options, its documents by `_id`
/// and its index specs by name.
type Contents = (String, Document, BTreeMap<String, Vec<u8>>, BTreeMap<String, Document>);

/// Every user namespace of a server.
async fn contents(server: &Server) -> BTreeMap<String, Contents> {
    let client = server.client().await;
    let mut found = BTreeMap::new();
    for database in client.list_database_names().await.unwrap() {
        if matches!(database.as_str(), "admin" | "local" | "config") {
            continue;
        }
        for (collection, (kind, options)) in common::collection_specs(&client, &database).await {
            let documents = common::documents_by_id(&client, &database, &collection).await;
            let indexes = common::index_specs(&client, &database, &collection).await;
            found.insert(format!("{database}.{collection}"), (kind, options, documents, indexes));
        }
    }
    found
}

/// Restores the tarball `NAME` of `store` natively (with `extra` flags) into a fresh
/// server, and the dump directory `dump` with the official mongorestore (with
/// `official_extra`) into another; returns both servers' contents.
async fn restore_both(
    tools: &Path,
    store: &Path,
    extra: &[&str],
    dump: &Path,
    official_extra: &[&str],
) -> (BTreeMap<String, Contents>, BTreeMap<String, Contents>, serde_json::Value) {
    let native = Server::start();
    let mut args = vec!["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", "", "--json"];
    let uri = native.uri();
    args[6] = &uri;
    args.extend_from_slice(extra);
    let (code, report, log) = common::run_json(&args);
    assert_eq!(code, 0, "{log}");
    let official = Server::start();
    let output = Command::new(tools.join("mongorestore")).arg(format!("--uri={}", official.uri())).args(official_extra).arg(dump).output().unwrap();
    assert!(output.status.success(), "mongorestore: {}", String::from_utf8_lossy(&output.stderr));
    (contents(&native).await, contents(&official).await, report)
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
    // A collection in a `.bin` file, as old tools wrote it (mongorestore reads it as BSON).
    write_bson(&dump.join("shop/legacy.bin"), &(0..3).map(|i| doc! { "_id": i, "old": true }).collect::<Vec<_>>());
    // An escaped name: the collection is `events 2018`.
    write_bson(&dump.join("audit/events%202018.bson"), &[doc! { "_id": 1, "what": "login" }]);
    // A collection with ordinary metadata beside them.
    write_bson(&dump.join("audit/users.bson"), &[doc! { "_id": "u1", "email": "a@example.org" }]);
    let metadata = r#"{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"email":1},"name":"email_1","unique":true}],"collectionName":"users","type":"collection"}"#;
    std::fs::write(dump.join("audit/users.metadata.json"), metadata).unwrap();
    // A pre-3.0 database: no metadata files, index definitions in system.indexes.bson.
    write_bson(&dump.join("old/things.bson"), &(0..5).map(|i| doc! { "_id": i, "sku": format!("s{i}") }).collect::<Vec<_>>());
    write_bson(&dump.join("old/log.bson"), &[doc! { "_id": 1, "at": 10 }]);
    write_bson(
        &dump.join("old/system.indexes.bson"),
        &[
            doc! { "v": 0, "key": { "_id": 1 }, "name": "_id_", "ns": "old.things" },
            doc! { "v": 0, "key": { "sku": 1 }, "name": "sku_1", "ns": "old.things", "unique": true },
            doc! { "v": 1, "key": { "at": -1 }, "name": "at_-1", "ns": "old.log", "sparse": true },
        ],
    );
    // A name longer than a file name allows: truncated with %24 and a hash, the full
    // name in the metadata's collectionName.
    let long = common::dataset::long_escaped_name();
    let stem = ingest_backup::dump::layout::escape_collection_name(&long);
    write_bson(&dump.join(format!("audit/{stem}.bson")), &[doc! { "_id": "long" }]);
    std::fs::write(
        dump.join(format!("audit/{stem}.metadata.json")),
        format!(r#"{{"options":{{}},"indexes":[],"collectionName":"{long}","type":"collection"}}"#),
    )
    .unwrap();
    // A time-series collection as mongodump writes it (before MongoDB 8.3): the
    // collection's metadata and its buckets in system.buckets.<name>.bson.
    write_bson(&dump.join("iot/system.buckets.weather.bson"), &[weather_bucket()]);
    std::fs::write(
        dump.join("iot/weather.metadata.json"),
        r#"{"options":{"timeseries":{"timeField":"t","metaField":"m","granularity":"hours","bucketMaxSpanSeconds":{"$numberInt":"2592000"}}},"indexes":[{"v":{"$numberInt":"2"},"key":{"m":{"$numberInt":"1"},"t":{"$numberInt":"1"}},"name":"m_1_t_1"}],"uuid":"","collectionName":"weather","type":"timeseries"}"#,
    )
    .unwrap();
    // prelude.json, as mongodump 100.12 and later write it.
    std::fs::write(dump.join("prelude.json"), r#"{"ServerVersion":"7.0.14","ToolVersion":"100.12.0"}"#).unwrap();
    let store = work.path().join("store");
    pack(&staging, &store);

    let (ours, theirs, report) = restore_both(&tools, &store, &[], &dump, &[]).await;
    assert_eq!(report["documents"], 59 + 6 + 1 + 1 + 3, "{report}");
    let mut expected = vec![
        "audit.events 2018".to_string(),
        format!("audit.{long}"),
        "audit.users".into(),
        "iot.system.buckets.weather".into(),
        "iot.weather".into(),
        "old.log".into(),
        "old.things".into(),
        "shop.legacy".into(),
        "shop.log".into(),
        "shop.orders".into(),
    ];
    expected.sort();
    assert_eq!(ours.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(ours["old.things"].3.keys().collect::<Vec<_>>(), ["_id_", "sku_1"], "pre-3.0 index definitions are built");
    assert!(ours["iot.weather"].1.get_document("timeseries").is_ok(), "the time-series options are kept: {:?}", ours["iot.weather"]);
    assert_eq!(ours, theirs, "the native restore equals mongorestore's");
}

/// One bucket of a time-series collection, as the server stores two measurements.
fn weather_bucket() -> Document {
    let hour = |h: i64| bson::DateTime::from_millis(1_704_067_200_000 + h * 3_600_000);
    doc! {
        "_id": bson::oid::ObjectId::parse_str("65920080d2d4c3a5f0e1a001").unwrap(),
        "control": { "version": 1, "min": { "_id": 1, "t": hour(0), "v": 1.5 }, "max": { "_id": 2, "t": hour(1), "v": 2.5 } },
        "meta": { "station": 7 },
        "data": { "_id": { "0": 1, "1": 2 }, "t": { "0": hour(0), "1": hour(1) }, "v": { "0": 1.5, "1": 2.5 } },
    }
}

/// Metadata in the legacy forms older mongodump releases wrote (Extended JSON v1 and
/// the mongo shell's format) restore as their canonical equivalent does with
/// mongorestore, which itself refuses the legacy forms.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_metadata_formats_restore_like_their_canonical_twin() {
    let Some(tools) = common::mongo_tools_or_skip("legacy_metadata_formats_restore_like_their_canonical_twin") else { return };
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    let dump = staging.join(format!("data/db/dump/{NAME}"));
    let canonical = work.path().join("canonical");
    let documents: Vec<Document> = (0..20).map(|i| doc! { "_id": i, "a": i % 3, "at": bson::DateTime::from_millis(1_600_000_000_000 + i) }).collect();
    let twins = [
        (
            "shell",
            r#"{ "options" : { "capped" : true, "size" : NumberLong(1048576) }, "indexes" : [ { "v" : 1, "key" : { "_id" : 1 }, "name" : "_id_", "ns" : "shell.c" }, { "v" : 1, "key" : { "a" : NumberLong(1) }, "name" : "a_1", "ns" : "shell.c" } ] }"#,
            r#"{"options":{"capped":true,"size":{"$numberLong":"1048576"}},"indexes":[{"v":{"$numberInt":"1"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},{"v":{"$numberInt":"1"},"key":{"a":{"$numberLong":"1"}},"name":"a_1"}]}"#,
        ),
        (
            "strict",
            r#"{"options":{"validator":{"at":{"$gt":{"$date":1500000000000}}}},"indexes":[{"v":1,"key":{"_id":1},"name":"_id_","ns":"strict.c"},{"v":1,"key":{"at":-1},"name":"at_-1","ns":"strict.c","partialFilterExpression":{"at":{"$gt":{"$date":1500000000000}}}}]}"#,
            r#"{"options":{"validator":{"at":{"$gt":{"$date":{"$numberLong":"1500000000000"}}}}},"indexes":[{"v":{"$numberInt":"1"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},{"v":{"$numberInt":"1"},"key":{"at":{"$numberInt":"-1"}},"name":"at_-1","partialFilterExpression":{"at":{"$gt":{"$date":{"$numberLong":"1500000000000"}}}}}]}"#,
        ),
    ];
    for (database, legacy, modern) in twins {
        write_bson(&dump.join(format!("{database}/c.bson")), &documents);
        std::fs::write(dump.join(format!("{database}/c.metadata.json")), legacy).unwrap();
        write_bson(&canonical.join(format!("{database}/c.bson")), &documents);
        std::fs::write(canonical.join(format!("{database}/c.metadata.json")), modern).unwrap();
    }
    let store = work.path().join("store");
    pack(&staging, &store);
    let (ours, theirs, _) = restore_both(&tools, &store, &[], &canonical, &[]).await;
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["shell.c", "strict.c"]);
    assert!(ours["shell.c"].1.get_bool("capped").unwrap(), "{:?}", ours["shell.c"].1);
    assert_eq!(ours, theirs);
}

/// A tarball of one database's directory restores under `--db`, as `mongorestore --db`
/// restores that directory; without `--db` it is refused, naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_directory_restores_under_the_name_given() {
    let Some(tools) = common::mongo_tools_or_skip("a_database_directory_restores_under_the_name_given") else { return };
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("shop");
    write_bson(&database.join("orders.bson"), &(0..12).map(|i| doc! { "_id": i, "sku": format!("sku-{i}") }).collect::<Vec<_>>());
    std::fs::write(
        database.join("orders.metadata.json"),
        r#"{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"sku":1},"name":"sku_1"}],"collectionName":"orders","type":"collection"}"#,
    )
    .unwrap();
    write_bson(&database.join("notes.bson"), &[doc! { "_id": "n" }]);
    let store = work.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    // Packed from inside the database directory: its files sit at the top of the archive.
    let status =
        Command::new("tar").args(["-czf", store.join(format!("{NAME}.tar.gz")).to_str().unwrap(), "."]).current_dir(&database).status().unwrap();
    assert!(status.success());
    let target = Server::start();
    let (code, report, _) =
        common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", &target.uri(), "--json"]);
    assert_eq!(code, 1, "{report}");
    assert!(report["error"].as_str().unwrap().contains("--db NAME"), "{report}");
    assert!(contents(&target).await.is_empty());
    let (ours, theirs, _) = restore_both(&tools, &store, &["--db", "copy"], &database, &["--db", "copy"]).await;
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["copy.notes", "copy.orders"]);
    assert_eq!(ours, theirs);
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

    // The buckets of a time-series collection without its metadata are named as not read.
    write_bson(&dump.join("iot/system.buckets.weather.bson"), &[weather_bucket()]);
    pack(&staging, &store);
    let (code, report, _) =
        common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", &target.uri(), "--json"]);
    assert_eq!(code, 1);
    assert!(report["error"].as_str().unwrap().contains("time-series collection without its .metadata.json"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_several_dump_directories_the_named_one_is_restored_and_two_named_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    let named = staging.join(format!("data/db/dump/{NAME}"));
    write_bson(&named.join("shop/orders.bson"), &(0..4).map(|i| doc! { "_id": i }).collect::<Vec<_>>());
    std::fs::write(named.join("shop/orders.metadata.json"), "{}").unwrap();
    // A copy someone left under data/: it looks like a dump too, but the layout names the other.
    let copy = staging.join("data/old-copy");
    write_bson(&copy.join("shop/orders.bson"), &(0..9).map(|i| doc! { "_id": i }).collect::<Vec<_>>());
    std::fs::write(copy.join("shop/orders.metadata.json"), "{}").unwrap();
    let store = work.path().join("store");
    pack(&staging, &store);
    let target = Server::start();
    let restore = |uri: &str| common::run_json(&["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", uri, "--json"]);
    let (code, report, log) = restore(&target.uri());
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["documents"], 4, "the named dump directory, not the copy: {report}");

    // Two dump directories the layout names: which one is meant cannot be told.
    let other = staging.join("data/db/dump/2018-04-05T11_37");
    write_bson(&other.join("shop/orders.bson"), &[doc! { "_id": 1 }]);
    pack(&staging, &store);
    let fresh = Server::start();
    let (code, report, log) = restore(&fresh.uri());
    assert_eq!(code, 2, "{log}");
    let error = report["error"].as_str().unwrap_or(&log).to_string();
    assert!(error.contains(&format!("data/db/dump/{NAME}/")) && error.contains("data/db/dump/2018-04-05T11_37/"), "the candidates: {error}");
    assert!(contents(&fresh).await.is_empty(), "nothing was written");
}

/// A time-series collection round trip: backed up with its `timeseries` options and
/// restored by both restores into the same collection. SecantusDB lists a time-series
/// collection as a collection with `timeseries` options and no `system.buckets`
/// collection, so the buckets layout of MongoDB 5.0-8.2 is covered by the dump-directory
/// test above, not here; and mongorestore restores such a collection's documents into
/// `system.buckets.<name>`, where MongoDB would keep its buckets.
#[tokio::test(flavor = "multi_thread")]
async fn time_series_collections_round_trip_through_both_restores() {
    let Some(tools) = common::mongo_tools_or_skip("time_series_collections_round_trip_through_both_restores") else { return };
    let source = Server::start();
    let client = source.client().await;
    let iot = client.database("iot");
    iot.run_command(doc! { "create": "weather", "timeseries": { "timeField": "t", "metaField": "m", "granularity": "minutes" } }).await.unwrap();
    let readings: Vec<Document> = (0..200)
        .map(|i: i64| doc! { "_id": i, "t": bson::DateTime::from_millis(1_704_067_200_000 + i * 60_000), "m": { "station": i % 4 }, "v": i as f64 / 2.0 })
        .collect();
    iot.collection::<Document>("weather").insert_many(readings).await.unwrap();
    iot.run_command(doc! { "createIndexes": "weather", "indexes": [{ "key": { "m.station": 1, "t": -1 }, "name": "station_time" }] }).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let backup = common::backup(&source.uri(), &store, &[]);
    let name = backup["name"].as_str().unwrap().to_string();

    let native = Server::start();
    let (code, _, log) = common::run_json(&["restore", &name, "--store", store.to_str().unwrap(), "--uri", &native.uri(), "--json"]);
    assert_eq!(code, 0, "{log}");
    let extracted = work.path().join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    common::untar(store.join(format!("{name}.tar.gz")).to_str().unwrap(), &extracted);
    let official = Server::start();
    let output = Command::new(tools.join("mongorestore"))
        .arg(format!("--uri={}", official.uri()))
        .arg(extracted.join(format!("data/db/dump/{name}")))
        .output()
        .unwrap();
    assert!(output.status.success(), "mongorestore: {}", String::from_utf8_lossy(&output.stderr));

    let original = contents(&source).await;
    assert!(original["iot.weather"].1.get_document("timeseries").is_ok(), "{:?}", original["iot.weather"].1);
    assert_eq!(original["iot.weather"].2.len(), 200);
    assert_eq!(contents(&native).await, original, "the native restore recreates the time-series collection");
    // mongorestore reads `timeseries` options as a bucketed collection and inserts the
    // documents into system.buckets.weather, which SecantusDB keeps as a plain
    // collection beside its unbucketed time-series collection: the collection, its
    // options and every document are restored, the documents one collection over.
    let theirs = contents(&official).await;
    assert_eq!(theirs["iot.weather"].1, original["iot.weather"].1, "mongorestore recreates it with its time-series options");
    let restored_documents = theirs.get("iot.system.buckets.weather").map(|found| &found.2).unwrap_or(&theirs["iot.weather"].2);
    assert_eq!(restored_documents, &original["iot.weather"].2, "mongorestore restores every document of our dump");
}

/// `restore --users-and-roles` of a full dump's `admin.system.users` and
/// `admin.system.roles`. SecantusDB has no `_mergeAuthzCollections`, so the roles are
/// created one by one (inherited roles included), a user whose stored password
/// credentials only the merge can restore is named (never its credentials) and the
/// restore exits 1; once the user exists, the restore gives it its roles and exits 0.
/// Without the flag, users and roles are listed as skipped.
#[tokio::test(flavor = "multi_thread")]
async fn users_and_roles_restore_with_their_privileges_and_roles() {
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    let dump = staging.join(format!("data/db/dump/{NAME}"));
    write_bson(&dump.join("shop/orders.bson"), &[doc! { "_id": 1 }]);
    let salt = "c2VjcmV0LXNhbHQtbmV2ZXItcHJpbnRlZA==";
    let stored_key = "U1RPUkVELUtFWS1ORVZFUi1QUklOVEVE";
    write_bson(
        &dump.join("admin/system.users.bson"),
        &[doc! {
            "_id": "shop.alice", "user": "alice", "db": "shop",
            "credentials": { "SCRAM-SHA-256": { "iterationCount": 15000, "salt": salt, "storedKey": stored_key, "serverKey": stored_key } },
            "roles": [{ "role": "auditor", "db": "admin" }, { "role": "readWrite", "db": "shop" }],
        }],
    );
    write_bson(
        &dump.join("admin/system.roles.bson"),
        &[
            doc! { "_id": "admin.auditor", "role": "auditor", "db": "admin", "privileges": [{ "resource": { "db": "shop", "collection": "orders" }, "actions": ["find"] }], "roles": [{ "role": "reporting", "db": "admin" }] },
            doc! { "_id": "admin.reporting", "role": "reporting", "db": "admin", "privileges": [{ "resource": { "db": "shop", "collection": "" }, "actions": ["find"] }], "roles": [] },
        ],
    );
    let store = work.path().join("store");
    pack(&staging, &store);
    let target = Server::start();
    let client = target.client().await;
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", NAME, "--no-manifest", "--store", store.to_str().unwrap(), "--uri", "URI", "--json"];
        let uri = target.uri();
        args[6] = &uri;
        args.extend_from_slice(extra);
        common::run_json(&args)
    };

    let (code, report, _) = restore(&[]);
    assert_eq!(code, 0, "{report}");
    let skipped: Vec<&str> = report["skipped"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(skipped.contains(&"admin.system.users") && skipped.contains(&"admin.system.roles"), "{report}");
    assert!(client.database("admin").run_command(doc! { "rolesInfo": 1 }).await.unwrap().get_array("roles").unwrap().is_empty());

    let (code, report, log) = restore(&["--users-and-roles", "--drop"]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(report["users_and_roles"]["method"], "createUser/createRole", "{report}");
    assert_eq!(report["users_and_roles"]["roles"], 2, "{report}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("user alice@shop: not restored"), "{problems}");
    for secret in [salt, stored_key] {
        assert!(!log.contains(secret) && !report.to_string().contains(secret), "a credential reached the output");
    }
    let roles = client.database("admin").run_command(doc! { "rolesInfo": "auditor", "showPrivileges": true }).await.unwrap();
    let auditor = roles.get_array("roles").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(auditor.get_array("roles").unwrap(), &vec![bson::Bson::Document(doc! { "role": "reporting", "db": "admin" })]);
    assert_eq!(auditor.get_array("privileges").unwrap().len(), 1);
    let names: Vec<String> = client.list_database_names().await.unwrap();
    assert!(
        !client.database("admin").list_collection_names().await.unwrap().iter().any(|c| c.starts_with("temp")),
        "temporary collections dropped: {names:?}"
    );

    // Once the user exists (made with its password), the restore gives it its roles.
    client.database("shop").run_command(doc! { "createUser": "alice", "pwd": "chosen-again", "roles": [] }).await.unwrap();
    let (code, report, log) = restore(&["--users-and-roles", "--drop"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["users_and_roles"]["users"], 1, "{report}");
    let alice = client.database("shop").run_command(doc! { "usersInfo": "alice" }).await.unwrap();
    let granted = alice.get_array("users").unwrap()[0].as_document().unwrap().get_array("roles").unwrap().clone();
    assert_eq!(granted.len(), 2, "{granted:?}");

    // A filtered restore still brings back admin's roles (the filter keeps admin).
    let (code, report, log) = restore(&["--users-and-roles", "--drop", "--ns-exclude", "shop.nothing"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["users_and_roles"]["roles"], 2, "{report}");
    // A backup without roles, restored with --drop, leaves the target's roles alone.
    client.database("admin").run_command(doc! { "createRole": "kept", "privileges": [], "roles": [] }).await.unwrap();
    std::fs::remove_file(dump.join("admin/system.roles.bson")).unwrap();
    pack(&staging, &store);
    let (code, report, log) = restore(&["--users-and-roles", "--drop"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["users_and_roles"]["roles"], 0, "{report}");
    let roles = client.database("admin").run_command(doc! { "rolesInfo": "kept" }).await.unwrap();
    assert_eq!(roles.get_array("roles").unwrap().len(), 1, "the target's roles are untouched when the backup holds none");

    // Renaming a database and restoring its users are refused together.
    let (code, _, log) = restore(&["--users-and-roles", "--ns-from", "shop", "--ns-to", "copy"]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("--users-and-roles cannot be combined with --ns-from"), "{log}");
}
