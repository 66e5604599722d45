//! The `ingest-backup` binary: parse flags, run one command, report, exit with
//! 0 (success), 1 (the operation failed) or 2 (bad usage or configuration).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use ingest_backup::backup::{run_backup_with_progress, BackupProgress, BackupReport};
use ingest_backup::cli::{
    BackupArgs, Cli, Command, HealthcheckArgs, ListArgs, OplogArgs, PruneArgs, RestoreArgs, SampleDataArgs, ScheduleArgs, StoreArg, VerifyArgs,
};
use ingest_backup::manifest::Manifest;
use ingest_backup::notify::{Event, Operation};
use ingest_backup::pitr;
use ingest_backup::progress;
use ingest_backup::prune;
use ingest_backup::restore::{self, RestoreReport};
use ingest_backup::sample::{self, SampleSpec};
use ingest_backup::schedule;
use ingest_backup::verify;
use ingest_backup::{source, store, Error, Result};

/// Runs the process with glibc's malloc limited to two arenas (`MALLOC_ARENA_MAX=2`)
/// unless the environment already sets a limit, by executing itself again with the
/// variable set (the same PID, arguments and environment otherwise; glibc only reads
/// it at start-up). A backup allocates megabyte buffers (cursor batches, compression
/// blocks, upload parts) on whichever runtime, blocking or compression thread is
/// running; glibc's default gives busy threads arenas of their own, up to eight per
/// core, each keeping its freed megabytes. Measured on a 300 MiB backup: 260 MiB peak
/// RSS with the default, 146 MiB with two arenas (BENCHMARKS.md, section 6). If the
/// executable cannot be run again, the process carries on with glibc's default.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let Ok(executable) = std::env::current_exe() else { return };
        let mut arguments = std::env::args_os();
        let argument_zero = arguments.next().unwrap_or_else(|| executable.clone().into_os_string());
        // `exec` returns only if it failed.
        let _ = std::process::Command::new(executable).arg0(argument_zero).args(arguments).env("MALLOC_ARENA_MAX", "2").exec();
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    progress::configure(progress::ProgressSettings { quiet: cli.quiet, interval: cli.progress_interval });
    let default_level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        // Log lines are written around a live progress display, not through it.
        .with_writer(progress::StderrAroundProgress)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_target(false)
        // Colour codes only for a person at a terminal: a pipe, a file or a container
        // log collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let cancel = CancellationToken::new();
    runtime.spawn(cancel_on_signal(cancel.clone()));
    let json = match &cli.command {
        Command::Backup(args) => args.json,
        Command::List(args) => args.json,
        Command::Verify(args) => args.json,
        Command::Restore(args) => args.json,
        Command::Prune(args) => args.json,
        Command::Oplog(args) => args.json,
        Command::SampleData(_) | Command::Schedule(_) | Command::Healthcheck(_) => false,
    };
    let outcome = runtime.block_on(run(cli.command, cancel));
    match outcome {
        Ok(Outcome::Succeeded) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            if json {
                let mut document = json!({ "status": "error", "error": error.to_string(), "exit_code": error.exit_code() });
                if let Error::RestoreInterrupted { written, .. } = &error {
                    let written: serde_json::Map<String, serde_json::Value> = written.iter().map(|(ns, n)| (ns.clone(), json!(n))).collect();
                    document["written"] = serde_json::Value::Object(written);
                }
                println!("{document}");
            }
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

/// How a command that ran to the end came out.
enum Outcome {
    /// Exit 0.
    Succeeded,
    /// Exit 1: the command ran and reported its own failure (a failed verification).
    Failed,
}

async fn run(command: Command, cancel: CancellationToken) -> Result<Outcome> {
    let succeeded = |_| Outcome::Succeeded;
    match command {
        Command::Backup(args) => backup(&args, cancel).await.map(succeeded),
        Command::List(args) => list(&args).await.map(succeeded),
        Command::Verify(args) => verify(&args, cancel).await,
        Command::Restore(args) => restore(&args, cancel).await,
        Command::Prune(args) => prune(&args, cancel).await.map(succeeded),
        Command::Oplog(args) => oplog(&args, cancel).await.map(succeeded),
        Command::SampleData(args) => sample_data(&args).await.map(succeeded),
        Command::Schedule(args) => schedule(&args, cancel).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
    }
}

/// Cancels the run on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C); for
/// `schedule`, the token stops the scheduling and the run gets its grace period.
async fn cancel_on_signal(cancel: CancellationToken) {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM.");
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::warn!("SIGTERM received: stopping."),
        _ = tokio::signal::ctrl_c() => tracing::warn!("SIGINT received: stopping."),
    }
    cancel.cancel();
}

