//! Alerts: a failed backup posts its stage and reason to Slack and the JSON webhook, a
//! successful one only when asked; delivery is retried, a failed delivery never changes
//! the exit status, and the webhook URLs (secrets) never appear in any output. The
//! heartbeat is called after each successful backup and verification, never after a
//! failure, and an unreachable heartbeat changes no exit status.
//!
//! Peers: SecantusDB for the backups that succeed; a loopback HTTP server
//! (`common::http_sink`) standing in for Slack and the webhook receiver.

mod common;

use std::process::{Command, Output};

use bson::{doc, Document};
use common::http_sink::{HttpSink, Request};
use common::Server;

/// The secret part of every webhook URL in these tests.
const TOKEN: &str = "s3cretTOKEN123";
/// A Slack-shaped webhook path carrying the token.
const SECRET_PATH: &str = "/services/T000/B000/s3cretTOKEN123";

/// Runs `ingest-backup` with only the given alert variables set, and checks that the
/// secret token is in none of its output.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::binary());
    command.args(args);
    for variable in
        ["MONGO_URI", "S3_BUCKET", "BACKUP_DIR", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "NOTIFY_SUCCESS", "HEARTBEAT_URL", "HEARTBEAT_METHOD"]
    {
        command.env_remove(variable);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let all = common::all_output(&output);
    assert!(!all.contains(TOKEN) && !all.contains("T000/B000"), "a webhook URL was printed:\n{all}");
    output
}

/// The process's stderr without terminal colour codes.
fn stderr(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The `error: ...` line the binary printed.
fn error_line(output: &Output) -> String {
    let stderr = stderr(output);
    stderr.lines().find_map(|l| l.strip_prefix("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}")).to_string()
}

/// A URI for a port nothing listens on, failing fast.
fn closed_uri() -> String {
    format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=2000", common::free_port())
}

async fn server_with_orders(count: i32) -> Server {
    let server = Server::start();
    let orders = server.client().await.database("shop").collection::<Document>("orders");
    orders.insert_many((0..count).map(|n| doc! { "_id": n, "total": n * 3 })).await.unwrap();
    server
}

fn backup_json(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON document")
}

fn assert_slack_post(request: &Request) -> serde_json::Value {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, SECRET_PATH);
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
    let message = request.json();
    assert!(message["text"].is_string(), "Slack needs a text: {message}");
    assert!(message["blocks"].is_array(), "{message}");
    message
}

