//! Immutable backups (S3 Object Lock): the lock a backup is written with and the checks
//! of the bucket before anything is read from the database. The locks of stored
//! backups are read and extended by `store::backup_locks`; prune's side (extensions,
//! locked backups, old versions) is `prune::locks`.

use chrono::{DateTime, Duration, Timelike, Utc};

use crate::error::{Error, Result};
use crate::naming::time_of;
use crate::prune::policy::Policy;
use crate::store::{LockMode, Store, StoreLocation, WriteLock, SIDECAR_SUFFIX};

/// What `backup --lock-mode` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct LockRequest {
    /// The retention mode.
    pub mode: LockMode,
    /// `--lock-days`: how long a new backup is locked; `None` derives it from `policy`.
    pub window: Option<Duration>,
    /// The retention policy the lock follows (the `--keep-*` flags).
    pub policy: Policy,
}

/// The bucket setup the refusals point to.
const SETUP: &str = "create the bucket with Object Lock (aws s3api create-bucket --bucket B --object-lock-enabled-for-bucket; \
     on an existing bucket: aws s3api put-bucket-versioning --bucket B --versioning-configuration Status=Enabled, then \
     aws s3api put-object-lock-configuration --bucket B --object-lock-configuration ObjectLockEnabled=Enabled)";

/// Checks the bucket and decides the lock of a backup taken at `now`, before the
/// database is read.
///
/// # Errors
/// A usage error (exit 2) naming the bucket setting and the fix: a store that is not
/// an S3 bucket with Object Lock; a bucket default retention longer than the policy keeps
/// any backup (prune could never remove one in time); no way to tell how long the policy
/// keeps a new backup. A store error when the bucket cannot be asked.
pub async fn write_lock_for_backup(store: &Store, location: &StoreLocation, request: &LockRequest, now: DateTime<Utc>) -> Result<WriteLock> {
    let mode = request.mode.label();
    if !matches!(location, StoreLocation::S3 { .. }) {
        return Err(Error::usage(format!(
            "--lock-mode {mode} (LOCK_MODE): the store {location} is a directory, which cannot lock objects; use an S3 bucket with Object Lock, or drop --lock-mode"
        )));
    }
    let bucket = store.objects().bucket_lock().await?;
    if !bucket.enabled {
        return Err(Error::usage(format!(
            "--lock-mode {mode} (LOCK_MODE): the bucket of {location} does not have Object Lock enabled, so nothing written there can be locked; {SETUP}, or drop --lock-mode"
        )));
    }
    let interval = interval_between_backups(store).await?;
    let window = match request.window.or_else(|| request.policy.first_lock_window(interval)) {
        Some(window) => window,
        None => {
            return Err(Error::usage(format!(
                "--lock-mode {mode}: cannot tell how long the retention policy keeps a new backup (keep-last counts backups, and the store has \
                 fewer than two to measure their interval; the other rules name no window); give --lock-days N (LOCK_DAYS) or --keep-within"
            )))
        }
    };
    if let Some((default_mode, default)) = bucket.default_retention {
        let longest = request.policy.longest_keep(interval).map_or(window, |keep| keep.max(window));
        if default > longest {
            return Err(Error::usage(format!(
                "--lock-mode {mode}: the bucket of {location} locks every new object by default for {} days ({}), longer than the retention \
                 policy keeps any backup ({} days): prune could not remove a backup until long after the policy lets it go. Shorten or remove \
                 the bucket's default retention (aws s3api put-object-lock-configuration --bucket B --object-lock-configuration \
                 ObjectLockEnabled=Enabled): this tool locks each object itself, for as long as the policy keeps it",
                default.num_days(),
                default_mode.label(),
                longest.num_days()
            )));
        }
    }
    // Whole seconds: what S3 keeps.
    let retain_until = now
        .checked_add_signed(window)
        .and_then(|until| until.with_nanosecond(0))
        .ok_or_else(|| Error::usage(format!("--lock-days {} is too far in the future", window.num_days())))?;
    Ok(WriteLock { mode: request.mode, retain_until })
}

/// The time between the two newest backups of the store, from their names.
async fn interval_between_backups(store: &Store) -> Result<Option<Duration>> {
    let mut times: Vec<DateTime<Utc>> =
        store.objects().list("").await?.iter().filter_map(|o| o.key.strip_suffix(SIDECAR_SUFFIX)).filter_map(time_of).collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    Ok(times.get(1).map(|older| times[0] - *older).filter(|interval| *interval > Duration::zero()))
}