/// The store as alerts show it, even when it is misconfigured.
fn store_display(store: &StoreArg) -> String {
    store.location().map_or_else(|_| "(not configured)".to_string(), |location| location.to_string())
}

async fn backup(args: &BackupArgs, cancel: CancellationToken) -> Result<()> {
    let notifier = args.flags.notify.notifier()?;
    let prune_options = args.flags.prune_options()?;
    let clock = std::time::Instant::now();
    let progress = BackupProgress::default();
    let result = async { run_backup_with_progress(&args.options()?, cancel.clone(), &progress).await }.await;
    let store = store_display(&args.flags.store);
    notifier.send(&Event::backup_ended(&result, &store, &progress.snapshot(), clock.elapsed().as_secs_f64())).await;
    let report = result?;
    print_backup_summary(&report);
    let pruned = match &prune_options {
        None => None,
        Some(options) => match prune::prune_after_backup(options, cancel).await {
            Ok(pruned) => pruned,
            Err(error) => {
                notifier.send(&Event::failed(Operation::Prune, store.clone(), &error)).await;
                return Err(error);
            }
        },
    };
    if let Some(pruned) = &pruned {
        eprint!("{}", prune::render(pruned));
    }
    if args.json {
        let mut document = backup_json(&report, &store);
        if let Some(pruned) = pruned {
            document["prune"] = serde_json::to_value(pruned).expect("a prune report always serializes");
        }
        println!("{document}");
    }
    Ok(())
}

async fn oplog(args: &OplogArgs, cancel: CancellationToken) -> Result<()> {
    let notifier = args.notify.notifier()?;
    let result = async { pitr::slice_job::run_oplog_slice(&args.options()?, cancel).await }.await;
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            notifier.send(&Event::failed(Operation::Oplog, store_display(&args.store), &error)).await;
            return Err(error);
        }
    };
    match &report.slice {
        Some(slice) => eprintln!(
            "oplog slice {} written: {} entries, {} bytes of BSON ({} stored), {} .. {}, chained from backup {}",
            slice.file, slice.entries, slice.bytes, slice.stored_bytes, slice.start_time, slice.end_time, slice.base_backup
        ),
        None => eprintln!(
            "no oplog entry since {} (chain of backup {}): nothing written",
            report.start.map(pitr::timestamp_label).unwrap_or_default(),
            report.base_backup.as_deref().unwrap_or_default()
        ),
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("a slice report always serializes"));
    }
    Ok(())
}

async fn verify_pitr(args: &VerifyArgs, range: &str) -> Result<Outcome> {
    let (from, to) = pitr::check::parse_range(range)?;
    let (location, s3) = args.store.resolve()?;
    let store = store::open_with(&location, s3).await?;
    let check = pitr::check::check_pitr(&store, from, to, args.identity.resolve()?).await?;
    for chain in &check.chains {
        eprintln!("PITR: {} ({} slices)", chain.describe(), chain.slices.len());
    }
    for finding in &check.findings {
        eprintln!("PROBLEM: {finding}");
    }
    eprintln!("{} oplog slices checked: {}", check.slices_checked, if check.passed() { "passed" } else { "FAILED" });
    if args.json {
        println!("{}", serde_json::to_string(&check).expect("a check always serializes"));
    }
    Ok(if check.passed() { Outcome::Succeeded } else { Outcome::Failed })
}

