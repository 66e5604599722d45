//! `ingest-backup prune`: removes the backups a retention [`policy`] does not keep,
//! and the leftovers of runs that died, without ever removing what a restore needs.
//!
//! A prune runs in three steps:
//! 1. **Survey**: the whole store is listed (backups with their sidecars and
//!    verification records, every object, every open upload). A listing that fails
//!    stops the prune before anything is removed.
//! 2. **Plan** ([`plan`]): every complete backup is judged by the policy; incomplete
//!    archives, sidecars or verification records without their archive, and open
//!    uploads are judged by age (`--stale-after`). Pure, so it is unit-tested.
//! 3. **Removal**, under an exclusive [`StoreLock`] whose object records the plan:
//!    for each backup the sidecar first (it then lists as INCOMPLETE, never as a complete
//!    backup missing its archive), then the archive, then its verification record. A
//!    prune killed at any point leaves INCOMPLETE entries and a stale lock naming them;
//!    the next prune takes the lock over and removes them.

pub mod locks;
pub mod policy;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::naming::{is_backup_name, time_of};
use crate::store::lock::StoreLock;
use crate::store::s3::S3Settings;
use crate::store::{self, keys, ObjectMeta, PendingUpload, Store, StoreLocation, StoredBackup, DRILL_SUFFIX, SIDECAR_SUFFIX, VERIFICATION_SUFFIX};
use crate::test_hooks::{pause_at, Stage};
use policy::{Candidate, Health, Policy};

/// The default of `--stale-after`: an incomplete archive or open upload this old is a leftover.
#[cfg(test)]
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Everything a prune needs, validated.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The store to prune.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// What to keep.
    pub policy: Policy,
    /// Age after which an incomplete archive or an open upload is removed.
    pub stale_after: Duration,
    /// Only report; remove nothing and take no lock.
    pub dry_run: bool,
}

/// What prune does with a backup or a leftover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Left in the store.
    Keep,
    /// Removed (or, in a dry run, would be).
    Remove,
    /// No rule keeps it, but its Object Lock (or legal hold) has not expired: a later
    /// prune removes it.
    Locked,
}

impl Action {
    /// The word in the table.
    pub fn label(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Remove => "remove",
            Action::Locked => "locked",
        }
    }
}

/// One backup and what prune does with it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupVerdict {
    /// The backup name.
    pub name: String,
    /// When it was taken (the manifest's start; for an incomplete backup, the name's minute).
    pub time: Option<DateTime<Utc>>,
    /// Archive size in bytes.
    pub size: u64,
    /// Whether the backup has its sidecar manifest.
    pub complete: bool,
    /// Its latest verification, for a complete backup.
    pub verification: Option<Health>,
    /// Keep or remove.
    pub action: Action,
    /// The rules that keep it (`last`, `daily`, `newest verified`, ...), empty when removed.
    pub rules: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// Until when its Object Lock keeps it (the latest date of its objects), on a bucket with Object Lock.
    pub locked_until: Option<DateTime<Utc>>,
    /// Whether a legal hold keeps it.
    pub legal_hold: bool,
    /// The date prune extends its lock to (the end of the longest tier slot it fills), when later than its lock.
    pub lock_extended_to: Option<DateTime<Utc>>,
    /// The end of the longest tier slot it fills that is known now (see [`policy::slot_ends`]).
    #[serde(skip)]
    pub slot_end: Option<DateTime<Utc>>,
}

/// An object that is not a backup: an open upload, a sidecar or verification record
/// whose archive is gone.
#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    /// `open upload`, `sidecar without archive` or `verification without archive`.
    pub kind: String,
    /// The object's key in the store.
    pub key: String,
    /// The store's id of an open upload.
    #[serde(skip)]
    pub upload_id: Option<String>,
    /// Keep or remove.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
}

/// The result of a prune (or of a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The store pruned.
    pub store: String,
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
    /// The time the policy was judged at.
    pub now: DateTime<Utc>,
    /// Every backup, newest first.
    pub backups: Vec<BackupVerdict>,
    /// Every leftover object.
    pub leftovers: Vec<Leftover>,
    /// Locks of dead runs that this prune took over.
    pub stale_locks: Vec<String>,
    /// Backups kept.
    pub kept_backups: u64,
    /// Their archive bytes.
    pub kept_bytes: u64,
    /// Backups removed.
    pub removed_backups: u64,
    /// Their archive bytes.
    pub removed_bytes: u64,
    /// Whether the bucket has Object Lock (then locks are read, extended and respected).
    pub object_lock: bool,
    /// Backups no rule keeps that stay because they are locked.
    pub locked_backups: u64,
    /// Noncurrent object versions and delete markers removed (in a dry run: that would be).
    pub noncurrent_versions_removed: u64,
    /// Noncurrent versions still locked, left for a later prune.
    pub noncurrent_versions_locked: u64,
}

