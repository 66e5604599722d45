//! `restore`: a stored backup into a target server, natively and streaming, as one
//! `Restore` run phase by phase. Before anything is written, the plan ([`plan`]) says
//! what goes where. Then: prepare (collections dropped and created with their options,
//! [`target`]); stream (the archive read once, [`stream`], its documents inserted in
//! parallel batches); check (each namespace's SHA-256 against the manifest,
//! [`check`]; users and roles merged, indexes built, views created); replay
//! (`oplog.bson` up to the backup's consistency point, and with `--to-time` the oplog
//! slices after it: [`crate::oplog`]'s one replay loop serves both).

pub mod check;
pub mod legacy;
mod legacy_json;
pub mod plan;
pub mod stream;
pub mod target;
pub mod users_roles;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::reader::{ArchiveFormat, ArchiveReader};
use crate::crypto::{is_encrypted, Identities};
use crate::digest::DigestSummary;
use crate::dump::bson_reader::BsonReader;
use crate::dump::spool::SpooledBson;
use crate::error::{Error, Result};
use crate::filter::{NamespaceFilter, NamespaceMap};
use crate::manifest::{Manifest, NamespaceKind};
use crate::oplog::{replay_entries, timestamp_label, ReplayReport, Replayer, Timestamp};
use crate::pitr::RestorePlan;
use crate::progress::Progress;
use crate::source::Source;
use crate::store::s3::S3Settings;
use crate::store::{self, Latest, SidecarProblem, Store, StoreLocation, StoredBackup};
use legacy::LegacyScan;
use plan::{Plan, PlannedNamespace};
use stream::Streamed;
use target::InsertTally;

/// What to restore, where, and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The store holding the backup.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// A backup name, or `latest` (the newest complete backup).
    pub backup: String,
    /// The target server.
    pub uri: String,
    /// Drop each target collection before restoring it.
    pub drop: bool,
    /// Which namespaces of the backup to restore.
    pub filter: NamespaceFilter,
    /// Restore one database under another name.
    pub rename: Option<crate::filter::DatabaseRename>,
    /// Replay `oplog.bson` to the recorded point, when the backup has one.
    pub oplog_replay: bool,
    /// Insert batches in flight.
    pub parallel: usize,
    /// Documents per insert batch.
    pub batch_documents: usize,
    /// Accept an archive without a sidecar manifest (a tarball of the original
    /// `mongodump` + `tar -czf` pipeline); nothing can be checked against checksums.
    pub no_manifest: bool,
    /// With `no_manifest`: the archive holds one database's directory, restored under
    /// this name (as mongorestore's `--db` with a directory).
    pub database_level: Option<String>,
    /// Restore the backup's users and roles too (as `mongorestore --restoreDbUsersAndRoles`).
    pub users_and_roles: bool,
    /// Where `oplog.bson` is spooled for the replay.
    pub spool_dir: PathBuf,
    /// How often connecting, preparing and building indexes are tried again after a
    /// transient fault (inserts rely on the driver's retryable writes).
    pub retry: crate::retry::RetryPolicy,
    /// Restore to this point in time: the base backup, then its oplog slices.
    pub to_time: Option<crate::pitr::TargetTime>,
    /// The private keys an encrypted backup is decrypted with.
    pub identities: Option<Arc<Identities>>,
}

