//! `verify`: prove a stored backup without restoring it. Stage one checks the
//! archive against its manifest with no server ([`archive_check`]); stage two
//! compares the manifest with the live database and explains differences with its
//! oplog ([`live_check`]). Both run at once; every difference is reported as a
//! [`Finding`], and the result is recorded beside the backup (`<name>.verify.json`).
//!
//! Which backup: a name, `latest`, or `unverified` (the newest complete backup with no
//! verification yet: what a scheduled verification wants, so it checks the backup that
//! just finished rather than the one before it). With `wait_for_running`, a backup still
//! being written to the store (a partial file, an open multipart upload) is waited for,
//! up to that bound, before the choice is made.

pub mod archive_check;
pub mod findings;
pub mod live_check;
pub mod oplog_activity;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use archive_check::ArchiveCheck;
pub use findings::{Finding, Severity};
pub use live_check::{LiveCheck, LiveStatus};

use crate::crypto::{is_encrypted, Identities};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::s3::S3Settings;
use crate::store::{self, Latest, SidecarProblem, Store, StoreLocation, StoredBackup};

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The store holding the backup.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// A backup name, or `latest` (the newest backup, complete or not).
    pub backup: String,
    /// The live database to compare with; `None` checks the archive only.
    pub uri: Option<String>,
    /// Live collections scanned at the same time.
    pub parallel: usize,
    /// Fail when a difference cannot be explained either way (undetermined).
    pub strict: bool,
    /// How long to wait for backups still being written to the store before choosing
    /// the backup; zero chooses at once.
    pub wait_for_running: Duration,
    /// How often the store is looked at while waiting.
    pub poll_interval: Duration,
    /// How often an interrupted live scan is started again after a transient fault.
    pub retry: crate::retry::RetryPolicy,
    /// The private keys an encrypted backup is decrypted with (`None`: its stored
    /// bytes are checked against the sidecar only, with `--archive-only`).
    pub identities: Option<Arc<Identities>>,
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    /// Archive intact, every live difference explained.
    Passed,
    /// Archive intact, but some difference could not be explained either way.
    PassedWithWarnings,
    /// The archive is damaged, incomplete, or a difference is unexplained.
    Failed,
}

impl VerifyStatus {
    /// The name in JSON and in `list` (`passed`, `passed_with_warnings`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Passed => "passed",
            VerifyStatus::PassedWithWarnings => "passed_with_warnings",
            VerifyStatus::Failed => "failed",
        }
    }

    /// The word printed at the end of the table.
    pub fn label(self) -> &'static str {
        match self {
            VerifyStatus::Passed => "PASSED",
            VerifyStatus::PassedWithWarnings => "PASSED WITH WARNINGS",
            VerifyStatus::Failed => "FAILED",
        }
    }
}

/// The result of one verification, printed with `--json` and recorded in the store.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The backup verified.
    pub name: String,
    /// The store it lives in.
    pub store: String,
    /// When the verification finished, RFC 3339 UTC.
    pub verified_at: String,
    /// Wall time of the verification.
    pub duration_seconds: f64,
    /// The verdict.
    pub status: VerifyStatus,
    /// Stage one: the archive against its manifest.
    pub archive: ArchiveCheck,
    /// Stage two: the manifest against the live database (absent with `--archive-only`).
    pub live: Option<LiveCheck>,
    /// Every error and warning, archive and live.
    pub findings: Vec<Finding>,
    /// Where the result was recorded, when it was.
    pub recorded: Option<String>,
}

/// A verification as recorded beside its backup (`<name>.verify.json`), read back: the
/// fields `list` and `prune` judge a backup by. The record is a [`VerifyReport`].
#[derive(Debug, Clone, Deserialize)]
pub struct VerificationRecord {
    /// The verdict.
    pub status: VerifyStatus,
    /// When the verification finished, RFC 3339 UTC (empty when the record lacks it).
    #[serde(default)]
    pub verified_at: String,
    /// The findings' severities (absent in a record that has none).
    pub findings: Option<Vec<RecordedFinding>>,
}

/// The part of a recorded finding that `list` counts.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedFinding {
    /// Error or warning.
    pub severity: Severity,
}

impl VerificationRecord {
    /// Reads a record; `None` when the bytes are not one (a damaged or foreign object).
    pub fn parse(bytes: &[u8]) -> Option<VerificationRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// Error findings, when the record lists its findings.
    pub fn errors(&self) -> Option<usize> {
        self.findings.as_ref().map(|findings| findings.iter().filter(|f| f.severity == Severity::Error).count())
    }
}

impl VerifyReport {
    /// Whether the command should exit 0.
    pub fn passed(&self) -> bool {
        self.status != VerifyStatus::Failed
    }

    /// Error findings.
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }
}

/// Verifies a stored backup: its archive, then (with a URI) the live database.
///
/// # Errors
/// Configuration and store errors that prevent any verification (a missing store,
/// an unknown backup name). Everything found about the backup itself is in the report.
pub async fn run_verify(options: &VerifyOptions, cancel: CancellationToken) -> Result<VerifyReport> {
    let store = store::open_with(&options.store, options.s3.clone()).await?;
    verify_in(&store, options, cancel).await
}

