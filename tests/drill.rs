//! `drill` against real servers: the newest verified backup restored into a second
//! SecantusDB, read back and checked, its recovery time recorded beside the backup and
//! shown by `list`, everything it restored dropped (and nothing else); `--keep` leaves
//! it, and the next drill refuses the occupied scratch server; the source as scratch
//! server is refused with exit 2 before anything is written; an archive damaged after
//! its verification fails the drill (exit 1), alerts a webhook and is recorded.
//!
//! Peers: SecantusDB (two replica-set servers), a local HTTP sink for the alert.

mod common;

use std::path::Path;

use bson::{doc, Document};
use common::http_sink::HttpSink;
use common::Server;
use ingest_backup::sample::{self, SampleSpec};

async fn load_sample(server: &Server) {
    sample::load(&server.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed: 7 }).await.unwrap();
    let notes = (0..20).map(|i| doc! { "_id": i, "text": format!("hello world {i}") });
    let collection = server.client().await.database("ingest").collection::<Document>("notes");
    collection.insert_many(notes).await.unwrap();
    collection.create_index(mongodb::IndexModel::builder().keys(doc! { "text": 1 }).build()).await.unwrap();
}

/// A verified backup of the sample data in a fresh local store: (store dir, backup name).
async fn verified_backup(source: &Server) -> (tempfile::TempDir, String) {
    load_sample(source).await;
    let store = tempfile::tempdir().unwrap();
    let name = common::backup(&source.uri(), store.path(), &[])["name"].as_str().unwrap().to_string();
    let (code, _, output) = common::run_json(&["verify", &name, "--store", store.path().to_str().unwrap(), "--uri", &source.uri(), "--json"]);
    assert_eq!(code, 0, "{output}");
    (store, name)
}

fn drill(store: &Path, scratch: &str, extra: &[&str], env: &[(String, String)]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["drill", "--store", store.to_str().unwrap(), "--uri", scratch, "--json"];
    args.extend_from_slice(extra);
    let output = common::run_with_env(&args, env);
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), json, common::all_output(&output))
}

