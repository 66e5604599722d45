//! The backup job: one backup, its alert, then (with `--prune`) the prune that follows
//! it and that prune's alert. `backup` and every `schedule` tick run this.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use super::{Context, Render};
use crate::backup::{run_backup_with_progress, BackupOptions, BackupProgress, BackupReport};
use crate::error::{Error, Result};
use crate::manifest::Consistency;
use crate::notify::{Event, Operation};
use crate::prune::{self, PruneOptions, PruneReport};
use crate::store::{LockMode, WriteLock};

/// What `backup` did: the `--json` document (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct BackupJobReport {
    /// Always `ok`: a failed backup is an error, not a report.
    pub status: &'static str,
    /// The backup's name.
    pub name: String,
    /// The store it went to.
    pub store: String,
    /// Where the archive is.
    pub archive: String,
    /// Where the sidecar manifest is.
    pub sidecar: String,
    /// `gzip` or `zstd`.
    pub compression: String,
    /// Namespaces dumped.
    pub namespaces: u64,
    /// Documents dumped.
    pub documents: u64,
    /// BSON bytes dumped.
    pub bytes: u64,
    /// Stored archive size.
    pub archive_bytes: Option<u64>,
    /// SHA-256 of the stored archive.
    pub archive_sha256: Option<String>,
    /// Wall time of the backup.
    pub duration_seconds: f64,
    /// The most spool bytes on disk at once.
    pub peak_spool_disk_bytes: u64,
    /// Whether an oplog was captured.
    pub oplog: bool,
    /// The consistency point.
    pub consistency: Consistency,
    /// Whether the archive is encrypted.
    pub encrypted: bool,
    /// The age recipients, when encrypted.
    pub recipients: Option<Vec<String>>,
    /// The Object Lock mode of every object of the backup (`--lock-mode`), when locked.
    pub lock_mode: Option<LockMode>,
    /// Until when the backup cannot be deleted, when locked.
    pub locked_until: Option<DateTime<Utc>>,
    /// The prune that followed (`--prune`), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneReport>,
    /// The backup as the library reported it.
    #[serde(skip)]
    pub backup: BackupReport,
}

/// With `--lock-mode`: the bucket checked (before the database is read) and the options
/// whose S3 settings lock every object written.
async fn with_write_lock(options: &BackupOptions) -> Result<Option<(BackupOptions, WriteLock)>> {
    let Some(request) = &options.lock else { return Ok(None) };
    let store = crate::store::open_with(&options.store, options.s3.clone()).await?;
    let lock = crate::immutable::write_lock_for_backup(&store, &options.store, request, Utc::now()).await?;
    let mut locked = options.clone();
    if let Some(s3) = locked.s3.as_mut() {
        s3.write_lock = Some(lock);
    }
    info!(mode = lock.mode.label(), until = %lock.retain_until.to_rfc3339(), "Every object of this backup is written with an Object Lock.");
    Ok(Some((locked, lock)))
}

/// A backup that succeeded, and the prune after it, which may have failed.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The report of the backup (and of the prune when it ran).
    pub report: BackupJobReport,
    /// Why the prune after the backup failed (already alerted).
    pub prune_error: Option<Error>,
}

/// `backup`: the backup, then the prune; a failed prune after a good backup fails
/// the command (after the backup's summary is shown).
///
/// # Errors
/// The backup's error, or the prune's.
pub async fn run(context: &Context, options: &BackupOptions, prune: Option<&PruneOptions>) -> Result<BackupJobReport> {
    let outcome = backup_and_prune(context, options, prune).await?;
    match outcome.prune_error {
        None => Ok(outcome.report),
        Some(error) => {
            eprint!("{}", outcome.report.text());
            Err(error)
        }
    }
}

