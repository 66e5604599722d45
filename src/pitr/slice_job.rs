//! `ingest-backup oplog`: one slice of `local.oplog.rs`, from where the chain of the
//! newest backup ends up to the newest visible entry.
//!
//! The entries are read after the chain's end (`ts > start`), up to the server's last
//! write as of the start of the read, filtered like a backup's oplog, and written
//! gzip-compressed to a temporary file while their count, size and the compressed
//! bytes' SHA-256 are taken. Only then is the slice uploaded under its final name
//! (`oplog/<start>_<end>.bson.gz`, the end being the last entry read) and its sidecar
//! written, last. A failure, a signal or a gap leaves nothing in the store.
//!
//! A gap: the oplog no longer holds the chain's end (it rolled over since the last
//! slice or backup). The writes in between are lost to point-in-time recovery; the job
//! writes nothing, exits 1 and says that a full backup is needed (the next chain
//! starts from it).

use std::io::{Seek, Write};

use bson::{doc, RawDocumentBuf};
use chrono::SecondsFormat;
use mongodb::options::{FindOptions, ReadConcern};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{bases, chains, list_slices, sidecar_key, slice_key, SliceMeta};
use crate::crypto::stream::SealWriter;
use crate::crypto::Recipients;
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::oplog::entry::entry_kept_by;
use crate::oplog::timestamp::{timestamp_label, wall_time, Timestamp};
use crate::retry::RetryPolicy;
use crate::source;
use crate::store::s3::S3Settings;
use crate::store::{self, PutMode, Store, StoreLocation};
use crate::test_hooks::{pause_at, Stage};

/// Everything the slice job needs, validated.
#[derive(Debug, Clone)]
pub struct SliceOptions {
    /// The replica set to read the oplog of.
    pub uri: String,
    /// The store the chain lives in.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// The namespaces whose entries are kept (as the backup's).
    pub filter: NamespaceFilter,
    /// Retries of connecting.
    pub retry: RetryPolicy,
    /// With no backup to chain from, write nothing and succeed (the scheduler, before
    /// its first backup) instead of failing (the one-shot command).
    pub skip_without_backup: bool,
    /// Encrypt each slice to these public keys (`None`: not encrypted), as the backups.
    pub recipients: Option<Recipients>,
    /// Where the slice is staged before its upload (the spool directory).
    pub spool_dir: std::path::PathBuf,
}

/// What the job did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SliceReport {
    /// The slice written; `None` when the window held no entry.
    pub slice: Option<SliceMeta>,
    /// Where the window started (the chain's end); `None` without a backup to chain from.
    pub start: Option<Timestamp>,
    /// The backup the chain starts from; `None` when there is none yet.
    pub base_backup: Option<String>,
}