/// Everything in a store that a prune judges.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// The backups, newest first, with sidecars and verification records.
    pub backups: Vec<StoredBackup>,
    /// Every object key.
    pub objects: Vec<ObjectMeta>,
    /// Every open upload.
    pub uploads: Vec<PendingUpload>,
    /// Every complete point-in-time slice.
    pub slices: Vec<crate::pitr::SliceMeta>,
}

/// Lists everything a prune judges; any failure fails the whole survey, so a prune
/// never acts on a partial picture of the store.
///
/// # Errors
/// The store could not be listed or a sidecar or record could not be read.
pub async fn survey(store: &Store) -> Result<Survey> {
    let (backups, objects, uploads, slices) = futures::try_join!(
        store.list(),
        async { Ok(store.objects().list("").await?) },
        async { Ok(store.objects().list_multipart_uploads("").await?) },
        crate::pitr::list_slices(store)
    )?;
    Ok(Survey { backups, objects, uploads, slices })
}

fn health_of(verification: Option<&[u8]>) -> Health {
    match verification.and_then(crate::verify::VerificationRecord::parse).map(|record| record.status) {
        None => Health::NotVerified,
        Some(crate::verify::VerifyStatus::Passed | crate::verify::VerifyStatus::PassedWithWarnings) => Health::Passed,
        Some(crate::verify::VerifyStatus::Failed) => Health::Failed,
    }
}

fn older_than(time: Option<DateTime<Utc>>, now: DateTime<Utc>, age: Duration) -> bool {
    time.is_some_and(|time| now.signed_duration_since(time).to_std().is_ok_and(|elapsed| elapsed >= age))
}

/// The verdict on an incomplete backup (no sidecar): removed once older than
/// `stale_after`, or at once when a prune that died was removing it.
fn incomplete_verdict(backup: &StoredBackup, now: DateTime<Utc>, stale_after: Duration, finishing: &HashSet<String>) -> BackupVerdict {
    // The name's time: a killed backup's start, or an old tarball's own date
    // (the write time of a tarball copied in recently would say nothing).
    let written = time_of(&backup.name).or(backup.last_modified);
    let stale_after_text = humantime::format_duration(stale_after);
    let (action, reason) = if finishing.contains(&backup.name) {
        (Action::Remove, "incomplete: a prune that died was removing it".to_string())
    } else if older_than(written, now, stale_after) {
        (Action::Remove, format!("incomplete (no sidecar manifest) for longer than --stale-after {stale_after_text}"))
    } else {
        (Action::Keep, format!("incomplete, younger than --stale-after {stale_after_text}: it may still be finishing"))
    };
    BackupVerdict {
        name: backup.name.clone(),
        time: time_of(&backup.name),
        size: backup.size,
        complete: false,
        verification: None,
        action,
        rules: Vec::new(),
        reason,
        locked_until: None,
        legal_hold: false,
        lock_extended_to: None,
        slot_end: None,
    }
}

