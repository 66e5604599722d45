//! One collection, many cursors: `backup --split-min-mb 0` reads every collection that
//! can be split as `_id` ranges on parallel cursors, and the backup is still exactly
//! the backup of one cursor per collection: the same counts, bytes and content hashes
//! in the manifest, `verify` passes, and both our `restore` and the official
//! `mongorestore` bring back every document byte-identical. The split `.bson` member is
//! one file in `_id` order across BSON types (numbers, strings, binary, ObjectId,
//! booleans, dates, null, MinKey, MaxKey), documents near the 16 MiB limit included
//! (embedded-document `_id`s have a test of their own); an empty collection, a capped one and a view are read whole.
//!
//! SecantusDB answers a range read by filtering a full scan, which the tool detects
//! (no index bounds in the plan) and declines to split; these tests lift that check
//! with `INGEST_BACKUP_TEST_SPLIT_UNBOUNDED=1` to prove the ranges' content.
//!
//! Peers: SecantusDB (source and targets), the official mongo-tools.

mod common;

use std::process::Command;

use bson::spec::BinarySubtype;
use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Document, RawDocumentBuf};
use common::{dataset, Server};
use futures::TryStreamExt;

/// `_id`s of many BSON types, each at most once where the type has one value.
fn mixed_ids() -> Vec<Bson> {
    let mut ids = vec![Bson::MinKey, Bson::MaxKey, Bson::Null, Bson::Boolean(false), Bson::Boolean(true), Bson::Double(2.5), Bson::Double(-0.75)];
    for i in 0..400_i64 {
        ids.push(match i % 8 {
            0 => Bson::Int32(i as i32),
            1 => Bson::Int64(1_000_000 + i),
            2 => Bson::String(format!("id-{i:05}")),
            3 => Bson::ObjectId(ObjectId::from_bytes([(i % 256) as u8, (i / 256) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7])),
            4 => Bson::DateTime(DateTime::from_millis(1_522_841_820_000 + i)),
            // Embedded documents are left to the second test: SecantusDB's index orders
            // them otherwise than $sort, which makes the tool (rightly) decline to split.
            5 => Bson::Int32(-(i as i32)),
            6 => Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: i.to_be_bytes().to_vec() }),
            _ => Bson::Double(i as f64 + 0.5),
        });
    }
    ids
}

async fn load_mixed(client: &mongodb::Client) {
    let mixed = client.database(dataset::KITCHEN).collection::<Document>("mixed_ids");
    mixed.insert_many(mixed_ids().into_iter().enumerate().map(|(n, id)| doc! { "_id": id, "n": n as i64, "pad": "p".repeat(200) })).await.unwrap();
    client.database(dataset::KITCHEN).create_collection("empty").await.unwrap();
}