/// One restored namespace.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredNamespace {
    /// `db.collection` in the backup.
    pub source: String,
    /// `db.collection` in the target.
    pub target: String,
    /// `collection`, `view`, `timeseries`, `users` or `roles`.
    pub kind: NamespaceKind,
    /// Documents read from the archive.
    pub documents: u64,
    /// Documents inserted.
    pub inserted: u64,
    /// Documents refused as duplicates.
    pub duplicates: u64,
    /// Documents refused for other reasons.
    pub failed: u64,
    /// Indexes built (besides `_id_`).
    pub indexes: usize,
    /// `ok`, `MISMATCH` or `unchecked` (no manifest).
    pub checksum: String,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub name: String,
    /// Hosts of the target.
    pub target: Vec<String>,
    /// Whether the backup had a manifest to check against.
    pub checked: bool,
    /// Wall time.
    pub duration_seconds: f64,
    /// Documents inserted.
    pub documents: u64,
    /// BSON bytes read from the archive.
    pub bytes: u64,
    /// Per namespace.
    pub namespaces: Vec<RestoredNamespace>,
    /// Namespaces of the backup not restored (filtered out, or users and roles).
    pub skipped: Vec<String>,
    /// Files of a legacy tarball that were not restored, each with the reason.
    pub unread_files: Vec<String>,
    /// With `--users-and-roles`: what restoring the users and roles did.
    pub users_and_roles: Option<users_roles::UsersAndRoles>,
    /// The oplog replay, when one ran.
    pub oplog: Option<ReplayReport>,
    /// The point the replay was to reach (the backup's consistency end).
    pub oplog_limit: Option<Timestamp>,
    /// With `--to-time`: the oplog slices replayed after the backup, up to the target.
    pub pitr: Option<ReplayReport>,
    /// With `--to-time`: the target.
    pub to_time: Option<Timestamp>,
    /// Everything that makes the restore not a faithful copy; empty on success.
    pub problems: Vec<String>,
}

impl RestoreReport {
    /// Whether the command should exit 0.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Restores a stored backup into the target server.
///
/// # Errors
/// Refusals before anything is written (an unknown or incomplete backup, a bad
/// target), and failures that stop the restore (an unreadable or damaged archive, a
/// target that goes away). Per-namespace differences are in the report's problems.
pub async fn run_restore(options: &RestoreOptions, cancel: CancellationToken) -> Result<RestoreReport> {
    let clock = Instant::now();
    let (restore, archive) = Restore::open(options, cancel, clock).await?;
    let client = restore.target.client.clone();
    let fills_temporary = restore.plan.namespaces.iter().any(PlannedNamespace::is_users_or_roles);
    let restored = restore.run(archive).await;
    if fills_temporary {
        // Whatever stopped the restore, no password hash stays in a temporary collection.
        users_roles::drop_temporary(&client).await;
    }
    // Closing the pool before the runtime goes: dropped with writes just ended (a
    // damaged member stopping the restore), the driver's pool worker panicked while
    // the process exited.
    client.shutdown().await;
    restored
}

/// The stored archive, opened for reading.
type Archive = ArchiveReader<Box<dyn Read + Send>>;

/// One restore: decided before anything is written ([`Restore::open`]), then run
/// phase by phase ([`Restore::run`]): prepare the target collections, stream the
/// archive into them, check what was read and finish the namespaces, replay the oplog.
struct Restore<'a> {
    options: &'a RestoreOptions,
    cancel: CancellationToken,
    clock: Instant,
    store: Store,
    backup: StoredBackup,
    map: NamespaceMap,
    manifest: Option<Manifest>,
    /// The whole manifest as JSON (a sealed sidecar's opened), with the archive digest.
    sidecar_json: Option<Vec<u8>>,
    plan: Plan,
    /// With `--to-time`: the base backup's slices and the target.
    pitr: Option<RestorePlan>,
    target: Source,
    /// Acknowledged inserts per planned namespace (empty until the stream phase ends).
    tallies: Vec<InsertTally>,
    /// Everything that makes the restore not a faithful copy.
    problems: Vec<String>,
}

