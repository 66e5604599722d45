//! The scheduler's Prometheus metrics, fed by the same [`Event`]s that become alerts,
//! so a failure counted here is exactly a failure someone was told about.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::notify::{Event, Operation, Outcome};

/// The content type of [`Metrics::render`] (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    operation: String,
    stage: String,
}

/// Counters and gauges of a `schedule` process. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    last_success: Family<OperationLabel, FloatGauge>,
    last_duration: Family<OperationLabel, FloatGauge>,
    last_backup_bytes: Gauge,
    last_backup_documents: Gauge,
    runs: Family<RunLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    skipped: Counter,
    missed: Counter,
    next_run: FloatGauge,
    kept_backups: Gauge,
    kept_bytes: Gauge,
    removed_backups: Counter,
    removed_bytes: Counter,
    newest_restorable: FloatGauge,
    slices: Counter,
    newest_locked_backup: FloatGauge,
    lock_retain_until: FloatGauge,
    lock_window: FloatGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `ingest_backup_` names the README lists.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            last_success: Family::default(),
            last_duration: Family::default(),
            last_backup_bytes: Gauge::default(),
            last_backup_documents: Gauge::default(),
            runs: Family::default(),
            failures: Family::default(),
            skipped: Counter::default(),
            missed: Counter::default(),
            next_run: FloatGauge::default(),
            kept_backups: Gauge::default(),
            kept_bytes: Gauge::default(),
            removed_backups: Counter::default(),
            removed_bytes: Counter::default(),
            newest_restorable: FloatGauge::default(),
            slices: Counter::default(),
            newest_locked_backup: FloatGauge::default(),
            lock_retain_until: FloatGauge::default(),
            lock_window: FloatGauge::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "ingest_backup_last_success_timestamp_seconds",
            "Unix time the last successful run of the operation ended",
            metrics.last_success.clone(),
        );
        registry.register("ingest_backup_last_duration_seconds", "Wall time of the last run of the operation", metrics.last_duration.clone());
        registry.register(
            "ingest_backup_last_backup_archive_bytes",
            "Size of the last successful backup's archive",
            metrics.last_backup_bytes.clone(),
        );
        registry.register("ingest_backup_last_backup_documents", "Documents in the last successful backup", metrics.last_backup_documents.clone());
        registry.register("ingest_backup_runs", "Runs by operation and outcome", metrics.runs.clone());
        registry.register("ingest_backup_failures", "Failed runs by operation and stage", metrics.failures.clone());
        registry.register("ingest_backup_skipped_ticks", "Ticks skipped because a run was still in progress", metrics.skipped.clone());
        registry.register("ingest_backup_missed_ticks", "Ticks that passed while the process was asleep or stalled", metrics.missed.clone());
        registry.register("ingest_backup_next_run_timestamp_seconds", "Unix time of the next scheduled tick", metrics.next_run.clone());
        registry.register("ingest_backup_prune_kept_backups", "Backups the last prune kept", metrics.kept_backups.clone());
        registry.register("ingest_backup_prune_kept_bytes", "Archive bytes of the backups the last prune kept", metrics.kept_bytes.clone());
        registry.register("ingest_backup_prune_removed_backups", "Backups removed by prunes", metrics.removed_backups.clone());
        registry.register("ingest_backup_prune_removed_bytes", "Archive bytes of the backups removed by prunes", metrics.removed_bytes.clone());
        registry.register(
            "ingest_backup_pitr_newest_restorable_timestamp_seconds",
            "Unix time of the newest point a restore --to-time can reach (the end of the newest oplog slice); 0 before the first",
            metrics.newest_restorable.clone(),
        );
        registry.register("ingest_backup_pitr_slices", "Oplog slices written", metrics.slices.clone());
        registry.register(
            "ingest_backup_newest_locked_backup_timestamp_seconds",
            "Unix time the newest backup written with an Object Lock was taken; 0 before the first",
            metrics.newest_locked_backup.clone(),
        );
        registry.register(
            "ingest_backup_lock_retain_until_timestamp_seconds",
            "Unix time until which the newest locked backup cannot be deleted (as written, or as the last prune extended it)",
            metrics.lock_retain_until.clone(),
        );
        registry.register(
            "ingest_backup_lock_window_seconds",
            "How long a new backup is locked (--lock-days or the retention policy's shortest window); 0 without --lock-mode",
            metrics.lock_window.clone(),
        );
        // Both outcomes of both operations exist from the start, so `increase()` and
        // absent-series alerts work before the first failure.
        for operation in [Operation::Backup, Operation::Verify] {
            for outcome in ["success", "failure"] {
                let _ = metrics.runs.get_or_create(&RunLabels { operation: operation.name().into(), outcome: outcome.into() });
            }
        }
        Metrics { registry, ..metrics }
    }

    /// Counts a finished run of `event.operation`, ended at `now`.
    pub fn record(&self, event: &Event, now: DateTime<Utc>) {
        let operation = event.operation.name().to_string();
        let by_operation = OperationLabel { operation: operation.clone() };
        let outcome = match event.outcome {
            Outcome::Succeeded => "success",
            Outcome::Failed => "failure",
        };
        self.runs.get_or_create(&RunLabels { operation: operation.clone(), outcome: outcome.into() }).inc();
        if let Some(seconds) = event.duration_seconds {
            self.last_duration.get_or_create(&by_operation).set(seconds);
        }
        match event.outcome {
            Outcome::Succeeded => {
                self.last_success.get_or_create(&by_operation).set(unix_seconds(now));
                if event.operation == Operation::Backup {
                    self.last_backup_bytes.set(gauge_value(event.counts.archive_bytes));
                    self.last_backup_documents.set(gauge_value(event.counts.documents));
                }
            }
            Outcome::Failed => {
                let stage = event.stage.clone().unwrap_or_else(|| "unknown".into());
                self.failures.get_or_create(&FailureLabels { operation, stage }).inc();
            }
        }
    }

    /// Records a finished prune: what it kept, and what it removed.
    pub fn record_prune(&self, report: &crate::prune::PruneReport) {
        self.kept_backups.set(gauge_value(Some(report.kept_backups)));
        self.kept_bytes.set(gauge_value(Some(report.kept_bytes)));
        self.removed_backups.inc_by(report.removed_backups);
        self.removed_bytes.inc_by(report.removed_bytes);
    }

    /// Records a backup written with an Object Lock (taken at `taken`, locked until `until`).
    pub fn record_locked_backup(&self, taken: DateTime<Utc>, until: DateTime<Utc>) {
        self.newest_locked_backup.set(unix_seconds(taken));
        self.lock_retain_until.set(unix_seconds(until));
        self.lock_window.set((until - taken).num_milliseconds() as f64 / 1000.0);
    }

    /// Records a prune's extension of the lock of the newest backup.
    pub fn record_lock_extension(&self, report: &crate::prune::PruneReport) {
        let newest = report.backups.iter().find(|b| b.complete && b.action == crate::prune::Action::Keep);
        if let Some(until) = newest.and_then(|b| b.lock_extended_to.or(b.locked_until)) {
            self.lock_retain_until.set(unix_seconds(until).max(self.lock_retain_until.get()));
        }
    }

    /// Records a written oplog slice: the newest restorable time moves to its end.
    pub fn record_slice(&self, slice: &crate::pitr::SliceMeta) {
        self.slices.inc();
        self.newest_restorable.set(f64::from(slice.end.t));
        self.last_success.get_or_create(&OperationLabel { operation: Operation::Oplog.name().into() }).set(unix_seconds(Utc::now()));
    }

    /// Counts a tick skipped because a run was in progress.
    pub fn skipped_tick(&self) {
        self.skipped.inc();
    }

    /// Counts ticks that passed unhandled.
    pub fn missed_ticks(&self, count: u64) {
        self.missed.inc_by(count);
    }

    /// Sets the time of the next tick.
    pub fn next_tick(&self, at: DateTime<Utc>) {
        self.next_run.set(unix_seconds(at));
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        let newest = self.newest_restorable.get();
        if newest > 0.0 {
            // The slice lag: how much of the newest writes a restore cannot reach now,
            // computed at the scrape so that a stalled slicer shows a growing lag.
            let lag = (unix_seconds(Utc::now()) - newest).max(0.0);
            let end = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(
                end,
                &format!(
                    "# HELP ingest_backup_pitr_slice_lag_seconds Seconds between now and the newest point a restore --to-time can reach.\n\
                     # TYPE ingest_backup_pitr_slice_lag_seconds gauge\ningest_backup_pitr_slice_lag_seconds {lag:.3}\n"
                ),
            );
        }
        text
    }
}

