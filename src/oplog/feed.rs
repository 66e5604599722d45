//! The one replay loop, shared by `restore --oplog-replay` (the backup's spooled
//! `oplog.bson`) and `restore --to-time` (the oplog slices): entries are read on a
//! blocking thread and handed through a channel of [`CHANNEL_CAPACITY`] entries to the
//! [`Replayer`], which applies them in order on the runtime.

use bson::{RawDocument, RawDocumentBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::replay::Replayer;
use super::timestamp::Timestamp;
use crate::error::{Error, Result};

/// Entries in flight between the reading thread and the replayer.
pub const CHANNEL_CAPACITY: usize = 256;

/// The reading thread's end of the channel.
pub struct EntrySender(mpsc::Sender<RawDocumentBuf>);

impl EntrySender {
    /// Hands one entry to the replayer, waiting while the channel is full. `false` once
    /// the replayer has stopped (an error, a cancellation): the reader should stop too.
    pub fn send(&self, entry: &RawDocument) -> bool {
        self.0.blocking_send(entry.to_raw_document_buf()).is_ok()
    }
}

/// Applies to `replayer`, in order, the entries `read` sends from a blocking thread.
/// Entries at or before `after` are skipped (not counted): they were applied already,
/// by an earlier slice that overlaps this one. `None` skips nothing.
///
/// # Errors
/// The target refused an entry (named), [`Error::Cancelled`], or `read`'s own error
/// (an unreadable spool or slice) once it has finished.
pub async fn replay_entries<R>(replayer: &mut Replayer<'_>, after: Option<Timestamp>, cancel: &CancellationToken, read: R) -> Result<()>
where
    R: FnOnce(&EntrySender) -> Result<()> + Send + 'static,
{
    let (entries, mut received) = mpsc::channel::<RawDocumentBuf>(CHANNEL_CAPACITY);
    let reader = tokio::task::spawn_blocking(move || read(&EntrySender(entries)));
    while let Some(entry) = received.recv().await {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let ts = entry.get_timestamp("ts").ok().map(Timestamp::from);
        if ts.is_some() && ts <= after {
            continue;
        }
        replayer.apply(&entry).await?;
    }
    reader.await.expect("the oplog reader does not panic")?;
    Ok(())
}