impl<'a> Restore<'a> {
    /// Everything decided and refused before a document is written: the backup (or the
    /// point-in-time plan's base), its manifest, the plan, the archive opened (an
    /// encrypted one's start authenticated) and the target connected.
    async fn open(options: &'a RestoreOptions, cancel: CancellationToken, clock: Instant) -> Result<(Self, Archive)> {
        std::fs::create_dir_all(&options.spool_dir)
            .map_err(Error::io("cannot create the spool directory; set --spool-dir to a writable directory", &options.spool_dir))?;
        let (store, backup, pitr) = choose_backup(options).await?;
        let format =
            ArchiveFormat::of_file(&backup.archive).ok_or_else(|| Error::usage(format!("{} is neither .tar.gz nor .tar.zst", backup.archive)))?;
        let map = NamespaceMap::new(options.rename.clone());
        let identities = options.identities.as_deref();
        if is_encrypted(&backup.archive) && identities.is_none() {
            return Err(Error::usage(format!(
                "backup {} is encrypted and no identity was given, so nothing was written: give --identity FILE (or AGE_IDENTITY_FILE, \
                 or AGE_IDENTITY) holding the private key of one of its recipients",
                backup.name
            )));
        }
        let (manifest, sidecar_json) = match read_manifest(&backup, options.no_manifest, identities)? {
            Some((manifest, json)) => (Some(manifest), Some(json)),
            None => (None, None),
        };
        let plan = make_plan(options, &store, &backup, format, manifest.as_ref(), &map).await?;
        // The archive is opened, and an encrypted one's header and first chunk
        // authenticated, before anything is written to the target.
        let archive = open_reader(&store, &backup.archive, format, options.identities.clone()).await?;
        let target = crate::source::connect_retrying(&options.uri, &options.retry).await?;
        refuse_timeseries_on_raw_data_servers(&plan, target.server_version.as_deref())?;
        let restore = Restore {
            options,
            cancel,
            clock,
            store,
            backup,
            map,
            manifest,
            sidecar_json,
            plan,
            pitr,
            target,
            tallies: Vec::new(),
            problems: Vec::new(),
        };
        Ok((restore, archive))
    }

    /// The phases, in order, and the report.
    async fn run(mut self, archive: Archive) -> Result<RestoreReport> {
        let options = self.options;
        info!(backup = %self.backup.name, namespaces = self.plan.namespaces.len(), drop = options.drop, "Restoring.");
        let client = &self.target.client;
        options
            .retry
            .run("preparing the target collections", |_| target::prepare(client, &self.plan.namespaces, options.drop, options.parallel))
            .await?;
        let (live, _display) = crate::progress::Progress::show("restore", "bytes");
        let mut streamed = self.stream(archive, &live).await?;
        let (namespaces, users_and_roles) = self.check(&streamed).await?;
        let (oplog, pitr) = self.replay(streamed.oplog.take()).await?;
        let report = RestoreReport {
            name: self.backup.name.clone(),
            target: self.target.hosts.clone(),
            checked: self.manifest.is_some(),
            duration_seconds: self.clock.elapsed().as_secs_f64(),
            documents: namespaces.iter().map(|n| n.inserted).sum(),
            bytes: streamed.digests.iter().flatten().map(|d| d.bytes).sum(),
            namespaces,
            skipped: self.plan.skipped,
            unread_files: self.plan.unread_files,
            users_and_roles,
            oplog,
            oplog_limit: self.manifest.as_ref().and_then(|m| m.consistency.end),
            pitr,
            to_time: self.pitr.map(|point| point.target),
            problems: self.problems,
        };
        info!(backup = %report.name, documents = report.documents, seconds = format!("{:.2}", report.duration_seconds), "Restore finished.");
        Ok(report)
    }

    /// A failure once the target holds documents: it says how many, per namespace.
    fn interrupted(&self, error: Error) -> Error {
        if matches!(error, Error::Cancelled) {
            return error;
        }
        let written = self.plan.namespaces.iter().zip(&self.tallies).map(|(planned, tally)| (planned.target(), tally.inserted)).collect();
        Error::RestoreInterrupted { written, source: Box::new(error) }
    }

    /// The stream phase: the archive read once on a blocking thread, its batches
    /// inserted `parallel` at once (a channel of `2 x parallel` batches between them).
    async fn stream(&mut self, archive: Archive, live: &Progress) -> Result<Streamed> {
        let expected = self.plan.namespaces.iter().map(|n| n.expected.as_ref()).collect::<Option<Vec<_>>>();
        if let Some(expected) = expected {
            live.expect(Some(expected.iter().map(|e| e.documents).sum()), Some(expected.iter().map(|e| e.bytes).sum()));
        }
        let options = self.options;
        let namespaces = Arc::new(self.plan.namespaces.clone());
        let (batches, receiver) = mpsc::channel(options.parallel.max(1) * 2);
        let inserter = tokio::spawn(target::insert_batches(self.target.client.clone(), namespaces, receiver, options.parallel));
        let feed = stream::Feed {
            batches,
            batch_documents: options.batch_documents,
            spool_dir: options.spool_dir.clone(),
            cancel: self.cancel.clone(),
            live: live.clone(),
        };
        let plan = self.plan.clone();
        let streamed =
            tokio::task::spawn_blocking(move || stream::stream_archive(archive, &plan, &feed)).await.expect("the archive reader does not panic");
        let inserted = inserter.await.expect("the inserter does not panic");
        self.tallies = inserted.tallies;
        // The inserter's failure explains the reader's "the inserts stopped".
        if let Some(error) = inserted.error {
            return Err(self.interrupted(error));
        }
        let streamed = streamed.map_err(|error| self.interrupted(error))?;
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(streamed)
    }