/// A gzip writer over a temporary file that hashes and counts what reaches the file.
struct HashingFile {
    file: std::fs::File,
    sha256: Sha256,
    size: u64,
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(data)?;
        self.sha256.update(&data[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A slice written to a temporary file, not yet in the store.
struct Spooled {
    file: std::fs::File,
    sha256: String,
    stored_bytes: u64,
    entries: u64,
    bytes: u64,
    end: Option<Timestamp>,
}

/// Takes one slice.
///
/// # Errors
/// A usage error for a server without an oplog (standalone, FerretDB); a consistency
/// error when the store holds no backup to chain from; [`Error::OplogGap`] when the
/// oplog rolled over past the chain's end; server and store errors;
/// [`Error::Cancelled`]. In every case nothing is left in the store.
pub async fn run_oplog_slice(options: &SliceOptions, cancel: CancellationToken) -> Result<SliceReport> {
    let store = store::open_with(&options.store, options.s3.clone()).await?;
    let source = source::connect_retrying(&options.uri, &options.retry).await?;
    if source.replica_set.is_none() {
        return Err(Error::usage(format!(
            "{} is not a replica set member, so it has no oplog to slice (a standalone mongod or FerretDB): point-in-time recovery needs a \
             replica set; nightly `ingest-backup backup` runs still protect this server",
            source.hosts.join(",")
        )));
    }
    let backups = store.list().await?;
    let mut all_bases = bases(&backups);
    let Some(base) = all_bases.pop() else {
        if options.skip_without_backup {
            info!(store = %options.store, "No backup to chain oplog slices from yet: nothing written.");
            return Ok(SliceReport { slice: None, start: None, base_backup: None });
        }
        return Err(Error::Refused(format!(
            "{} holds no complete backup with an oplog consistency point to chain slices from; run `ingest-backup backup` against the replica set first",
            options.store
        )));
    };
    let slices = list_slices(&store).await?;
    let oplog = source.client.database("local").collection::<RawDocumentBuf>("oplog.rs");
    let window = Window { store: &store, oplog: &oplog, options, cancel: &cancel };
    // The chain of the backup before carries on up to this backup's consistency point,
    // so the night's backup leaves no hole between the two chains.
    if let Some(previous) = all_bases.pop() {
        let chain = chains(std::slice::from_ref(&previous), &slices).pop().expect("one chain per base");
        if !chain.slices.is_empty() && chain.to < base.end {
            let previous_end = chain.slices.last().map(|slice| slice.end);
            match window.write(&previous.name, chain.to, previous_end, Some(base.end)).await {
                Ok(_) => {}
                // Too late to bridge: the new chain still starts at its backup.
                Err(Error::OplogGap(message)) => {
                    tracing::warn!(%message, "The chain of the backup before could not be carried on to the new backup.")
                }
                Err(error) => return Err(error),
            }
        }
    }
    let chain = chains(std::slice::from_ref(&base), &slices).pop().expect("one chain per base");
    let start = chain.to;
    let previous_end = chain.slices.last().map(|slice| slice.end);
    let slice = window.write(&base.name, start, previous_end, None).await?;
    Ok(SliceReport { slice, start: Some(start), base_backup: Some(base.name.clone()) })
}

/// One oplog window to write as a slice.
struct Window<'a> {
    store: &'a Store,
    oplog: &'a mongodb::Collection<RawDocumentBuf>,
    options: &'a SliceOptions,
    cancel: &'a CancellationToken,
}

impl Window<'_> {
    /// Writes the slice of the entries after `start` (up to `until`, or the newest
    /// visible entry) to the chain of `base`; `None` when there is no entry.
    async fn write(&self, base: &str, start: Timestamp, previous_end: Option<Timestamp>, until: Option<Timestamp>) -> Result<Option<SliceMeta>> {
        ensure_still_held(self.oplog, start, base).await?;
        let newest = match last_write(self.oplog.client()).await? {
            Some(newest) => newest,
            None => return Ok(None),
        };
        let cutoff = until.map_or(newest, |until| until.min(newest));
        if cutoff <= start {
            info!(start = %timestamp_label(start), base = %base, "No oplog entry since the chain's end: nothing to write.");
            return Ok(None);
        }
        let recipients = self.options.recipients.clone();
        let spooled = spool_window(self.oplog, start, cutoff, &self.options.filter, recipients, &self.options.spool_dir, self.cancel).await?;
        // The oplog may have rolled over while it was read: the window must still start at the chain's end.
        ensure_still_held(self.oplog, start, base).await?;
        // The slice ends at the last entry it read, never at the cutoff: the server's
        // last write can be ahead of what a read sees (a lagging member, oplog holes of
        // writes still committing), and the next slice starts where this one ends.
        let Some(end) = spooled.end else { return Ok(None) };
        pause_at(Stage::SliceBeforeUpload, self.cancel).await?;
        let encrypted = self.options.recipients.is_some();
        let key = slice_key(start, end, encrypted);
        // The filter patterns may name namespaces: an encrypted slice's sidecar leaves them out.
        let patterns = |patterns: &[String]| if encrypted { Vec::new() } else { patterns.to_vec() };
        let meta = SliceMeta {
            file: key.clone(),
            start,
            end,
            start_time: wall_time(start).to_rfc3339_opts(SecondsFormat::Secs, true),
            end_time: wall_time(end).to_rfc3339_opts(SecondsFormat::Secs, true),
            entries: spooled.entries,
            bytes: spooled.bytes,
            stored_bytes: spooled.stored_bytes,
            sha256: spooled.sha256.clone(),
            compression: "gzip".into(),
            previous_end,
            base_backup: base.to_string(),
            include: patterns(self.options.filter.include()),
            exclude: patterns(self.options.filter.exclude()),
            recipients: self.options.recipients.as_ref().map(Recipients::public_keys),
        };
        upload(self.store, &key, spooled.file, &self.options.spool_dir, self.cancel).await?;
        let sidecar = serde_json::to_vec_pretty(&meta).expect("a slice sidecar always serializes");
        self.store.objects().put(&sidecar_key(&key), sidecar.into(), PutMode::Create).await?;
        // A slice is kept as long as the backup it restores from: it starts with that backup's lock.
        self.store.lock_like_backup(&[key.clone(), sidecar_key(&key)], base).await?;
        info!(slice = %key, entries = meta.entries, bytes = meta.bytes, base = %base, "Oplog slice written.");
        Ok(Some(meta))
    }
}

/// Fails with a gap when the oplog's oldest entry is after `start`.
async fn ensure_still_held(oplog: &mongodb::Collection<RawDocumentBuf>, start: Timestamp, base: &str) -> Result<()> {
    let options = FindOptions::builder().sort(doc! { "$natural": 1 }).limit(1).build();
    let mut cursor = oplog.find(doc! {}).with_options(options).await.map_err(Error::mongo("reading local.oplog.rs"))?;
    let oldest = if cursor.advance().await.map_err(Error::mongo("reading local.oplog.rs"))? {
        cursor.current().get_timestamp("ts").ok().map(Timestamp::from)
    } else {
        None
    };
    match oldest {
        Some(oldest) if oldest <= start => Ok(()),
        oldest => Err(Error::OplogGap(format!(
            "gap in point-in-time recovery: the oplog no longer holds {} ({}), where the chain of backup {base} ends; its oldest entry is {}. \
             The writes in between are lost to point-in-time recovery and nothing was written. Run a full backup now (`ingest-backup backup`): \
             the next slice chains from it. Then enlarge the oplog or take slices more often",
            timestamp_label(start),
            wall_time(start).to_rfc3339(),
            oldest.map_or("none (empty)".to_string(), |o| format!("{} ({})", timestamp_label(o), wall_time(o).to_rfc3339()))
        ))),
    }
}

/// The newest entry the server reports (`hello.lastWrite.opTime.ts`).
async fn last_write(client: &mongodb::Client) -> Result<Option<Timestamp>> {
    let hello = client.database("admin").run_command(doc! { "hello": 1 }).await.map_err(Error::mongo("asking the server for its last write"))?;
    Ok(hello.get_document("lastWrite").ok().and_then(|w| w.get_document("opTime").ok()).and_then(|o| o.get_timestamp("ts").ok()).map(Into::into))
}

/// Reads the entries in `(start, cutoff]` into a gzip temporary file.
async fn spool_window(
    oplog: &mongodb::Collection<RawDocumentBuf>,
    start: Timestamp,
    cutoff: Timestamp,
    filter: &NamespaceFilter,
    recipients: Option<Recipients>,
    spool_dir: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<Spooled> {
    let (entries, mut received) = mpsc::channel::<RawDocumentBuf>(256);
    let temp = spool_dir.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, String, u64)> {
        let file = super::scratch_file(&temp, "the slice's temporary file")?;
        let cannot_write = || Error::io("cannot write the slice's temporary file", &temp);
        // gzip, then age when encrypted, then the hash of the stored bytes.
        let sealed = SealWriter::new(HashingFile { file, sha256: Sha256::new(), size: 0 }, recipients.as_ref()).map_err(cannot_write())?;
        let mut gzip = flate2::write::GzEncoder::new(sealed, flate2::Compression::new(6));
        while let Some(entry) = received.blocking_recv() {
            gzip.write_all(entry.as_bytes()).map_err(cannot_write())?;
        }
        let mut hashed = gzip.finish().and_then(SealWriter::finish).map_err(cannot_write())?;
        hashed.file.rewind().map_err(Error::io("cannot read back the slice's temporary file", &temp))?;
        Ok((hashed.file, hex::encode(hashed.sha256.finalize()), hashed.size))
    });
    let filter_doc = doc! { "ts": { "$gt": bson::Timestamp::from(start), "$lte": bson::Timestamp::from(cutoff) } };
    let read = async {
        let context = "reading the oplog window from local.oplog.rs";
        // Majority-committed entries only: a write that a failover later rolls back
        // never reaches a slice.
        let mut cursor = oplog.find(filter_doc).read_concern(ReadConcern::majority()).await.map_err(Error::mongo(context))?;
        let (mut count, mut bytes, mut end) = (0u64, 0u64, None);
        while cursor.advance().await.map_err(Error::mongo(context))? {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let entry = cursor.current();
            let ts: Timestamp =
                entry.get_timestamp("ts").map_err(|e| Error::Inconsistent(format!("an oplog entry has no valid ts field: {e}")))?.into();
            end = Some(ts);
            if !entry_kept_by(filter, entry) {
                continue;
            }
            count += 1;
            bytes += entry.as_bytes().len() as u64;
            if entries.send(entry.to_raw_document_buf()).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        Ok((count, bytes, end))
    };
    let read = read.await;
    drop(entries);
    let written = writer.await.expect("the slice writer does not panic");
    let (count, bytes, end) = read?;
    let (file, sha256, stored_bytes) = written?;
    Ok(Spooled { file, sha256, stored_bytes, entries: count, bytes, end })
}

/// Uploads the spooled slice under `key`; on any failure the upload is aborted.
async fn upload(store: &Store, key: &str, file: std::fs::File, spool_dir: &std::path::Path, cancel: &CancellationToken) -> Result<()> {
    let upload = store.objects().put_multipart(key).await?;
    let (mut sink, uploading) = store::parts::upload_parts(upload, cancel.clone());
    let copied = tokio::task::spawn_blocking(move || {
        let mut file = file;
        std::io::copy(&mut file, &mut sink).and_then(|_| sink.finish())
    })
    .await
    .expect("the slice copy does not panic");
    let (mut upload, sent) = uploading.await.expect("the part upload task does not panic");
    let outcome = match (sent, copied) {
        _ if cancel.is_cancelled() => Err(Error::Cancelled),
        (Err(error), _) => Err(error.into()),
        (_, Err(error)) => Err(Error::io("cannot read the slice's temporary file", spool_dir)(error)),
        _ => match cancel.run_until_cancelled(upload.complete()).await {
            Some(completed) => completed.map(|_| ()).map_err(Into::into),
            None => Err(Error::Cancelled),
        },
    };
    if let Err(error) = outcome {
        if let Err(abort) = upload.abort().await {
            tracing::error!(error = %abort, "Could not abort the slice upload; remove it with AbortMultipartUpload or `ingest-backup prune`.");
        }
        return Err(error);
    }
    Ok(())
}