/// Runs one backup and, when `prune` is given, the prune after it; every outcome is
/// emitted as an event.
///
/// # Errors
/// The backup's error (the prune runs only after a successful backup).
pub async fn backup_and_prune(context: &Context, options: &BackupOptions, prune: Option<&PruneOptions>) -> Result<BackupOutcome> {
    let clock = Instant::now();
    let progress = BackupProgress::default();
    let locked = match with_write_lock(options).await {
        Ok(locked) => locked,
        Err(error) => {
            context.events.emit(&Event::backup_failed(context.store.clone(), &error, &Default::default(), 0.0)).await;
            return Err(error);
        }
    };
    let (options, lock) = match &locked {
        Some((locked_options, lock)) => (locked_options, Some(*lock)),
        None => (options, None),
    };
    let result = run_backup_with_progress(options, context.cancel.clone(), &progress).await;
    context.events.emit(&Event::backup_ended(&result, &context.store, &progress.snapshot(), clock.elapsed().as_secs_f64())).await;
    let mut report = BackupJobReport::new(result?, &context.store);
    report.lock_mode = lock.map(|lock| lock.mode);
    report.locked_until = lock.map(|lock| lock.retain_until);
    let mut prune_error = None;
    if let Some(options) = prune {
        info!(
            "Pruning with the backup job's own credentials, which can therefore delete backups; for immutable backups run \
             `ingest-backup prune` as its own job with its own credentials (ingest-backup iam-policy --role prune)."
        );
        match prune::prune_after_backup(options, context.cancel.clone()).await {
            Ok(pruned) => {
                if let Some(pruned) = &pruned {
                    info!(kept = pruned.kept_backups, removed = pruned.removed_backups, "Pruned the store after the backup.");
                }
                report.prune = pruned;
            }
            Err(error) => {
                context.events.emit(&Event::failed(Operation::Prune, context.store.clone(), &error)).await;
                prune_error = Some(error);
            }
        }
    }
    Ok(BackupOutcome { report, prune_error })
}

impl BackupJobReport {
    /// The report of a finished backup in `store`.
    pub fn new(backup: BackupReport, store: &str) -> BackupJobReport {
        let manifest = &backup.manifest;
        let archive = manifest.archive.as_ref();
        BackupJobReport {
            status: "ok",
            name: manifest.name.clone(),
            store: store.to_string(),
            archive: backup.archive.clone(),
            sidecar: backup.sidecar.clone(),
            compression: manifest.compression.clone(),
            namespaces: manifest.totals.namespaces,
            documents: manifest.totals.documents,
            bytes: manifest.totals.bytes,
            archive_bytes: archive.map(|a| a.size),
            archive_sha256: archive.map(|a| a.sha256.clone()),
            duration_seconds: backup.duration_seconds,
            peak_spool_disk_bytes: backup.peak_spool_disk_bytes,
            oplog: manifest.consistency.oplog,
            consistency: manifest.consistency.clone(),
            encrypted: manifest.encryption.is_some(),
            recipients: manifest.encryption.as_ref().map(|e| e.recipients.clone()),
            lock_mode: None,
            locked_until: None,
            prune: None,
            backup,
        }
    }
}

impl Render for BackupJobReport {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let manifest = &self.backup.manifest;
        let _ = writeln!(
            out,
            "backup {} complete: {} namespaces, {} documents, {:.1} MiB of BSON in {:.1}s -> {}",
            manifest.name,
            manifest.totals.namespaces,
            manifest.totals.documents,
            manifest.totals.bytes as f64 / (1 << 20) as f64,
            self.duration_seconds,
            self.archive
        );
        if let Some(encryption) = &manifest.encryption {
            let _ = writeln!(out, "encrypted with age to {}", encryption.recipients.join(", "));
        }
        let _ = match (&manifest.consistency.oplog, &manifest.consistency.end) {
            (true, Some(end)) => writeln!(
                out,
                "consistent at oplog timestamp {}:{} ({} oplog entries captured; restore with mongorestore --oplogReplay)",
                end.t, end.i, manifest.consistency.oplog_entries
            ),
            _ => writeln!(out, "no oplog captured: {}", manifest.consistency.reason.as_deref().unwrap_or("the server has no oplog")),
        };
        if let (Some(mode), Some(until)) = (self.lock_mode, self.locked_until) {
            let who = match mode {
                LockMode::Governance => "only a principal allowed s3:BypassGovernanceRetention can delete it before then",
                LockMode::Compliance => "nobody can delete it before then",
            };
            let _ = writeln!(out, "locked ({}) until {}: {who}", mode.label(), until.to_rfc3339());
        }
        if let Some(pruned) = &self.prune {
            out.push_str(&prune::render(pruned));
        }
        out
    }
}