    /// The check phase: the archive and each namespace against the manifest, then the
    /// namespaces finished (users and roles merged, indexes built, views created).
    async fn check(&mut self, streamed: &Streamed) -> Result<(Vec<RestoredNamespace>, Option<users_roles::UsersAndRoles>)> {
        let options = self.options;
        if let Some(manifest) = &self.manifest {
            self.problems.extend(check::archive_problem(manifest, &streamed.archive));
            if let Some(sidecar) = self.sidecar_json.as_deref() {
                self.problems.extend(check::embedded_manifest_problem(manifest, sidecar, streamed.embedded_manifest.as_deref()));
            }
        }
        // Users and roles right after the inserts: the temporary collections hold password
        // hashes, so they live no longer than needed (and are dropped on every path).
        let client = &self.target.client;
        let users_and_roles = match users_roles_scope(&self.plan, &options.filter) {
            Some(scope) => {
                let merged = users_roles::merge(client, &scope, options.drop).await.map_err(|error| self.interrupted(error))?;
                self.problems.extend(merged.problems.iter().cloned());
                Some(merged)
            }
            None => None,
        };
        let client = &self.target.client;
        let indexes_built = options
            .retry
            .run("building the indexes", |_| target::build_all_indexes(client, &self.plan.namespaces, options.parallel))
            .await
            .map_err(|error| self.interrupted(error))?;
        let restored = self.restored_namespaces(streamed, &indexes_built);
        let client = &self.target.client;
        for planned in self.plan.namespaces.iter().filter(|n| n.is_view()) {
            options
                .retry
                .run(&format!("creating the view {}", planned.target()), |_| target::create_view(client, planned))
                .await
                .map_err(|error| self.interrupted(error))?;
        }
        Ok((restored, users_and_roles))
    }

    /// Each planned namespace as restored, its checksum verdict and refusals noted.
    fn restored_namespaces(&mut self, streamed: &Streamed, indexes_built: &[usize]) -> Vec<RestoredNamespace> {
        let mut restored = Vec::new();
        for (index, planned) in self.plan.namespaces.iter().enumerate() {
            let tally = &self.tallies[index];
            let digest = streamed.digests[index].as_ref();
            let (checksum, mismatch) = check::checksum(planned, digest);
            self.problems.extend(mismatch);
            self.problems.extend(check::tally_problems(planned, tally));
            restored.push(RestoredNamespace {
                source: planned.source(),
                target: planned.target(),
                kind: planned.kind.clone(),
                documents: digest.map_or(0, |d| d.documents),
                inserted: tally.inserted,
                duplicates: tally.duplicates,
                failed: tally.failed,
                indexes: indexes_built[index],
                checksum: checksum.to_string(),
            });
        }
        restored
    }