/// [`run_verify`] in an opened store (`options.store` only names it).
///
/// # Errors
/// As [`run_verify`].
pub async fn verify_in(store: &Store, options: &VerifyOptions, cancel: CancellationToken) -> Result<VerifyReport> {
    let clock = Instant::now();
    let store = store.clone();
    wait_for_running_backups(&store, options, &cancel).await?;
    let backup = store::select(store.list().await?, &options.backup, &options.store, Latest::Newest)?;
    info!(backup = %backup.name, store = %options.store, "Verifying.");
    let mut findings = Vec::new();
    let encrypted = is_encrypted(&backup.archive);
    if encrypted && options.identities.is_none() && options.uri.is_some() {
        return Err(Error::usage(format!(
            "backup {} is encrypted: give --identity FILE (or AGE_IDENTITY_FILE, or AGE_IDENTITY) to check its content and compare it with \
             the live database, or --archive-only to check its stored bytes against the sidecar's size and SHA-256 only",
            backup.name
        )));
    }
    let (archive, live) = match read_manifest(&backup, options.identities.as_deref()) {
        Err(finding) => {
            findings.push(*finding);
            (ArchiveCheck::default(), None)
        }
        Ok((manifest, _)) if encrypted && options.identities.is_none() => {
            let archive = ciphertext_check(&store, &backup.archive, &manifest, &cancel).await;
            findings.extend(archive.findings.iter().cloned());
            (archive, None)
        }
        Ok((manifest, sidecar)) => {
            let archive_task =
                spawn_archive_check(store.clone(), backup.archive.clone(), manifest.clone(), sidecar, options.identities.clone(), cancel.clone());
            let live = match &options.uri {
                Some(uri) => Some(live_stage(uri, &manifest, options, &cancel).await),
                None => None,
            };
            let archive = archive_task.await.expect("the archive check does not panic");
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            findings.extend(archive.findings.iter().cloned());
            let live = match live {
                Some(Ok(live)) => Some(live),
                Some(Err(error)) => {
                    findings.push(Finding::error(
                        "live database",
                        "comparison",
                        "a reachable server",
                        error, // connection errors already carry the URI with its password redacted
                        "check --uri (or MONGO_URI) and that the server is up; the archive stage above still applies",
                    ));
                    None
                }
                None => None,
            };
            (archive, live)
        }
    };
    if let Some(live) = &live {
        findings.extend(live_findings(live));
    }
    let status = verdict(&findings, options.strict);
    let mut report = VerifyReport {
        name: backup.name.clone(),
        store: options.store.to_string(),
        verified_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_seconds: clock.elapsed().as_secs_f64(),
        status,
        archive,
        live,
        findings,
        recorded: None,
    };
    report.recorded = record(store, &report).await;
    Ok(report)
}

/// Waits while the store shows a backup being written, up to `options.wait_for_running`.
///
/// # Errors
/// A store error when a backup is still being written after the wait (nothing was
/// verified: verifying an older backup instead is exactly what the wait avoids), or
/// the store cannot be listed; [`Error::Cancelled`] on a signal.
async fn wait_for_running_backups(store: &Store, options: &VerifyOptions, cancel: &CancellationToken) -> Result<()> {
    if options.wait_for_running.is_zero() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + options.wait_for_running;
    let mut logged = Vec::new();
    loop {
        let running = store.in_progress().await?;
        if running.is_empty() {
            if !logged.is_empty() {
                info!(backups = %logged.join(", "), "The running backup finished; choosing the backup to verify.");
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Store {
                message: format!(
                    "{}: backup {} is still being written after waiting {}; nothing was verified. \
                     If it is still running, verify it later (`ingest-backup verify unverified`) or raise --wait-for-running; \
                     if its process was killed, abort its upload (or let the bucket's lifecycle rule do it) or delete its .partial file",
                    options.store,
                    running.join(", "),
                    humantime::format_duration(options.wait_for_running)
                ),
                retryable: true,
            });
        }
        if running != logged {
            info!(
                backups = %running.join(", "),
                wait = %humantime::format_duration(options.wait_for_running),
                "A backup of this store is still being written: waiting for it before choosing the backup to verify."
            );
            logged = running;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(options.poll_interval) => {}
        }
    }
}