/// The `*Label*\nvalue` fields of a Slack message.
fn slack_fields(message: &serde_json::Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|block| block["fields"].as_array())
        .flatten()
        .map(|field| field["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn unreachable_server_posts_the_failure_to_slack_and_the_webhook_and_exits_1() {
    let slack = HttpSink::start();
    let webhook = HttpSink::start();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let output = run(
        &["backup", "--uri", &closed_uri(), "--store", store.to_str().unwrap()],
        &[("SLACK_WEBHOOK_URL", &slack.url(SECRET_PATH)), ("ALERT_WEBHOOK_URL", &webhook.url("/hooks/s3cretTOKEN123"))],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let reason = error_line(&output);

    let slack_requests = slack.requests();
    assert_eq!(slack_requests.len(), 1, "one message, delivered at the first attempt");
    let message = assert_slack_post(&slack_requests[0]);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("ingest-backup backup FAILED at stage reading from MongoDB"), "{text}");
    let fields = slack_fields(&message);
    assert!(fields.contains(&"*Operation*\nbackup".to_string()), "{fields:?}");
    assert!(fields.contains(&"*Stage*\nreading from MongoDB".to_string()), "{fields:?}");
    assert!(fields.contains(&format!("*Store*\n{}", store.display())), "{fields:?}");
    let reason_block = message["blocks"].as_array().unwrap().iter().find_map(|b| b["text"]["text"].as_str().filter(|t| t.starts_with("*Reason*")));
    let shown = reason_block.expect("a reason block");
    let start: String = reason.chars().take(40).collect();
    assert!(shown.contains(&start), "the reason printed on stderr ({reason}) is in the message: {shown}");

    let webhook_requests = webhook.requests();
    assert_eq!(webhook_requests.len(), 1);
    assert_eq!(webhook_requests[0].method, "POST");
    assert_eq!(webhook_requests[0].path, "/hooks/s3cretTOKEN123");
    let document = webhook_requests[0].json();
    assert_eq!(document["source"], "ingest-backup");
    assert_eq!(document["operation"], "backup");
    assert_eq!(document["outcome"], "failed");
    assert_eq!(document["stage"], "reading from MongoDB");
    assert_eq!(document["reason"], reason.as_str(), "the same reason as stderr");
    assert_eq!(document["store"], store.to_str().unwrap());
    assert_eq!(document["backup"], serde_json::Value::Null, "no name was chosen before the server was reached");
    assert!(document["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(document["sent_at"].is_string());
}

#[test]
fn unwritable_store_posts_the_failure_with_its_stage() {
    let slack = HttpSink::start();
    let work = tempfile::tempdir().unwrap();
    // A directory cannot be made under a regular file, even by root.
    let file = work.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let store = file.join("store");
    let output = run(&["backup", "--uri", &closed_uri(), "--store", store.to_str().unwrap()], &[("SLACK_WEBHOOK_URL", &slack.url(SECRET_PATH))]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let reason = error_line(&output);
    assert!(reason.contains(store.to_str().unwrap()), "the error names the store: {reason}");

    let requests = slack.requests();
    assert_eq!(requests.len(), 1);
    let message = assert_slack_post(&requests[0]);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("ingest-backup backup FAILED at stage local disk"), "{text}");
    assert!(text.contains(store.to_str().unwrap()), "the reason names the store: {text}");
    assert!(slack_fields(&message).contains(&"*Stage*\nlocal disk".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn success_is_posted_only_when_asked() {
    let server = server_with_orders(25).await;
    let slack = HttpSink::start();
    let webhook = HttpSink::start();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let base = ["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--json"];
    let slack_url = slack.url(SECRET_PATH);
    let webhook_url = webhook.url("/hooks/s3cretTOKEN123");
    let env = [("SLACK_WEBHOOK_URL", slack_url.as_str()), ("ALERT_WEBHOOK_URL", webhook_url.as_str())];

    // No flag, no NOTIFY_SUCCESS: nothing is posted (the binary has exited, so delivery is over).
    backup_json(&run(&base, &env));
    assert_eq!(slack.requests().len(), 0, "a success is not posted by default");
    assert_eq!(webhook.requests().len(), 0);
    backup_json(&run(&base, &[env[0], env[1], ("NOTIFY_SUCCESS", "false")]));
    assert_eq!(slack.requests().len(), 0, "NOTIFY_SUCCESS=false posts nothing");

    // --notify-success: both channels get the name and the counts.
    let mut args = base.to_vec();
    args.push("--notify-success");
    let result = backup_json(&run(&args, &env));
    let name = result["name"].as_str().unwrap();
    assert_eq!(result["documents"], 25);
    let slack_requests = slack.requests();
    assert_eq!(slack_requests.len(), 1);
    let message = assert_slack_post(&slack_requests[0]);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains(&format!("ingest-backup backup {name} succeeded")), "{text}");
    let fields = slack_fields(&message);
    assert!(fields.contains(&format!("*Backup*\n{name}")), "{fields:?}");
    assert!(fields.contains(&"*Documents*\n25".to_string()), "{fields:?}");
    assert!(!fields.iter().any(|f| f.starts_with("*Stage*")), "{fields:?}");

    let webhook_requests = webhook.requests();
    assert_eq!(webhook_requests.len(), 1);
    let document = webhook_requests[0].json();
    assert_eq!(document["operation"], "backup");
    assert_eq!(document["outcome"], "succeeded");
    assert_eq!(document["backup"], name);
    assert_eq!(document["stage"], serde_json::Value::Null);
    assert_eq!(document["reason"], serde_json::Value::Null);
    assert_eq!(document["counts"]["documents"], 25);
    assert_eq!(document["counts"]["namespaces"], result["namespaces"]);
    assert_eq!(document["counts"]["bytes"], result["bytes"]);
    assert_eq!(document["counts"]["archive_bytes"], result["archive_bytes"]);
    assert_eq!(document["store"], store.to_str().unwrap());

    // NOTIFY_SUCCESS=true does the same as the flag.
    let result = backup_json(&run(&base, &[env[0], ("NOTIFY_SUCCESS", "true")]));
    let slack_requests = slack.requests();
    assert_eq!(slack_requests.len(), 2);
    let text = slack_requests[1].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains(&format!("backup {} succeeded", result["name"].as_str().unwrap())), "{text}");
    assert_eq!(webhook.requests().len(), 1, "the webhook was not configured for this run");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_until_the_message_is_delivered() {
    let server = server_with_orders(3).await;
    let slack = HttpSink::answering(&[500, 500]);
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let output = run(
        &["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--notify-success"],
        &[("SLACK_WEBHOOK_URL", &slack.url(SECRET_PATH))],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let requests = slack.requests();
    assert_eq!(requests.len(), 3, "500, 500, then 200");
    assert_eq!(requests[0].body, requests[2].body, "the same message each time");
    assert!(requests[2].json()["text"].as_str().unwrap().contains("succeeded"));
    let log = stderr(&output);
    assert!(log.contains("Alert delivered.") && log.contains("channel=slack") && log.contains("attempts=3"), "{log}");
}

#[test]
fn a_client_error_is_not_retried_and_does_not_change_the_exit_status() {
    let slack = HttpSink::answering(&[404, 404, 404, 404]);
    let work = tempfile::tempdir().unwrap();
    let output =
        run(&["backup", "--uri", &closed_uri(), "--store", work.path().to_str().unwrap()], &[("SLACK_WEBHOOK_URL", &slack.url(SECRET_PATH))]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(slack.requests().len(), 1, "a 404 will not go away by retrying");
    let log = stderr(&output);
    assert!(log.contains("Alert not delivered") && log.contains("HTTP status 404"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_webhook_changes_no_exit_status_and_prints_no_url() {
    let server = server_with_orders(3).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let dead_port = common::free_port();
    let dead = format!("http://127.0.0.1:{dead_port}{SECRET_PATH}");
    let env = [("SLACK_WEBHOOK_URL", dead.as_str()), ("ALERT_WEBHOOK_URL", dead.as_str())];

    let good = run(&["backup", "--uri", &server.uri(), "--store", store.to_str().unwrap(), "--notify-success", "--json"], &env);
    let result = backup_json(&good);
    assert_eq!(result["status"], "ok");
    let log = stderr(&good);
    for channel in ["channel=slack", "channel=webhook"] {
        assert!(log.lines().any(|l| l.contains("Alert not delivered") && l.contains(channel) && l.contains("cannot connect")), "{log}");
    }
    assert!(!log.contains(&format!(":{dead_port}")), "no part of the URL is logged: {log}");

    let bad = run(&["backup", "--uri", &closed_uri(), "--store", store.to_str().unwrap(), "--json"], &env);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(json["status"], "error");
    assert!(stderr(&bad).contains("Alert not delivered"));
}

#[test]
fn a_malformed_webhook_url_is_a_usage_error_that_hides_the_value() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    for (variable, value) in [
        ("SLACK_WEBHOOK_URL", "hooks.slack.com/services/T000/B000/s3cretTOKEN123"),
        ("SLACK_WEBHOOK_URL", "ftp://hooks.slack.com/services/T000/B000/s3cretTOKEN123"),
        ("ALERT_WEBHOOK_URL", "https://:443/T000/B000/s3cretTOKEN123"),
    ] {
        let output = run(&["backup", "--uri", &closed_uri(), "--store", store.to_str().unwrap(), "--json"], &[(variable, value)]);
        assert_eq!(output.status.code(), Some(2), "{value}: {}", stderr(&output));
        let error = error_line(&output);
        assert!(error.contains(variable), "the error names the variable: {error}");
        assert!(!store.exists(), "the backup did not start");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_verification_posts_its_stage_and_findings() {
    let server = server_with_orders(30).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let name = common::backup(&server.uri(), &store, &[])["name"].as_str().unwrap().to_string();
    // Damage one namespace's .bson member; the archive digest no longer matches either.
    common::repack(&store.join(format!("{name}.tar.gz")), |path, mut bytes| {
        if path.ends_with("/shop/orders.bson") {
            common::flip_first(&mut bytes, b"total");
        }
        Some(bytes)
    });
    let slack = HttpSink::start();
    let webhook = HttpSink::start();
    let env = [("SLACK_WEBHOOK_URL", slack.url(SECRET_PATH)), ("ALERT_WEBHOOK_URL", webhook.url("/hooks/s3cretTOKEN123"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = run(&["verify", &name, "--store", store.to_str().unwrap(), "--uri", &server.uri()], &env);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let message = assert_slack_post(&slack.requests()[0]);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains(&format!("ingest-backup verify {name} FAILED at stage archive integrity")), "{text}");
    let document = webhook.requests()[0].json();
    assert_eq!((document["operation"].as_str(), document["outcome"].as_str()), (Some("verify"), Some("failed")));
    let details = document["details"].as_array().expect("the findings are the details");
    assert!(details.iter().any(|d| d.as_str().unwrap().contains("shop.orders: sha256")), "{details:?}");

    // A passing verification posts nothing unless asked.
    let passing = common::backup(&server.uri(), &store, &[])["name"].as_str().unwrap().to_string();
    let quiet = HttpSink::start();
    let output =
        run(&["verify", &passing, "--store", store.to_str().unwrap(), "--uri", &server.uri()], &[("SLACK_WEBHOOK_URL", &quiet.url(SECRET_PATH))]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(quiet.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_is_called_after_successes_only_and_never_changes_the_exit_status() {
    let server = server_with_orders(12).await;
    let beat = HttpSink::start();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    // One check per operation: {operation} becomes backup or verify.
    let url = beat.url("/ping/s3cretTOKEN123/{operation}");
    let env = [("HEARTBEAT_URL", url.as_str())];

    // A successful backup pings once, with GET, without --notify-success.
    let name = backup_json(&run(&["backup", "--uri", &server.uri(), "--store", store_arg, "--json"], &env))["name"].as_str().unwrap().to_string();
    let requests = beat.requests();
    assert_eq!(requests.len(), 1, "one ping per success");
    assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("GET", "/ping/s3cretTOKEN123/backup"));

    // A passing verification pings its own check.
    let output = run(&["verify", &name, "--store", store_arg, "--uri", &server.uri()], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let requests = beat.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].path, "/ping/s3cretTOKEN123/verify");
    assert!(stderr(&output).contains("Heartbeat sent."), "{}", stderr(&output));

    // Failures do not ping: an unreachable server, a failed verification (no sidecar).
    let failed = run(&["backup", "--uri", &closed_uri(), "--store", store_arg], &env);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let incomplete =
        backup_json(&run(&["backup", "--uri", &server.uri(), "--store", store_arg, "--json"], &[]))["name"].as_str().unwrap().to_string();
    std::fs::remove_file(store.join(format!("{incomplete}.manifest.json"))).unwrap();
    let output = run(&["verify", &incomplete, "--store", store_arg, "--archive-only"], &env);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(beat.requests().len(), 2, "no ping after a failure");

    // POST sends the operation and the backup as JSON; a 500 is retried.
    let posted = HttpSink::answering(&[500]);
    let post_url = posted.url("/ping/s3cretTOKEN123");
    let result = backup_json(&run(
        &["backup", "--uri", &server.uri(), "--store", store_arg, "--json"],
        &[("HEARTBEAT_URL", post_url.as_str()), ("HEARTBEAT_METHOD", "POST")],
    ));
    let requests = posted.requests();
    assert_eq!(requests.len(), 2, "500, then 200");
    assert_eq!(requests[1].method, "POST");
    let document = requests[1].json();
    assert_eq!((document["operation"].as_str(), document["outcome"].as_str()), (Some("backup"), Some("succeeded")));
    assert_eq!(document["backup"], result["name"]);

    // An unreachable heartbeat: the backup still succeeds, the log says so without the URL.
    let dead_port = common::free_port();
    let dead = format!("http://127.0.0.1:{dead_port}/ping/s3cretTOKEN123");
    let output = run(&["backup", "--uri", &server.uri(), "--store", store_arg, "--json"], &[("HEARTBEAT_URL", dead.as_str())]);
    assert_eq!(backup_json(&output)["status"], "ok");
    let log = stderr(&output);
    assert!(log.lines().any(|l| l.contains("Heartbeat not delivered") && l.contains("channel=heartbeat") && l.contains("cannot connect")), "{log}");
    assert!(!log.contains(&format!(":{dead_port}")), "no part of the URL is logged: {log}");

    // A malformed heartbeat URL is refused before the backup starts, naming the variable only.
    let bad_store = work.path().join("never");
    let output = run(&["backup", "--uri", &server.uri(), "--store", bad_store.to_str().unwrap()], &[("HEARTBEAT_URL", "hc-ping.com/s3cretTOKEN123")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(error_line(&output).contains("HEARTBEAT_URL"));
    assert!(!bad_store.exists());
}