    /// The replay phase: the backup's `oplog.bson` up to its consistency point (unless
    /// it failed its check, or with `--oplog-replay=false`), then with `--to-time` the
    /// oplog slices up to the target. Returns the two replays' reports.
    async fn replay(&mut self, spooled: Option<(SpooledBson, DigestSummary)>) -> Result<(Option<ReplayReport>, Option<ReplayReport>)> {
        let oplog_problem = self.manifest.as_ref().and_then(|m| check::oplog_problem(m, spooled.as_ref().map(|(_, digest)| digest)));
        let oplog = match spooled {
            Some(_) if oplog_problem.is_some() => None,
            Some((spooled, _)) if self.options.oplog_replay => {
                Some(self.replay_backup_oplog(spooled).await.map_err(|error| self.interrupted(error))?)
            }
            Some(_) => {
                warn!(
                    "--oplog-replay=false: the backup's oplog.bson was not replayed, so the target holds the dump as read, not a single point in time."
                );
                None
            }
            None => None,
        };
        self.problems.extend(oplog_problem);
        let pitr = match &self.pitr {
            Some(point) => {
                let mut replayer = Replayer::new(&self.target.client, &self.options.filter, &self.map, Some(point.target));
                crate::pitr::replay::replay_slices(
                    &self.store,
                    &mut replayer,
                    &point.slices,
                    self.options.identities.clone(),
                    &self.options.spool_dir,
                    &self.cancel,
                )
                .await
                .map_err(|error| self.interrupted(error))?;
                Some(replayer.report)
            }
            None => None,
        };
        Ok((oplog, pitr))
    }

    /// Replays the spooled `oplog.bson`, read on a blocking thread, up to the backup's
    /// consistency point.
    async fn replay_backup_oplog(&self, spooled: SpooledBson) -> Result<ReplayReport> {
        let limit = self.manifest.as_ref().and_then(|m| m.consistency.end);
        let mut replayer = Replayer::new(&self.target.client, &self.options.filter, &self.map, limit);
        replay_entries(&mut replayer, None, &self.cancel, move |sink| {
            let mut reader = BsonReader::new(spooled.data);
            while let Some(entry) = reader.next_document().map_err(|e| Error::Damaged(format!("the spooled oplog is unreadable: {e}")))? {
                if !sink.send(entry) {
                    break;
                }
            }
            Ok(())
        })
        .await?;
        info!(applied = replayer.report.applied, skipped = replayer.report.skipped, "Replayed the oplog.");
        Ok(replayer.report)
    }
}

/// The store, the backup to restore and, with `--to-time`, the point-in-time plan
/// that chose it (the newest chain covering the target, or the named backup's).
///
/// # Errors
/// The store cannot be read, no such backup exists, or no chain covers `--to-time`.
pub async fn choose_backup(options: &RestoreOptions) -> Result<(Store, StoredBackup, Option<RestorePlan>)> {
    let latest = if options.no_manifest { Latest::Newest } else { Latest::NewestComplete };
    let store = store::open_with(&options.store, options.s3.clone()).await?;
    let listing = store.list().await?;
    let pitr = match options.to_time {
        None => None,
        Some(target) => {
            if options.no_manifest || !options.oplog_replay {
                return Err(Error::usage("--to-time replays the oplog over a backup with a manifest: drop --no-manifest and --oplog-replay false"));
            }
            let slices = crate::pitr::list_slices(&store).await?;
            let chains = crate::pitr::chains(&crate::pitr::bases(&listing), &slices);
            let base = (options.backup != "latest").then_some(options.backup.as_str());
            Some(crate::pitr::plan_restore(&chains, target, base)?)
        }
    };
    let wanted = pitr.as_ref().map_or(options.backup.as_str(), |plan| plan.base.as_str());
    let backup = store::select(listing, wanted, &options.store, latest)?;
    if let Some(plan) = &pitr {
        info!(backup = %plan.base, slices = plan.slices.len(), target = %timestamp_label(plan.target), "Restoring to a point in time.");
    }
    Ok((store, backup, pitr))
}

