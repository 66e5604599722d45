//! One backup run, from a MongoDB URI to a committed archive and its sidecar.
//!
//! ```text
//! discovery ─▶ collection readers (JoinSet, `parallel` at once)
//!                  │  each: listIndexes, cursor ─▶ BsonSpool (memory, then temp file),
//!                  │  compressed into 1 MiB blocks on the shared CompressorPool
//!                  ▼
//!          mpsc channel, capacity `parallel`   (bounds spooled data waiting)
//!                  ▼
//!          archive thread: tar headers (compressed) + spooled blocks as they are
//!                          ─▶ SHA-256 ─▶ PartWriter
//!                  ▼
//!          channel of one part ─▶ upload task: MultipartUpload::put_part
//! ```
//!
//! After the last collection the oplog window is copied into `oplog.bson`, the
//! manifest is appended, the archive upload completed, and only then the sidecar
//! written. On any error or cancellation the upload is aborted, and the abort awaited,
//! before the run returns: nothing is left in the store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, RawDocumentBuf};
use chrono::{DateTime, SecondsFormat, Utc};
use mongodb::Client;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::{ArchiveDigest, ArchiveWriter, Compression};
use crate::crypto::sidecar::{sidecar_for, SidecarDetail};
use crate::crypto::Recipients;
use crate::digest::NamespaceDigest;
use crate::dump::spool::{join_ranges, SpoolGauge, SpooledBson, SpooledMember, Spooler};
use crate::dump::{self, metadata::canonical_value, BsonSpool};
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::manifest::{ArchiveInfo, Consistency, EncryptionInfo, Manifest, NamespaceEntry, Selection, SourceInfo, ToolInfo, Totals, FORMAT_VERSION};
use crate::oplog::entry::entry_kept_by;
use crate::retry::RetryPolicy;
use crate::source::id_ranges::{plan_id_ranges, unsplittable_reason, IdRange};
use crate::source::{self, discover, list_index_specs, CollectionInfo, OplogWindow};
use crate::store::lock::StoreLock;
use crate::store::parts::{upload_parts, PartWriter};
use crate::store::s3::S3Settings;
use crate::store::{self, MultipartUpload, StoreLocation};
use crate::test_hooks::{pause_at, Stage};

/// Everything a backup run needs, validated.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The source URI (may hold a password: never log it unredacted).
    pub uri: String,
    /// Where the archive goes.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// Cursors open at once, across collections and the `_id` ranges of split ones.
    pub parallel: usize,
    /// A collection at least this large (BSON bytes, from `collStats`) is read as
    /// `parallel` `_id` ranges on parallel cursors ([`crate::source::id_ranges`]).
    pub split_min_bytes: u64,
    /// Archive compression.
    pub compression: Compression,
    /// Namespace include and exclude patterns.
    pub filter: NamespaceFilter,
    /// Directory for spool files of collections larger than the memory limit.
    pub spool_dir: PathBuf,
    /// Compressed bytes of one collection kept in memory before spooling to disk.
    pub spool_memory_limit: usize,
    /// Cursor batch size (documents per `getMore`); 0 lets the server choose.
    pub batch_size: u32,
    /// How often an interrupted read (a collection, the oplog window, discovery) is
    /// started again after a transient fault.
    pub retry: RetryPolicy,
    /// Encrypt the archive to these public keys (`None`: not encrypted).
    pub recipients: Option<Recipients>,
    /// How much of an encrypted backup's manifest the sidecar shows.
    pub sidecar_detail: SidecarDetail,
    /// Lock every object of the backup (`--lock-mode`), checked before the database is read.
    pub lock: Option<crate::immutable::LockRequest>,
}

/// What a finished backup produced.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Where the archive is (path or URL).
    pub archive: String,
    /// Where the sidecar manifest is.
    pub sidecar: String,
    /// The sidecar manifest (with the archive's size and hash).
    pub manifest: Manifest,
    /// Wall time of the run in seconds.
    pub duration_seconds: f64,
    /// The most bytes of temporary spool files on disk at once.
    pub peak_spool_disk_bytes: u64,
}

