//! The manifest tells the truth: its counts, sizes and SHA-256 match the archive's
//! files, the sidecar's archive hash matches the archive, the content hashes equal
//! those recomputed from the live collections, an independent BSON decoder (pymongo's)
//! reads every file, and a second backup in the same minute gets its own name.
//!
//! Peer: SecantusDB.

mod common;

use std::process::Command;

use common::{dataset, Server};
use ingest_backup::digest::NamespaceDigest;
use ingest_backup::source;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn manifest_matches_the_archive_and_the_live_collections() {
    let server = Server::start();
    let client = server.client().await;
    dataset::load(&client, 2).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");

    let gzip = common::backup(&server.uri(), &store, &[]);
    let zstd = common::backup(&server.uri(), &store, &["--compression", "zstd", "--parallel", "2"]);
    assert_ne!(gzip["name"], zstd["name"], "nothing is overwritten");
    assert!(zstd["archive"].as_str().unwrap().ends_with(".tar.zst"));

    for result in [&gzip, &zstd] {
        let name = result["name"].as_str().unwrap();
        let archive = result["archive"].as_str().unwrap();
        let archive_bytes = std::fs::read(archive).unwrap();
        let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(result["sidecar"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(sidecar["archive"]["sha256"], hex::encode(Sha256::digest(&archive_bytes)), "{name}: the sidecar's archive hash");
        assert_eq!(sidecar["archive"]["size"], archive_bytes.len() as u64);

        let members = common::archive_members(archive);
        let mut inner: serde_json::Value = serde_json::from_slice(&members[&format!("data/db/dump/{name}.manifest.json")]).unwrap();
        let mut sidecar_without_archive = sidecar.clone();
        sidecar_without_archive.as_object_mut().unwrap().remove("archive");
        inner.as_object_mut().unwrap().remove("archive");
        assert_eq!(inner, sidecar_without_archive, "the manifest inside the archive is the sidecar's");

        let namespaces = sidecar["namespaces"].as_array().unwrap();
        assert!(namespaces.len() >= 15, "{}", namespaces.len());
        for entry in namespaces {
            let (db, coll) = (entry["database"].as_str().unwrap(), entry["collection"].as_str().unwrap());
            let Some(file) = entry["bson_file"].as_str() else {
                assert_eq!(entry["type"], "view");
                continue;
            };
            let bytes = &members[&format!("data/db/dump/{name}/{file}")];
            let mut digest = NamespaceDigest::default();
            for document in common::split_bson(bytes) {
                digest.add_document(document.as_bytes());
            }
            let digest = digest.finish();
            assert_eq!(entry["documents"], digest.documents, "{db}.{coll} count");
            assert_eq!(entry["bytes"], digest.bytes, "{db}.{coll} bytes");
            assert_eq!(entry["sha256"], hex::encode(Sha256::digest(bytes)), "{db}.{coll} sha256");
            assert_eq!(entry["content_hash"], digest.content_hash, "{db}.{coll} content hash from the file");
            let live = source::live_digest(&client, db, coll).await.unwrap();
            assert_eq!(entry["content_hash"], live.content_hash, "{db}.{coll} content hash from the live collection");
            assert!(members.contains_key(&format!("data/db/dump/{name}/{}", entry["metadata_file"].as_str().unwrap())));
        }
    }

    // An independent decoder, pymongo's bson, reads every file of the gzip backup.
    common::untar(gzip["archive"].as_str().unwrap(), work.path());
    let script = r#"
import bson, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
counts = {str(p.relative_to(root)): sum(1 for _ in bson.decode_file_iter(open(p, "rb"))) for p in root.rglob("*.bson")}
print(json.dumps(counts))
"#;
    let name = gzip["name"].as_str().unwrap();
    let output = Command::new(common::python()).args(["-c", script]).arg(work.path().join(format!("data/db/dump/{name}"))).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(gzip["sidecar"].as_str().unwrap()).unwrap()).unwrap();
    for entry in sidecar["namespaces"].as_array().unwrap() {
        if let Some(file) = entry["bson_file"].as_str() {
            assert_eq!(counts[file], entry["documents"], "pymongo reads {file}");
        }
    }

    let listing = common::run(&["list", "--store", store.to_str().unwrap(), "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let backups = listing["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2);
    assert!(backups.iter().all(|b| b["complete"] == true));
    assert_eq!(backups[0]["name"], zstd["name"], "newest first");
}
