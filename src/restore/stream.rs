//! The reading side of a restore, on a blocking thread: the archive is streamed from
//! the store once; each planned `.bson` member is cut into insert batches (sent down a
//! bounded channel) while its digests are recomputed, and `oplog.bson` is spooled for
//! the replay that follows the inserts.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bson::RawDocumentBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::legacy::normalize;
use super::plan::Plan;
use super::target::Batch;
use crate::archive::reader::ArchiveReader;
use crate::archive::ArchiveDigest;
use crate::digest::{DigestSummary, NamespaceDigest};
use crate::dump::bson_reader::{BsonReader, BsonStreamError};
use crate::dump::spool::{BsonSpool, SpoolGauge, SpooledBson};
use crate::error::{Error, Result};
use crate::progress::{ItemProgress, Progress};

/// Most bytes in one insert batch (the server's message limit is 48 MB).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// Largest embedded manifest read into memory.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// What reading the archive produced.
pub struct Streamed {
    /// Digests of each planned namespace's member, by plan index (`None`: not in the archive).
    pub digests: Vec<Option<DigestSummary>>,
    /// The spooled `oplog.bson` and its digests, when the plan has one.
    pub oplog: Option<(SpooledBson, DigestSummary)>,
    /// The archive's own copy of the manifest, when the plan names one and it was there.
    pub embedded_manifest: Option<Vec<u8>>,
    /// Size and SHA-256 of the stored archive bytes.
    pub archive: ArchiveDigest,
}

/// Where the documents read go, and how they are cut and spooled.
pub struct Feed {
    /// The inserters' channel (`2 x --parallel` batches).
    pub batches: mpsc::Sender<Batch>,
    /// Documents per insert batch (`--batch-size`).
    pub batch_documents: usize,
    /// Where `oplog.bson` is spooled for the replay.
    pub spool_dir: PathBuf,
    /// Stops the read between batches and members.
    pub cancel: CancellationToken,
    /// What a person watches.
    pub live: Progress,
}

/// Reads the archive opened as `reader` (decrypted when encrypted, see
/// [`ArchiveReader::open`]) and feeds `feed`'s batches. Blocks: run it on a blocking
/// thread.
///
/// # Errors
/// The archive is unreadable or a member is malformed (named), the spool failed, the
/// inserts stopped, or the run was cancelled.
pub fn stream_archive<R: Read>(mut reader: ArchiveReader<R>, plan: &Plan, feed: &Feed) -> Result<Streamed> {
    let by_member: HashMap<&str, usize> = plan.namespaces.iter().enumerate().filter_map(|(i, n)| Some((n.bson_member.as_deref()?, i))).collect();
    let mut digests = vec![None; plan.namespaces.len()];
    let mut oplog = None;
    let mut embedded_manifest = None;
    let unreadable = |e: std::io::Error| Error::Archive { context: "reading the archive".into(), source: e };
    for entry in reader.entries().map_err(unreadable)? {
        if feed.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let mut entry = entry.map_err(unreadable)?;
        let path = normalize(&entry.path().map_err(unreadable)?.to_string_lossy());
        if let Some(&index) = by_member.get(path.as_str()) {
            if digests[index].is_some() {
                return Err(duplicated(&path));
            }
            let planned = &plan.namespaces[index];
            let item = feed.live.item(planned.target(), planned.expected.as_ref().map(|expected| expected.bytes));
            let summary = send_documents(&mut entry, &path, index, feed, &item)?;
            item.finish();
            info!(namespace = %plan.namespaces[index].target(), documents = summary.documents, "Read from the archive.");
            digests[index] = Some(summary);
        } else if plan.oplog_member.as_deref() == Some(path.as_str()) {
            if oplog.is_some() {
                return Err(duplicated(&path));
            }
            oplog = Some(spool_oplog(&mut entry, &path, &feed.spool_dir)?);
        } else if plan.manifest_member.as_deref() == Some(path.as_str()) {
            let mut bytes = Vec::new();
            (&mut entry).take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes).map_err(unreadable)?;
            embedded_manifest = Some(bytes);
        }
    }
    let archive = reader.finish().map_err(unreadable)?;
    Ok(Streamed { digests, oplog, embedded_manifest, archive })
}

/// A member that appears a second time: a mongodump layout holds each file once, so the
/// archive was altered (its documents would otherwise be inserted twice).
fn duplicated(path: &str) -> Error {
    Error::Damaged(format!("{path} appears twice in the archive, which is damaged; the restore stopped, restore an older backup"))
}

fn damaged(path: &str, error: BsonStreamError) -> Error {
    match error {
        BsonStreamError::Io { source, .. } => Error::Archive { context: format!("reading {path}"), source },
        malformed => Error::Damaged(format!("{path} in the archive is damaged ({malformed}); the restore stopped, restore an older backup")),
    }
}

/// Cuts one member's documents into batches for plan namespace `namespace`, digesting them.
fn send_documents(member: &mut impl Read, path: &str, namespace: usize, feed: &Feed, progress: &ItemProgress) -> Result<DigestSummary> {
    let batch_documents = feed.batch_documents;
    let mut reader = BsonReader::new(member);
    let mut digest = NamespaceDigest::default();
    let mut documents = Vec::with_capacity(batch_documents);
    let mut bytes = 0;
    let send = |documents: Vec<RawDocumentBuf>| {
        feed.batches.blocking_send(Batch { namespace, documents }).map_err(|_| Error::Damaged("the inserts stopped".into()))
    };
    while let Some(document) = reader.next_document().map_err(|e| damaged(path, e))? {
        digest.add_document(document.as_bytes());
        bytes += document.as_bytes().len();
        documents.push(document.to_raw_document_buf());
        if documents.len() >= batch_documents || bytes >= MAX_BATCH_BYTES {
            if feed.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            progress.add(documents.len() as u64, bytes as u64);
            send(std::mem::replace(&mut documents, Vec::with_capacity(batch_documents)))?;
            bytes = 0;
        }
    }
    if !documents.is_empty() {
        progress.add(documents.len() as u64, bytes as u64);
        send(documents)?;
    }
    Ok(digest.finish())
}

/// Spools `oplog.bson` for the replay, digesting it on the way so it can be checked
/// against the manifest before a single entry is applied.
fn spool_oplog(member: &mut impl Read, path: &str, spool_dir: &Path) -> Result<(SpooledBson, DigestSummary)> {
    let mut spool = BsonSpool::new(spool_dir, 4 << 20, &SpoolGauge::default());
    let mut reader = BsonReader::new(member);
    let mut digest = NamespaceDigest::default();
    let spool_error = || Error::io("cannot spool oplog.bson for the replay; check free space", spool_dir);
    while let Some(entry) = reader.next_document().map_err(|e| damaged(path, e))? {
        digest.add_document(entry.as_bytes());
        spool.push(entry.as_bytes()).map_err(spool_error())?;
    }
    Ok((spool.finish().map_err(spool_error())?, digest.finish()))
}