/// What a run has done so far, shared with the caller so that a failed run can still
/// say which backup it was and how far it got (for alerts). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BackupProgress(Arc<Mutex<ProgressSnapshot>>);

/// A copy of [`BackupProgress`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// The backup's name, once chosen.
    pub name: Option<String>,
    /// Namespaces selected for the dump, once discovered.
    pub namespaces_found: Option<u64>,
    /// Namespaces completely read so far.
    pub namespaces_dumped: u64,
    /// Documents in those namespaces.
    pub documents: u64,
    /// BSON bytes in those namespaces.
    pub bytes: u64,
}

impl BackupProgress {
    /// The progress now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn update(&self, change: impl FnOnce(&mut ProgressSnapshot)) {
        change(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    fn dumped(&self, entry: &NamespaceEntry) {
        self.update(|p| {
            p.namespaces_dumped += 1;
            p.documents += entry.documents;
            p.bytes += entry.bytes;
        });
    }
}

/// A tar member on its way to the archive thread.
enum Member {
    Dir(String),
    Bytes { path: String, bytes: Vec<u8> },
    Spooled { path: String, bson: SpooledMember },
    Finish,
}

/// Runs one backup, recording its name and counts in `progress` as it goes.
///
/// # Errors
/// Any failure of the server, the spool, the archive or the store, or
/// [`Error::Cancelled`]; in every case nothing is left in the store.
pub async fn run_backup_with_progress(options: &BackupOptions, cancel: CancellationToken, progress: &BackupProgress) -> Result<BackupReport> {
    let store = store::open_with(&options.store, options.s3.clone()).await?;
    run_backup_on(&store, options, cancel, progress).await
}

/// [`run_backup_with_progress`] into an opened store (`options.store` only names it).
///
/// # Errors
/// As [`run_backup_with_progress`].
pub async fn run_backup_on(
    store: &store::Store,
    options: &BackupOptions,
    cancel: CancellationToken,
    progress: &BackupProgress,
) -> Result<BackupReport> {
    let clock = Instant::now();
    let started = crate::test_hooks::now();
    // Shared: other backups go on; a prune starting now waits for this one. Taking it
    // is cancellable like the rest of the run: a store that stops answering at this
    // moment must not hold a stopping run past its grace period (a lock object written
    // by an interrupted request expires on its own).
    let lock = cancel.run_until_cancelled(StoreLock::acquire(store, "backup", false)).await.ok_or(Error::Cancelled)??;
    let result = backup_into(options, cancel.clone(), progress, store, started, clock).await;
    release_lock(lock, cancel.is_cancelled()).await;
    result
}

/// How long a cancelled run waits to remove its lock before leaving it to expire.
const CANCELLED_LOCK_RELEASE: Duration = Duration::from_secs(15);

/// Removes the backup's lock object; after a cancellation for at most
/// [`CANCELLED_LOCK_RELEASE`], so that a store that stopped answering cannot hold a
/// stopping run past its grace period.
async fn release_lock(lock: StoreLock, cancelled: bool) {
    let release = lock.release();
    let outcome =
        if cancelled { tokio::time::timeout(CANCELLED_LOCK_RELEASE, release).await.unwrap_or_else(|_| Err(Error::Cancelled)) } else { release.await };
    if let Err(error) = outcome {
        warn!(%error, "Cannot remove this backup's lock from the store; it expires on its own.");
    }
}

/// The part of [`run_backup_with_progress`] that runs under the store lock.
async fn backup_into(
    options: &BackupOptions,
    cancel: CancellationToken,
    progress: &BackupProgress,
    store: &store::Store,
    started: DateTime<Utc>,
    clock: Instant,
) -> Result<BackupReport> {
    std::fs::create_dir_all(&options.spool_dir)
        .map_err(Error::io("cannot create the spool directory; set --spool-dir to a writable directory", &options.spool_dir))?;
    let source = source::connect_retrying(&options.uri, &options.retry).await?;
    let name = store.choose_name(started).await?;
    progress.update(|p| p.name = Some(name.clone()));
    let file_name = store::keys::archive_key(&name, options.compression.extension(), options.recipients.is_some());
    info!(backup = %name, store = %options.store, "Starting backup.");
    let Discovered { oplog, namespaces, sizes } = discover_source(options, &source, progress, &cancel).await?;
    // What the progress display expects to read (before the upload starts: a cancel here leaves nothing).
    let (live, _display) = crate::progress::Progress::show("backup", "bytes");

    let pool = options.compression.pool().map_err(|source| Error::Archive { context: "starting the compression workers".into(), source })?;
    // From here on every path ends in the upload's explicit complete or abort.
    let upload = cancel.run_until_cancelled(store.begin_archive(&file_name)).await.ok_or(Error::Cancelled)??;
    let (sink, uploading) = upload_parts(upload, cancel.clone());
    let spooler = Spooler {
        dir: options.spool_dir.clone(),
        memory_limit: options.spool_memory_limit,
        gauge: SpoolGauge::default(),
        codec: options.compression.codec(),
        pool: pool.clone(),
    };
    let (members, receiver) = mpsc::channel::<Member>(options.parallel.max(1));
    let archive_task = {
        let (codec, recipients, cancel) = (options.compression.codec(), options.recipients.clone(), cancel.clone());
        let mtime = u64::try_from(started.timestamp()).unwrap_or(0);
        // The age header is the first write to the part writer: on the archive thread.
        tokio::task::spawn_blocking(move || {
            let writer = ArchiveWriter::sealed(sink, codec, pool, mtime, recipients.as_ref())
                .map_err(|source| Error::Archive { context: "starting the encryption".into(), source })?;
            write_archive(writer, receiver, &cancel)
        })
    };

    let root = dump::dump_root(&name);
    live.expect(Some(sizes.values().map(|(documents, _)| documents).sum()), Some(sizes.values().map(|(_, bytes)| bytes).sum()));
    let readers = ReaderContext { live, sizes, stop: cancel.child_token() };
    let production = Production {
        options,
        client: &source.client,
        oplog: oplog.as_ref(),
        root: &root,
        spooler: &spooler,
        members: members.clone(),
        progress,
        readers: &readers,
    };
    let produced = tokio::select! {
        result = produce(production, &namespaces, &cancel) => result,
        _ = cancel.cancelled() => Err(Error::Cancelled),
    };
    let finished_at = started + chrono::Duration::from_std(clock.elapsed()).unwrap_or_default();
    let manifest = produced.map(|(entries, consistency)| {
        let header = ManifestHeader { name: &name, source: &source, started, finished_at, root: &root };
        manifest_of(options, header, entries, consistency)
    });
    let tasks = ArchiveTasks { members, archive: archive_task, uploading };
    let (mut manifest, digest, archive) = finish_archive(tasks, manifest, &name, &cancel).await?;
    let archive_info = ArchiveInfo { file: file_name, size: digest.size, sha256: digest.sha256 };
    manifest = sidecar_for(&manifest, archive_info, options.sidecar_detail, options.recipients.as_ref())
        .map_err(|source| Error::Archive { context: "sealing the sidecar's namespace details".into(), source })?;
    pause_at(Stage::BeforeSidecar, &cancel).await?;
    let sidecar = store.put_sidecar(&name, &manifest.to_json()).await?;
    let report =
        BackupReport { archive, sidecar, manifest, duration_seconds: clock.elapsed().as_secs_f64(), peak_spool_disk_bytes: spooler.gauge.peak() };
    info!(
        backup = %name,
        documents = report.manifest.totals.documents,
        bytes = report.manifest.totals.bytes,
        archive_bytes = report.manifest.archive.as_ref().map_or(0, |a| a.size),
        seconds = format!("{:.2}", report.duration_seconds),
        peak_spool_disk_bytes = report.peak_spool_disk_bytes,
        "Backup complete."
    );
    Ok(report)
}

/// What a backup reads: the oplog window (on a replica set), the namespaces, and their
/// sizes for the progress display.
struct Discovered {
    oplog: Option<OplogWindow>,
    namespaces: Vec<CollectionInfo>,
    sizes: Arc<std::collections::HashMap<String, (u64, u64)>>,
}

/// Opens the oplog window (its start is the backup's first consistency point), then
/// discovers the namespaces and their sizes.
async fn discover_source(
    options: &BackupOptions,
    source: &source::Source,
    progress: &BackupProgress,
    cancel: &CancellationToken,
) -> Result<Discovered> {
    let (retry, client) = (&options.retry, &source.client);
    let oplog = match source.replica_set {
        Some(_) => Some(retry.run("opening the oplog", |_| OplogWindow::open(client)).await?),
        None => None,
    };
    let namespaces = retry.run("discovering namespaces", |_| discover(client, &options.filter)).await?;
    progress.update(|p| p.namespaces_found = Some(namespaces.len() as u64));
    info!(namespaces = namespaces.len(), oplog = oplog.is_some(), "Discovered namespaces.");
    let sizes = tokio::select! {
        sizes = source::discovery::collection_sizes(client, &namespaces, options.parallel) => Arc::new(sizes),
        _ = cancel.cancelled() => return Err(Error::Cancelled),
    };
    Ok(Discovered { oplog, namespaces, sizes })
}

/// The parts of a manifest that come from the run rather than from the namespaces.
struct ManifestHeader<'a> {
    name: &'a str,
    source: &'a source::Source,
    started: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    root: &'a str,
}