fn backup_logged(uri: &str, store: &std::path::Path, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["backup", "--uri", uri, "--store", store.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    // SecantusDB filters a whole-collection scan for each range, so the tool declines to
    // split there unless told to (see the second backup of the first test).
    let output = common::run_with_env(&args, &[("INGEST_BACKUP_TEST_SPLIT_UNBOUNDED".into(), "1".into())]);
    let log = common::all_output(&output);
    assert!(output.status.success(), "backup failed: {log}");
    (serde_json::from_slice(&output.stdout).unwrap(), log)
}

#[tokio::test(flavor = "multi_thread")]
async fn split_backups_hold_the_same_documents_in_id_order_and_restore_identical() {
    let Some(tools) = common::mongo_tools_or_skip("split_backups_hold_the_same_documents_in_id_order_and_restore_identical") else { return };
    let source = Server::start();
    let client = source.client().await;
    dataset::load(&client, 1).await;
    load_mixed(&client).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");

    let (whole, whole_log) = backup_logged(&source.uri(), &store, &["--split-min-mb", "100000"]);
    assert!(!whole_log.contains("as _id ranges"), "{whole_log}");
    let (split, log) = backup_logged(&source.uri(), &store, &["--split-min-mb", "0", "--parallel", "4"]);
    for namespace in ["kitchen.mixed_ids", "kitchen.big", "kitchen.types"] {
        assert!(log.contains(&format!("namespace={namespace} ranges=")), "{namespace} is read as ranges: {log}");
    }
    assert!(log.contains("capped collection is dumped in natural order"), "{log}");
    // Without the test override, SecantusDB's plan (an IXSCAN without index bounds) makes
    // the tool read every collection whole: splitting would scan it once per range.
    let declined = common::run(&[
        "backup",
        "--uri",
        &source.uri(),
        "--store",
        store.to_str().unwrap(),
        "--split-min-mb",
        "0",
        "--ns-include",
        "kitchen.mixed_ids",
    ]);
    let declined_log = common::all_output(&declined);
    assert!(declined.status.success() && declined_log.contains("shows no index bounds") && !declined_log.contains(" ranges="), "{declined_log}");
    let whole_manifest = common::sidecar(&store, whole["name"].as_str().unwrap());
    let name = split["name"].as_str().unwrap().to_string();
    let manifest = common::sidecar(&store, &name);
    let entries = |m: &serde_json::Value| {
        m["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (format!("{}.{}", e["database"], e["collection"]), (e["documents"].clone(), e["bytes"].clone(), e["content_hash"].clone())))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(entries(&manifest), entries(&whole_manifest), "splitting changes no count, size or content hash");

    // The member is one .bson file in the server's _id order, every document once.
    let members = common::archive_members(split["archive"].as_str().unwrap());
    let file = members.get(&format!("data/db/dump/{name}/kitchen/mixed_ids.bson")).expect("one member for the split collection");
    let stored: Vec<Bson> = common::split_bson(file).iter().map(|d| d.get("_id").unwrap().unwrap().to_raw_bson().try_into().unwrap()).collect();
    let by_server: Vec<Bson> = client
        .database(dataset::KITCHEN)
        .collection::<RawDocumentBuf>("mixed_ids")
        .find(doc! {})
        .hint(mongodb::options::Hint::Keys(doc! { "_id": 1 }))
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get("_id").unwrap().unwrap().to_raw_bson().try_into().unwrap())
        .collect();
    assert_eq!(stored.len(), mixed_ids().len());
    // Every document exactly once, in the server's _id order across types. (Embedded
    // documents are left out of the order check: SecantusDB's index orders them by
    // bytes but its range bounds compare them by value, so their place within the
    // document type's stretch differs; on MongoDB both are BSON order.)
    let rendered = |ids: &[Bson]| {
        let mut all: Vec<String> = ids.iter().map(|id| id.clone().into_canonical_extjson().to_string()).collect();
        all.sort();
        all
    };
    assert_eq!(rendered(&stored), rendered(&by_server), "every document once");
    let ordered = |ids: &[Bson]| ids.iter().filter(|id| !matches!(id, Bson::Document(_))).cloned().collect::<Vec<_>>();
    assert_eq!(ordered(&stored), ordered(&by_server), "the ranges are stored in _id order across types");
    let big = common::split_bson(members.get(&format!("data/db/dump/{name}/kitchen/big.bson")).unwrap());
    assert_eq!(big.len(), 2, "documents near 16 MiB, split into ranges, each stored once");

    let (code, report, verify_log) = common::run_json(&["verify", &name, "--store", store.to_str().unwrap(), "--uri", &source.uri(), "--json"]);
    assert_eq!(code, 0, "verify of a split backup: {verify_log}");
    assert_eq!(report["status"], "passed", "{report}");

    let target = Server::start();
    let (code, _, restore_log) = common::run_json(&["restore", &name, "--store", store.to_str().unwrap(), "--uri", &target.uri(), "--json"]);
    assert_eq!(code, 0, "{restore_log}");
    let compared = common::assert_restored_identical(&client, &target.client().await, &manifest, str::to_string).await;
    assert!(compared >= 14, "compared {compared} collections");

    common::untar(split["archive"].as_str().unwrap(), work.path());
    let official = Server::start();
    let output = Command::new(tools.join("mongorestore"))
        .arg(format!("--uri={}", official.uri()))
        .arg(work.path().join(format!("data/db/dump/{name}")))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && log.contains(" 0 document(s) failed to restore"), "mongorestore: {log}");
    common::assert_restored_identical(&client, &official.client().await, &manifest, str::to_string).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn boundaries_the_id_index_orders_otherwise_than_sort_never_duplicate_a_document() {
    // SecantusDB's _id index orders these embedded documents by the bytes of `part`
    // (5, 261, 13, 269, ...) where $sort orders them by value (5, 13, ..., 261): ranges
    // from $sort boundaries would overlap on that index.
    let source = Server::start();
    let client = source.client().await;
    let compound = client.database("shapes").collection::<Document>("compound_ids");
    compound.insert_many((0..600_i64).map(|i| doc! { "_id": { "part": i, "of": "compound" }, "n": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let (split, log) = backup_logged(&source.uri(), &store, &["--split-min-mb", "0", "--parallel", "4"]);
    let name = split["name"].as_str().unwrap();
    let members = common::archive_members(split["archive"].as_str().unwrap());
    let stored = common::split_bson(members.get(&format!("data/db/dump/{name}/shapes/compound_ids.bson")).unwrap());
    let mut ns: Vec<i64> = stored.iter().map(|d| d.get_i64("n").unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..600).collect::<Vec<_>>(), "every document exactly once: {log}");
    assert_eq!(common::sidecar(&store, name)["namespaces"][0]["documents"], 600);
}
