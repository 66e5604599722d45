//! `ingest-backup schedule` as a long-running process: backups on a seconds-granular
//! cron schedule, each verified after a short delay, visible in the store and in
//! `/metrics`; a tick arriving during a run is skipped and counted; SIGTERM mid-run
//! aborts the run after the grace period, leaving no open upload and no new backup;
//! a malformed cron expression is a usage error before anything starts; with
//! `--oplog-every` oplog slices in the bucket make the newest writes restorable.
//!
//! Peers: SecantusDB (the source), MinIO (the store). The long run is made by the
//! backup test hook (`INGEST_BACKUP_TEST_PAUSE`), never by timing.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use bson::doc;
use common::minio::{self, Minio, BUCKET, SECRET_KEY};
use common::s3_server::S3Server;
use common::Server;
use ingest_backup::sample;

async fn source_with_orders() -> Server {
    let server = Server::start();
    let orders = server.client().await.database("shop").collection::<bson::Document>("orders");
    orders.insert_many((0..200).map(|i| doc! { "_id": i, "sku": format!("sku-{i}"), "qty": i % 7 })).await.unwrap();
    server
}

/// Starts `schedule` against `source` and `minio`, listening on a free port.
fn start_schedule(minio: &Minio, source: &Server, extra: &[&str], extra_env: &[(&str, &str)]) -> (Child, u16) {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let store = format!("s3://{BUCKET}/sched");
    let uri = source.uri();
    let mut args = vec!["schedule", "--uri", &uri, "--store", &store, "--listen", &listen];
    args.extend_from_slice(extra);
    let env = minio.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(extra_env);
    let child = common::spawn(&args, &env);
    (child, port)
}

/// GET `path` on the scheduler's listener: (status, body), or None while it is not up.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The value of the sample `name` (with its labels exactly as rendered) in a metrics text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn terminate(child: &Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
}

