//! Locks on a store, in the manner of restic's lock files: every run that must not
//! overlap a prune writes its own object under `locks/` and keeps it fresh while it
//! runs. A backup's lock is shared: it is always granted (what a backup writes is newer
//! than anything a running prune listed). A prune's is exclusive: it is granted only
//! when no other live lock exists, except a later prune's (the later of two prunes
//! starting together steps back). Objects are never replaced
//! by another run, so no conditional overwrite is needed: each run writes, then lists,
//! then decides, and both runs of a race see both locks.
//!
//! A lock whose `expires_at` has passed belongs to a run that died (SIGKILL, an OOM
//! kill, a lost node): it is reported and taken over. A prune's lock records the
//! backups it is removing, so the prune that takes it over finishes that removal.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::catalog::Store;
use super::error::StoreErrorKind;
use super::object::{self, PutMode};
use crate::error::{Error, Result};

pub use super::keys::LOCK_PREFIX;

/// How long a lock stays valid without a refresh. A run refreshes its lock every third
/// of this, so a lock outlives its run by at most this long.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(15 * 60);

/// How this process's locks are written: set once by the command line
/// (`--lock-ttl` / `INGEST_BACKUP_LOCK_TTL`, `--host-name` / `HOSTNAME`) before any
/// store is touched; [`LockSettings::default`] until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSettings {
    /// How long a lock stays valid without a refresh.
    pub ttl: Duration,
    /// The host (pod) named in the lock, so that a person can find the run.
    pub host: String,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings { ttl: DEFAULT_LOCK_TTL, host: host_name_of_this_machine() }
    }
}

static SETTINGS: std::sync::OnceLock<LockSettings> = std::sync::OnceLock::new();

/// Sets the lock settings of this process; the first call wins.
pub fn configure(settings: LockSettings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> &'static LockSettings {
    SETTINGS.get_or_init(LockSettings::default)
}

/// The lock lifetime in force.
pub fn lock_ttl() -> Duration {
    settings().ttl
}

/// What a lock object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// `backup` or `prune`.
    pub operation: String,
    /// Whether the lock excludes every other run (a prune).
    pub exclusive: bool,
    /// The host (pod) the run is on.
    pub host: String,
    /// The run's process id.
    pub pid: u32,
    /// When the lock was taken.
    pub acquired_at: DateTime<Utc>,
    /// When the lock counts as stale unless refreshed.
    pub expires_at: DateTime<Utc>,
    /// The backups a prune is removing (recorded before the first deletion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<String>,
    /// The run finished but could not delete its lock object (its credentials cannot
    /// delete: the least-privilege backup policy); the next prune deletes it quietly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl LockRecord {
    fn describe(&self, key: &str) -> String {
        format!("{} on {} (pid {}) since {} ({key})", self.operation, self.host, self.pid, self.acquired_at.to_rfc3339())
    }
}

/// A lock of another run, found when taking one.
#[derive(Debug, Clone)]
pub struct FoundLock {
    /// Its key in the store.
    pub key: String,
    /// Its record.
    pub record: LockRecord,
}

/// A held lock. Release it with [`StoreLock::release`]; dropped without that, it stops
/// being refreshed and goes stale after its lifetime.
#[derive(Debug)]
pub struct StoreLock {
    store: Store,
    key: String,
    record: LockRecord,
    ttl: Duration,
    refresher: Option<JoinHandle<()>>,
    /// Stale locks of dead runs that this lock took over (their objects are deleted).
    pub taken_over: Vec<FoundLock>,
}

/// The machine's name from `/etc/hostname` (the command line passes `HOSTNAME` first).
pub fn host_name_of_this_machine() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

fn encode(record: &LockRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(record).expect("a lock record always serializes"))
}

impl StoreLock {
    /// Takes a lock for `operation` on `store`: shared, or `exclusive`.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the run that holds the store (an exclusive lock asked
    /// while another run is live); store errors.
    pub async fn acquire(store: &Store, operation: &str, exclusive: bool) -> Result<StoreLock> {
        let ttl = lock_ttl();
        let now = Utc::now();
        let record = LockRecord {
            operation: operation.to_string(),
            exclusive,
            host: settings().host.clone(),
            pid: std::process::id(),
            acquired_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            removing: Vec::new(),
            released: false,
        };
        let key = super::keys::lock_key(operation, now, rand::random::<u32>());
        store.objects().put(&key, encode(&record), PutMode::Create).await?;
        let mut lock = StoreLock { store: store.clone(), key, record, ttl, refresher: None, taken_over: Vec::new() };
        match lock.check_others().await {
            Ok(()) => {
                lock.refresher = Some(lock.spawn_refresher());
                Ok(lock)
            }
            Err(error) => {
                if let Err(cleanup) = store.objects().delete(&lock.key).await {
                    warn!(error = %cleanup, "Cannot remove this run's lock object after stepping back; it expires on its own.");
                }
                Err(error)
            }
        }
    }

