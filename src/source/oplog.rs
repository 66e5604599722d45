//! Point-in-time consistency, as `mongodump --oplog`: note the newest oplog entry
//! before reading any collection, again after the last one, and copy every entry
//! between the two (inclusive) into `oplog.bson`. Replaying it over the dump
//! (`mongorestore --oplogReplay`) yields the state at the end point, which the
//! manifest records.

use bson::{doc, RawDocument, RawDocumentBuf};
use mongodb::options::FindOptions;
use mongodb::{Client, Collection};

use crate::error::{Error, Result};
use crate::oplog::entry::refuse_unreplayable;
use crate::oplog::Timestamp;

/// The oplog of a replica set, seen from one backup.
pub struct OplogWindow {
    client: Client,
    collection: Collection<RawDocumentBuf>,
    /// The newest entry when the backup started.
    pub start: Timestamp,
}

impl OplogWindow {
    /// Opens `local.oplog.rs` and notes its newest entry as the start point.
    ///
    /// # Errors
    /// A MongoDB error, or a consistency error when the oplog is empty.
    pub async fn open(client: &Client) -> Result<Self> {
        let collection = client.database("local").collection::<RawDocumentBuf>("oplog.rs");
        let start = newest_entry(&collection)
            .await?
            .ok_or_else(|| Error::Inconsistent("the oplog local.oplog.rs is empty, so no consistency point can be recorded".into()))?;
        Ok(Self { client: client.clone(), collection, start })
    }

    /// The newest operation time the server reports (`hello.lastWrite`), used to
    /// bound the copy so that it does not chase a busy server forever.
    async fn last_write(&self) -> Option<Timestamp> {
        let hello = self.client.database("admin").run_command(doc! { "hello": 1 }).await.ok()?;
        let ts = hello.get_document("lastWrite").ok()?.get_document("opTime").ok()?.get_timestamp("ts").ok()?;
        Some(ts.into())
    }

    /// Fails when the start entry has been overwritten (the oplog rolled over during
    /// the backup), since the window would then have a gap.
    ///
    /// # Errors
    /// A consistency error saying how to fix it.
    pub async fn ensure_start_still_present(&self) -> Result<()> {
        let oldest = entry_at_end(&self.collection, 1).await?;
        match oldest {
            Some(oldest) if oldest <= self.start => Ok(()),
            _ => Err(Error::Inconsistent(format!(
                "the oplog rolled over during the backup: its start point {}:{} is gone, so the dump cannot be made consistent; \
                 enlarge the oplog or back up when the write load is lower",
                self.start.t, self.start.i
            ))),
        }
    }

    /// Streams every entry from the start point on, in the oplog's natural order
    /// (timestamp order; an explicit sort would need an in-memory sort on a real
    /// server), to `each` with its timestamp, and returns the timestamp of the last
    /// entry: the end point of the backup. The copy stops at the server's last write
    /// as of this call. Because oplog readers never see past a hole, every entry up
    /// to the returned end point is included.
    ///
    /// When the first entry is the start entry itself the window provably has no gap;
    /// otherwise call [`Self::ensure_start_still_present`].
    ///
    /// # Errors
    /// A MongoDB error, a consistency error for an entry mongodump also refuses
    /// (a rename during the backup), or `each`'s error.
    pub async fn copy_from_start(&self, mut each: impl FnMut(&RawDocument, Timestamp) -> Result<()>) -> Result<Timestamp> {
        let start: bson::Timestamp = self.start.into();
        let filter = match self.last_write().await {
            Some(cutoff) if cutoff >= self.start => doc! { "ts": { "$gte": start, "$lte": bson::Timestamp::from(cutoff) } },
            _ => doc! { "ts": { "$gte": start } },
        };
        let context = "reading the oplog window from local.oplog.rs";
        let mut cursor = self.collection.find(filter).await.map_err(Error::mongo(context))?;
        let mut end = self.start;
        while cursor.advance().await.map_err(Error::mongo(context))? {
            let entry = cursor.current();
            refuse_unreplayable(entry)?;
            let ts = entry.get_timestamp("ts").map_err(|e| Error::Inconsistent(format!("an oplog entry has no valid ts field: {e}")))?;
            end = ts.into();
            each(entry, end)?;
        }
        Ok(end)
    }
}

async fn newest_entry(collection: &Collection<RawDocumentBuf>) -> Result<Option<Timestamp>> {
    entry_at_end(collection, -1).await
}

/// The timestamp of the oldest (`direction` 1) or newest (-1) entry in natural order.
async fn entry_at_end(collection: &Collection<RawDocumentBuf>, direction: i32) -> Result<Option<Timestamp>> {
    let options = FindOptions::builder().sort(doc! { "$natural": direction }).limit(1).build();
    let mut cursor = collection.find(doc! {}).with_options(options).await.map_err(Error::mongo("reading local.oplog.rs"))?;
    if !cursor.advance().await.map_err(Error::mongo("reading local.oplog.rs"))? {
        return Ok(None);
    }
    let ts = cursor.current().get_timestamp("ts").map_err(|e| Error::Inconsistent(format!("an oplog entry has no valid ts field: {e}")))?;
    Ok(Some(ts.into()))
}