/// The plan, from the manifest or a legacy tarball's first pass, with the users and
/// roles in it only with `--users-and-roles`; logged, and refused when the archive
/// holds nothing restorable, before anything is written.
async fn make_plan(
    options: &RestoreOptions,
    store: &Store,
    backup: &StoredBackup,
    format: ArchiveFormat,
    manifest: Option<&Manifest>,
    map: &NamespaceMap,
) -> Result<Plan> {
    let mut plan = match manifest {
        Some(manifest) => Plan::from_manifest(manifest, &options.filter, map)?,
        None => legacy_plan(store.clone(), backup, format, options.database_level.clone(), &options.filter, map, options.identities.clone()).await?,
    };
    let users_and_roles = std::mem::take(&mut plan.users_and_roles);
    if options.users_and_roles {
        if users_and_roles.is_empty() {
            warn!(backup = %backup.name, "--users-and-roles: the backup holds no users or roles.");
        }
        plan.namespaces.extend(users_and_roles);
    } else {
        plan.skipped.extend(users_and_roles.iter().map(|planned| planned.source()));
    }
    if let Some(ambiguous) = &plan.ambiguous_root {
        return Err(Error::usage(format!("{}: {ambiguous}", backup.archive)));
    }
    log_plan(&plan);
    if !plan.refusals.is_empty() {
        return Err(Error::Refused(format!("{} cannot be restored, so nothing was written: {}", backup.archive, plan.refusals.join("; "))));
    }
    // Never a silent empty restore of a tarball: nothing to restore and nothing filtered out.
    if manifest.is_none() && plan.namespaces.is_empty() && plan.skipped.is_empty() {
        let found = if plan.unread_files.is_empty() { "no .bson or .metadata.json file at all".to_string() } else { plan.unread_files.join("; ") };
        return Err(Error::Refused(format!(
            "{} holds nothing that can be restored, so nothing was written: {found}. A dump directory made by mongodump holds \
             <database>/<collection>.bson files (with or without .metadata.json) inside one directory",
            backup.archive
        )));
    }
    Ok(plan)
}

/// What was found, before anything is written.
fn log_plan(plan: &Plan) {
    for planned in &plan.namespaces {
        info!(
            namespace = %planned.source(),
            target = %planned.target(),
            kind = %planned.kind,
            file = planned.bson_member.as_deref().unwrap_or("(metadata only)"),
            "Found in the archive; will restore."
        );
    }
    for skipped in &plan.skipped {
        info!(namespace = %skipped, "Not restored (filtered out, or users and roles without --users-and-roles).");
    }
    for file in &plan.unread_files {
        warn!(file = %file, "A file of the archive is not restored.");
    }
}

/// Opens archive `file` for reading on a blocking thread (an encrypted one decrypted with
/// `identities`, its start authenticated).
///
/// # Errors
/// The archive is missing, or an encrypted one cannot be opened (the cause named).
async fn open_reader(store: &Store, file: &str, format: ArchiveFormat, identities: Option<Arc<Identities>>) -> Result<Archive> {
    let stored = store.open_archive(file).await?;
    let name = file.to_string();
    tokio::task::spawn_blocking(move || {
        ArchiveReader::open(stored, &name, format, identities.as_deref())
            .map_err(|e| Error::Damaged(format!("{name} cannot be read, so nothing was written: {e}")))
    })
    .await
    .expect("opening the archive does not panic")
}

/// MongoDB 8.3 and later keep a time-series collection's buckets under its own name and
/// take them only as `rawData` inserts, which this restore does not make: refused
/// before anything is written rather than restored empty.
fn refuse_timeseries_on_raw_data_servers(plan: &Plan, server_version: Option<&str>) -> Result<()> {
    let Some(version) = server_version.filter(|version| plan::stores_buckets_raw(version)) else { return Ok(()) };
    match plan.namespaces.iter().find(|n| n.is_timeseries()) {
        Some(planned) => Err(Error::Refused(format!(
            "{} is a time-series collection and the target runs MongoDB {version}, which takes buckets only as rawData inserts that this \
             version does not make; nothing was written. Exclude it with --ns-exclude {} and restore it with mongorestore",
            planned.source(),
            planned.source()
        ))),
        None => Ok(()),
    }
}

