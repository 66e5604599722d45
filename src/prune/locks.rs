//! Prune on a bucket with Object Lock. After the policy has judged the store:
//! - a backup (or leftover object) the policy lets go whose lock has not expired, or
//!   that is under legal hold, is left in place as `locked` (a later prune removes it);
//! - a kept backup whose lock ends before the tier slot it fills is extended to the
//!   slot's end ([`super::policy::slot_ends`]), and the oplog slices of a backup to the
//!   backup's date: locks are only ever extended;
//! - after the removals, noncurrent versions and delete markers (what a delete leaves
//!   on a versioned bucket) are removed once unlocked.
//!
//! On a bucket without Object Lock nothing here runs beyond one configuration read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Action, PruneReport, Survey};
use crate::error::Result;
use crate::store::{keys, LockMode, ObjectLock, Store};

/// A lock prune extends: every object of one backup or slice, to one date.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The objects.
    pub keys: Vec<String>,
    /// Their retention mode (kept as it is).
    pub mode: LockMode,
    /// The new retain-until date.
    pub until: DateTime<Utc>,
}

/// Reads the locks of everything the report judges, turns removals of locked objects
/// into [`Action::Locked`], and plans the extensions. Returns no extension, and leaves
/// the report as it is, on a store without Object Lock.
///
/// # Errors
/// A store error reading a lock (prune then removes nothing).
pub async fn judge(store: &Store, report: &mut PruneReport, survey: &Survey, now: DateTime<Utc>) -> Result<Vec<Extension>> {
    if !store.objects().bucket_lock().await?.enabled {
        return Ok(Vec::new());
    }
    report.object_lock = true;
    let mut extensions = Vec::new();
    let mut kept_until: HashMap<String, DateTime<Utc>> = HashMap::new();
    let judged: Vec<(usize, Vec<String>)> = report
        .backups
        .iter()
        .enumerate()
        .filter_map(|(index, verdict)| {
            let backup = survey.backups.iter().find(|b| b.name == verdict.name)?;
            Some((index, Store::backup_keys(backup)))
        })
        .collect();
    let (indices, key_sets): (Vec<usize>, Vec<Vec<String>>) = judged.into_iter().unzip();
    let locks = store.locks_of(&key_sets).await?;
    for ((index, keys), lock) in indices.into_iter().zip(key_sets).zip(locks) {
        let verdict = &mut report.backups[index];
        verdict.locked_until = lock.retain_until;
        verdict.legal_hold = lock.legal_hold;
        match verdict.action {
            Action::Remove if lock.holds_at(now) => {
                verdict.action = Action::Locked;
                verdict.reason = format!("{}; {}", verdict.reason, why_locked(&lock));
            }
            Action::Keep => {
                if let Some(extension) = extension_to(verdict.slot_end, &lock, keys) {
                    verdict.lock_extended_to = Some(extension.until);
                    extensions.push(extension);
                }
            }
            _ => {}
        }
        if let Some(until) = verdict.lock_extended_to.or(verdict.locked_until) {
            kept_until.insert(verdict.name.clone(), until);
        }
    }
    for leftover in report.leftovers.iter_mut().filter(|l| l.action == Action::Remove && l.upload_id.is_none()) {
        let lock = store.lock_of(std::slice::from_ref(&leftover.key)).await?;
        if lock.holds_at(now) {
            leftover.action = Action::Locked;
            leftover.reason = format!("{}; {}", leftover.reason, why_locked(&lock));
        }
    }
    let removing: std::collections::HashSet<&str> = report.leftovers.iter().filter(|l| l.action != Action::Keep).map(|l| l.key.as_str()).collect();
    for slice in survey.slices.iter().filter(|s| !removing.contains(s.file.as_str())) {
        let keys = vec![slice.file.clone(), keys::slice_sidecar_key(&slice.file)];
        let lock = store.lock_of(&keys).await?;
        if let Some(extension) = extension_to(kept_until.get(&slice.base_backup).copied(), &lock, keys) {
            extensions.push(extension);
        }
    }
    report.locked_backups = report.backups.iter().filter(|b| b.action == Action::Locked).count() as u64;
    let removed = report.backups.iter().filter(|b| b.action == Action::Remove);
    report.removed_backups = removed.clone().count() as u64;
    report.removed_bytes = removed.map(|b| b.size).sum();
    Ok(extensions)
}

/// The extension of a lock to `target`, when the objects are locked (they have a
/// mode) and `target` is later than their date.
fn extension_to(target: Option<DateTime<Utc>>, lock: &ObjectLock, keys: Vec<String>) -> Option<Extension> {
    let (target, mode) = (target?, lock.mode?);
    lock.retain_until.is_none_or(|until| target > until).then_some(Extension { keys, mode, until: target })
}

fn why_locked(lock: &ObjectLock) -> String {
    match (lock.legal_hold, lock.retain_until) {
        (true, _) => "under legal hold (ingest-backup release NAME lets prune remove it)".to_string(),
        (false, Some(until)) => format!("locked until {}; a prune after that removes it", until.to_rfc3339()),
        (false, None) => "locked".to_string(),
    }
}

/// Extends every planned lock.
///
/// # Errors
/// The store refused an extension.
pub async fn apply(store: &Store, extensions: &[Extension]) -> Result<()> {
    for extension in extensions {
        store.extend_locks(&extension.keys, extension.mode, extension.until).await?;
    }
    Ok(())
}

/// Removes the noncurrent versions and delete markers of the store once unlocked (a
/// dry run only counts them). Returns the versions removed and those still locked.
///
/// # Errors
/// The store could not be listed, or refused a removal.
pub async fn sweep_versions(store: &Store, now: DateTime<Utc>, dry_run: bool) -> Result<(u64, u64)> {
    let mut by_key: HashMap<String, Vec<crate::store::ObjectVersion>> = HashMap::new();
    for version in store.objects().list_versions("").await? {
        by_key.entry(version.key.clone()).or_default().push(version);
    }
    let (mut removed, mut locked) = (0, 0);
    for (key, versions) in by_key {
        let mut data_left = versions.iter().any(|v| v.is_latest && !v.delete_marker);
        for version in versions.iter().filter(|v| !v.is_latest && !v.delete_marker) {
            if store.objects().object_lock(&key, Some(&version.version_id)).await?.holds_at(now) {
                locked += 1;
                data_left = true;
                continue;
            }
            if !dry_run {
                store.objects().delete_version(&key, &version.version_id).await?;
            }
            removed += 1;
        }
        // A delete marker goes once no older version is left under it (removing it
        // earlier would bring a deleted object back).
        for marker in versions.iter().filter(|v| v.delete_marker && (!v.is_latest || !data_left)) {
            if !dry_run {
                store.objects().delete_version(&key, &marker.version_id).await?;
            }
            removed += 1;
        }
    }
    Ok((removed, locked))
}