/// The manifest of a backup whose namespaces were read into `entries`.
fn manifest_of(options: &BackupOptions, header: ManifestHeader<'_>, entries: Vec<NamespaceEntry>, consistency: Consistency) -> Manifest {
    let source = header.source;
    Manifest {
        format_version: FORMAT_VERSION,
        tool: ToolInfo::current(),
        name: header.name.to_string(),
        source: SourceInfo { hosts: source.hosts.clone(), replica_set: source.replica_set.clone(), server_version: source.server_version.clone() },
        started_at: rfc3339(header.started),
        finished_at: rfc3339(header.finished_at),
        compression: options.compression.name().to_string(),
        dump_root: header.root.to_string(),
        consistency,
        selection: Selection { include: options.filter.include().to_vec(), exclude: options.filter.exclude().to_vec() },
        totals: Totals {
            namespaces: entries.len() as u64,
            documents: entries.iter().map(|e| e.documents).sum(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
        },
        namespaces: entries,
        encryption: options.recipients.as_ref().map(|r| EncryptionInfo { format: "age".into(), recipients: r.public_keys(), sealed_manifest: None }),
        archive: None,
    }
}

/// The two tasks a backup's members flow through: the archive thread and the upload.
struct ArchiveTasks {
    members: mpsc::Sender<Member>,
    archive: tokio::task::JoinHandle<Result<Option<ArchiveDigest>>>,
    uploading: tokio::task::JoinHandle<crate::store::parts::Uploaded>,
}

/// Ends the archive: the manifest as its last member, then the upload completed, or
/// aborted (awaited) when anything failed or the run was cancelled. Returns the
/// manifest, the stored archive's digest and where it is.
async fn finish_archive(
    tasks: ArchiveTasks,
    manifest: Result<Manifest>,
    name: &str,
    cancel: &CancellationToken,
) -> Result<(Manifest, ArchiveDigest, String)> {
    let ArchiveTasks { members, archive: archive_task, uploading } = tasks;
    if let Ok(manifest) = &manifest {
        let sent = async {
            members.send(Member::Bytes { path: dump::manifest_path(name), bytes: manifest.to_json() }).await?;
            members.send(Member::Finish).await
        };
        // A failed send means the archive thread stopped; its own error is reported below.
        let _ = sent.await;
    }
    drop(members);
    let written = archive_task.await.expect("the archive thread does not panic");
    let (mut upload, sent) = uploading.await.expect("the part upload task does not panic");
    let finished = match (manifest, written, sent) {
        _ if cancel.is_cancelled() => Err(Error::Cancelled),
        // The store's own failure explains the archive thread's "upload stopped".
        (_, _, Err(store_error)) => Err(store_error.into()),
        (_, Err(archive_error), _) => Err(archive_error),
        (Err(error), _, _) => Err(error),
        (Ok(_), Ok(None), _) => Err(Error::Cancelled),
        (Ok(manifest), Ok(Some(digest)), Ok(())) => Ok((manifest, digest)),
    };
    match finished {
        Ok((manifest, digest)) => match cancel.run_until_cancelled(upload.complete()).await {
            Some(Ok(archive)) => Ok((manifest, digest, archive)),
            Some(Err(error)) => Err(abort_upload(upload.as_mut(), error.into()).await),
            None => Err(abort_upload(upload.as_mut(), Error::Cancelled).await),
        },
        Err(error) => Err(abort_upload(upload.as_mut(), error).await),
    }
}

/// Aborts the archive upload of a failed run (awaited, so nothing remains when the run
/// returns) and gives back the run's error. A failed abort is logged with the fix.
async fn abort_upload(upload: &mut dyn MultipartUpload, error: Error) -> Error {
    if let Err(abort_error) = upload.abort().await {
        tracing::error!(
            error = %abort_error,
            "Could not abort the archive upload; remove it with AbortMultipartUpload or a bucket lifecycle rule."
        );
    }
    error
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the collection readers and the oplog capture of one backup share.
struct Production<'a> {
    options: &'a BackupOptions,
    client: &'a Client,
    oplog: Option<&'a OplogWindow>,
    root: &'a str,
    spooler: &'a Spooler,
    members: mpsc::Sender<Member>,
    progress: &'a BackupProgress,
    readers: &'a ReaderContext,
}

/// Reads every namespace (at most `--parallel` at once) and then the oplog window into
/// archive members; returns the manifest entries and the consistency point.
async fn produce(
    production: Production<'_>,
    namespaces: &[CollectionInfo],
    cancel: &CancellationToken,
) -> Result<(Vec<NamespaceEntry>, Consistency)> {
    let Production { options, client, oplog, root, spooler, members, progress, readers: context } = production;
    pause_at(Stage::BeforeCollections, cancel).await?;
    send(&members, Member::Dir(root.to_string())).await?;
    let mut databases: Vec<&str> = namespaces.iter().map(|n| n.database.as_str()).collect();
    databases.dedup();
    for database in databases {
        send(&members, Member::Dir(format!("{root}{database}/"))).await?;
    }

    // Collections in flight (each holding its spool until the archive takes it) and
    // open cursors (a whole collection, or one `_id` range of a split one) are bounded
    // separately, both by --parallel.
    let permits = Arc::new(Semaphore::new(options.parallel.max(1)));
    let cursors = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut readers = JoinSet::new();
    let mut entries = Vec::with_capacity(namespaces.len());
    for info in namespaces.iter().cloned() {
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let reader = CollectionReader {
            cursors: cursors.clone(),
            ranges: options.parallel,
            split_min_bytes: options.split_min_bytes,
            client: client.clone(),
            spooler: spooler.clone(),
            batch_size: options.batch_size,
            retry: options.retry,
            root: root.to_string(),
            members: members.clone(),
            context: context.clone(),
        };
        readers.spawn(async move {
            let entry = reader.dump(info).await;
            drop(permit);
            entry
        });
        while let Some(done) = readers.try_join_next() {
            let entry = done.expect("a collection reader does not panic").inspect_err(|_| context.stop.cancel())?;
            progress.dumped(&entry);
            entries.push(entry);
        }
    }
    while let Some(done) = readers.join_next().await {
        let entry = done.expect("a collection reader does not panic").inspect_err(|_| context.stop.cancel())?;
        progress.dumped(&entry);
        entries.push(entry);
    }
    entries.sort_by(|a, b| (&a.database, &a.collection).cmp(&(&b.database, &b.collection)));

    pause_at(Stage::BeforeOplogEnd, cancel).await?;
    let consistency = match oplog {
        Some(window) => capture_oplog(options, window, root, spooler, &members).await?,
        None => {
            warn!("The server is not a replica set: no oplog was captured, so the dump is not a single point in time.");
            Consistency {
                oplog: false,
                reason: Some("the server is not a replica-set member, so it has no oplog; the dump is not a single point in time".into()),
                start: None,
                end: None,
                oplog_entries: 0,
                oplog_bytes: 0,
                oplog_sha256: None,
            }
        }
    };
    Ok((entries, consistency))
}

async fn send(members: &mpsc::Sender<Member>, member: Member) -> Result<()> {
    members.send(member).await.map_err(|_| archive_stopped())
}

fn archive_stopped() -> Error {
    Error::Archive { context: "the archive writer stopped".into(), source: std::io::Error::other("archive writer stopped") }
}

/// Copies the oplog between the start point and now into `oplog.bson`; after a
/// transient fault the copy starts again from the start point into a new spool.
async fn capture_oplog(
    options: &BackupOptions,
    window: &OplogWindow,
    root: &str,
    spooler: &Spooler,
    members: &mpsc::Sender<Member>,
) -> Result<Consistency> {
    let (bson, end) = options.retry.run("copying the oplog window from local.oplog.rs", |_| copy_oplog(options, window, spooler)).await?;
    let consistency = Consistency {
        oplog: true,
        reason: None,
        start: Some(window.start),
        end: Some(end),
        oplog_entries: bson.summary.documents,
        oplog_bytes: bson.summary.bytes,
        oplog_sha256: Some(bson.summary.sha256.clone()),
    };
    info!(entries = consistency.oplog_entries, end_t = end.t, end_i = end.i, "Captured the oplog window.");
    send(members, Member::Spooled { path: format!("{root}{}", dump::OPLOG_FILE), bson: bson.into() }).await?;
    Ok(consistency)
}

/// One attempt at the oplog window: a new spool, filled from the start point.
async fn copy_oplog(options: &BackupOptions, window: &OplogWindow, spooler: &Spooler) -> Result<(SpooledBson, crate::oplog::Timestamp)> {
    let mut spool = spooler.spool();
    let mut first_entry = None;
    let end = window
        .copy_from_start(|entry, ts| {
            first_entry.get_or_insert(ts);
            if !entry_kept_by(&options.filter, entry) {
                return Ok(());
            }
            push(&mut spool, entry.as_bytes())
                .map_err(Error::io("cannot spool oplog.bson; check free space in the spool directory", &options.spool_dir))
        })
        .await?;
    if first_entry != Some(window.start) {
        window.ensure_start_still_present().await?;
    }
    let bson = off_the_runtime(|| spool.finish()).map_err(Error::io("cannot spool oplog.bson", &options.spool_dir))?;
    Ok((bson, end))
}

/// What every collection reader shares: the progress display and the sizes it expects.
#[derive(Clone)]
struct ReaderContext {
    live: crate::progress::Progress,
    sizes: Arc<std::collections::HashMap<String, (u64, u64)>>,
    /// Cancelled with the run, or when a collection fails: long blocking steps (joining
    /// a split collection's ranges) stop early instead of holding the run's end up.
    stop: CancellationToken,
}

/// Reads one collection into archive members.
#[derive(Clone)]
struct CollectionReader {
    context: ReaderContext,
    /// Open cursors across the backup, at most `--parallel`.
    cursors: Arc<Semaphore>,
    /// `_id` ranges a split collection is read as.
    ranges: usize,
    /// Collections at least this large are split.
    split_min_bytes: u64,
    client: Client,
    spooler: Spooler,
    batch_size: u32,
    retry: RetryPolicy,
    root: String,
    members: mpsc::Sender<Member>,
}

impl CollectionReader {
    async fn dump(self, info: CollectionInfo) -> Result<NamespaceEntry> {
        let namespace = info.namespace();
        let reader = &self;
        let info_ref = &info;
        let indexes = self.retry.run(&format!("listing the indexes of {namespace}"), |_| list_index_specs(&reader.client, info_ref)).await?;
        let metadata = dump::metadata_json(&info.name, &info.kind, &info.options, info.uuid.as_deref(), &indexes);
        let metadata_file = dump::metadata_path(&info.database, &info.name);
        // An interrupted read starts the collection again: the attempt's spool (memory,
        // temporary file and its disk charge) is dropped with it, so the member holds
        // exactly one clean pass over the collection.
        let bson = if info.is_view() { None } else { Some(self.read_collection(info_ref, &indexes).await?) };
        send(&self.members, Member::Bytes { path: format!("{}{metadata_file}", self.root), bytes: metadata.into_bytes() }).await?;
        let (summary, bson_file) = match bson {
            None => (NamespaceDigest::default().finish(), None),
            Some(bson) => {
                let summary = bson.summary.clone();
                let bson_file = dump::bson_path(&info.database, &info.data_collection());
                send(&self.members, Member::Spooled { path: format!("{}{bson_file}", self.root), bson }).await?;
                (summary, Some(bson_file))
            }
        };
        info!(namespace = %namespace, documents = summary.documents, bytes = summary.bytes, "Dumped.");
        Ok(NamespaceEntry {
            database: info.database,
            collection: info.name,
            kind: info.kind,
            uuid: info.uuid,
            options: canonical_value(&info.options),
            indexes: indexes.iter().map(canonical_value).collect(),
            bson_file,
            metadata_file,
            documents: summary.documents,
            bytes: summary.bytes,
            sha256: summary.sha256,
            content_hash: summary.content_hash,
        })
    }

    /// Reads the collection's documents: on one cursor, or, when it is large enough
    /// and can be split, as `_id` ranges on parallel cursors joined into one member.
    async fn read_collection(&self, info: &CollectionInfo, indexes: &[bson::Document]) -> Result<SpooledMember> {
        let namespace = info.namespace();
        let expected = self.context.sizes.get(&namespace).map(|(_, bytes)| *bytes);
        let ranges = match expected {
            Some(bytes) if bytes >= self.split_min_bytes => match unsplittable_reason(info, indexes) {
                None => {
                    let documents = self.context.sizes.get(&namespace).map_or(0, |(documents, _)| *documents);
                    let (ranges, reason) = plan_id_ranges(&self.client, info, self.ranges, documents, bytes).await;
                    if let Some(reason) = reason {
                        info!(namespace = %namespace, bytes, reason = %reason, "Reading a large collection on one cursor.");
                    }
                    ranges
                }
                Some(reason) => {
                    info!(namespace = %namespace, bytes, reason, "Reading a large collection on one cursor.");
                    vec![IdRange::whole()]
                }
            },
            _ => vec![IdRange::whole()],
        };
        if ranges.len() == 1 {
            let _cursor = self.cursors.clone().acquire_owned().await.expect("the semaphore is never closed");
            let bson = self.retry.run(&format!("reading {namespace}"), |_| self.read_range(info, &ranges[0], &namespace, expected)).await?;
            return Ok(bson.into());
        }
        let count = ranges.len();
        info!(namespace = %namespace, ranges = count, "Reading a large collection as _id ranges on parallel cursors.");
        let mut readers = JoinSet::new();
        // The ranges share one spool's memory, so splitting does not multiply the
        // spooled memory a collection may hold (README "Memory and disk").
        let mut shares = self.clone();
        shares.spooler.memory_limit = self.spooler.memory_limit / count;
        for (index, range) in ranges.into_iter().enumerate() {
            let (reader, info) = (shares.clone(), info.clone());
            let cursor = self.cursors.clone().acquire_owned();
            let label = format!("{namespace} [{}/{count}]", index + 1);
            readers.spawn(async move {
                let _cursor: OwnedSemaphorePermit = cursor.await.expect("the semaphore is never closed");
                let share = expected.map(|bytes| bytes / count as u64);
                let bson = reader.retry.run(&format!("reading {label}"), |_| reader.read_range(&info, &range, &label, share)).await?;
                Ok::<_, Error>((index, bson))
            });
        }
        let mut pieces: Vec<Option<SpooledBson>> = (0..count).map(|_| None).collect();
        while let Some(done) = readers.join_next().await {
            let (index, bson) = done.expect("a range reader does not panic")?;
            pieces[index] = Some(bson);
        }
        let pieces = pieces.into_iter().map(|piece| piece.expect("every range was read")).collect();
        let joining = || format!("cannot read back the spooled ranges of {namespace}; check the spool directory");
        let stop = &self.context.stop;
        off_the_runtime(|| join_ranges(pieces, &|| stop.is_cancelled())).map_err(Error::io(joining(), &self.spooler.dir))
    }

    /// One attempt at reading a range (or the whole collection) into a new spool.
    async fn read_range(&self, info: &CollectionInfo, range: &IdRange, label: &str, expected: Option<u64>) -> Result<SpooledBson> {
        let collection = self.client.database(&info.database).collection::<RawDocumentBuf>(&info.data_collection());
        let mut find = collection.find(doc! {}).with_options(range.find_options());
        if self.batch_size > 0 {
            find = find.batch_size(self.batch_size);
        }
        let reading = || format!("reading {label}");
        let item = self.context.live.item(label.to_string(), expected);
        let read = async {
            let mut cursor = find.await.map_err(Error::mongo(reading()))?;
            let mut spool = self.spooler.spool();
            let spool_error = || format!("cannot spool {label}; check free space in the spool directory");
            while cursor.advance().await.map_err(Error::mongo(reading()))? {
                let document = cursor.current().as_bytes();
                push(&mut spool, document).map_err(Error::io(spool_error(), &self.spooler.dir))?;
                item.add(1, document.len() as u64);
            }
            off_the_runtime(|| spool.finish()).map_err(Error::io(spool_error(), &self.spooler.dir))
        };
        let result = read.await;
        // A failed attempt is read again from the start: its counts are taken back.
        if result.is_err() {
            item.abandon();
        }
        item.finish();
        result
    }
}

/// Appends a document to a spool from an async task: the pushes that may wait for the
/// compressor (one per 1 MiB block) step out of the runtime's way first.
fn push(spool: &mut BsonSpool, document: &[u8]) -> std::io::Result<()> {
    if spool.push_may_wait(document.len()) {
        off_the_runtime(|| spool.push(document))
    } else {
        spool.push(document)
    }
}

/// Runs `step`, which may block on compression, without holding up the runtime's
/// other tasks (the S3 part uploads, the driver's monitors): on a multi-threaded
/// runtime the worker first hands its queue to another thread (`block_in_place`);
/// elsewhere (a current-thread runtime, a plain thread) the step just runs.
fn off_the_runtime<T>(step: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(step),
        _ => step(),
    }
}

