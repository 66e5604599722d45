//! Errors that fit on a screen: a failed bulk write is summarised (the namespace, the
//! first write error, how many more) instead of listing every refused document, and
//! logs carry no ANSI colour codes when stderr is not a terminal.
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