/// Decides what to keep and remove, removing nothing. `finishing` names the backups a
/// dead prune was removing: those that are incomplete now are removed whatever their age.
pub fn plan(
    survey: &Survey,
    policy: &Policy,
    now: DateTime<Utc>,
    stale_after: Duration,
    finishing: &HashSet<String>,
) -> (Vec<BackupVerdict>, Vec<Leftover>) {
    let mut candidates = Vec::new();
    let mut verdicts = Vec::new();
    for backup in &survey.backups {
        match &backup.sidecar {
            Some(sidecar) => {
                let manifest = crate::store::parse_sidecar(sidecar).ok();
                let started = manifest.as_ref().and_then(|m| DateTime::parse_from_rfc3339(&m.started_at).ok()).map(|t| t.with_timezone(&Utc));
                let time = started.or_else(|| time_of(&backup.name)).or(backup.last_modified).unwrap_or(now);
                // A sidecar that does not parse cannot be trusted for a restore.
                let health = if manifest.is_some() { health_of(backup.verification.as_deref()) } else { Health::Failed };
                candidates.push(Candidate { name: backup.name.clone(), time, health });
            }
            None => verdicts.push(incomplete_verdict(backup, now, stale_after, finishing)),
        }
    }
    let decisions = policy::decide(&candidates, policy, now);
    let slot_ends = policy::slot_ends(&candidates, &decisions, policy, now);
    for decision in decisions {
        let candidate = candidates.iter().find(|c| c.name == decision.name).expect("a decision per candidate");
        let backup = survey.backups.iter().find(|b| b.name == decision.name).expect("a candidate per backup");
        let rules: Vec<String> = decision.rules.iter().map(|rule| rule.label().to_string()).collect();
        let reason = if decision.keep {
            format!("kept by {}", rules.join(", "))
        } else if candidate.health == Health::Failed {
            "its verification failed and no rule keeps it".to_string()
        } else {
            "no rule keeps it".to_string()
        };
        verdicts.push(BackupVerdict {
            name: decision.name.clone(),
            time: Some(candidate.time),
            size: backup.size,
            complete: true,
            verification: Some(candidate.health),
            action: if decision.keep { Action::Keep } else { Action::Remove },
            rules,
            reason,
            locked_until: None,
            legal_hold: false,
            lock_extended_to: None,
            slot_end: slot_ends.get(&decision.name).copied(),
        });
    }
    verdicts.sort_by(|a, b| b.name.cmp(&a.name));
    let kept: HashSet<&str> = verdicts.iter().filter(|v| v.action == Action::Keep).map(|v| v.name.as_str()).collect();
    let mut found = slice_leftovers(survey, &kept, now, stale_after);
    // An upload's start is the store's clock: judged by the wall clock, not `now` (which
    // tests set to a chosen time to judge backups named by that clock).
    found.extend(leftovers(survey, Utc::now().max(now), stale_after));
    (verdicts, found)
}

/// Oplog slices: those of a backup that is not kept go with it (a slice is useless
/// without its chain's base); a slice object without its sidecar (its job died) once
/// older than `stale_after`.
fn slice_leftovers(survey: &Survey, kept: &HashSet<&str>, now: DateTime<Utc>, stale_after: Duration) -> Vec<Leftover> {
    let mut found = Vec::new();
    for slice in survey.slices.iter().filter(|s| !kept.contains(s.base_backup.as_str())) {
        // The sidecar first, as for backups: a prune killed in between leaves a slice
        // without its sidecar (never used, removed later), never a sidecar naming a
        // missing slice.
        for key in [keys::slice_sidecar_key(&slice.file), slice.file.clone()] {
            let reason = format!("an oplog slice of backup {}, which is not kept", slice.base_backup);
            found.push(Leftover { kind: "oplog slice".into(), key, upload_id: None, action: Action::Remove, reason });
        }
    }
    let complete: HashSet<&str> = survey.slices.iter().map(|s| s.file.as_str()).collect();
    for object in survey.objects.iter().filter(|o| keys::is_slice_key(&o.key)) {
        if !complete.contains(object.key.as_str()) && older_than(object.last_modified, Utc::now().max(now), stale_after) {
            let reason =
                format!("an oplog slice without its sidecar for longer than --stale-after {}: its job died", humantime::format_duration(stale_after));
            found.push(Leftover { kind: "oplog slice".into(), key: object.key.clone(), upload_id: None, action: Action::Remove, reason });
        }
    }
    found
}

/// Sidecars and verification records whose archive is gone, and open uploads.
fn leftovers(survey: &Survey, now: DateTime<Utc>, stale_after: Duration) -> Vec<Leftover> {
    let archives: HashSet<&str> = survey.backups.iter().map(|b| b.name.as_str()).collect();
    let mut found = Vec::new();
    for object in &survey.objects {
        let orphan = [
            (SIDECAR_SUFFIX, "sidecar without archive"),
            (VERIFICATION_SUFFIX, "verification without archive"),
            (DRILL_SUFFIX, "drill record without archive"),
        ]
        .into_iter()
        .find_map(|(suffix, kind)| object.key.strip_suffix(suffix).filter(|name| is_backup_name(name) && !archives.contains(name)).map(|_| kind));
        if let Some(kind) = orphan {
            found.push(Leftover {
                kind: kind.to_string(),
                key: object.key.clone(),
                upload_id: None,
                action: Action::Remove,
                reason: "its archive is gone (a prune or a person removed it)".to_string(),
            });
        }
    }
    for upload in &survey.uploads {
        let (action, reason) = if older_than(upload.initiated, now, stale_after) {
            (Action::Remove, format!("open for longer than --stale-after {}: its backup died", humantime::format_duration(stale_after)))
        } else {
            (Action::Keep, "a backup may still be writing it".to_string())
        };
        found.push(Leftover { kind: "open upload".to_string(), key: upload.key.clone(), upload_id: Some(upload.upload_id.clone()), action, reason });
    }
    found
}