impl super::http::MetricsPage for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn gauge_value(count: Option<u64>) -> i64 {
    count.map_or(0, |count| i64::try_from(count).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::notify::Counts;

    fn backup_succeeded() -> Event {
        let mut event = Event::failed(Operation::Backup, "s3://b/p", &Error::Cancelled);
        event.outcome = Outcome::Succeeded;
        event.stage = None;
        event.counts = Counts { namespaces: Some(3), documents: Some(120), bytes: Some(4096), archive_bytes: Some(1024) };
        event.duration_seconds = Some(2.5);
        event
    }

    #[test]
    fn a_fresh_process_renders_its_counters_at_zero() {
        let text = Metrics::new().render();
        assert!(text.contains("ingest_backup_skipped_ticks_total 0"), "{text}");
        assert!(text.contains(r#"ingest_backup_runs_total{operation="verify",outcome="failure"} 0"#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn events_become_runs_failures_and_last_values() {
        let metrics = Metrics::new();
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        metrics.record(&backup_succeeded(), now);
        metrics.record(&backup_succeeded(), now);
        metrics.record(&Event::failed(Operation::Verify, "s3://b/p", &Error::Damaged("x".into())), now);
        metrics.skipped_tick();
        metrics.missed_ticks(2);
        let text = metrics.render();
        for line in [
            r#"ingest_backup_runs_total{operation="backup",outcome="success"} 2"#,
            r#"ingest_backup_runs_total{operation="verify",outcome="failure"} 1"#,
            r#"ingest_backup_failures_total{operation="verify",stage="damaged data"} 1"#,
            r#"ingest_backup_last_success_timestamp_seconds{operation="backup"} 1700000000.0"#,
            r#"ingest_backup_last_duration_seconds{operation="backup"} 2.5"#,
            "ingest_backup_last_backup_archive_bytes 1024",
            "ingest_backup_last_backup_documents 120",
            "ingest_backup_skipped_ticks_total 1",
            "ingest_backup_missed_ticks_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(r#"ingest_backup_last_success_timestamp_seconds{operation="verify"}"#), "{text}");
    }

    #[test]
    fn a_locked_backup_sets_the_lock_coverage_gauges() {
        let metrics = Metrics::new();
        assert!(metrics.render().contains("ingest_backup_newest_locked_backup_timestamp_seconds 0.0"), "{}", metrics.render());
        let taken: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        metrics.record_locked_backup(taken, taken + chrono::Duration::days(7));
        let text = metrics.render();
        assert!(text.contains("ingest_backup_newest_locked_backup_timestamp_seconds 1796083200.0"), "{text}");
        assert!(text.contains("ingest_backup_lock_retain_until_timestamp_seconds 1796688000.0"), "{text}");
        assert!(text.contains("ingest_backup_lock_window_seconds 604800.0"), "{text}");
    }
}
