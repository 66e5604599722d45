//! What the exporter serves, computed from one reading of the store (the `list`
//! report, which reads every backup's sidecar, verification and drill records, the
//! oplog slices and the locks): pure, so each figure is tested on a listing built in
//! the test.

use std::fmt::Write;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::jobs::list::{ListReport, ListedBackup};
use crate::verify::VerifyStatus;

type FloatGauge = Gauge<f64, AtomicU64>;

/// The state a backup is counted under in `ingest_backup_backups{state}`.
pub const STATES: [&str; 4] = ["verified", "unverified", "failed", "incomplete"];

/// The figures of one reading of the store; `None` where the store holds nothing to
/// say (the series is then absent, so that an alert on it can use `absent()`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// When the newest complete backup finished (Unix seconds).
    pub newest_complete: Option<f64>,
    /// When the newest backup whose latest verification passed finished.
    pub newest_verified: Option<f64>,
    /// The newest point a point-in-time restore reaches.
    pub restorable_until: Option<f64>,
    /// Point-in-time chains broken by a gap.
    pub pitr_gaps: u64,
    /// When the newest drill finished, and whether it passed.
    pub last_drill: Option<(f64, bool)>,
    /// When the newest passed drill finished, and its recovery seconds.
    pub last_passed_drill: Option<(f64, Option<f64>)>,
    /// Backups per state, in the order of [`STATES`].
    pub backups: [u64; 4],
    /// Archive uploads open now.
    pub uploads_in_progress: u64,
    /// Bytes of the archives and oplog slices.
    pub store_bytes: u64,
    /// With Object Lock: the fraction of complete backups under a lock or legal hold.
    pub lock_coverage: Option<f64>,
}

fn seconds(text: &str) -> Option<f64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn newest(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |newest: Option<f64>, value| Some(newest.map_or(value, |n| n.max(value))))
}

fn state(backup: &ListedBackup) -> usize {
    match (&backup.verification, backup.complete) {
        (_, false) => 3,
        (None, true) => 1,
        (Some(verification), true) if verification.status == VerifyStatus::Failed => 2,
        (Some(_), true) => 0,
    }
}

impl Figures {
    /// The figures of a listing taken at `now`, with `uploads_in_progress` archive uploads open.
    pub fn of(listing: &ListReport, uploads_in_progress: u64, now: DateTime<Utc>) -> Figures {
        let complete = || listing.backups.iter().filter(|b| b.complete);
        let finished = |backup: &ListedBackup| backup.finished_at.as_deref().and_then(seconds);
        let mut backups = [0; 4];
        for backup in &listing.backups {
            backups[state(backup)] += 1;
        }
        let drills: Vec<(f64, bool, Option<f64>)> = listing
            .backups
            .iter()
            .filter_map(|b| b.drill.as_ref())
            .filter_map(|drill| Some((seconds(&drill.drilled_at)?, drill.passed, drill.recovery_seconds)))
            .collect();
        let last_drill = drills.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0)).map(|(at, passed, _)| (at, passed));
        let last_passed_drill = drills.iter().copied().filter(|d| d.1).max_by(|a, b| a.0.total_cmp(&b.0)).map(|(at, _, recovery)| (at, recovery));
        let lock_coverage = listing.object_lock.then(|| {
            let total = complete().count();
            let locked = complete().filter(|b| b.legal_hold || b.locked_until.is_some_and(|until| until > now)).count();
            if total == 0 {
                0.0
            } else {
                locked as f64 / total as f64
            }
        });
        Figures {
            newest_complete: newest(complete().filter_map(finished)),
            newest_verified: newest(complete().filter(|b| state(b) == 0).filter_map(finished)),
            restorable_until: newest(listing.pitr.iter().filter_map(|range| seconds(&range.to_time))),
            pitr_gaps: listing.pitr.iter().filter(|range| range.broken_at.is_some()).count() as u64,
            last_drill,
            last_passed_drill,
            backups,
            uploads_in_progress,
            store_bytes: listing.backups.iter().map(|b| b.size).sum::<u64>() + listing.slice_bytes,
            lock_coverage,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// What the last reading of the store said, for the page.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The figures of the last successful reading.
    pub figures: Option<Figures>,
    /// Whether the last reading succeeded.
    pub up: bool,
    /// When the last reading finished (Unix seconds).
    pub read_at: Option<f64>,
    /// How long it took.
    pub read_seconds: f64,
    /// Readings that failed since the exporter started.
    pub failures: u64,
}

