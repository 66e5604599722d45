//! Replaying oplog slices over a restored backup, up to a target time, with the
//! oplog module's [`Replayer`] (idempotent inserts, `$v: 2` updates, commands,
//! transactions as `applyOps`) fed by its one replay loop ([`replay_entries`]).
//!
//! Each slice is fetched whole into a temporary file and its size and SHA-256 are
//! checked against its sidecar before any of its entries is applied: a damaged slice
//! stops the restore before it writes anything of that slice.

use std::io::{Read, Seek, Write};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::SliceMeta;
use crate::crypto::stream::OpenReader;
use crate::crypto::{is_encrypted, Identities};
use crate::dump::bson_reader::BsonReader;
use crate::error::{Error, Result};
use crate::oplog::feed::replay_entries;
use crate::oplog::replay::Replayer;
use crate::oplog::timestamp::Timestamp;
use crate::store::Store;

/// Fetches a slice into a temporary file and checks it against its sidecar.
///
/// # Errors
/// The store could not be read; the slice's size or SHA-256 differs from its sidecar.
pub async fn fetch_checked(store: &Store, slice: &SliceMeta, spool_dir: &std::path::Path) -> Result<std::fs::File> {
    let mut stream = store.objects().get(&slice.file).await?;
    let temp = spool_dir;
    let mut file = super::scratch_file(spool_dir, "a temporary file for an oplog slice")?;
    let (mut sha256, mut size) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        sha256.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).map_err(Error::io("cannot write a temporary file for an oplog slice", &temp))?;
    }
    let digest = hex::encode(sha256.finalize());
    if size != slice.stored_bytes || digest != slice.sha256 {
        return Err(Error::Damaged(format!(
            "the oplog slice {} is damaged: {size} bytes with SHA-256 {digest}, its sidecar says {} bytes with {}; nothing of it was applied",
            slice.file, slice.stored_bytes, slice.sha256
        )));
    }
    file.rewind().map_err(Error::io("cannot read back a temporary file for an oplog slice", &temp))?;
    Ok(file)
}

/// Reads the entries of a fetched slice (gzip BSON) and hands each to `each`, in order.
///
/// # Errors
/// The slice is not gzip or not whole BSON documents, or `each` failed.
pub fn read_entries(
    file: std::fs::File,
    name: &str,
    identities: Option<&Identities>,
    mut each: impl FnMut(&bson::RawDocument) -> Result<bool>,
) -> Result<()> {
    let opened = OpenReader::new(std::io::BufReader::new(file), is_encrypted(name), identities)
        .map_err(|e| Error::Damaged(format!("the oplog slice {name} cannot be read: {e}")))?;
    let decoder: Box<dyn Read> = Box::new(flate2::read::MultiGzDecoder::new(opened));
    let mut reader = BsonReader::new(decoder);
    while let Some(entry) = reader.next_document().map_err(|e| Error::Damaged(format!("the oplog slice {name} is unreadable: {e}")))? {
        if !each(entry)? {
            break;
        }
    }
    Ok(())
}

/// Applies `slices` in order with `replayer`, up to and including its limit (the
/// target); its report counts what was applied.
///
/// # Errors
/// A damaged slice, a target that refuses an entry (named), [`Error::Cancelled`].
pub async fn replay_slices(
    store: &Store,
    replayer: &mut Replayer<'_>,
    slices: &[SliceMeta],
    identities: Option<Arc<Identities>>,
    spool_dir: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<()> {
    let target = replayer.limit();
    // Slices of a chain may overlap (two runs over one window): entries at or before
    // the end of the slices already replayed are skipped, so each is applied once.
    // (Entries can share a timestamp, the writes of one transaction on some servers,
    // so the boundary is the slices' ends, never the last entry applied.)
    let mut replayed_through: Option<Timestamp> = None;
    for slice in slices {
        let file = fetch_checked(store, slice, spool_dir).await?;
        let (name, identities) = (slice.file.clone(), identities.clone());
        replay_entries(replayer, replayed_through, cancel, move |sink| {
            read_entries(file, &name, identities.as_deref(), |entry| {
                let past_target = entry.get_timestamp("ts").is_ok_and(|ts| target.is_some_and(|target| Timestamp::from(ts) > target));
                Ok(!past_target && sink.send(entry))
            })
        })
        .await?;
        replayed_through = replayed_through.max(Some(slice.end));
        info!(slice = %slice.file, applied = replayer.report.applied, "Replayed an oplog slice.");
    }
    Ok(())
}