/// The manifest of a complete backup, also as plain JSON, or the finding that says why
/// there is none. A sidecar whose details are sealed is opened with `identities`;
/// without them its readable part is returned (enough to check the stored bytes).
fn read_manifest(backup: &StoredBackup, identities: Option<&Identities>) -> std::result::Result<(Manifest, serde_json::Value), Box<Finding>> {
    let object = SidecarProblem::object(&backup.name);
    match store::open_sidecar(backup, identities) {
        Ok(opened) => Ok((opened.manifest, opened.json)),
        Err(SidecarProblem::Missing) => Err(Box::new(Finding::error(
            object,
            "sidecar",
            "present",
            "missing",
            "the backup is incomplete (its run failed or was interrupted before it finished); do not rely on it, run a new backup",
        ))),
        Err(SidecarProblem::Unreadable(error)) => Err(Box::new(Finding::error(
            object,
            "sidecar",
            "a valid manifest",
            format!("unreadable: {error}"),
            "the sidecar is damaged; the backup cannot be verified or trusted",
        ))),
        Err(SidecarProblem::Sealed(cause)) => Err(Box::new(Finding::error(
            object,
            "sealed manifest",
            "opened with the identity given",
            cause,
            "give the identity of one of the recipients the sidecar lists; if it is one of them, the sidecar was altered: do not trust this backup",
        ))),
    }
}

/// An encrypted backup checked without its identity: the stored bytes against the
/// sidecar's size and SHA-256, read once; the content is not checked, and the check says so.
async fn ciphertext_check(store: &Store, file: &str, manifest: &Manifest, cancel: &CancellationToken) -> ArchiveCheck {
    let (file, manifest, cancel) = (file.to_string(), manifest.clone(), cancel.clone());
    match store.open_archive(&file).await {
        Ok(stored) => tokio::task::spawn_blocking(move || archive_check::check_ciphertext(stored, &file, &manifest, &cancel))
            .await
            .expect("the ciphertext check does not panic"),
        Err(error) => ArchiveCheck {
            findings: vec![Finding::error(&file, "archive", "present and readable", error, "the archive object is missing or unreadable")],
            ..ArchiveCheck::default()
        },
    }
}

fn spawn_archive_check(
    store: Store,
    file: String,
    manifest: Manifest,
    sidecar: serde_json::Value,
    identities: Option<Arc<Identities>>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<ArchiveCheck> {
    tokio::spawn(async move {
        match store.open_archive(&file).await {
            Ok(stored) => {
                tokio::task::spawn_blocking(move || archive_check::check_archive(stored, &file, &manifest, &sidecar, identities.as_deref(), &cancel))
                    .await
                    .expect("the archive check does not panic")
            }
            Err(error) => ArchiveCheck {
                findings: vec![Finding::error(&file, "archive", "present and readable", error, "the archive object is missing or unreadable")],
                ..ArchiveCheck::default()
            },
        }
    })
}

async fn live_stage(uri: &str, manifest: &Manifest, options: &VerifyOptions, cancel: &CancellationToken) -> Result<LiveCheck> {
    let source = crate::source::connect_retrying(uri, &options.retry).await?;
    live_check::check_live(&source, manifest, options.parallel, &options.retry, cancel).await
}

/// One finding per live namespace that is unexplained (an error) or undetermined (a warning).
fn live_findings(live: &LiveCheck) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in &live.namespaces {
        let (expected, actual) =
            (format!("{} documents", row.backup_documents), row.live_documents.map_or("missing".into(), |d| format!("{d} documents")));
        match row.status {
            LiveStatus::Unexplained => findings.push(Finding::error(&row.namespace, "live data", expected, actual, &row.note)),
            LiveStatus::Undetermined => findings.push(Finding::warning(&row.namespace, "live data", expected, actual, &row.note)),
            LiveStatus::Identical | LiveStatus::Changed => {}
        }
    }
    findings
}

/// Failed on any error; with warnings, failed only when `strict`.
pub fn verdict(findings: &[Finding], strict: bool) -> VerifyStatus {
    if findings.iter().any(|f| f.severity == Severity::Error) {
        VerifyStatus::Failed
    } else if findings.is_empty() {
        VerifyStatus::Passed
    } else if strict {
        VerifyStatus::Failed
    } else {
        VerifyStatus::PassedWithWarnings
    }
}

/// Records the report beside the backup, locked like the backup when it is; a failure
/// to record or lock is logged, not fatal.
async fn record(store: Store, report: &VerifyReport) -> Option<String> {
    let mut bytes = serde_json::to_vec_pretty(report).expect("a report always serializes");
    bytes.push(b'\n');
    match store.put_verification(&report.name, &bytes).await {
        Ok(location) => {
            let record = [crate::store::keys::verification_key(&report.name)];
            if let Err(error) = store.lock_like_backup(&record, &report.name).await {
                warn!(%error, "Cannot lock the verification record like its backup (Object Lock).");
            }
            Some(location)
        }
        Err(error) => {
            warn!(%error, "Cannot record the verification result in the store.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_fail_only_strict_verifications() {
        let warning = Finding::warning("a.b", "live data", 1, 2, "fix");
        let error = Finding::error("a.b", "sha256", "x", "y", "fix");
        assert_eq!(verdict(&[], false), VerifyStatus::Passed);
        assert_eq!(verdict(std::slice::from_ref(&warning), false), VerifyStatus::PassedWithWarnings);
        assert_eq!(verdict(std::slice::from_ref(&warning), true), VerifyStatus::Failed);
        assert_eq!(verdict(&[warning, error], false), VerifyStatus::Failed);
    }
}
