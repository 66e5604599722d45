//! `restore` against real servers: a backup restored into a fresh SecantusDB has every
//! document byte-identical, the same options and indexes, and, with the oplog
//! replayed, the writes made while the backup ran, reaching the recorded point; a
//! tarball of the original `mongodump` + `tar -czf` pipeline restores with
//! `--no-manifest`; `--drop`, namespace filters and a database rename each work; an
//! incomplete backup is refused and a damaged one reported.
//!
//! Peers: SecantusDB (source and targets); the official mongodump for the legacy
//! tarball when the test-peer script could build it.

mod common;

use std::path::Path;
use std::process::Command;

use bson::{doc, Document};
use common::{dataset, Server};
use ingest_backup::sample::{self, SampleSpec};

fn restore(store: &Path, name: &str, target: &Server, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let uri = target.uri();
    let mut args = vec!["restore", name, "--store", store.to_str().unwrap(), "--uri", &uri, "--json"];
    args.extend_from_slice(extra);
    common::run_json(&args)
}

async fn databases(server: &Server) -> Vec<String> {
    let mut names = server.client().await.list_database_names().await.unwrap();
    names.retain(|n| !matches!(n.as_str(), "admin" | "local" | "config"));
    names.sort();
    names
}

async fn sample_source(seed: u64) -> Server {
    let server = Server::start();
    sample::load(&server.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed }).await.unwrap();
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_is_byte_identical_and_the_oplog_replay_reaches_the_recorded_point() {
    let source = Server::start();
    let client = source.client().await;
    dataset::load(&client, 1).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let release = work.path().join("release");
    let hook = format!("before-oplog-end:{}", release.display());
    let mut child =
        common::spawn(&["backup", "--uri", &source.uri(), "--store", store.to_str().unwrap(), "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    // Every collection is read; these writes reach the backup only through oplog.bson.
    let types = client.database(dataset::KITCHEN).collection::<Document>("types");
    types.insert_one(doc! { "_id": 1000, "n": 1000, "tags": ["x"] }).await.unwrap();
    types.update_one(doc! { "_id": 1 }, doc! { "$set": { "n": -1, "nested.level.i": 99 }, "$unset": { "tags": "" } }).await.unwrap();
    types.update_one(doc! { "_id": 2 }, doc! { "$push": { "tags": "c" } }).await.unwrap();
    types.delete_one(doc! { "_id": 3 }).await.unwrap();
    client.database(dataset::KITCHEN).create_collection("audit").await.unwrap();
    client.database(dataset::KITCHEN).collection::<Document>("audit").insert_one(doc! { "_id": "a1" }).await.unwrap();
    std::fs::write(&release, b"").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let name = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["name"].as_str().unwrap().to_string();
    let manifest = common::sidecar(&store, &name);
    assert!(manifest["consistency"]["oplog_entries"].as_u64().unwrap() >= 6, "{}", manifest["consistency"]);

    let target = Server::start();
    let (code, report, log) = restore(&store, &name, &target, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["oplog"]["reached"], manifest["consistency"]["end"], "the replay reaches the recorded point");
    assert!(report["oplog"]["applied"].as_u64().unwrap() >= 6, "{}", report["oplog"]);
    assert!(report["namespaces"].as_array().unwrap().iter().all(|n| n["checksum"] == "ok"), "{report}");
    let target_client = target.client().await;
    let compared = common::assert_restored_identical(&client, &target_client, &manifest, str::to_string).await;
    assert!(compared >= 12, "compared {compared} collections");
    assert_eq!(
        common::documents_by_id(&target_client, dataset::KITCHEN, "audit").await,
        common::documents_by_id(&client, dataset::KITCHEN, "audit").await,
        "a collection created during the backup comes back through the oplog"
    );
    assert!(log.contains("restored kitchen.types -> kitchen.types"), "progress names each namespace: {log}");

    // Without the replay the target holds the dump as read: the late writes are missing.
    let unreplayed = Server::start();
    let (code, report, log) = restore(&store, &name, &unreplayed, &["--oplog-replay", "false"]);
    assert_eq!(code, 0, "{log}");
    assert!(report["oplog"].is_null());
    let late = unreplayed.client().await.database(dataset::KITCHEN).collection::<Document>("types").find_one(doc! { "_id": 1000 }).await.unwrap();
    assert!(late.is_none(), "the insert made during the backup lives only in oplog.bson");
}

#[tokio::test(flavor = "multi_thread")]
async fn tarballs_of_the_original_mongodump_pipeline_restore_with_no_manifest() {
    let source = sample_source(21).await;
    let client = source.client().await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let ours = common::backup(&source.uri(), &store, &[]);
    let manifest = common::sidecar(&store, ours["name"].as_str().unwrap());

    // A tarball shaped like the original ingest backup scripts': the dump directory only, packed by `tar -czf`,
    // with no sidecar. Made with the official mongodump when it is available, else
    // from our own archive's dump directory.
    let legacy = "2018-04-04T11_37";
    let staging = work.path().join("staging");
    let dump = staging.join(format!("data/db/dump/{legacy}"));
    std::fs::create_dir_all(&dump).unwrap();
    match common::mongo_tools_or_skip("legacy tarball made by the official mongodump") {
        Some(tools) => {
            let output = Command::new(tools.join("mongodump"))
                .arg(format!("--uri={}", source.uri()))
                .arg("--oplog")
                .arg(format!("--out={}", dump.display()))
                .output()
                .unwrap();
            assert!(output.status.success(), "mongodump: {}", String::from_utf8_lossy(&output.stderr));
        }
        None => {
            // Outside CI only: the legacy tarball is made from our own dump directory.
            std::fs::remove_dir_all(&dump).unwrap();
            common::untar(ours["archive"].as_str().unwrap(), &staging);
            std::fs::rename(staging.join(format!("data/db/dump/{}", ours["name"].as_str().unwrap())), &dump).unwrap();
            std::fs::remove_file(staging.join(format!("data/db/dump/{}.manifest.json", ours["name"].as_str().unwrap()))).unwrap();
        }
    }
    let legacy_store = work.path().join("legacy-store");
    std::fs::create_dir_all(&legacy_store).unwrap();
    let status = Command::new("tar")
        .args(["-czf", legacy_store.join(format!("{legacy}.tar.gz")).to_str().unwrap(), &format!("data/db/dump/{legacy}")])
        .current_dir(&staging)
        .status()
        .unwrap();
    assert!(status.success());

    let target = Server::start();
    let (code, _, log) = restore(&legacy_store, legacy, &target, &[]);
    assert_eq!(code, 1, "a backup without a sidecar is refused unless asked: {log}");
    assert!(log.contains("--no-manifest"), "the refusal says how to restore a legacy tarball: {log}");
    assert!(databases(&target).await.is_empty(), "nothing was written");

    let (code, report, log) = restore(&legacy_store, legacy, &target, &["--no-manifest"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["checked"], false);
    let compared = common::assert_restored_identical(&client, &target.client().await, &manifest, str::to_string).await;
    assert!(compared >= 6, "{compared}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_namespace_filters_and_rename_each_work() {
    let source = sample_source(22).await;
    let client = source.client().await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&source.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();
    let manifest = common::sidecar(store.path(), &name);

    let target = Server::start();
    let target_client = target.client().await;
    assert_eq!(restore(store.path(), &name, &target, &[]).0, 0);
    // Again without --drop: the documents exist, and the report says what to do.
    let (code, report, log) = restore(store.path(), &name, &target, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(report["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("--drop")), "{report}");
    // The target drifts; --drop puts it back exactly.
    let project = target_client.database("ingest").collection::<Document>("project");
    project.insert_one(doc! { "_id": "stray" }).await.unwrap();
    project.delete_many(doc! {}).await.unwrap();
    let (code, _, log) = restore(store.path(), &name, &target, &["--drop"]);
    assert_eq!(code, 0, "{log}");
    common::assert_restored_identical(&client, &target_client, &manifest, str::to_string).await;

    let included = Server::start();
    assert_eq!(restore(store.path(), &name, &included, &["--ns-include", "ingest.project"]).0, 0);
    let collections = included.client().await.database("ingest").list_collection_names().await.unwrap();
    assert_eq!(collections, vec!["project".to_string()]);

    let excluded = Server::start();
    assert_eq!(restore(store.path(), &name, &excluded, &["--ns-exclude", "ingest.file"]).0, 0);
    let mut collections = excluded.client().await.database("ingest").list_collection_names().await.unwrap();
    collections.sort();
    assert!(!collections.contains(&"file".to_string()) && collections.contains(&"project".to_string()), "{collections:?}");

    let renamed = Server::start();
    let (code, _, log) = restore(store.path(), &name, &renamed, &["--ns-from", "ingest", "--ns-to", "ingest_copy"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(databases(&renamed).await, vec!["ingest_copy".to_string()]);
    let compared =
        common::assert_restored_identical(
            &client,
            &renamed.client().await,
            &manifest,
            |db| if db == "ingest" { "ingest_copy".into() } else { db.into() },
        )
        .await;
    assert!(compared >= 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn incomplete_and_damaged_backups_are_refused_or_reported() {
    let source = sample_source(23).await;
    let work = tempfile::tempdir().unwrap();
    let target = Server::start();

    let incomplete = work.path().join("incomplete");
    let name = common::backup(&source.uri(), &incomplete, &[])["name"].as_str().unwrap().to_string();
    std::fs::remove_file(incomplete.join(format!("{name}.manifest.json"))).unwrap();
    let (code, _, log) = restore(&incomplete, &name, &target, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("incomplete"), "{log}");
    let (code, _, log) = restore(&incomplete, "latest", &target, &[]);
    assert_eq!(code, 2, "latest never picks an incomplete backup: {log}");
    assert!(log.contains("no complete backup"), "{log}");
    assert!(databases(&target).await.is_empty(), "nothing was written");

    let damaged = work.path().join("damaged");
    let name = common::backup(&source.uri(), &damaged, &[])["name"].as_str().unwrap().to_string();
    let archive = damaged.join(format!("{name}.tar.gz"));
    common::repack(&archive, |path, mut bytes| {
        if path.ends_with("/ingest/project.bson") {
            common::flip_first(&mut bytes, b"project");
        }
        Some(bytes)
    });
    let (code, report, log) = restore(&damaged, &name, &target, &[]);
    assert_eq!(code, 1, "{log}");
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p.as_str().unwrap().starts_with("ingest.project: the .bson file's sha256")), "{problems:?}");
    assert!(problems.iter().any(|p| p.as_str().unwrap().contains("differ from the sidecar")), "{problems:?}");
    assert!(log.contains("MISMATCH"), "{log}");
}
