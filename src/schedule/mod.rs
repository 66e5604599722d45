//! `ingest-backup schedule`: the long-running mode for hosts without Kubernetes (the
//! docker-compose stack). It does what the Helm chart's two CronJobs do, in one process:
//! a backup on every cron tick, then, after a delay, `verify <name>` of that backup
//! against the same server; with `--oplog-every`, a point-in-time oplog slice at each
//! interval (the Helm chart's third CronJob); alerts as the one-shot commands send them;
//! `/healthz` and `/metrics` for whoever watches it.
//!
//! Two tokens shape a stop. `stop` (SIGTERM/SIGINT, from `main`) ends the scheduling:
//! no new run starts and a pending verification delay is cut short. `abort` is handed to
//! the run itself and is only cancelled when the run outlives the grace period, which
//! makes a backup abort its multipart upload or remove its partial file, as the one-shot
//! `backup` does on a signal. Runs never overlap (the Helm CronJob's
//! `concurrencyPolicy: Forbid`): a tick that finds a run in progress is skipped.

pub mod cron;
pub mod http;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backup::BackupOptions;
use crate::error::{Error, Result};
use crate::jobs::{self, Context, EventRecorder, EventSink, Render};
use crate::notify::{Event, Notifier};
use crate::verify::VerifyOptions;

use self::cron::CronSchedule;
use self::metrics::Metrics;

/// The longest the loop sleeps before it looks at the wall clock again, so a suspended
/// host or a clock step is noticed within this time.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How many missed ticks are walked one by one before the count becomes a lower bound.
const MISSED_LIMIT: usize = 1000;

/// Everything `schedule` needs, validated.
#[derive(Debug)]
pub struct ScheduleOptions {
    /// When to back up.
    pub cron: CronSchedule,
    /// Oplog slices between backups (`--oplog-every`), if any.
    pub oplog: Option<OplogSchedule>,
    /// The prune after each successful backup (`--prune`).
    pub prune: Option<crate::prune::PruneOptions>,
    /// What each backup is (the `backup` command's options).
    pub backup: BackupOptions,
    /// How each verification runs; its `backup` is replaced by the name of the backup just made.
    pub verify: VerifyOptions,
    /// Time between a backup's end and its verification.
    pub verify_delay: Duration,
    /// How long a run may go on after a stop is requested before it is aborted.
    pub grace_period: Duration,
    /// Where `/healthz` and `/metrics` are served.
    pub listen: SocketAddr,
    /// Where alerts go (and the heartbeat, on success).
    pub notifier: Notifier,
    /// Start a backup at once, before the first tick.
    pub run_now: bool,
}

/// `--oplog-every`: point-in-time slices taken beside the backups.
#[derive(Debug, Clone)]
pub struct OplogSchedule {
    /// Time between the start of one slice and the next.
    pub every: Duration,
    /// What each slice is.
    pub slice: crate::pitr::slice_job::SliceOptions,
}

/// How the scheduler stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// No run was in progress, or it finished within the grace period (exit 0).
    Clean,
    /// A run outlived the grace period and was aborted (exit 1).
    AbortedRun,
}

impl Render for Stopped {
    fn text(&self) -> String {
        String::new()
    }

    fn succeeded(&self) -> bool {
        *self == Stopped::Clean
    }
}

impl EventRecorder for Metrics {
    fn record(&self, event: &Event) {
        Metrics::record(self, event, Utc::now());
    }
}

/// What to do with a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickDecision {
    /// Start a run.
    Run,
    /// Skip it: a run (a backup, or its pending or running verification) is in progress.
    SkipBusy,
}

/// The overlap rule: a tick starts a run only when none is in progress.
pub fn decide(run_in_progress: bool) -> TickDecision {
    if run_in_progress {
        TickDecision::SkipBusy
    } else {
        TickDecision::Run
    }
}