async fn namespaces_on(server: &Server) -> Vec<String> {
    let client = server.client().await;
    let mut found = Vec::new();
    for database in client.list_database_names().await.unwrap() {
        if ["admin", "local", "config"].contains(&database.as_str()) {
            continue;
        }
        for collection in client.database(&database).list_collection_names().await.unwrap() {
            found.push(format!("{database}.{collection}"));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_of_the_verified_backup_passes_records_its_recovery_time_and_drops_only_what_it_restored() {
    let source = Server::start();
    let (store, name) = verified_backup(&source).await;
    let scratch = Server::start();
    scratch.client().await.database("unrelated").collection::<Document>("things").insert_one(doc! { "_id": 1 }).await.unwrap();

    let (code, report, output) = drill(store.path(), &scratch.uri(), &[], &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["backup"], name.as_str());
    let recovery = report["recovery_seconds"].as_f64().expect("a measured recovery time");
    assert!(recovery > 0.0, "{report}");
    let manifest = common::sidecar(store.path(), &name);
    let rows = report["namespaces"].as_array().unwrap();
    let collections = manifest["namespaces"].as_array().unwrap().iter().filter(|n| n["kind"] != "users" && n["kind"] != "roles").count();
    assert_eq!(rows.len(), collections, "one row per namespace of the backup: {report}");
    assert!(rows.iter().all(|row| row["passed"] == true && row["content"] == "match"), "{report}");
    let notes = rows.iter().find(|row| row["namespace"] == "ingest.notes").expect("ingest.notes is checked");
    assert_eq!((notes["documents"].as_u64(), notes["indexes_expected"].as_u64(), notes["indexes_matched"].as_u64()), (Some(20), Some(2), Some(2)));
    assert!(output.contains("recovery time") && output.contains("passed"), "{output}");

    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(store.path().join(format!("{name}.drill.json"))).unwrap()).unwrap();
    assert_eq!((recorded["passed"].as_bool(), recorded["recovery_seconds"].as_f64()), (Some(true), Some(recovery)));
    assert!(recorded["recorded"].as_str().is_some_and(|at| at.ends_with(&format!("{name}.drill.json"))), "{recorded}");
    assert_eq!(namespaces_on(&scratch).await, vec!["unrelated.things".to_string()], "the drill dropped what it restored and nothing else");

    let (code, list, _) = common::run_json(&["list", "--store", store.path().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        (list["backups"][0]["drill"]["passed"].as_bool(), list["backups"][0]["drill"]["recovery_seconds"].as_f64()),
        (Some(true), Some(recovery))
    );
    let text = common::all_output(&common::run(&["list", "--store", store.path().to_str().unwrap()]));
    assert!(text.contains("DRILL") && text.contains(&format!("passed {recovery:.1}s")), "{text}");

    // --keep leaves the data; the next drill refuses the occupied scratch server.
    let (code, report, output) = drill(store.path(), &scratch.uri(), &["--keep"], &[]);
    assert_eq!((code, report["kept"].as_bool()), (0, Some(true)), "{output}");
    assert!(namespaces_on(&scratch).await.contains(&"ingest.notes".to_string()));
    let (code, _, output) = drill(store.path(), &scratch.uri(), &[], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("already holds") && output.contains("ingest.notes") && output.contains("--keep"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_source_is_refused_and_a_damaged_archive_fails_alerts_and_is_recorded() {
    let source = Server::start();
    let (store, name) = verified_backup(&source).await;
    let before = namespaces_on(&source).await;

    let (code, _, output) = drill(store.path(), &source.uri(), &[], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("is the backup's source") && output.contains("DRILL_URI"), "{output}");
    assert!(!store.path().join(format!("{name}.drill.json")).exists(), "a refused drill records nothing");
    assert_eq!(namespaces_on(&source).await, before, "nothing was written to the source");

    // One flipped byte inside ingest.notes' .bson member, after the verification passed.
    common::repack(&store.path().join(format!("{name}.tar.gz")), |path, mut bytes| {
        if path.ends_with("ingest/notes.bson") {
            common::flip_first(&mut bytes, b"hello");
        }
        Some(bytes)
    });
    let scratch = Server::start();
    let sink = HttpSink::start();
    let env = [("ALERT_WEBHOOK_URL".to_string(), sink.url("/hook"))];
    let (code, report, output) = drill(store.path(), &scratch.uri(), &[], &env);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["passed"], false, "{report}");
    assert!(report["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("ingest.notes")), "{report}");
    let alert = sink.wait_for(1)[0].json();
    assert_eq!(
        (alert["operation"].as_str(), alert["outcome"].as_str(), alert["backup"].as_str()),
        (Some("drill"), Some("failed"), Some(name.as_str())),
        "{alert}"
    );
    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(store.path().join(format!("{name}.drill.json"))).unwrap()).unwrap();
    assert_eq!(recorded["passed"], false);
    assert!(namespaces_on(&scratch).await.is_empty(), "a failed drill drops what it restored too");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_verified_backup_there_is_nothing_to_drill() {
    let source = Server::start();
    load_sample(&source).await;
    let store = tempfile::tempdir().unwrap();
    common::backup(&source.uri(), store.path(), &[]);
    let scratch = Server::start();
    let (code, _, output) = drill(store.path(), &scratch.uri(), &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("no complete backup whose verification passed") && output.contains("ingest-backup verify"), "{output}");
    let (code, _, output) = drill(store.path(), &scratch.uri(), &["not-a-backup"], &[]);
    assert_eq!(code, 2, "{output}");
    let (code, _, output) = drill(store.path(), &scratch.uri(), &["--parallel", "0"], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(namespaces_on(&scratch).await.is_empty());
}