    /// Reads every other lock: a live one that conflicts fails the acquisition; a stale
    /// one is reported and, for an exclusive lock, taken over.
    async fn check_others(&mut self) -> Result<()> {
        let now = Utc::now();
        let mut released = Vec::new();
        for found in read_locks(&self.store).await? {
            if found.key == self.key {
                continue;
            }
            if found.record.released {
                released.push(found.key);
                continue;
            }
            if found.record.expires_at <= now {
                if self.record.exclusive {
                    warn!(lock = %found.record.describe(&found.key), expired = %found.record.expires_at.to_rfc3339(), "Taking over the stale lock of a run that died.");
                    self.taken_over.push(found);
                }
                continue;
            }
            let ours_first = (self.record.acquired_at, self.key.as_str()) < (found.record.acquired_at, found.key.as_str());
            let conflict = match (self.record.exclusive, found.record.exclusive) {
                // A backup never waits: what it writes is newer than anything a running
                // prune listed, so the prune cannot remove it.
                (false, _) => false,
                (true, false) => true,
                // A later prune steps back from this one; this one goes on.
                (true, true) => !ours_first,
            };
            if conflict {
                return Err(Error::Locked(format!(
                    "the store is locked by {}, valid until {}; wait for that run to finish (a lock of a run that died expires after {} and is then taken over)",
                    found.record.describe(&found.key),
                    found.record.expires_at.to_rfc3339(),
                    humantime::format_duration(self.ttl)
                )));
            }
        }
        for stale in &self.taken_over {
            self.store.objects().delete(&stale.key).await?;
        }
        if self.record.exclusive {
            for key in released {
                self.store.objects().delete(&key).await?;
            }
        }
        Ok(())
    }

    fn spawn_refresher(&self) -> JoinHandle<()> {
        let (store, key, mut record, ttl) = (self.store.clone(), self.key.clone(), self.record.clone(), self.ttl);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                record.expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                if let Err(error) = store.objects().put(&key, encode(&record), PutMode::Overwrite).await {
                    warn!(%error, "Cannot refresh the store lock; it goes stale unless a later refresh succeeds.");
                }
            }
        })
    }

    /// Records the backups this prune is about to remove, so that a prune taking over
    /// the lock after this process dies finishes the removal.
    ///
    /// # Errors
    /// The store refused the write (nothing has been removed yet).
    pub async fn record_removal(&mut self, names: Vec<String>) -> Result<()> {
        self.record.removing = names;
        self.record.expires_at = Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
        self.store.objects().put(&self.key, encode(&self.record), PutMode::Overwrite).await?;
        self.refresher = Some(self.spawn_refresher());
        Ok(())
    }

    /// Stops refreshing and deletes the lock object. Credentials that may not delete
    /// (the `backup` IAM policy) overwrite it as released instead; the next prune deletes it.
    ///
    /// # Errors
    /// The store refused the deletion and the overwrite (the lock then expires on its own).
    pub async fn release(mut self) -> Result<()> {
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
        match self.store.objects().delete(&self.key).await {
            Ok(()) => {}
            Err(error) if error.kind() == StoreErrorKind::Denied => {
                self.record.released = true;
                self.record.expires_at = Utc::now();
                self.store.objects().put(&self.key, encode(&self.record), PutMode::Overwrite).await?;
            }
            Err(error) => return Err(error.into()),
        }
        info!(lock = %self.key, "Released the store lock.");
        Ok(())
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
    }
}