/// Runs a prune.
///
/// # Errors
/// A usage error for a policy without any keep rule; [`Error::Locked`] while another
/// prune or a backup holds the store; store errors (nothing is removed when the
/// survey fails); [`Error::Cancelled`] on a signal (after the backup being removed is
/// removed completely).
pub async fn run_prune(options: &PruneOptions, cancel: CancellationToken) -> Result<PruneReport> {
    if options.policy.is_empty() {
        return Err(Error::usage(
            "no keep rule given, so prune would remove every backup: give at least one of --keep-last, --keep-hourly, --keep-daily, \
             --keep-weekly, --keep-monthly, --keep-yearly, --keep-within or --keep-pitr (or their PRUNE_KEEP_* variables)",
        ));
    }
    let store = store::open_with(&options.store, options.s3.clone()).await?;
    prune_store(&store, options, cancel).await
}

/// [`run_prune`] on an open store (the unit tests' entry, with a memory store).
///
/// # Errors
/// As [`run_prune`], but an empty policy is not checked here.
pub async fn prune_store(store: &Store, options: &PruneOptions, cancel: CancellationToken) -> Result<PruneReport> {
    let store = store.clone();
    if options.dry_run {
        let now = crate::test_hooks::now();
        let survey = survey(&store).await?;
        let mut report = report(options, now, &survey, &HashSet::new(), Vec::new());
        // Locks are judged by the wall clock (the store's), never the policy's `now`.
        locks::judge(&store, &mut report, &survey, Utc::now()).await?;
        if report.object_lock {
            (report.noncurrent_versions_removed, report.noncurrent_versions_locked) = locks::sweep_versions(&store, Utc::now(), true).await?;
        }
        return Ok(report);
    }
    let mut lock = StoreLock::acquire(&store, "prune", true).await?;
    let result = prune_locked(options, &store, &mut lock, &cancel).await;
    match result {
        // A killed or failed prune keeps its lock only until it expires; a finished one frees the store now.
        Ok(report) => {
            lock.release().await?;
            Ok(report)
        }
        Err(error) => {
            if let Err(release) = lock.release().await {
                warn!(error = %release, "Cannot remove the prune's lock; it expires on its own.");
            }
            Err(error)
        }
    }
}

