//! Output a person can read: a failed bulk write is summarised (the namespace, the
//! first write error, how many more) instead of listing every refused document; logs
//! carry no ANSI colour codes when stderr is not a terminal; progress is one log line
//! per `--progress-interval` there, and `--quiet` silences it and the info logs.
//!
//! Peer: SecantusDB.

mod common;

use common::Server;

/// The same seed twice: every document of the second load has an `_id` the first
/// already inserted, so each batch of 1000 comes back with 1000 duplicate-key write
/// errors (the driver's own message for that is over 100,000 characters).
#[test]
fn a_failed_bulk_write_prints_the_namespace_the_first_error_and_a_count() {
    let server = Server::start();
    let load = || common::run(&["sample-data", "--uri", &server.uri(), "--size-mb", "2", "--seed", "9", "--database", "errors"]);
    let first = load();
    assert!(first.status.success(), "{}", common::all_output(&first));

    let second = load();
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(stderr.len() < 2_000, "{} characters on stderr:\n{stderr}", stderr.len());
    assert!(error.contains("inserting sample documents into errors."), "names the namespace: {error}");
    assert!(error.contains("write errors; the first, document 0 of the batch: code 11000"), "the first write error, with its code: {error}");
    assert!(error.contains("more write errors)"), "counts the rest: {error}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let server = Server::start();
    let store = tempfile::tempdir().unwrap();
    let loaded = common::run(&["sample-data", "--uri", &server.uri(), "--size-mb", "1"]);
    assert!(loaded.status.success(), "{}", common::all_output(&loaded));
    // `common::run` captures stderr through a pipe: not a terminal.
    let output = common::run(&["backup", "--uri", &server.uri(), "--store", store.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(" INFO "), "the backup logs at INFO: {stderr}");
    assert!(!stderr.contains("\x1b["), "ANSI escape codes in piped logs: {stderr:?}");
    let output = common::run(&["verify", "latest", "--store", store.path().to_str().unwrap(), "--archive-only"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(" INFO ") && !stderr.contains("\x1b["), "{stderr:?}");
}

/// Off a terminal, a backup logs its progress (documents and bytes against what
/// `collStats` announced) once per `--progress-interval`; `--json` stays one JSON
/// document on stdout; `--quiet` leaves only warnings on stderr.
#[test]
fn progress_is_a_log_line_per_interval_and_quiet_silences_it() {
    let server = Server::start();
    let loaded = common::run(&["sample-data", "--uri", &server.uri(), "--size-mb", "1", "--seed", "3", "--database", "watched"]);
    assert!(loaded.status.success(), "{}", common::all_output(&loaded));
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let release = work.path().join("release");
    let hook = format!("before-oplog-end:{}", release.display());
    let args = ["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json", "--progress-interval", "1s"];
    let mut child = common::spawn(&args, &[("INGEST_BACKUP_TEST_PAUSE", &hook)]);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    // Every collection is read: the lines logged while the backup waits show the totals.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::fs::write(&release, b"").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", common::all_output(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is the --json report only");
    let documents = report["documents"].as_u64().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rfind(|line| line.contains("Progress.")).unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(last.contains("operation=\"backup\""), "{last}");
    assert!(last.contains(&format!(" documents={documents} ")), "{last} (the backup holds {documents})");
    assert!(last.contains(&format!("expected_documents={documents} ")), "{last}");
    assert!(last.contains("percent=100 ") || last.contains("percent=100.0 "), "{last}");

    let quiet = common::run(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--quiet", "--progress-interval", "1s"]);
    assert!(quiet.status.success(), "{}", common::all_output(&quiet));
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("Progress.") && !stderr.contains("INFO"), "{stderr}");
    let refused = common::run(&["backup", "--uri", &server.uri(), "--progress-interval", "0s"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 1s"), "{}", common::all_output(&refused));
}
