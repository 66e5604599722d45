//! Hooks for the integration tests, compiled in only with the `test-hooks` cargo
//! feature (the tests and benchmarks enable it; release builds and the image do not,
//! so no environment variable can change a production backup's name or prune's clock).
//! Without the feature every hook is inert: [`now`] is the wall clock,
//! [`split_unbounded_scans`] is false and [`pause_at`] returns at once.
//!
//! - A pause point, in the spirit of mongodump's own test hook that waits before
//!   choosing the oplog end: with `INGEST_BACKUP_TEST_PAUSE` set to `<stage>:<file>`, a
//!   run reaching `<stage>` creates `<file>.waiting` and waits until `<file>` exists (or
//!   the run is cancelled). Tests use it to write to the server, kill it, or signal the
//!   process at a known point. Unset, it costs one environment lookup per stage.
//! - A clock (`INGEST_BACKUP_TEST_NOW`) for backup names and prune's policy.
//! - `INGEST_BACKUP_TEST_SPLIT_UNBOUNDED`, splitting where the server's plan shows no
//!   index bounds.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Whether the hooks are compiled in (the `test-hooks` cargo feature).
pub const ENABLED: bool = cfg!(feature = "test-hooks");

/// The environment variable that sets the clock of `backup` and `prune` (RFC 3339):
/// tests build a history of backups at chosen times with it.
pub const CLOCK_VARIABLE: &str = "INGEST_BACKUP_TEST_NOW";

/// The current time, or the time [`CLOCK_VARIABLE`] names.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    if !ENABLED {
        return chrono::Utc::now();
    }
    std::env::var(CLOCK_VARIABLE)
        .ok()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
        .map_or_else(chrono::Utc::now, |time| time.with_timezone(&chrono::Utc))
}

/// The environment variable that lets `backup` split collections into `_id` ranges on
/// a server whose plan shows no index bounds (SecantusDB scans the whole collection for
/// each range, so splitting is normally declined there): tests prove the ranges' content
/// with it, benchmarks measure what declining saves.
pub const SPLIT_UNBOUNDED_VARIABLE: &str = "INGEST_BACKUP_TEST_SPLIT_UNBOUNDED";

/// Whether [`SPLIT_UNBOUNDED_VARIABLE`] is set to `1`.
pub fn split_unbounded_scans() -> bool {
    ENABLED && std::env::var(SPLIT_UNBOUNDED_VARIABLE).is_ok_and(|value| value == "1")
}

/// The environment variable that arms the hook.
pub const PAUSE_VARIABLE: &str = "INGEST_BACKUP_TEST_PAUSE";

/// Named points of a backup where the hook can pause.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// After discovery, before any collection is read.
    BeforeCollections,
    /// After every collection is read, before the oplog end point is taken.
    BeforeOplogEnd,
    /// The archive stored whole, before its sidecar manifest is written.
    BeforeSidecar,
    /// A prune that recorded its removal plan, before its first deletion.
    PruneBeforeDelete,
    /// A prune that deleted the first removed backup's sidecar, before its archive.
    PruneAfterSidecar,
    /// A prune that deleted the first removed backup's archive, before its verification record.
    PruneAfterArchive,
    /// An oplog slice read into its temporary file, before its upload.
    SliceBeforeUpload,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::BeforeCollections => "before-collections",
            Stage::BeforeOplogEnd => "before-oplog-end",
            Stage::BeforeSidecar => "before-sidecar",
            Stage::PruneBeforeDelete => "prune-before-delete",
            Stage::PruneAfterSidecar => "prune-after-sidecar",
            Stage::PruneAfterArchive => "prune-after-archive",
            Stage::SliceBeforeUpload => "slice-before-upload",
        }
    }
}

/// Waits at `stage` if the hook is armed for it.
///
/// # Errors
/// [`Error::Cancelled`] when the run is cancelled while waiting.
pub async fn pause_at(stage: Stage, cancel: &CancellationToken) -> Result<()> {
    if !ENABLED {
        return Ok(());
    }
    let Ok(setting) = std::env::var(PAUSE_VARIABLE) else { return Ok(()) };
    let Some((wanted, file)) = setting.split_once(':') else { return Ok(()) };
    if wanted != stage.label() {
        return Ok(());
    }
    let release = PathBuf::from(file);
    let mut waiting = release.clone().into_os_string();
    waiting.push(".waiting");
    std::fs::write(&waiting, b"").map_err(Error::io("test hook: cannot create the waiting marker", PathBuf::from(&waiting)))?;
    while !release.exists() {
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    Ok(())
}