/// Waits for the process to exit, failing (after killing it) past `limit`.
fn wait_exit(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("schedule did not exit within {limit:?} of SIGTERM: {}", common::all_output(&output));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

/// Polls `check` every 200 ms until it returns Some, failing after `limit`.
async fn eventually<T>(what: &str, limit: Duration, child: &mut Child, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("schedule exited ({status}) while waiting for {what}: {stderr}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_malformed_cron_expression_is_a_usage_error_before_anything_starts() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let output = common::run(&["schedule", "--cron", "0 0 * *", "--store", "/nonexistent/never-created", "--listen", &listen]);
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("\"0 0 * *\"") && text.contains("'0 0 * * *'"), "names the expression and a valid example: {text}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens");

    let output = common::run_with_env(&["schedule", "--store", "/nonexistent/never-created"], &[("CRON_SCHEDULE".into(), "61 * * * *".into())]);
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("CRON_SCHEDULE") && text.contains("\"61 * * * *\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_are_verified_and_reported_in_metrics() {
    let Some(binary) = minio::binary_or_skip("scheduled_backups_are_verified_and_reported_in_metrics") else { return };
    let minio = Minio::start(binary).await;
    let source = source_with_orders().await;
    let (mut child, port) = start_schedule(&minio, &source, &["--cron", "*/4 * * * * *", "--verify-delay", "1s", "--grace-period", "30s"], &[]);

    let health = eventually("/healthz", Duration::from_secs(30), &mut child, async || get(port, "/healthz")).await;
    assert_eq!((health.0, health.1.trim()), (200, "ok"));

    // Two backups and their verifications, all recorded in the store.
    let names = eventually("two verified backups", Duration::from_secs(120), &mut child, async || {
        let keys = minio.keys().await;
        let verified: Vec<String> = keys.iter().filter_map(|k| k.strip_prefix("sched/")?.strip_suffix(".verify.json").map(str::to_string)).collect();
        (verified.len() >= 2).then_some(verified)
    })
    .await;
    let keys = minio.keys().await;
    for name in &names {
        for suffix in ["tar.gz", "manifest.json"] {
            assert!(keys.contains(&format!("sched/{name}.{suffix}")), "{name}.{suffix} in {keys:?}");
        }
        let report = minio.client().get_object().bucket(BUCKET).key(format!("sched/{name}.verify.json")).send().await.unwrap();
        let report: serde_json::Value = serde_json::from_slice(&report.body.collect().await.unwrap().into_bytes()).unwrap();
        assert_eq!(report["status"], "passed", "{report}");
        assert!(report["live"].is_object(), "verified against the live database: {report}");
    }

    // The metrics agree (a verification may finish just after its .verify.json appears).
    let metrics = eventually("metrics of two verified runs", Duration::from_secs(30), &mut child, async || {
        let (status, body) = get(port, "/metrics")?;
        assert_eq!(status, 200);
        (sample(&body, r#"ingest_backup_runs_total{operation="verify",outcome="success"}"#)? >= 2.0).then_some(body)
    })
    .await;
    assert!(sample(&metrics, r#"ingest_backup_runs_total{operation="backup",outcome="success"}"#).unwrap() >= 2.0, "{metrics}");
    for operation in ["backup", "verify"] {
        let last = sample(&metrics, &format!(r#"ingest_backup_last_success_timestamp_seconds{{operation="{operation}"}}"#)).unwrap();
        assert!(last > 1_600_000_000.0, "{operation}: {metrics}");
        assert!(sample(&metrics, &format!(r#"ingest_backup_last_duration_seconds{{operation="{operation}"}}"#)).is_some(), "{metrics}");
    }
    assert!(sample(&metrics, "ingest_backup_last_backup_archive_bytes").unwrap() > 0.0, "{metrics}");
    assert_eq!(sample(&metrics, "ingest_backup_last_backup_documents"), Some(200.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"ingest_backup_runs_total{operation="backup",outcome="failure"}"#), Some(0.0), "{metrics}");
    assert!(!metrics.contains("ingest_backup_failures_total{"), "{metrics}");

    terminate(&child);
    let (output, _) = wait_exit(child, Duration::from_secs(90));
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(0), "a clean stop: {text}");
    assert!(!text.contains(SECRET_KEY), "the secret key was printed");
    assert_eq!(minio.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_are_pruned_by_the_retention_policy_and_counted_in_metrics() {
    let Some(binary) = minio::binary_or_skip("scheduled_backups_are_pruned_by_the_retention_policy_and_counted_in_metrics") else { return };
    let minio = Minio::start(binary).await;
    let source = source_with_orders().await;
    let extra = ["--cron", "*/3 * * * * *", "--verify-delay", "0s", "--verify-archive-only", "--grace-period", "30s", "--prune", "--keep-last", "1"];
    let (mut child, port) = start_schedule(&minio, &source, &extra, &[]);

    let metrics = eventually("a prune that removed a backup", Duration::from_secs(120), &mut child, async || {
        let (_, body) = get(port, "/metrics")?;
        (sample(&body, "ingest_backup_prune_removed_backups_total")? >= 1.0).then_some(body)
    })
    .await;
    // keep-last 1, the newest complete and the newest verified: one or two backups.
    let kept = sample(&metrics, "ingest_backup_prune_kept_backups").unwrap();
    assert!((1.0..=2.0).contains(&kept), "{metrics}");
    assert!(sample(&metrics, "ingest_backup_prune_kept_bytes").unwrap() > 0.0, "{metrics}");
    assert!(sample(&metrics, "ingest_backup_prune_removed_bytes_total").unwrap() > 0.0, "{metrics}");

    terminate(&child);
    let (output, _) = wait_exit(child, Duration::from_secs(90));
    assert_eq!(output.status.code(), Some(0), "{}", common::all_output(&output));
    let keys = minio.keys().await;
    let archives = keys.iter().filter(|k| k.ends_with(".tar.gz")).count();
    assert!((1..=3).contains(&archives), "the policy bounds the store (a backup may have finished after the last prune): {keys:?}");
    assert!(!keys.iter().any(|k| k.contains("/locks/")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_ticks_are_skipped_and_sigterm_aborts_the_run_after_the_grace_period() {
    let test = "overlapping_ticks_are_skipped_and_sigterm_aborts_the_run_after_the_grace_period";
    let Some(binary) = minio::binary_or_skip(test) else { return };
    let minio = Minio::start(binary).await;
    // Enough data, uncompressed, in 5 MiB parts, that the paused backup has a multipart
    // upload open (as in tests/s3.rs).
    let source = source_with_orders().await;
    let spec = sample::SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 5 };
    sample::load(&source.client().await, &spec).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let hook = format!("before-oplog-end:{}", work.path().join("release").display());
    let (mut child, port) = start_schedule(
        &minio,
        &source,
        &["--cron", "*/2 * * * * *", "--verify-delay", "1s", "--grace-period", "1s", "--level", "0", "--part-size-mb", "5"],
        &[("INGEST_BACKUP_TEST_PAUSE", &hook)],
    );
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);

    // The first backup is held at the hook; the next ticks find it in progress.
    let skipped = eventually("a skipped tick", Duration::from_secs(60), &mut child, async || {
        let (_, body) = get(port, "/metrics")?;
        sample(&body, "ingest_backup_skipped_ticks_total").filter(|skipped| *skipped >= 1.0)
    })
    .await;
    assert!(skipped >= 1.0);
    let (_, body) = get(port, "/metrics").unwrap();
    assert_eq!(sample(&body, r#"ingest_backup_runs_total{operation="backup",outcome="success"}"#), Some(0.0), "{body}");

    assert_eq!(minio.open_uploads().await, 1, "the paused backup is uploading");

    // SIGTERM while the run is paused: it outlives the 1 s grace period and is aborted.
    terminate(&child);
    let (output, elapsed) = wait_exit(child, Duration::from_secs(60));
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(1), "a run had to be aborted: {text}");
    assert!(elapsed < Duration::from_secs(20), "exited {elapsed:?} after SIGTERM with a 1 s grace period: {text}");
    assert!(text.contains("Tick skipped"), "the skip is logged: {text}");
    assert!(text.contains("grace period is over"), "{text}");
    assert!(!text.contains(SECRET_KEY), "the secret key was printed");
    assert_eq!(minio.open_uploads().await, 0, "no multipart upload left behind: {text}");
    let keys = minio.keys().await;
    assert!(!keys.iter().any(|k| k.ends_with(".tar.gz") || k.ends_with(".manifest.json")), "no new backup: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_on_start_backs_up_at_once_and_healthcheck_asks_healthz() {
    let Some(binary) = minio::binary_or_skip("run_on_start_backs_up_at_once_and_healthcheck_asks_healthz") else { return };
    let minio = Minio::start(binary).await;
    let source = source_with_orders().await;
    // A yearly schedule: only RUN_ON_START can make a backup during this test.
    let (mut child, port) = start_schedule(&minio, &source, &["--cron", "0 0 1 1 *", "--verify-delay", "1s"], &[("RUN_ON_START", "true")]);
    let listen = format!("127.0.0.1:{port}");
    eventually("/healthz", Duration::from_secs(30), &mut child, async || get(port, "/healthz")).await;

    // The container healthcheck: the binary asks /healthz and exits 0 while it answers ok.
    let output = common::run(&["healthcheck", "--listen", &listen]);
    assert_eq!(output.status.code(), Some(0), "{}", common::all_output(&output));
    let output = common::run_with_env(&["healthcheck"], &[("LISTEN_ADDR".into(), format!("0.0.0.0:{port}"))]);
    assert_eq!(output.status.code(), Some(0), "0.0.0.0 is asked on the loopback address: {}", common::all_output(&output));

    let name = eventually("the backup made at start, verified", Duration::from_secs(120), &mut child, async || {
        let keys = minio.keys().await;
        keys.iter().find_map(|k| k.strip_prefix("sched/")?.strip_suffix(".verify.json").map(str::to_string))
    })
    .await;
    assert!(minio.keys().await.contains(&format!("sched/{name}.tar.gz")));

    terminate(&child);
    let (output, _) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", common::all_output(&output));
    // Nothing listens any more: unhealthy, exit 1.
    let output = common::run(&["healthcheck", "--listen", &listen]);
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("no answer"), "{}", common::all_output(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn oplog_every_takes_slices_that_make_the_newest_writes_restorable() {
    let Some(binary) = minio::binary_or_skip("oplog_every_takes_slices_that_make_the_newest_writes_restorable") else { return };
    let minio = Minio::start(binary).await;
    let source = source_with_orders().await;
    // One backup now (the chain's base), no other tick; a slice every second.
    let extra = ["--cron", "0 0 1 1 *", "--run-now", "--verify-delay", "1h", "--grace-period", "10s", "--oplog-every", "1s"];
    let (mut child, port) = start_schedule(&minio, &source, &extra, &[]);
    eventually("the first backup", Duration::from_secs(60), &mut child, async || {
        let (_, body) = get(port, "/metrics")?;
        (sample(&body, r#"ingest_backup_runs_total{operation="backup",outcome="success"}"#)? >= 1.0).then_some(())
    })
    .await;

    let client = source.client().await;
    let orders = client.database("shop").collection::<bson::Document>("orders");
    orders.insert_one(doc! { "_id": "after-the-backup", "sku": "late" }).await.unwrap();
    orders.update_one(doc! { "_id": 3 }, doc! { "$set": { "qty": 700 } }).await.unwrap();
    let oplog = client.database("local").collection::<bson::Document>("oplog.rs");
    let newest = oplog.find_one(doc! {}).sort(doc! { "$natural": -1 }).await.unwrap().unwrap();
    let written = newest.get_timestamp("ts").unwrap();
    let expected = common::documents_by_id(&client, "shop", "orders").await;

    let metrics = eventually("a slice reaching the writes", Duration::from_secs(60), &mut child, async || {
        let (_, body) = get(port, "/metrics")?;
        (sample(&body, "ingest_backup_pitr_newest_restorable_timestamp_seconds")? >= f64::from(written.time)).then_some(body)
    })
    .await;
    assert!(sample(&metrics, "ingest_backup_pitr_slices_total").unwrap() >= 1.0, "{metrics}");
    let lag = sample(&metrics, "ingest_backup_pitr_slice_lag_seconds").expect("the slice lag is exported");
    assert!((0.0..600.0).contains(&lag), "{metrics}");
    assert_eq!(sample(&metrics, r#"ingest_backup_runs_total{operation="oplog",outcome="failure"}"#), None, "{metrics}");
    terminate(&child);
    let (output, _) = wait_exit(child, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", common::all_output(&output));

    // The slices are in the bucket; a restore to the writes' time gives them back.
    let keys = minio.keys().await;
    assert!(keys.iter().any(|k| k.starts_with("sched/oplog/") && k.ends_with(".bson.gz")), "{keys:?}");
    let target = Server::start();
    let store = format!("s3://{BUCKET}/sched");
    let time = format!("{}.{}", written.time, written.increment);
    let output = common::run_with_env(&["restore", "--to-time", &time, "--uri", &target.uri(), "--store", &store], &minio.env());
    assert!(output.status.success(), "{}", common::all_output(&output));
    assert_eq!(common::documents_by_id(&target.client().await, "shop", "orders").await, expected, "the state at the writes");
}