/// What `--users-and-roles` merges, when the plan holds users or roles.
fn users_roles_scope(plan: &Plan, filter: &NamespaceFilter) -> Option<users_roles::Scope> {
    let authz: Vec<&PlannedNamespace> = plan.namespaces.iter().filter(|n| n.is_users_or_roles()).collect();
    if authz.is_empty() {
        return None;
    }
    // One database's `$admin.system.*` files hold that database's users and roles only.
    let per_database: Vec<String> = authz.iter().filter(|n| n.database != "admin").map(|n| n.database.clone()).collect();
    let databases = if !per_database.is_empty() {
        let mut databases = per_database;
        databases.sort();
        databases.dedup();
        users_roles::DatabaseScope::Only(databases)
    } else if filter.is_filtering() {
        let mut restored: Vec<String> = plan.namespaces.iter().filter(|n| !n.is_users_or_roles()).map(|n| n.database.clone()).collect();
        restored.sort();
        restored.dedup();
        users_roles::DatabaseScope::Filtered { restored, filter: filter.clone() }
    } else {
        users_roles::DatabaseScope::All
    };
    Some(users_roles::Scope {
        users: authz.iter().any(|n| n.kind == NamespaceKind::Users),
        roles: authz.iter().any(|n| n.kind == NamespaceKind::Roles),
        databases,
    })
}

/// The manifest of the backup and its JSON (a sealed sidecar opened with
/// `identities`), `None` for an accepted legacy tarball.
///
/// # Errors
/// A damaged or sealed sidecar, or a missing one without `no_manifest`.
pub fn read_manifest(backup: &StoredBackup, no_manifest: bool, identities: Option<&Identities>) -> Result<Option<(Manifest, Vec<u8>)>> {
    match (store::open_sidecar(backup, identities), no_manifest) {
        (Ok(opened), _) => Ok(Some((opened.manifest, serde_json::to_vec(&opened.json).expect("JSON serializes")))),
        (Err(SidecarProblem::Unreadable(e)), _) => {
            Err(Error::Damaged(format!("the sidecar manifest of {} is unreadable ({e}); the backup cannot be trusted", backup.name)))
        }
        (Err(SidecarProblem::Sealed(cause)), _) => {
            Err(Error::Refused(format!("the sidecar of {} cannot be used, so nothing was written: {cause}", backup.name)))
        }
        (Err(SidecarProblem::Missing), true) => {
            warn!(backup = %backup.name, "Restoring without a manifest: nothing can be checked against checksums.");
            Ok(None)
        }
        (Err(SidecarProblem::Missing), false) => Err(Error::Refused(format!(
            "backup {} has no sidecar manifest. If ingest-backup made it, its run did not finish: it is incomplete and is not restored. \
             If it is a tarball made by the original mongodump + tar -czf pipeline, restore it with --no-manifest (no checksums to check).",
            backup.name
        ))),
    }
}

/// First pass over a legacy tarball: its `.metadata.json` files (and a pre-3.0 dump's
/// `system.indexes.bson`, and `prelude.json`) make the plan.
async fn legacy_plan(
    store: Store,
    backup: &StoredBackup,
    format: ArchiveFormat,
    database_level: Option<String>,
    filter: &NamespaceFilter,
    map: &NamespaceMap,
    identities: Option<Arc<Identities>>,
) -> Result<Plan> {
    let file = backup.archive.clone();
    let stored = store.open_archive(&file).await?;
    let scan = tokio::task::spawn_blocking(move || -> Result<LegacyScan> {
        let unreadable = |e: std::io::Error| Error::Archive { context: format!("reading {file}"), source: e };
        let mut reader = ArchiveReader::open(stored, &file, format, identities.as_deref()).map_err(unreadable)?;
        let mut scan = LegacyScan::new(database_level);
        for entry in reader.entries().map_err(unreadable)? {
            let mut entry = entry.map_err(unreadable)?;
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let path = entry.path().map_err(unreadable)?.to_string_lossy().into_owned();
            if LegacyScan::wants_content(&path) {
                let mut bytes = Vec::new();
                (&mut entry).take(64 << 20).read_to_end(&mut bytes).map_err(unreadable)?;
                scan.member(&path, Some(&bytes))?;
            } else {
                scan.member(&path, None)?;
            }
        }
        Ok(scan)
    })
    .await
    .expect("the scan does not panic")?;
    if scan.has_manifest {
        return Err(Error::Refused(format!(
            "{} holds an ingest-backup manifest but its sidecar is missing: the backup did not finish and is not restored",
            backup.archive
        )));
    }
    if let Some(version) = &scan.source_version {
        info!(version = %version, "The dump's prelude.json names the server it was taken from.");
    }
    Ok(scan.into_plan(filter, map))
}