async fn prune(args: &PruneArgs, cancel: CancellationToken) -> Result<()> {
    let notifier = args.notify.notifier()?;
    let result = async { prune::run_prune(&args.options()?, cancel).await }.await;
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            notifier.send(&Event::failed(Operation::Prune, store_display(&args.store), &error)).await;
            return Err(error);
        }
    };
    if args.json {
        eprint!("{}", prune::render(&report));
        println!("{}", serde_json::to_string(&report).expect("a prune report always serializes"));
    } else {
        print!("{}", prune::render(&report));
    }
    Ok(())
}

fn print_backup_summary(report: &BackupReport) {
    let manifest = &report.manifest;
    eprintln!(
        "backup {} complete: {} namespaces, {} documents, {:.1} MiB of BSON in {:.1}s -> {}",
        manifest.name,
        manifest.totals.namespaces,
        manifest.totals.documents,
        manifest.totals.bytes as f64 / (1 << 20) as f64,
        report.duration_seconds,
        report.archive
    );
    if let Some(encryption) = &manifest.encryption {
        eprintln!("encrypted with age to {}", encryption.recipients.join(", "));
    }
    match (&manifest.consistency.oplog, &manifest.consistency.end) {
        (true, Some(end)) => eprintln!(
            "consistent at oplog timestamp {}:{} ({} oplog entries captured; restore with mongorestore --oplogReplay)",
            end.t, end.i, manifest.consistency.oplog_entries
        ),
        _ => eprintln!("no oplog captured: {}", manifest.consistency.reason.as_deref().unwrap_or("the server has no oplog")),
    }
}

fn backup_json(report: &BackupReport, store: &str) -> serde_json::Value {
    let manifest = &report.manifest;
    let archive = manifest.archive.as_ref();
    json!({
        "status": "ok",
        "name": manifest.name,
        "store": store,
        "archive": report.archive,
        "sidecar": report.sidecar,
        "compression": manifest.compression,
        "namespaces": manifest.totals.namespaces,
        "documents": manifest.totals.documents,
        "bytes": manifest.totals.bytes,
        "archive_bytes": archive.map(|a| a.size),
        "archive_sha256": archive.map(|a| a.sha256.clone()),
        "duration_seconds": report.duration_seconds,
        "peak_spool_disk_bytes": report.peak_spool_disk_bytes,
        "oplog": manifest.consistency.oplog,
        "consistency": manifest.consistency,
        "encrypted": manifest.encryption.is_some(),
        "recipients": manifest.encryption.as_ref().map(|e| e.recipients.clone()),
    })
}

async fn verify(args: &VerifyArgs, cancel: CancellationToken) -> Result<Outcome> {
    if let Some(range) = &args.pitr {
        return verify_pitr(args, range).await;
    }
    let notifier = args.notify.notifier()?;
    let result = async { verify::run_verify(&args.options()?, cancel).await }.await;
    notifier.send(&Event::verify_ended(&result, &store_display(&args.store), &args.backup)).await;
    let report = result?;
    eprint!("{}", verify::report::render(&report));
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("a report always serializes"));
    }
    Ok(if report.passed() { Outcome::Succeeded } else { Outcome::Failed })
}

async fn restore(args: &RestoreArgs, cancel: CancellationToken) -> Result<Outcome> {
    let options = args.options()?;
    let report = restore::run_restore(&options, cancel).await?;
    print_restore_summary(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("a report always serializes"));
    }
    Ok(if report.passed() { Outcome::Succeeded } else { Outcome::Failed })
}