/// The page `/metrics` serves for `reading`, in the OpenMetrics text format.
pub fn render(reading: &Reading) -> String {
    let mut registry = Registry::default();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let gauge = FloatGauge::default();
            gauge.set(value);
            registry.register(name, help, gauge);
        }
    };
    // Absent until the first reading ends: a restart is not a failed reading.
    gauge(
        "ingest_backup_exporter_store_up",
        "1 when the last reading of the store succeeded, else 0",
        reading.read_at.map(|_| if reading.up { 1.0 } else { 0.0 }),
    );
    gauge("ingest_backup_exporter_last_read_timestamp_seconds", "When the exporter last finished reading the store", reading.read_at);
    gauge("ingest_backup_exporter_read_duration_seconds", "How long the last reading of the store took", Some(reading.read_seconds));
    gauge("ingest_backup_exporter_read_failures", "Readings of the store that failed since the exporter started", Some(reading.failures as f64));
    if let Some(figures) = &reading.figures {
        gauge("ingest_backup_newest_complete_timestamp_seconds", "When the newest complete backup in the store finished", figures.newest_complete);
        gauge(
            "ingest_backup_newest_verified_timestamp_seconds",
            "When the newest backup whose latest verification passed finished",
            figures.newest_verified,
        );
        gauge(
            "ingest_backup_pitr_restorable_until_timestamp_seconds",
            "The newest point a restore --to-time can reach with the stored oplog slices",
            figures.restorable_until,
        );
        gauge("ingest_backup_pitr_gaps", "Point-in-time chains broken by a missing oplog slice", Some(figures.pitr_gaps as f64));
        gauge("ingest_backup_drill_last_timestamp_seconds", "When the newest restore drill finished, passed or not", figures.last_drill.map(|d| d.0));
        gauge(
            "ingest_backup_drill_last_passed",
            "1 when the newest restore drill passed, 0 when it failed",
            figures.last_drill.map(|d| if d.1 { 1.0 } else { 0.0 }),
        );
        gauge(
            "ingest_backup_drill_last_passed_timestamp_seconds",
            "When the newest passed restore drill finished",
            figures.last_passed_drill.map(|d| d.0),
        );
        gauge(
            "ingest_backup_drill_recovery_seconds",
            "The measured recovery time (restore seconds) of the newest passed restore drill",
            figures.last_passed_drill.and_then(|d| d.1),
        );
        gauge("ingest_backup_uploads_in_progress", "Backup archive uploads open in the store now", Some(figures.uploads_in_progress as f64));
        gauge("ingest_backup_store_bytes", "Bytes of the backup archives and oplog slices in the store", Some(figures.store_bytes as f64));
        gauge(
            "ingest_backup_lock_coverage_ratio",
            "Fraction of complete backups under an Object Lock or a legal hold (buckets with Object Lock only)",
            figures.lock_coverage,
        );
        let backups = Family::<StateLabel, Gauge>::default();
        for (state, count) in STATES.iter().zip(figures.backups) {
            backups.get_or_create(&StateLabel { state: (*state).to_string() }).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        registry.register("ingest_backup_backups", "Backups in the store by state: verified, unverified, failed (verification), incomplete", backups);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The value of series `name` (with its labels, e.g. `x{state="verified"}`) in a page.
#[cfg(test)]
fn value_of(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A one-line summary of a reading for the log.
pub fn summary(figures: &Figures) -> String {
    let mut out = String::new();
    let _ = write!(out, "{} backups ({} verified)", figures.backups.iter().sum::<u64>(), figures.backups[0]);
    if let Some((_, passed)) = figures.last_drill {
        let _ = write!(out, ", last drill {}", if passed { "passed" } else { "FAILED" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::list::{DrillSummary, PitrRange, VerificationSummary};

    fn backup(name: &str, complete: bool, verified: Option<VerifyStatus>, finished: &str) -> ListedBackup {
        ListedBackup {
            name: name.into(),
            archive: format!("{name}.tar.gz"),
            size: 100,
            complete,
            documents: None,
            duration_seconds: None,
            finished_at: complete.then(|| finished.to_string()),
            compression: None,
            encrypted: false,
            recipients: None,
            verification: verified.map(|status| VerificationSummary { status, verified_at: finished.into(), errors: None }),
            drill: None,
            locked_until: None,
            legal_hold: false,
        }
    }

    fn listing(backups: Vec<ListedBackup>, pitr: Vec<PitrRange>) -> ListReport {
        ListReport {
            store: "s".into(),
            backups,
            slice_bytes: pitr.iter().map(|range| range.stored_bytes).sum(),
            pitr,
            stale_uploads: Vec::new(),
            object_lock: false,
            stale_after: std::time::Duration::ZERO,
        }
    }

    fn range(to_time: &str, broken: bool) -> PitrRange {
        PitrRange {
            base: "b".into(),
            from: "1.1".into(),
            to: "2.1".into(),
            from_time: to_time.into(),
            to_time: to_time.into(),
            slices: 2,
            stored_bytes: 50,
            broken_at: broken.then(|| "oplog/x".to_string()),
        }
    }

    #[test]
    fn each_figure_comes_from_the_backups_that_earn_it() {
        let mut drilled = backup("2026-12-03T00_00", true, Some(VerifyStatus::Passed), "2026-12-03T00:10:00Z");
        drilled.drill = Some(DrillSummary { passed: true, recovery_seconds: Some(12.5), drilled_at: "2026-12-03T03:00:00Z".into() });
        let mut failed_drill = backup("2026-12-02T00_00", true, Some(VerifyStatus::Passed), "2026-12-02T00:10:00Z");
        failed_drill.drill = Some(DrillSummary { passed: false, recovery_seconds: None, drilled_at: "2026-12-04T03:00:00Z".into() });
        let listing = listing(
            vec![
                backup("2026-12-04T12_00", false, None, ""),
                backup("2026-12-04T00_00", true, Some(VerifyStatus::Failed), "2026-12-04T00:10:00Z"),
                backup("2026-12-03T12_00", true, None, "2026-12-03T12:10:00Z"),
                drilled,
                failed_drill,
            ],
            vec![range("2026-12-04T11:00:00Z", false), range("2026-12-03T11:00:00Z", true)],
        );
        let figures = Figures::of(&listing, 1, Utc::now());
        assert_eq!(figures.newest_complete, seconds("2026-12-04T00:10:00Z"), "the newest complete, failed verification or not");
        assert_eq!(figures.newest_verified, seconds("2026-12-03T00:10:00Z"), "neither the failed nor the unverified one");
        assert_eq!(figures.restorable_until, seconds("2026-12-04T11:00:00Z"));
        assert_eq!(figures.pitr_gaps, 1);
        assert_eq!(figures.backups, [2, 1, 1, 1]);
        assert_eq!(figures.last_drill, Some((seconds("2026-12-04T03:00:00Z").unwrap(), false)));
        assert_eq!(figures.last_passed_drill, Some((seconds("2026-12-03T03:00:00Z").unwrap(), Some(12.5))));
        assert_eq!(figures.store_bytes, 5 * 100 + 2 * 50);
        assert_eq!(figures.lock_coverage, None, "no Object Lock, no coverage series");

        let page = render(&Reading { figures: Some(figures), up: true, read_at: Some(1.0), read_seconds: 0.5, failures: 0 });
        assert_eq!(value_of(&page, "ingest_backup_newest_verified_timestamp_seconds"), seconds("2026-12-03T00:10:00Z"));
        assert_eq!(value_of(&page, "ingest_backup_drill_last_passed"), Some(0.0));
        assert_eq!(value_of(&page, "ingest_backup_drill_recovery_seconds"), Some(12.5));
        assert_eq!(value_of(&page, "ingest_backup_backups{state=\"verified\"}"), Some(2.0));
        assert_eq!(value_of(&page, "ingest_backup_exporter_store_up"), Some(1.0));
        assert!(!page.contains("ingest_backup_lock_coverage_ratio"), "{page}");
    }

    #[test]
    fn an_empty_store_has_no_timestamps_and_a_failed_reading_only_says_so() {
        let figures = Figures::of(&listing(Vec::new(), Vec::new()), 0, Utc::now());
        let page = render(&Reading { figures: Some(figures), up: true, read_at: Some(1.0), read_seconds: 0.1, failures: 0 });
        assert!(!page.contains("ingest_backup_newest_complete_timestamp_seconds") && !page.contains("ingest_backup_drill_last_passed"), "{page}");
        assert_eq!(value_of(&page, "ingest_backup_backups{state=\"incomplete\"}"), Some(0.0));
        let down = render(&Reading { figures: None, up: false, read_at: Some(2.0), read_seconds: 0.0, failures: 3 });
        assert_eq!(value_of(&down, "ingest_backup_exporter_store_up"), Some(0.0));
        let starting = render(&Reading::default());
        assert!(!starting.contains("ingest_backup_exporter_store_up"), "no verdict before the first reading: {starting}");
        assert!(!down.contains("ingest_backup_backups"), "{down}");
    }

    #[test]
    fn lock_coverage_counts_complete_backups_locked_now_or_held() {
        let now = Utc::now();
        let mut locked = backup("2026-12-03T00_00", true, None, "2026-12-03T00:10:00Z");
        locked.locked_until = Some(now + chrono::Duration::days(1));
        let mut expired = backup("2026-12-02T00_00", true, None, "2026-12-02T00:10:00Z");
        expired.locked_until = Some(now - chrono::Duration::days(1));
        let mut held = backup("2026-12-01T00_00", true, None, "2026-12-01T00:10:00Z");
        held.legal_hold = true;
        let mut listing = listing(vec![locked, expired, held, backup("2026-12-04T00_00", false, None, "")], Vec::new());
        listing.object_lock = true;
        assert_eq!(Figures::of(&listing, 0, now).lock_coverage, Some(2.0 / 3.0));
    }
}
