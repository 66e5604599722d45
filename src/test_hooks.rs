//! A pause point for integration tests, in the spirit of mongodump's own test hook
//! that waits before choosing the oplog end: with `INGEST_BACKUP_TEST_PAUSE` set to
//! `<stage>:<file>`, a backup reaching `<stage>` creates `<file>.waiting` and waits
//! until `<file>` exists (or the run is cancelled). Tests use it to write to the
//! server, kill it, or signal the process at a known point of a backup. Unset, it
//! costs one environment lookup per stage.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The environment variable that arms the hook.
pub const PAUSE_VARIABLE: &str = "INGEST_BACKUP_TEST_PAUSE";

/// Named points of a backup where the hook can pause.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// After discovery, before any collection is read.
    BeforeCollections,
    /// After every collection is read, before the oplog end point is taken.
    BeforeOplogEnd,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::BeforeCollections => "before-collections",
            Stage::BeforeOplogEnd => "before-oplog-end",
        }
    }
}

/// Waits at `stage` if the hook is armed for it.
///
/// # Errors
/// [`Error::Cancelled`] when the run is cancelled while waiting.
pub async fn pause_at(stage: Stage, cancel: &CancellationToken) -> Result<()> {
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
