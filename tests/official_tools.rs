//! Format compatibility, judged by the official MongoDB Database Tools: our archive,
//! unpacked with `tar`, is restored by the stock `mongorestore` into a fresh server
//! with every document byte-identical, the same indexes and the same options;
//! `bsondump` reads every file; and the layout and metadata match what the stock
//! `mongodump` writes from the same data.
//!
//! Peers: SecantusDB for source and target (it has no applyOps, so these restores run
//! without `--oplogReplay`; `tests/oplog.rs` checks the oplog itself).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{dataset, Server};

fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for db in std::fs::read_dir(root).unwrap() {
        let db = db.unwrap();
        if db.file_type().unwrap().is_dir() {
            for file in std::fs::read_dir(db.path()).unwrap() {
                found.insert(format!("{}/{}", db.file_name().to_string_lossy(), file.unwrap().file_name().to_string_lossy()));
            }
        } else {
            found.insert(db.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn official_mongorestore_restores_the_archive_byte_identical() {
    let Some(tools) = common::mongo_tools_or_skip("official_mongorestore_restores_the_archive_byte_identical") else { return };
    let source = Server::start();
    let source_client = source.client().await;
    dataset::load(&source_client, 3).await;
    let work = tempfile::tempdir().unwrap();
    let result = common::backup(&source.uri(), &work.path().join("store"), &[]);
    let name = result["name"].as_str().unwrap();

    // The original ingest backup scripts' restore procedure: tar -xzf, then mongorestore data/db/dump/<name>.
    common::untar(result["archive"].as_str().unwrap(), work.path());
    let dump = work.path().join(format!("data/db/dump/{name}"));
    assert!(dump.join("kitchen/types.bson").exists(), "tar -xzf yields data/db/dump/<name>/<db>/<coll>.bson");
    assert!(work.path().join(format!("data/db/dump/{name}.manifest.json")).exists(), "manifest beside the dump directory");

    // bsondump reads every .bson file, and finds as many documents as the manifest says.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join(format!("data/db/dump/{name}.manifest.json"))).unwrap()).unwrap();
    for entry in manifest["namespaces"].as_array().unwrap() {
        let Some(file) = entry["bson_file"].as_str() else { continue };
        let output = Command::new(tools.join("bsondump")).arg("--outFile=/dev/null").arg(dump.join(file)).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "bsondump {file}: {stderr}");
        assert!(stderr.contains(&format!("{} objects found", entry["documents"])), "bsondump {file}: {stderr}");
    }

    let target = Server::start();
    let output = Command::new(tools.join("mongorestore")).arg(format!("--uri={}", target.uri())).arg(&dump).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mongorestore failed: {log}");
    assert!(log.contains(" 0 document(s) failed to restore"), "{log}");
    for warning in ["don't know what to do", "skipping", "error", "Failed"] {
        assert!(!log.contains(warning), "mongorestore said {warning:?}: {log}");
    }

    let target_client = target.client().await;
    let compared = common::assert_restored_identical(&source_client, &target_client, &manifest, str::to_string).await;
    assert!(compared >= 12, "compared {compared} collections");
    let restored_capped = common::documents_by_id(&target_client, dataset::KITCHEN, "capped_log").await;
    assert_eq!(restored_capped.len(), 100, "the capped collection keeps its max of 100 documents");
}

#[tokio::test(flavor = "multi_thread")]
async fn layout_and_metadata_match_the_official_mongodump() {
    let Some(tools) = common::mongo_tools_or_skip("layout_and_metadata_match_the_official_mongodump") else { return };
    let source = Server::start();
    dataset::load(&source.client().await, 1).await;
    let work = tempfile::tempdir().unwrap();
    let result = common::backup(&source.uri(), &work.path().join("store"), &[]);
    let name = result["name"].as_str().unwrap();
    common::untar(result["archive"].as_str().unwrap(), work.path());
    let ours = work.path().join(format!("data/db/dump/{name}"));

    let theirs = work.path().join("mongodump-out");
    let output =
        Command::new(tools.join("mongodump")).arg(format!("--uri={}", source.uri())).arg(format!("--out={}", theirs.display())).output().unwrap();
    assert!(output.status.success(), "mongodump failed: {}", String::from_utf8_lossy(&output.stderr));

    let mut our_files = files_under(&ours);
    assert!(our_files.remove("oplog.bson"), "a replica-set backup captures oplog.bson");
    // mongodump 100.12+ also writes prelude.json (server and tool versions) at the dump
    // root, which the same release of mongorestore then reports as "don't know what to do
    // with file ... skipping"; no such warning is acceptable, so we record the server
    // version in the manifest instead.
    let mut their_files = files_under(&theirs);
    their_files.remove("prelude.json");
    assert_eq!(our_files, their_files, "the same files as mongodump (oplog.bson aside)");
    assert!(our_files.iter().any(|f| f.contains("%24")), "the long collection name was shortened as mongodump does");

    let mut metadata_files = 0;
    for file in our_files.iter().filter(|f| f.ends_with(".metadata.json")) {
        let read = |root: &Path| -> BTreeMap<String, serde_json::Value> {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            assert_eq!(text.lines().count(), 1, "{file} is one line");
            let mut value: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            assert!(value.remove("uuid").is_some() || value.get("type").and_then(|t| t.as_str()) == Some("view"), "{file} has a uuid");
            value
        };
        assert_eq!(read(&ours), read(&theirs), "{file} matches mongodump field for field");
        metadata_files += 1;
    }
    assert!(metadata_files >= 12, "{metadata_files}");

    for file in our_files.iter().filter(|f| f.ends_with(".bson")) {
        let ours = common::split_bson(&std::fs::read(ours.join(file)).unwrap());
        let theirs = common::split_bson(&std::fs::read(theirs.join(file)).unwrap());
        let key = |docs: Vec<bson::RawDocumentBuf>| docs.into_iter().map(|d| d.into_bytes()).collect::<BTreeSet<_>>();
        assert_eq!(key(ours), key(theirs), "{file} holds the same documents as mongodump's");
    }
}