/// Stops a long member copy as soon as the run is cancelled, so SIGTERM is honoured
/// within one read rather than after a whole multi-gigabyte collection.
struct CancellableReader<'a, R> {
    inner: R,
    cancel: &'a CancellationToken,
}

impl<R: std::io::Read> std::io::Read for CancellableReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("the backup was cancelled"));
        }
        self.inner.read(buf)
    }
}

/// The archive thread: writes members until [`Member::Finish`], hands the last part to
/// the upload and returns the archive digest. `Ok(None)` means the producer went away
/// without finishing (the run failed elsewhere or was cancelled); the caller aborts the
/// upload.
fn write_archive(
    mut writer: ArchiveWriter<PartWriter>,
    mut members: mpsc::Receiver<Member>,
    cancel: &CancellationToken,
) -> Result<Option<ArchiveDigest>> {
    let archive_error = |context: &str| {
        let context = context.to_string();
        move |source| Error::Archive { context, source }
    };
    while let Some(member) = members.blocking_recv() {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        match member {
            Member::Dir(path) => writer.append_dir(&path).map_err(archive_error(&path))?,
            Member::Bytes { path, bytes } => writer.append_bytes(&path, &bytes).map_err(archive_error(&path))?,
            Member::Spooled { path, bson } => {
                let (size, codec, stored_bytes) = (bson.summary.bytes, bson.codec(), bson.stored_bytes());
                let data = CancellableReader { inner: bson.into_reader(), cancel };
                let appended = match codec {
                    None => writer.append_file(&path, size, data),
                    Some(codec) if codec == writer.codec() => writer.append_compressed(&path, size, data, stored_bytes),
                    Some(codec) => Err(std::io::Error::other(format!("spooled as {codec:?} but the archive is {:?}", writer.codec()))),
                };
                match appended {
                    Err(_) if cancel.is_cancelled() => return Ok(None),
                    result => result.map_err(archive_error(&path))?,
                }
            }
            Member::Finish => {
                let (parts, digest) = writer.finish().map_err(archive_error("finishing the archive"))?;
                parts.finish().map_err(archive_error("handing the last part to the store"))?;
                return Ok(Some(digest));
            }
        }
    }
    Ok(None)
}