fn print_restore_summary(report: &RestoreReport) {
    for namespace in &report.namespaces {
        eprintln!(
            "restored {} -> {}: {} of {} documents, {} indexes, checksum {}",
            namespace.source, namespace.target, namespace.inserted, namespace.documents, namespace.indexes, namespace.checksum
        );
    }
    if let Some(merged) = &report.users_and_roles {
        eprintln!("users and roles restored with {}: {} users, {} roles", merged.method, merged.users, merged.roles);
    }
    if let Some(oplog) = &report.oplog {
        let reached = oplog.reached.map_or("-".to_string(), |t| format!("{}:{}", t.t, t.i));
        eprintln!("oplog replayed: {} entries applied, {} skipped, reached {reached}", oplog.applied, oplog.skipped);
    }
    if let (Some(slices), Some(target)) = (&report.pitr, report.to_time) {
        let reached = slices.reached.map_or("-".to_string(), |t| format!("{}:{}", t.t, t.i));
        eprintln!(
            "oplog slices replayed to {} ({}): {} entries applied, {} skipped, reached {reached}",
            pitr::timestamp_label(target),
            pitr::wall_time(target).to_rfc3339(),
            slices.applied,
            slices.skipped
        );
    }
    for file in &report.unread_files {
        eprintln!("not restored: {file}");
    }
    for problem in &report.problems {
        eprintln!("PROBLEM: {problem}");
    }
    eprintln!(
        "restore of {} {} in {:.1}s: {} documents",
        report.name,
        if report.passed() { "complete" } else { "FINISHED WITH PROBLEMS" },
        report.duration_seconds,
        report.documents
    );
}

/// The list column for a backup's latest verification.
fn verification_summary(recorded: Option<&[u8]>) -> Option<serde_json::Value> {
    let report: serde_json::Value = serde_json::from_slice(recorded?).ok()?;
    Some(
        json!({ "status": report["status"], "verified_at": report["verified_at"], "errors": report["findings"].as_array().map(|f| f.iter().filter(|f| f["severity"] == "error").count()) }),
    )
}

async fn list(args: &ListArgs) -> Result<()> {
    let location = args.store.location()?;
    let store = store::open(&location, || args.store.s3_settings()).await?;
    let backups = store.list().await?;
    let mut chains = pitr::chains(&pitr::bases(&backups), &pitr::list_slices(&store).await?);
    chains.retain(|chain| !chain.slices.is_empty());
    let ranges: Vec<serde_json::Value> = chains
        .iter()
        .map(|chain| {
            json!({
                "base": chain.base, "from": pitr::timestamp_label(chain.from), "to": pitr::timestamp_label(chain.to),
                "from_time": pitr::wall_time(chain.from).to_rfc3339(), "to_time": pitr::wall_time(chain.to).to_rfc3339(),
                "slices": chain.slices.len(), "broken_at": chain.broken_at,
            })
        })
        .collect();
    let uploads = store.objects().list_multipart_uploads("").await?;
    let stale: Vec<serde_json::Value> = prune::stale_uploads(&uploads, chrono::Utc::now(), args.stale_after)
        .into_iter()
        .map(|upload| json!({ "key": upload.key, "initiated": upload.initiated.map(|t| t.to_rfc3339()) }))
        .collect();
    let mut rows = Vec::new();
    for backup in backups {
        let manifest = backup.sidecar.as_deref().and_then(|bytes| serde_json::from_slice::<Manifest>(bytes).ok());
        let duration = manifest.as_ref().and_then(|m| {
            let start = chrono::DateTime::parse_from_rfc3339(&m.started_at).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(&m.finished_at).ok()?;
            Some((end - start).num_milliseconds() as f64 / 1000.0)
        });
        rows.push(json!({
            "name": backup.name,
            "archive": backup.archive,
            "size": backup.size,
            "complete": manifest.is_some(),
            "documents": manifest.as_ref().map(|m| m.totals.documents),
            "duration_seconds": duration,
            "compression": manifest.as_ref().map(|m| m.compression.clone()),
            "encrypted": manifest.as_ref().map_or(ingest_backup::crypto::is_encrypted(&backup.archive), |m| m.encryption.is_some()),
            "recipients": manifest.as_ref().and_then(|m| m.encryption.as_ref()).map(|e| e.recipients.clone()),
            "verification": verification_summary(backup.verification.as_deref()),
        }));
    }
    if args.json {
        println!("{}", json!({ "store": location.to_string(), "backups": rows, "pitr": ranges, "stale_uploads": stale }));
        return Ok(());
    }
    for upload in &stale {
        eprintln!(
            "WARNING: {} is an upload open since {} (older than {}): its backup died; `ingest-backup prune` aborts it",
            upload["key"].as_str().unwrap_or(""),
            upload["initiated"].as_str().unwrap_or("?"),
            humantime::format_duration(args.stale_after)
        );
    }
    println!("{:<24} {:>12} {:>12} {:>9} {:<6} {:<36} STATUS", "NAME", "SIZE", "DOCUMENTS", "SECONDS", "COMPR", "VERIFIED");
    for row in &rows {
        let complete = row["complete"].as_bool().unwrap_or(false);
        let verified = match &row["verification"] {
            serde_json::Value::Null => "never".to_string(),
            v => format!("{} {}", v["status"].as_str().unwrap_or("?"), v["verified_at"].as_str().unwrap_or("")),
        };
        println!(
            "{:<24} {:>12} {:>12} {:>9} {:<6} {:<36} {}",
            row["name"].as_str().unwrap_or(""),
            row["size"],
            row["documents"].as_u64().map_or("-".into(), |d| d.to_string()),
            row["duration_seconds"].as_f64().map_or("-".into(), |d| format!("{d:.1}")),
            row["compression"].as_str().unwrap_or("-"),
            verified,
            if complete { "complete" } else { "INCOMPLETE (no sidecar manifest)" }
        );
        if row["encrypted"].as_bool() == Some(true) {
            let recipients: Vec<&str> = row["recipients"].as_array().map_or(Vec::new(), |r| r.iter().filter_map(|k| k.as_str()).collect());
            println!("  encrypted (age) to {}", if recipients.is_empty() { "unknown recipients".to_string() } else { recipients.join(", ") });
        }
    }
    for chain in &chains {
        println!(
            "PITR: {} - {} (backup {} + {} oplog slices){}",
            pitr::wall_time(chain.from).to_rfc3339(),
            pitr::wall_time(chain.to).to_rfc3339(),
            chain.base,
            chain.slices.len(),
            chain.broken_at.as_ref().map_or(String::new(), |slice| format!("; GAP: {slice} does not continue it"))
        );
    }
    Ok(())
}