/// Every lock object in `store`. A lock that disappears while being read is skipped;
/// an unreadable one counts as a live exclusive lock of an unknown run until its age
/// passes [`lock_ttl`], so that damage never lets two prunes run at once.
///
/// # Errors
/// The store could not be listed or read.
pub async fn read_locks(store: &Store) -> Result<Vec<FoundLock>> {
    let mut found = Vec::new();
    for meta in store.objects().list(LOCK_PREFIX).await? {
        match object::get_bytes(store.objects().as_ref(), &meta.key).await {
            Ok(bytes) => {
                let record = serde_json::from_slice::<LockRecord>(&bytes).unwrap_or_else(|_| {
                    let written = meta.last_modified.unwrap_or_else(Utc::now);
                    LockRecord {
                        operation: "unknown (unreadable lock object)".into(),
                        exclusive: true,
                        host: "unknown".into(),
                        pid: 0,
                        acquired_at: written,
                        expires_at: written + chrono::Duration::from_std(lock_ttl()).unwrap_or(chrono::Duration::MAX),
                        removing: Vec::new(),
                        released: false,
                    }
                });
                found.push(FoundLock { key: meta.key, record });
            }
            Err(error) if error.kind() == StoreErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn store() -> Store {
        Store::new(Arc::new(MemoryStore::new()))
    }

    #[tokio::test]
    async fn backups_share_and_a_prune_excludes_everyone() {
        let store = store();
        let first = StoreLock::acquire(&store, "backup", false).await.unwrap();
        let second = StoreLock::acquire(&store, "backup", false).await.unwrap();
        let refused = StoreLock::acquire(&store, "prune", true).await.unwrap_err();
        assert!(matches!(refused, Error::Locked(_)), "{refused}");
        assert!(refused.to_string().contains("locked by backup on"), "{refused}");
        assert_eq!(read_locks(&store).await.unwrap().len(), 2, "the refused prune removed its own lock");
        first.release().await.unwrap();
        second.release().await.unwrap();

        let prune = StoreLock::acquire(&store, "prune", true).await.unwrap();
        let backup = StoreLock::acquire(&store, "backup", false).await.unwrap();
        let other_prune = StoreLock::acquire(&store, "prune", true).await.unwrap_err();
        assert!(matches!(other_prune, Error::Locked(_)), "{other_prune}");
        prune.release().await.unwrap();
        backup.release().await.unwrap();
        assert!(read_locks(&store).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_released_lock_is_deleted_by_the_next_prune_without_a_report() {
        let store = store();
        let now = Utc::now();
        let released = LockRecord {
            operation: "backup".into(),
            exclusive: false,
            host: "pod".into(),
            released: true,
            pid: 8,
            acquired_at: now - chrono::Duration::minutes(5),
            expires_at: now - chrono::Duration::minutes(1),
            removing: Vec::new(),
        };
        store.objects().put("locks/backup-released.json", encode(&released), PutMode::Create).await.unwrap();
        let lock = StoreLock::acquire(&store, "prune", true).await.unwrap();
        assert!(lock.taken_over.is_empty(), "a released lock is no dead run: {:?}", lock.taken_over);
        let keys: Vec<String> = read_locks(&store).await.unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(keys.len(), 1, "only the prune's own lock is left: {keys:?}");
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_lock_is_taken_over_with_its_removal_plan() {
        let store = store();
        let dead = LockRecord {
            operation: "prune".into(),
            exclusive: true,
            host: "gone".into(),
            released: false,
            pid: 7,
            acquired_at: Utc::now() - chrono::Duration::hours(2),
            expires_at: Utc::now() - chrono::Duration::hours(1),
            removing: vec!["2018-04-04T11_37".into()],
        };
        store.objects().put("locks/prune-dead.json", encode(&dead), PutMode::Create).await.unwrap();
        let lock = StoreLock::acquire(&store, "prune", true).await.unwrap();
        assert_eq!(lock.taken_over.len(), 1);
        assert_eq!(lock.taken_over[0].record.removing, ["2018-04-04T11_37"]);
        let keys: Vec<String> = read_locks(&store).await.unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(keys.len(), 1, "the stale lock object is gone: {keys:?}");
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_lock_blocks_a_prune_until_it_is_old() {
        let store = store();
        store.objects().put("locks/garbage.json", Bytes::from_static(b"not json"), PutMode::Create).await.unwrap();
        let refused = StoreLock::acquire(&store, "prune", true).await.unwrap_err();
        assert!(refused.to_string().contains("unreadable lock object"), "{refused}");
    }

    #[tokio::test]
    async fn the_removal_plan_is_recorded_in_the_lock() {
        let store = store();
        let mut lock = StoreLock::acquire(&store, "prune", true).await.unwrap();
        lock.record_removal(vec!["a".into(), "b".into()]).await.unwrap();
        let locks = read_locks(&store).await.unwrap();
        assert_eq!(locks[0].record.removing, ["a", "b"]);
        lock.release().await.unwrap();
    }
}
