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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{NamespaceFilter, NamespaceMap};
    use bson::{doc, RawDocumentBuf};

    fn noop(t: u32) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&doc! { "op": "n", "ns": "", "ts": bson::Timestamp { time: t, increment: 0 }, "o": { "msg": "noop" } }).unwrap()
    }

    /// A client that is never reached: every entry here is skipped before a write.
    async fn unreachable_client() -> mongodb::Client {
        mongodb::Client::with_uri_str("mongodb://127.0.0.1:1/").await.unwrap()
    }

    #[tokio::test]
    async fn the_loop_skips_what_was_replayed_and_the_replayer_what_is_past_its_limit() {
        let client = unreachable_client().await;
        let (filter, map) = (NamespaceFilter::default(), NamespaceMap::default());
        let mut replayer = Replayer::new(&client, &filter, &map, Some(Timestamp { t: 5, i: 0 }));
        let entries: Vec<RawDocumentBuf> = [1, 2, 3, 6].into_iter().map(noop).collect();
        replay_entries(&mut replayer, Some(Timestamp { t: 2, i: 0 }), &CancellationToken::new(), move |sink| {
            for entry in &entries {
                assert!(sink.send(entry), "the replayer takes every entry");
            }
            Ok(())
        })
        .await
        .unwrap();
        // 1 and 2 were replayed already (not counted); 3 is a no-op; 6 is past the limit.
        assert_eq!((replayer.report.applied, replayer.report.skipped, replayer.report.reached), (0, 2, Some(Timestamp { t: 3, i: 0 })));
    }

    #[tokio::test]
    async fn a_reader_error_and_a_cancellation_stop_the_replay() {
        let client = unreachable_client().await;
        let (filter, map) = (NamespaceFilter::default(), NamespaceMap::default());
        let mut replayer = Replayer::new(&client, &filter, &map, None);
        let failed = replay_entries(&mut replayer, None, &CancellationToken::new(), |_| Err(Error::Damaged("unreadable".into()))).await;
        assert_eq!(failed.unwrap_err().to_string(), "unreadable");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let cancelled = replay_entries(&mut replayer, None, &cancel, |sink| {
            sink.send(&noop(1));
            Ok(())
        })
        .await;
        assert!(matches!(cancelled, Err(Error::Cancelled)));
    }
}