async fn schedule(args: &ScheduleArgs, stop: CancellationToken) -> Result<Outcome> {
    Ok(match schedule::run_schedule(args.options()?, stop).await? {
        schedule::Stopped::Clean => Outcome::Succeeded,
        schedule::Stopped::AbortedRun => Outcome::Failed,
    })
}

/// GET /healthz of a running `schedule`: exit 0 on 200, 1 otherwise (the reason on stderr).
async fn healthcheck(args: &HealthcheckArgs) -> Result<Outcome> {
    let url = args.url()?;
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|error| Error::Store { message: format!("cannot build an HTTP client: {error}"), retryable: false })?;
    match client.get(&url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            eprintln!("{url}: healthy");
            Ok(Outcome::Succeeded)
        }
        Ok(response) => {
            eprintln!("{url}: unhealthy (HTTP {})", response.status().as_u16());
            Ok(Outcome::Failed)
        }
        Err(error) => {
            eprintln!("{url}: no answer ({error}); is `ingest-backup schedule` running and listening there (LISTEN_ADDR)?");
            Ok(Outcome::Failed)
        }
    }
}

async fn sample_data(args: &SampleDataArgs) -> Result<()> {
    if args.database.is_empty() || args.database.contains(['.', '/', ' ', '$']) {
        return Err(Error::usage(format!("--database {:?} is not a valid database name", args.database)));
    }
    if args.size_mb == 0 {
        eprintln!("--size-mb 0: no sample data loaded");
        return Ok(());
    }
    let source = source::connect(&args.uri.uri).await?;
    if args.if_empty {
        let names = source.client.list_database_names().await.map_err(Error::mongo("listing the databases"))?;
        if let Some(existing) = names.iter().find(|name| !matches!(name.as_str(), "admin" | "config" | "local")) {
            eprintln!("the server already holds database {existing:?}: no sample data loaded (--if-empty)");
            return Ok(());
        }
    }
    let spec = SampleSpec { database: args.database.clone(), target_bytes: args.size_mb << 20, seed: args.seed };
    let summary = sample::load_for(&source.client, &spec, args.compat).await?;
    eprintln!("loaded {} sample documents ({:.1} MiB) into database {}", summary.documents, summary.bytes as f64 / (1 << 20) as f64, spec.database);
    Ok(())
}