/// Runs the scheduler until `stop` is cancelled, serving HTTP on `options.listen`.
///
/// # Errors
/// A usage error when the listen address cannot be bound. Runs that fail are alerted,
/// counted and logged; they never end the scheduler.
pub async fn run_schedule(options: ScheduleOptions, stop: CancellationToken) -> Result<Stopped> {
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|error| {
        Error::usage(format!("--listen / LISTEN_ADDR {}: cannot listen there ({error}); choose a free address, e.g. 0.0.0.0:9090", options.listen))
    })?;
    let metrics = Arc::new(Metrics::new());
    let alive = Arc::new(AtomicBool::new(true));
    let http_shutdown = CancellationToken::new();
    let probe = http::Probe { alive: alive.clone(), metrics: metrics.clone() };
    let server = tokio::spawn(http::serve(listener, probe, http_shutdown.clone()));
    info!(
        cron = options.cron.as_str(),
        verify_delay = %humantime::format_duration(options.verify_delay),
        listen = %options.listen,
        store = %options.backup.store,
        "Scheduler started (times in UTC)."
    );

    let ScheduleOptions { cron, oplog, backup, prune, verify, verify_delay, grace_period, notifier, run_now, .. } = options;
    let abort = CancellationToken::new();
    let context = Context { events: EventSink::logged(notifier, metrics.clone()), store: backup.store.to_string(), cancel: abort.clone() };
    let slicer = oplog.map(|oplog| {
        let slicer = OplogSlicer { oplog, context: context.clone(), metrics: metrics.clone() };
        tokio::spawn(slicer.run(stop.clone()))
    });
    let runner = Runner { context, backup, prune, verify, verify_delay, metrics: metrics.clone() };
    // The run in progress, polled beside the clock by this task (the verification's
    // future is not `Send`, and one task is all a never-overlapping run needs).
    let mut current: Option<Pin<Box<dyn Future<Output = ()> + '_>>> = None;
    let mut last = Utc::now();
    if run_now {
        info!("Running a backup now (--run-now / RUN_ON_START), then on the schedule.");
        current = Some(Box::pin(runner.run(last, stop.clone())));
    }
    loop {
        let Some(next) = cron.next_after(last) else {
            warn!(cron = cron.as_str(), "The schedule has no further tick: nothing more will run.");
            while let Some(run) = current.as_mut() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = run => current = None,
                }
            }
            stop.cancelled().await;
            break;
        };
        metrics.next_tick(next);
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP);
        let run_finished = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => false,
            _ = async { current.as_mut().expect("guarded").await }, if current.is_some() => true,
        };
        if run_finished {
            current = None;
            continue;
        }
        let due = cron.due(last, Utc::now(), MISSED_LIMIT);
        let Some(tick) = due.fire else { continue };
        last = tick;
        if due.missed > 0 {
            let first = due.first_missed.map(|t| t.to_rfc3339()).unwrap_or_default();
            warn!(missed = due.missed, first = %first, tick = %tick.to_rfc3339(), "Ticks passed while the process was asleep or stalled; running once for the latest.");
            metrics.missed_ticks(due.missed);
        }
        match decide(current.is_some()) {
            TickDecision::SkipBusy => {
                warn!(tick = %tick.to_rfc3339(), "Tick skipped: the previous run (backup or its verification) is still in progress.");
                metrics.skipped_tick();
            }
            TickDecision::Run => current = Some(Box::pin(runner.run(tick, stop.clone()))),
        }
    }

    alive.store(false, Ordering::SeqCst);
    let stopped = stop_within_grace(current, slicer, grace_period, &abort).await;
    http_shutdown.cancel();
    let _ = server.await;
    Ok(stopped)
}

