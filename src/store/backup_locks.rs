//! The locks of stored backups: a backup's objects, their lock taken together, their
//! extension, and the lock that objects written after a backup (verification records,
//! oplog slices) copy from it.

use chrono::{DateTime, Utc};

use super::{keys, LockMode, ObjectLock, Store, StoreErrorKind, StoredBackup};
use crate::error::Result;

impl Store {
    /// The objects of a backup that carry its lock: the archive, and when present the
    /// sidecar, the verification record and the drill record.
    pub fn backup_keys(backup: &StoredBackup) -> Vec<String> {
        let mut found = vec![backup.archive.clone()];
        if backup.sidecar.is_some() {
            found.push(keys::sidecar_key(&backup.name));
        }
        if backup.verification.is_some() {
            found.push(keys::verification_key(&backup.name));
        }
        if backup.drill.is_some() {
            found.push(keys::drill_key(&backup.name));
        }
        found
    }

    /// The lock of a set of objects taken together (the latest date, any legal hold).
    ///
    /// # Errors
    /// A store error reading a lock.
    pub async fn lock_of(&self, keys: &[String]) -> Result<ObjectLock> {
        let mut lock = ObjectLock::default();
        for key in keys {
            lock = lock.combine(self.objects().object_lock(key, None).await?);
        }
        Ok(lock)
    }

    /// [`Store::lock_of`] for each set of keys, in order, reading up to
    /// [`super::LIST_CONCURRENCY`] sets at once (a listing of many locked backups).
    ///
    /// # Errors
    /// A store error reading a lock.
    pub async fn locks_of(&self, key_sets: &[Vec<String>]) -> Result<Vec<ObjectLock>> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(key_sets).map(|keys| self.lock_of(keys)).buffered(super::LIST_CONCURRENCY).try_collect().await
    }

    /// Extends the lock of every object in `keys` to `until` with `mode` (the store refuses to shorten one).
    ///
    /// # Errors
    /// A store error: the store refused the extension.
    pub async fn extend_locks(&self, keys: &[String], mode: LockMode, until: DateTime<Utc>) -> Result<()> {
        for key in keys {
            self.objects().set_retention(key, mode, until).await?;
        }
        Ok(())
    }

    /// Gives `keys` (written after backup `name`: a verification record, an oplog slice)
    /// the lock the backup has now, read from its sidecar. Nothing happens when the
    /// backup is not locked, its lock has expired, or it has no sidecar.
    ///
    /// # Errors
    /// A store error reading the backup's lock or setting the objects'.
    pub async fn lock_like_backup(&self, keys: &[String], name: &str) -> Result<()> {
        let lock = match self.objects().object_lock(&keys::sidecar_key(name), None).await {
            Ok(lock) => lock,
            Err(error) if error.kind() == StoreErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        match (lock.mode, lock.retain_until) {
            (Some(mode), Some(until)) if until > Utc::now() => self.extend_locks(keys, mode, until).await,
            _ => Ok(()),
        }
    }
}
