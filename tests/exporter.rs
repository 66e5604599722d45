//! `exporter` against a store built by the test: backups verified, failed, unverified
//! and incomplete, a passed drill, oplog slices with a gap. Each series is checked
//! against what the store holds (the sidecars, the drill record, the slice objects),
//! then scraped while a backup is uploading and after it finished.
//!
//! Peers: SecantusDB (the source and a drill's scratch server).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::Server;

fn backup_at(server: &Server, store: &Path, now: &str) -> String {
    let env = [("INGEST_BACKUP_TEST_NOW".to_string(), now.to_string())];
    let output = common::run_with_env(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"], &env);
    assert!(output.status.success(), "{}", common::all_output(&output));
    serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["name"].as_str().unwrap().to_string()
}

fn finished_at(store: &Path, name: &str) -> f64 {
    let finished = common::sidecar(store, name)["finished_at"].as_str().unwrap().to_string();
    chrono::DateTime::parse_from_rfc3339(&finished).unwrap().timestamp_millis() as f64 / 1000.0
}

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes until `ready` holds for a page (the exporter reads the store every second).
fn scrape_until(port: u16, exporter: &mut Child, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(exporter.try_wait().unwrap().is_none(), "the exporter exited");
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let page = scrape(port);
            if ready(&page) {
                return page;
            }
            assert!(Instant::now() < deadline, "{what}: {page}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The oplog timestamp's seconds at the end of a slice key `oplog/<start>_<end>.bson.gz`.
fn slice_end_seconds(key: &str) -> f64 {
    let end = key.trim_end_matches(".bson.gz").rsplit('_').next().unwrap();
    end.split('.').next().unwrap().parse().unwrap()
}

fn bytes_under(dir: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).filter(|e| keep(&e.file_name().to_string_lossy())).map(|e| e.metadata().unwrap().len()).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn series_follow_the_store_and_a_scrape_during_an_upload_sees_it_in_progress() {
    let server = Server::start();
    let orders = server.client().await.database("shop").collection::<Document>("orders");
    orders.insert_many((0..200).map(|i| doc! { "_id": i, "sku": format!("sku-{i}") })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap().to_string();

    // verified and drilled, failed verification (damaged after the backup), unverified, incomplete.
    let verified = backup_at(&server, &store, "2026-12-01T00:00:00Z");
    let (code, _, output) = common::run_json(&["verify", &verified, "--store", &store_arg, "--uri", &server.uri(), "--json"]);
    assert_eq!(code, 0, "{output}");
    let scratch = Server::start();
    let (code, drill, output) = common::run_json(&["drill", &verified, "--store", &store_arg, "--uri", &scratch.uri(), "--json"]);
    assert_eq!(code, 0, "{output}");
    let damaged = backup_at(&server, &store, "2026-12-02T00:00:00Z");
    common::repack(&store.join(format!("{damaged}.tar.gz")), |path, mut bytes| {
        if path.ends_with("shop/orders.bson") {
            common::flip_first(&mut bytes, b"sku-1");
        }
        Some(bytes)
    });
    let (code, _, output) = common::run_json(&["verify", &damaged, "--store", &store_arg, "--uri", &server.uri(), "--json"]);
    assert_eq!(code, 1, "{output}");
    let unverified = backup_at(&server, &store, "2026-12-03T00:00:00Z");
    std::fs::write(store.join("2026-12-03T12_00.tar.gz"), b"an archive whose backup died before its sidecar").unwrap();

    // Three slices after the newest backup; the middle one lost: a gap.
    let mut slices = Vec::new();
    for round in 0..3 {
        orders.insert_one(doc! { "_id": 1000 + round, "sku": "late" }).await.unwrap();
        let output = common::run_with_env(&["oplog", "--uri", &server.uri(), "--store", &store_arg, "--json"], &[]);
        assert!(output.status.success(), "{}", common::all_output(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        slices.push(report["slice"]["file"].as_str().unwrap().to_string());
    }
    std::fs::remove_file(store.join(&slices[1])).unwrap();
    std::fs::remove_file(store.join(slices[1].replace(".bson.gz", ".json"))).unwrap();

    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut exporter = common::spawn(&["exporter", "--store", &store_arg, "--listen", &listen, "--interval", "1s"], &[]);
    let page = scrape_until(port, &mut exporter, "a first reading", |page| value(page, "ingest_backup_exporter_store_up") == Some(1.0));
    assert_eq!(value(&page, "ingest_backup_newest_complete_timestamp_seconds"), Some(finished_at(&store, &unverified)), "{page}");
    assert_eq!(value(&page, "ingest_backup_newest_verified_timestamp_seconds"), Some(finished_at(&store, &verified)), "{page}");
    assert_eq!(value(&page, "ingest_backup_pitr_restorable_until_timestamp_seconds"), Some(slice_end_seconds(&slices[0])), "{page}");
    assert_eq!(value(&page, "ingest_backup_pitr_gaps"), Some(1.0), "{page}");
    for (state, count) in [("verified", 1.0), ("failed", 1.0), ("unverified", 1.0), ("incomplete", 1.0)] {
        assert_eq!(value(&page, &format!("ingest_backup_backups{{state=\"{state}\"}}")), Some(count), "{state}: {page}");
    }
    assert_eq!(value(&page, "ingest_backup_drill_last_passed"), Some(1.0), "{page}");
    assert_eq!(value(&page, "ingest_backup_drill_recovery_seconds"), drill["recovery_seconds"].as_f64(), "{page}");
    let drilled_at = chrono::DateTime::parse_from_rfc3339(drill["finished_at"].as_str().unwrap()).unwrap().timestamp_millis() as f64 / 1000.0;
    assert_eq!(value(&page, "ingest_backup_drill_last_passed_timestamp_seconds"), Some(drilled_at), "{page}");
    let archives = bytes_under(&store, |name| name.ends_with(".tar.gz"));
    let slice_bytes = bytes_under(&store.join("oplog"), |name| name.ends_with(".bson.gz"));
    let chained = std::fs::metadata(store.join(&slices[0])).unwrap().len() + std::fs::metadata(store.join(&slices[2])).unwrap().len();
    assert_eq!(slice_bytes, chained);
    assert_eq!(value(&page, "ingest_backup_store_bytes"), Some((archives + slice_bytes) as f64), "{page}");
    assert_eq!(value(&page, "ingest_backup_uploads_in_progress"), Some(0.0), "{page}");
    assert!(!page.contains("ingest_backup_lock_coverage_ratio"), "a local store has no locks: {page}");

    // A backup held mid-upload: in progress, and the newest complete backup unchanged.
    let release = work.path().join("release");
    let hook = format!("before-collections:{}", release.display());
    let mut running = common::spawn(&["backup", "--uri", &server.uri(), "--store", &store_arg, "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut running);
    let page = scrape_until(port, &mut exporter, "the upload in progress", |page| value(page, "ingest_backup_uploads_in_progress") == Some(1.0));
    assert_eq!(value(&page, "ingest_backup_newest_complete_timestamp_seconds"), Some(finished_at(&store, &unverified)), "{page}");
    assert_eq!(value(&page, "ingest_backup_backups{state=\"incomplete\"}"), Some(1.0), "an open upload is not an incomplete backup: {page}");
    std::fs::write(&release, b"").unwrap();
    let output = running.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", common::all_output(&output));
    let newest = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["name"].as_str().unwrap().to_string();
    let page = scrape_until(port, &mut exporter, "the finished backup", |page| {
        value(page, "ingest_backup_newest_complete_timestamp_seconds") == Some(finished_at(&store, &newest))
    });
    assert_eq!(value(&page, "ingest_backup_uploads_in_progress"), Some(0.0), "{page}");
    assert_eq!(value(&page, "ingest_backup_backups{state=\"unverified\"}"), Some(2.0), "{page}");

    let _ = std::process::Command::new("kill").args(["-TERM", &exporter.id().to_string()]).status();
    let output = exporter.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", common::all_output(&output));
}

#[test]
fn bad_flags_are_refused_with_exit_2() {
    let store = tempfile::tempdir().unwrap();
    let store = store.path().to_str().unwrap();
    for (args, cause) in [
        (vec!["exporter", "--store", store, "--listen", "nowhere"], "--listen / EXPORTER_LISTEN \"nowhere\" is not an address"),
        (vec!["exporter", "--store", store, "--interval", "0s"], "--interval 0s is too short"),
        (vec!["exporter", "--store", store, "--json"], "prints no JSON document"),
    ] {
        let output = common::run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", common::all_output(&output));
        assert!(common::all_output(&output).contains(cause), "{args:?}: {}", common::all_output(&output));
    }
}