/// After a stop: the run in progress (and the slice in progress) may finish within
/// `grace_period`; after it they are aborted, which cleans up as a signal does.
async fn stop_within_grace(
    current: Option<Pin<Box<dyn Future<Output = ()> + '_>>>,
    slicer: Option<tokio::task::JoinHandle<()>>,
    grace_period: Duration,
    abort: &CancellationToken,
) -> Stopped {
    let stopped = match current {
        None => {
            info!("Stopped: no run was in progress.");
            Stopped::Clean
        }
        Some(mut run) => {
            info!(grace_period = %humantime::format_duration(grace_period), "Stop requested: waiting for the current run to finish.");
            match tokio::time::timeout(grace_period, &mut run).await {
                Ok(()) => {
                    info!("Stopped: the current run finished within the grace period.");
                    Stopped::Clean
                }
                Err(_) => {
                    warn!("The grace period is over: aborting the current run.");
                    abort.cancel();
                    run.await;
                    Stopped::AbortedRun
                }
            }
        }
    };
    if let Some(mut slicer) = slicer {
        // A slice in progress may finish within the grace period (none starts after
        // the stop); after it, it is aborted like a backup: nothing is left behind.
        if tokio::time::timeout(grace_period, &mut slicer).await.is_err() {
            warn!("The grace period is over: aborting the oplog slice in progress.");
            abort.cancel();
            let _ = slicer.await;
        }
    }
    stopped
}

/// The point-in-time loop of `--oplog-every`: a slice at each interval, independent of
/// the backups (a slice never waits for a backup, nor a backup for a slice).
#[derive(Debug)]
struct OplogSlicer {
    oplog: OplogSchedule,
    /// Its token is the abort token: cancelled only when the grace period is over.
    context: Context,
    metrics: Arc<Metrics>,
}

impl OplogSlicer {
    async fn run(self, stop: CancellationToken) {
        info!(every = %humantime::format_duration(self.oplog.every), "Point-in-time slices enabled.");
        let mut interval = tokio::time::interval(self.oplog.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            let clock = Instant::now();
            // A failure is logged, counted and alerted by the job.
            if let Ok(report) = jobs::oplog::slice(&self.context, &self.oplog.slice).await {
                if let Some(slice) = &report.slice {
                    info!(slice = %slice.file, entries = slice.entries, seconds = clock.elapsed().as_secs_f64(), "Oplog slice written.");
                    self.metrics.record_slice(slice);
                }
            }
        }
    }
}

/// One scheduled run: a backup (and its prune), then its verification.
#[derive(Debug)]
struct Runner {
    /// Its token is the abort token: cancelled only when the grace period is over.
    context: Context,
    backup: BackupOptions,
    prune: Option<crate::prune::PruneOptions>,
    verify: VerifyOptions,
    verify_delay: Duration,
    metrics: Arc<Metrics>,
}

impl Runner {
    async fn run(&self, tick: DateTime<Utc>, stop: CancellationToken) {
        info!(tick = %tick.to_rfc3339(), "Tick: starting a backup.");
        // Failures are logged, counted and alerted by the job.
        let Ok(outcome) = jobs::backup::backup_and_prune(&self.context, &self.backup, self.prune.as_ref()).await else { return };
        if let (Some(until), Ok(taken)) = (outcome.report.locked_until, outcome.report.backup.manifest.started_at.parse()) {
            self.metrics.record_locked_backup(taken, until);
        }
        if let Some(pruned) = &outcome.report.prune {
            self.metrics.record_prune(pruned);
            self.metrics.record_lock_extension(pruned);
        }
        let name = outcome.report.name;
        info!(backup = %name, delay = %humantime::format_duration(self.verify_delay), "Verification scheduled.");
        tokio::select! {
            _ = stop.cancelled() => {
                warn!(backup = %name, "Stopping before the verification started: run `ingest-backup verify {name}` later.");
                return;
            }
            _ = tokio::time::sleep(self.verify_delay) => {}
        }
        let options = VerifyOptions { backup: name, wait_for_running: Duration::ZERO, ..self.verify.clone() };
        let _ = jobs::verify::verify_backup(&self.context, &options).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_runs_only_when_nothing_is_in_progress() {
        assert_eq!(decide(false), TickDecision::Run);
        assert_eq!(decide(true), TickDecision::SkipBusy);
    }
}