/// The prune that follows a successful backup (`backup --prune`, `schedule --prune`):
/// while another prune holds the store it is skipped with a warning (`None`), since the
/// next backup prunes again.
///
/// # Errors
/// As [`run_prune`], except [`Error::Locked`].
pub async fn prune_after_backup(options: &PruneOptions, cancel: CancellationToken) -> Result<Option<PruneReport>> {
    match run_prune(options, cancel).await {
        Ok(report) => Ok(Some(report)),
        Err(Error::Locked(message)) => {
            warn!(%message, "Prune after the backup skipped: another run holds the store; the next backup prunes again.");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

fn report(options: &PruneOptions, now: DateTime<Utc>, survey: &Survey, finishing: &HashSet<String>, stale_locks: Vec<String>) -> PruneReport {
    let (backups, leftovers) = plan(survey, &options.policy, now, options.stale_after, finishing);
    let total = |action: Action| {
        let chosen = backups.iter().filter(|b| b.action == action);
        (chosen.clone().count() as u64, chosen.map(|b| b.size).sum::<u64>())
    };
    let ((kept_backups, kept_bytes), (removed_backups, removed_bytes)) = (total(Action::Keep), total(Action::Remove));
    PruneReport {
        store: options.store.to_string(),
        dry_run: options.dry_run,
        now,
        backups,
        leftovers,
        stale_locks,
        kept_backups,
        kept_bytes,
        removed_backups,
        removed_bytes,
        object_lock: false,
        locked_backups: 0,
        noncurrent_versions_removed: 0,
        noncurrent_versions_locked: 0,
    }
}

async fn prune_locked(options: &PruneOptions, store: &Store, lock: &mut StoreLock, cancel: &CancellationToken) -> Result<PruneReport> {
    let now = crate::test_hooks::now();
    let finishing: HashSet<String> = lock.taken_over.iter().flat_map(|stale| stale.record.removing.iter().cloned()).collect();
    let stale_locks = lock
        .taken_over
        .iter()
        .map(|stale| format!("{} ({} on {}, pid {})", stale.key, stale.record.operation, stale.record.host, stale.record.pid))
        .collect();
    let survey = survey(store).await?;
    let mut report = report(options, now, &survey, &finishing, stale_locks);
    // Locks are judged by the wall clock (the store's), never the policy's `now`.
    let extensions = locks::judge(store, &mut report, &survey, Utc::now()).await?;
    locks::apply(store, &extensions).await?;
    let removing: Vec<&BackupVerdict> = report.backups.iter().filter(|b| b.action == Action::Remove).collect();
    lock.record_removal(removing.iter().map(|b| b.name.clone()).collect()).await?;
    pause_at(Stage::PruneBeforeDelete, cancel).await?;
    let by_name: std::collections::HashMap<&str, &StoredBackup> = survey.backups.iter().map(|b| (b.name.as_str(), b)).collect();
    let leftovers = report.leftovers.iter().filter(|l| l.action == Action::Remove).count() as u64;
    let (live, _display) = crate::progress::Progress::show("prune", "objects");
    live.expect(None, Some(removing.len() as u64 + leftovers));
    for (index, verdict) in removing.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let backup = by_name[verdict.name.as_str()];
        let item = live.item(verdict.name.clone(), Some(1));
        remove_backup(store, backup, index == 0, cancel).await?;
        item.add(0, 1);
        item.finish();
        info!(backup = %verdict.name, reason = %verdict.reason, "Removed.");
    }
    for leftover in report.leftovers.iter().filter(|l| l.action == Action::Remove) {
        match &leftover.upload_id {
            Some(id) => store.objects().abort_multipart(&leftover.key, id).await?,
            None => store.objects().delete(&leftover.key).await?,
        }
        let item = live.item(leftover.key.clone(), Some(1));
        item.add(0, 1);
        item.finish();
        info!(object = %leftover.key, kind = %leftover.kind, "Removed a leftover.");
    }
    if report.object_lock {
        (report.noncurrent_versions_removed, report.noncurrent_versions_locked) = locks::sweep_versions(store, Utc::now(), false).await?;
        info!(
            removed = report.noncurrent_versions_removed,
            locked = report.noncurrent_versions_locked,
            "Removed the noncurrent object versions and delete markers that are no longer locked."
        );
    }
    Ok(report)
}

/// Removes one backup: sidecar, archive, verification and drill records, in that order. The
/// pauses are the test hooks of a prune killed between two steps.
async fn remove_backup(store: &Store, backup: &StoredBackup, first: bool, cancel: &CancellationToken) -> Result<()> {
    let objects = store.objects();
    objects.delete(&keys::sidecar_key(&backup.name)).await?;
    if first {
        pause_at(Stage::PruneAfterSidecar, cancel).await?;
    }
    objects.delete(&backup.archive).await?;
    if first {
        pause_at(Stage::PruneAfterArchive, cancel).await?;
    }
    objects.delete(&keys::verification_key(&backup.name)).await?;
    objects.delete(&keys::drill_key(&backup.name)).await?;
    Ok(())
}

/// The report as the table `prune` prints.
pub fn render(report: &PruneReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // The lock columns only on a bucket with Object Lock.
    let lock_columns = |locked_until: Option<DateTime<Utc>>, legal_hold: bool, extended: Option<DateTime<Utc>>| {
        if !report.object_lock {
            return String::new();
        }
        let day = |time: Option<DateTime<Utc>>| time.map_or("-".to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let until = if legal_hold { format!("{} +hold", day(locked_until)) } else { day(locked_until) };
        format!("{until:<26} {:<21} ", day(extended))
    };
    let header = if report.object_lock { format!("{:<26} {:<21} ", "LOCKED UNTIL", "EXTENDED TO") } else { String::new() };
    let _ = writeln!(out, "{:<24} {:>14} {:<14} {:<7} {header}WHY", "NAME", "SIZE", "VERIFIED", "ACTION");
    for backup in &report.backups {
        let verified = match backup.verification {
            None => "INCOMPLETE",
            Some(Health::Passed) => "passed",
            Some(Health::NotVerified) => "never",
            Some(Health::Failed) => "FAILED",
        };
        let locks = lock_columns(backup.locked_until, backup.legal_hold, backup.lock_extended_to);
        let _ = writeln!(out, "{:<24} {:>14} {:<14} {:<7} {locks}{}", backup.name, backup.size, verified, backup.action.label(), backup.reason);
    }
    for leftover in &report.leftovers {
        let locks = lock_columns(None, false, None);
        let _ = writeln!(out, "{:<24} {:>14} {:<14} {:<7} {locks}{}", leftover.key, "-", leftover.kind, leftover.action.label(), leftover.reason);
    }
    for stale in &report.stale_locks {
        let _ = writeln!(out, "took over the stale lock {stale}");
    }
    let removed_leftovers = report.leftovers.iter().filter(|l| l.action == Action::Remove).count();
    let _ = writeln!(
        out,
        "prune of {}{}: keep {} backups ({:.1} MiB), {} {} backups ({:.1} MiB) and {} leftovers",
        report.store,
        if report.dry_run { " (dry run: nothing removed)" } else { "" },
        report.kept_backups,
        report.kept_bytes as f64 / (1 << 20) as f64,
        if report.dry_run { "would remove" } else { "removed" },
        report.removed_backups,
        report.removed_bytes as f64 / (1 << 20) as f64,
        removed_leftovers
    );
    if report.object_lock {
        let extended = report.backups.iter().filter(|b| b.lock_extended_to.is_some()).count();
        let _ = writeln!(
            out,
            "Object Lock: {} backups locked (left for a later prune), {} locks {}extended, {} noncurrent versions {}removed, {} still locked",
            report.locked_backups,
            extended,
            if report.dry_run { "would be " } else { "" },
            report.noncurrent_versions_removed,
            if report.dry_run { "would be " } else { "" },
            report.noncurrent_versions_locked
        );
    }
    out
}

/// The open uploads of `uploads` older than `stale_after`: what `list` warns about.
pub fn stale_uploads(uploads: &[PendingUpload], now: DateTime<Utc>, stale_after: Duration) -> Vec<&PendingUpload> {
    uploads.iter().filter(|upload| older_than(upload.initiated, now, stale_after)).collect()
}

/// Names of the backups removed by a report, for the unit tests.
#[cfg(test)]
pub fn removed_names(report: &PruneReport) -> std::collections::BTreeSet<String> {
    report.backups.iter().filter(|b| b.action == Action::Remove).map(|b| b.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;

    use super::*;
    use crate::manifest::{Consistency, Manifest, Selection, SourceInfo, ToolInfo, Totals, FORMAT_VERSION};
    use crate::store::lock::{read_locks, LockRecord};
    use crate::store::memory::MemoryStore;
    use crate::store::{ObjectStore, PutMode};

    fn manifest(name: &str, started: DateTime<Utc>) -> Vec<u8> {
        Manifest {
            format_version: FORMAT_VERSION,
            tool: ToolInfo::current(),
            name: name.into(),
            source: SourceInfo { hosts: vec!["mongo:27017".into()], replica_set: None, server_version: None },
            started_at: started.to_rfc3339(),
            finished_at: started.to_rfc3339(),
            compression: "gzip".into(),
            dump_root: format!("data/db/dump/{name}/"),
            consistency: Consistency { oplog: false, reason: None, start: None, end: None, oplog_entries: 0, oplog_bytes: 0, oplog_sha256: None },
            selection: Selection::default(),
            namespaces: vec![],
            totals: Totals::default(),
            encryption: None,
            archive: None,
        }
        .to_json()
    }

    /// A store with one complete backup per day at midnight, the newest on 2026-11-30;
    /// `status` gives each day's verification (`None`: never verified).
    async fn daily_store(days: u32, status: impl Fn(u32) -> Option<&'static str>) -> (MemoryStore, Store) {
        let memory = MemoryStore::new();
        for day in 0..days {
            let started = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() - chrono::Duration::days(i64::from(day));
            let name = crate::naming::minute_name(started);
            memory.put(&format!("{name}.tar.gz"), Bytes::from(vec![0; 100]), PutMode::Create).await.unwrap();
            memory.put(&format!("{name}.manifest.json"), Bytes::from(manifest(&name, started)), PutMode::Create).await.unwrap();
            if let Some(status) = status(day) {
                memory.put(&format!("{name}.verify.json"), Bytes::from(format!("{{\"status\":\"{status}\"}}")), PutMode::Create).await.unwrap();
            }
        }
        (memory.clone(), Store::new(Arc::new(memory)))
    }

    fn options(policy: Policy, dry_run: bool) -> PruneOptions {
        PruneOptions { store: StoreLocation::Local("unused".into()), s3: None, policy, stale_after: DEFAULT_STALE_AFTER, dry_run }
    }

    async fn keys(memory: &MemoryStore) -> Vec<String> {
        memory.list("").await.unwrap().into_iter().map(|o| o.key).collect()
    }

    #[tokio::test]
    async fn a_prune_removes_what_the_policy_drops_in_the_safe_order_and_a_dry_run_nothing() {
        // Day 0 failed its verification, day 5 passed; the rest were never verified.
        let (memory, store) = daily_store(10, |day| match day {
            0 => Some("failed"),
            5 => Some("passed"),
            _ => None,
        })
        .await;
        let policy = Policy { keep_last: Some(2), ..Policy::default() };
        let before = keys(&memory).await;
        let dry = prune_store(&store, &options(policy, true), CancellationToken::new()).await.unwrap();
        assert_eq!(keys(&memory).await, before, "a dry run removes nothing");
        let report = prune_store(&store, &options(policy, false), CancellationToken::new()).await.unwrap();
        assert_eq!(removed_names(&dry), removed_names(&report));
        let kept: Vec<&str> = report.backups.iter().filter(|b| b.action == Action::Keep).map(|b| b.name.as_str()).collect();
        // The failed newest is kept as the newest complete; keep-last skips it and takes
        // the next two; day 5 is the newest that passed verification.
        assert_eq!(kept, ["2026-11-30T00_00", "2026-11-29T00_00", "2026-11-28T00_00", "2026-11-25T00_00"]);
        let newest = &report.backups[0];
        assert_eq!(newest.rules, ["newest complete"]);
        assert_eq!(report.backups.iter().find(|b| b.name == "2026-11-25T00_00").unwrap().rules, ["newest verified"]);
        assert_eq!((report.kept_backups, report.removed_backups, report.removed_bytes), (4, 6, 600));
        let left = keys(&memory).await;
        assert!(left.iter().all(|key| kept.iter().any(|name| key.starts_with(name))), "only kept backups remain: {left:?}");
        assert_eq!(left.len(), 4 * 2 + 2, "archive and sidecar of each, two verification records");
        assert!(read_locks(&store).await.unwrap().is_empty(), "the lock is released");
    }

    #[tokio::test]
    async fn a_prune_finishes_the_removal_of_a_prune_that_died() {
        let (memory, store) = daily_store(3, |_| Some("passed")).await;
        // A dead prune was removing the oldest: its sidecar is gone, its archive and
        // record remain; another dead run left an orphan record of a removed backup.
        memory.delete("2026-11-28T00_00.manifest.json").await.unwrap();
        memory.put("2026-11-01T00_00.verify.json", Bytes::from_static(b"{}"), PutMode::Create).await.unwrap();
        let dead = LockRecord {
            operation: "prune".into(),
            exclusive: true,
            host: "gone".into(),
            released: false,
            pid: 9,
            acquired_at: Utc::now() - chrono::Duration::hours(3),
            expires_at: Utc::now() - chrono::Duration::hours(2),
            removing: vec!["2026-11-28T00_00".into()],
        };
        memory.put("locks/prune-dead.json", Bytes::from(serde_json::to_vec(&dead).unwrap()), PutMode::Create).await.unwrap();
        // Judged long after: the incomplete one is young by its archive's write time.
        let policy = Policy { keep_last: Some(5), ..Policy::default() };
        let report = prune_store(&store, &options(policy, false), CancellationToken::new()).await.unwrap();
        assert_eq!(report.stale_locks.len(), 1, "{:?}", report.stale_locks);
        assert_eq!(removed_names(&report).into_iter().collect::<Vec<_>>(), ["2026-11-28T00_00"]);
        let left = keys(&memory).await;
        assert!(!left.iter().any(|k| k.starts_with("2026-11-28") || k.starts_with("2026-11-01") || k.starts_with("locks/")), "{left:?}");
        assert_eq!(left.len(), 6);
    }

    #[tokio::test]
    async fn open_uploads_and_incomplete_archives_are_removed_only_when_stale() {
        let (memory, store) = daily_store(2, |_| None).await;
        let mut young = store.begin_archive("2026-11-30T12_00.tar.gz").await.unwrap();
        // An hour old by the real clock, which judges it.
        let incomplete_name = crate::naming::minute_name(Utc::now() - chrono::Duration::hours(1));
        memory.put(&format!("{incomplete_name}.tar.gz"), Bytes::from_static(b"half"), PutMode::Create).await.unwrap();
        let policy = Policy { keep_last: Some(1), ..Policy::default() };
        let report = prune_store(&store, &options(policy, false), CancellationToken::new()).await.unwrap();
        let incomplete = report.backups.iter().find(|b| b.name == incomplete_name).unwrap();
        assert_eq!((incomplete.complete, incomplete.action), (false, Action::Keep), "{}", incomplete.reason);
        let upload = report.leftovers.iter().find(|l| l.kind == "open upload").unwrap();
        assert_eq!(upload.action, Action::Keep);
        assert_eq!(store.in_progress().await.unwrap(), ["2026-11-30T12_00"], "a young upload is left alone");

        let stale = PruneOptions { stale_after: Duration::ZERO, ..options(policy, false) };
        let report = prune_store(&store, &stale, CancellationToken::new()).await.unwrap();
        assert!(removed_names(&report).contains(&incomplete_name));
        assert!(store.in_progress().await.unwrap().is_empty(), "the stale upload is aborted");
        assert!(young.abort().await.is_err() || store.in_progress().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_empty_policy_is_refused_before_the_store_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let options = PruneOptions { store: StoreLocation::Local(dir.path().join("missing")), ..options(Policy::default(), false) };
        let error = run_prune(&options, CancellationToken::new()).await.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--keep-last"), "{error}");
        assert!(!dir.path().join("missing").exists());
    }

    /// A memory store whose reads of one object, or whose upload listing, fail: a store
    /// that cannot be listed completely.
    #[derive(Debug)]
    struct Unreadable {
        inner: MemoryStore,
        broken_key: Option<&'static str>,
    }

    fn refused() -> crate::store::StoreError {
        crate::store::StoreError::new(crate::store::StoreErrorKind::Denied, "access denied")
    }

    #[async_trait::async_trait]
    impl ObjectStore for Unreadable {
        fn location(&self, key: &str) -> String {
            self.inner.location(key)
        }
        async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> std::result::Result<(), crate::store::StoreError> {
            self.inner.put(key, bytes, mode).await
        }
        async fn put_multipart(&self, key: &str) -> std::result::Result<Box<dyn crate::store::MultipartUpload>, crate::store::StoreError> {
            self.inner.put_multipart(key).await
        }
        async fn get(&self, key: &str) -> std::result::Result<crate::store::ByteStream, crate::store::StoreError> {
            if Some(key) == self.broken_key {
                return Err(refused());
            }
            self.inner.get(key).await
        }
        async fn head(&self, key: &str) -> std::result::Result<ObjectMeta, crate::store::StoreError> {
            self.inner.head(key).await
        }
        async fn list(&self, prefix: &str) -> std::result::Result<Vec<ObjectMeta>, crate::store::StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> std::result::Result<(), crate::store::StoreError> {
            self.inner.delete(key).await
        }
        async fn list_multipart_uploads(&self, prefix: &str) -> std::result::Result<Vec<PendingUpload>, crate::store::StoreError> {
            if self.broken_key.is_none() {
                return Err(refused());
            }
            self.inner.list_multipart_uploads(prefix).await
        }
        async fn abort_multipart(&self, key: &str, upload_id: &str) -> std::result::Result<(), crate::store::StoreError> {
            self.inner.abort_multipart(key, upload_id).await
        }
    }

    #[tokio::test]
    async fn nothing_is_removed_when_the_store_cannot_be_listed_completely() {
        let (memory, _) = daily_store(6, |_| None).await;
        let before = keys(&memory).await;
        let policy = Policy { keep_last: Some(1), ..Policy::default() };
        for broken_key in [Some("2026-11-27T00_00.manifest.json"), None] {
            let store = Store::new(Arc::new(Unreadable { inner: memory.clone(), broken_key }));
            let error = prune_store(&store, &options(policy, false), CancellationToken::new()).await.unwrap_err();
            assert!(error.to_string().contains("access denied"), "{error}");
            assert_eq!(keys(&memory).await, before, "{broken_key:?}: nothing removed");
        }
    }
}
