//! `restore`: a stored backup into a target server, natively and streaming. The plan
//! ([`plan`]) says what goes where; collections are created with their options
//! ([`target`]); the archive is read once ([`stream`]) and its documents inserted in
//! parallel batches, each namespace's SHA-256 checked as it passes; indexes are built;
//! views are created; finally `oplog.bson` is replayed up to the backup's consistency
//! point ([`oplog_replay`]).

pub mod legacy;
mod legacy_json;
pub mod oplog_replay;
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
use crate::crypto::sidecar::{is_sealed, open_details};
use crate::crypto::{is_encrypted, Identities};
use crate::dump::bson_reader::BsonReader;
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::manifest::Manifest;
use crate::source::Timestamp;
use crate::store::s3::S3Settings;
use crate::store::{self, Latest, Store, StoreLocation, StoredBackup};
use legacy::LegacyScan;
use oplog_replay::{ReplayReport, Replayer};
use plan::{DatabaseRename, NamespaceMap, Plan, PlannedNamespace};

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
    pub rename: Option<DatabaseRename>,
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
    /// `collection` or `view`.
    pub kind: String,
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
        info!(backup = %plan.base, slices = plan.slices.len(), target = %crate::pitr::timestamp_label(plan.target), "Restoring to a point in time.");
    }
    let format =
        ArchiveFormat::of_file(&backup.archive).ok_or_else(|| Error::usage(format!("{} is neither .tar.gz nor .tar.zst", backup.archive)))?;
    let map = NamespaceMap::new(options.rename.clone());
    let identities = options.identities.as_deref();
    if is_encrypted(&backup.archive) && identities.is_none() {
        return Err(Error::Consistency(format!(
            "backup {} is encrypted and no identity was given, so nothing was written: give --identity FILE (or AGE_IDENTITY_FILE, \
             or AGE_IDENTITY) holding the private key of one of its recipients",
            backup.name
        )));
    }
    let (manifest, sidecar_json) = match read_manifest(&backup, options.no_manifest, identities)? {
        Some((manifest, json)) => (Some(manifest), Some(json)),
        None => (None, None),
    };
    let mut plan = match &manifest {
        Some(manifest) => Plan::from_manifest(manifest, &options.filter, &map)?,
        None => {
            legacy_plan(store.clone(), &backup, format, options.database_level.clone(), &options.filter, &map, options.identities.clone()).await?
        }
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
    // What was found, before anything is written.
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
    if !plan.refusals.is_empty() {
        return Err(Error::Consistency(format!("{} cannot be restored, so nothing was written: {}", backup.archive, plan.refusals.join("; "))));
    }
    // Never a silent empty restore of a tarball: nothing to restore and nothing filtered out.
    if manifest.is_none() && plan.namespaces.is_empty() && plan.skipped.is_empty() {
        let found = if plan.unread_files.is_empty() { "no .bson or .metadata.json file at all".to_string() } else { plan.unread_files.join("; ") };
        return Err(Error::Consistency(format!(
            "{} holds nothing that can be restored, so nothing was written: {found}. A dump directory made by mongodump holds \
             <database>/<collection>.bson files (with or without .metadata.json) inside one directory",
            backup.archive
        )));
    }
    // The archive is opened, and an encrypted one's header and first chunk
    // authenticated, before anything is written to the target.
    let archive = open_reader(&store, &backup.archive, format, options.identities.clone()).await?;
    let target = crate::source::connect_retrying(&options.uri, &options.retry).await?;
    refuse_timeseries_on_raw_data_servers(&plan, target.server_version.as_deref())?;
    let client = target.client.clone();
    let fills_temporary = plan.namespaces.iter().any(PlannedNamespace::is_users_or_roles);
    let opened = Opened { manifest, sidecar_json, archive };
    let restored = restore_into(options, cancel, clock, store, backup, map, opened, plan, target, pitr).await;
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

/// The stored archive opened for reading, with the manifest it is checked against.
struct Opened {
    manifest: Option<Manifest>,
    /// The whole manifest as JSON (a sealed sidecar's opened), with the archive digest.
    sidecar_json: Option<Vec<u8>>,
    archive: ArchiveReader<Box<dyn Read + Send>>,
}

/// Opens archive `file` for reading on a blocking thread (an encrypted one decrypted with
/// `identities`, its start authenticated).
///
/// # Errors
/// The archive is missing, or an encrypted one cannot be opened (the cause named).
async fn open_reader(
    store: &Store,
    file: &str,
    format: ArchiveFormat,
    identities: Option<Arc<Identities>>,
) -> Result<ArchiveReader<Box<dyn Read + Send>>> {
    let stored = store.open_archive(file).await?;
    let name = file.to_string();
    tokio::task::spawn_blocking(move || {
        ArchiveReader::open(stored, &name, format, identities.as_deref())
            .map_err(|e| Error::Consistency(format!("{name} cannot be read, so nothing was written: {e}")))
    })
    .await
    .expect("opening the archive does not panic")
}

/// The part of [`run_restore`] that writes to the connected target.
#[allow(clippy::too_many_arguments)]
async fn restore_into(
    options: &RestoreOptions,
    cancel: CancellationToken,
    clock: Instant,
    store: Store,
    backup: StoredBackup,
    map: NamespaceMap,
    opened: Opened,
    plan: Plan,
    target: crate::source::Source,
    pitr: Option<crate::pitr::RestorePlan>,
) -> Result<RestoreReport> {
    let Opened { manifest, sidecar_json, archive } = opened;
    let retry = &options.retry;
    info!(backup = %backup.name, namespaces = plan.namespaces.len(), drop = options.drop, "Restoring.");
    let client = &target.client;
    retry.run("preparing the target collections", |_| target::prepare(client, &plan.namespaces, options.drop, options.parallel)).await?;

    let (live, _display) = crate::progress::Progress::show("restore", "bytes");
    let expected = plan.namespaces.iter().map(|n| n.expected.as_ref()).collect::<Option<Vec<_>>>();
    if let Some(expected) = expected {
        live.expect(Some(expected.iter().map(|e| e.documents).sum()), Some(expected.iter().map(|e| e.bytes).sum()));
    }
    let namespaces = Arc::new(plan.namespaces.clone());
    let (batches, receiver) = mpsc::channel(options.parallel.max(1) * 2);
    let inserter = tokio::spawn(target::insert_batches(target.client.clone(), namespaces.clone(), receiver, options.parallel));
    let streamed = {
        let (plan, cancel, spool_dir, live) = (plan.clone(), cancel.clone(), options.spool_dir.clone(), live.clone());
        let batch_documents = options.batch_documents;
        tokio::task::spawn_blocking(move || stream::stream_archive(archive, &plan, batches, batch_documents, &spool_dir, &cancel, &live))
            .await
            .expect("the archive reader does not panic")
    };
    let inserted = inserter.await.expect("the inserter does not panic");
    let tallies = inserted.tallies;
    // From here on the target holds documents: a failure says how many, per namespace.
    let interrupted = |error: Error| {
        if matches!(error, Error::Cancelled) {
            return error;
        }
        let written = plan.namespaces.iter().zip(&tallies).map(|(planned, tally)| (planned.target(), tally.inserted)).collect();
        Error::RestoreInterrupted { written, source: Box::new(error) }
    };
    // The inserter's failure explains the reader's "the inserts stopped".
    if let Some(error) = inserted.error {
        return Err(interrupted(error));
    }
    let streamed = streamed.map_err(interrupted)?;
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }

    let mut problems = Vec::new();
    if let Some(expected) = manifest.as_ref().and_then(|m| m.archive.as_ref()) {
        if expected.sha256 != streamed.archive.sha256 || expected.size != streamed.archive.size {
            problems.push(format!(
                "the archive's bytes differ from the sidecar (size {} vs {}, sha256 {} vs {}): it was altered after the backup",
                streamed.archive.size, expected.size, streamed.archive.sha256, expected.sha256
            ));
        }
    }
    if let Some((manifest, sidecar)) = manifest.as_ref().zip(sidecar_json.as_deref()) {
        problems.extend(embedded_manifest_problem(manifest, sidecar, streamed.embedded_manifest.as_deref()));
    }
    // Users and roles right after the inserts: the temporary collections hold password
    // hashes, so they live no longer than needed (and are dropped on every path).
    let users_and_roles = match users_roles_scope(&plan, &options.filter) {
        Some(scope) => {
            let merged = users_roles::merge(client, &scope, options.drop).await.map_err(interrupted)?;
            problems.extend(merged.problems.iter().cloned());
            Some(merged)
        }
        None => None,
    };
    let indexes_built =
        retry.run("building the indexes", |_| target::build_all_indexes(client, &plan.namespaces, options.parallel)).await.map_err(interrupted)?;
    let mut restored = Vec::new();
    for (index, planned) in plan.namespaces.iter().enumerate() {
        let tally = &tallies[index];
        let digest = streamed.digests[index].as_ref();
        let checksum = match (&planned.expected, digest) {
            (None, _) => "unchecked",
            (Some(_), None) if planned.is_view() => "ok",
            (Some(_), None) => {
                problems.push(format!("{}: its .bson file is missing from the archive", planned.source()));
                "MISMATCH"
            }
            (Some(expected), Some(found))
                if expected.sha256 == found.sha256
                    && expected.documents == found.documents
                    && expected.bytes == found.bytes
                    && expected.content_hash == found.content_hash =>
            {
                "ok"
            }
            (Some(expected), Some(found)) => {
                problems.push(format!(
                    "{}: the .bson file's sha256 is {} but the manifest says {} ({} documents, manifest {}; {} bytes, manifest {}; content hash {}, manifest {}): \
                     the archive or its manifest is damaged",
                    planned.source(),
                    found.sha256,
                    expected.sha256,
                    found.documents,
                    expected.documents,
                    found.bytes,
                    expected.bytes,
                    found.content_hash,
                    expected.content_hash
                ));
                "MISMATCH"
            }
        };
        if tally.duplicates > 0 {
            problems.push(format!(
                "{}: {} documents were not restored because documents with the same key already exist; use --drop to replace the collection",
                planned.target(),
                tally.duplicates
            ));
        }
        if tally.failed > 0 {
            problems.push(format!("{}: {} documents were refused: {}", planned.target(), tally.failed, tally.first_failure.as_deref().unwrap_or("")));
        }
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
    for planned in plan.namespaces.iter().filter(|n| n.is_view()) {
        retry.run(&format!("creating the view {}", planned.target()), |_| target::create_view(client, planned)).await.map_err(interrupted)?;
    }

    let oplog_limit = manifest.as_ref().and_then(|m| m.consistency.end);
    let oplog_problem = manifest.as_ref().and_then(|m| oplog_problem(m, streamed.oplog.as_ref().map(|(_, digest)| digest)));
    let oplog = match streamed.oplog {
        Some(_) if oplog_problem.is_some() => None,
        Some((spooled, _)) if options.oplog_replay => {
            Some(replay(&target.client, spooled, &options.filter, &map, oplog_limit, &cancel).await.map_err(interrupted)?)
        }
        Some(_) => {
            warn!(
                "--oplog-replay=false: the backup's oplog.bson was not replayed, so the target holds the dump as read, not a single point in time."
            );
            None
        }
        None => None,
    };
    problems.extend(oplog_problem);
    let pitr_replay = match &pitr {
        Some(point) => Some(
            crate::pitr::replay::replay_slices(
                &store,
                &target.client,
                &point.slices,
                &options.filter,
                &map,
                point.target,
                options.identities.clone(),
                &cancel,
            )
            .await
            .map_err(interrupted)?,
        ),
        None => None,
    };
    let report = RestoreReport {
        name: backup.name.clone(),
        target: target.hosts.clone(),
        checked: manifest.is_some(),
        duration_seconds: clock.elapsed().as_secs_f64(),
        documents: restored.iter().map(|n| n.inserted).sum(),
        bytes: streamed.digests.iter().flatten().map(|d| d.bytes).sum(),
        namespaces: restored,
        skipped: plan.skipped,
        unread_files: plan.unread_files,
        users_and_roles,
        oplog,
        oplog_limit,
        pitr: pitr_replay,
        to_time: pitr.map(|point| point.target),
        problems,
    };
    info!(backup = %report.name, documents = report.documents, seconds = format!("{:.2}", report.duration_seconds), "Restore finished.");
    Ok(report)
}

/// MongoDB 8.3 and later keep a time-series collection's buckets under its own name and
/// take them only as `rawData` inserts, which this restore does not make: refused
/// before anything is written rather than restored empty.
fn refuse_timeseries_on_raw_data_servers(plan: &Plan, server_version: Option<&str>) -> Result<()> {
    let Some(version) = server_version.filter(|version| plan::stores_buckets_raw(version)) else { return Ok(()) };
    match plan.namespaces.iter().find(|n| n.is_timeseries()) {
        Some(planned) => Err(Error::Consistency(format!(
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
        users: authz.iter().any(|n| n.kind == users_roles::USERS_KIND),
        roles: authz.iter().any(|n| n.kind == users_roles::ROLES_KIND),
        databases,
    })
}

/// Why the archive's own manifest is not the sidecar (its `archive` field aside), if
/// it is not: one of the two was altered, and the sidecar is what the restore followed.
fn embedded_manifest_problem(manifest: &Manifest, sidecar: &[u8], embedded: Option<&[u8]>) -> Option<String> {
    let member = crate::dump::manifest_path(&manifest.name);
    let Some(embedded) = embedded else {
        return Some(format!("the archive lacks its own manifest ({member}): it is damaged or is not this backup's"));
    };
    let mut expected: serde_json::Value = serde_json::from_slice(sidecar).ok()?;
    expected.as_object_mut()?.remove("archive");
    match serde_json::from_slice::<serde_json::Value>(embedded) {
        Ok(found) if found == expected => None,
        _ => Some(format!(
            "the sidecar {}.manifest.json differs from the archive's own manifest ({member}): one was altered after the backup; \
             the restore followed the sidecar, so check the target or restore an older backup",
            manifest.name
        )),
    }
}

/// Why `oplog.bson` must not be replayed, if it must not: it is missing though the
/// manifest records one, or its entries or SHA-256 differ from the manifest's.
fn oplog_problem(manifest: &Manifest, found: Option<&crate::digest::DigestSummary>) -> Option<String> {
    let consistency = &manifest.consistency;
    if !consistency.oplog {
        return None;
    }
    let Some(found) = found else {
        return Some(format!("oplog.bson is missing from the archive of {}: nothing was replayed", manifest.name));
    };
    let sha_differs = consistency.oplog_sha256.as_deref().is_some_and(|expected| expected != found.sha256);
    if sha_differs || consistency.oplog_entries != found.documents {
        return Some(format!(
            "oplog.bson in the archive of {} is damaged ({} entries, sha256 {}; the manifest says {} entries, sha256 {}): \
             it was not replayed, so the target holds the collections as dumped, not one point in time; restore an older backup",
            manifest.name,
            found.documents,
            found.sha256,
            consistency.oplog_entries,
            consistency.oplog_sha256.as_deref().unwrap_or("none")
        ));
    }
    None
}

/// The manifest of the backup and its JSON (a sealed sidecar opened with
/// `identities`), `None` for an accepted legacy tarball.
fn read_manifest(backup: &StoredBackup, no_manifest: bool, identities: Option<&Identities>) -> Result<Option<(Manifest, Vec<u8>)>> {
    match (&backup.sidecar, no_manifest) {
        (Some(sidecar), _) => {
            let manifest: Manifest = serde_json::from_slice(sidecar).map_err(|e| {
                Error::Consistency(format!("the sidecar manifest of {} is unreadable ({e}); the backup cannot be trusted", backup.name))
            })?;
            match identities {
                Some(identities) if is_sealed(&manifest) => {
                    let (manifest, json) = open_details(&manifest, identities).map_err(|cause| {
                        Error::Consistency(format!("the sidecar of {} cannot be used, so nothing was written: {cause}", backup.name))
                    })?;
                    Ok(Some((manifest, serde_json::to_vec(&json).expect("JSON serializes"))))
                }
                _ => Ok(Some((manifest, sidecar.clone()))),
            }
        }
        (None, true) => {
            warn!(backup = %backup.name, "Restoring without a manifest: nothing can be checked against checksums.");
            Ok(None)
        }
        (None, false) => Err(Error::Consistency(format!(
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
        return Err(Error::Consistency(format!(
            "{} holds an ingest-backup manifest but its sidecar is missing: the backup did not finish and is not restored",
            backup.archive
        )));
    }
    if let Some(version) = &scan.source_version {
        info!(version = %version, "The dump's prelude.json names the server it was taken from.");
    }
    Ok(scan.into_plan(filter, map))
}

/// Replays a spooled `oplog.bson`, read on a blocking thread, up to `limit`.
async fn replay(
    client: &mongodb::Client,
    spooled: crate::dump::spool::SpooledBson,
    filter: &NamespaceFilter,
    map: &NamespaceMap,
    limit: Option<Timestamp>,
    cancel: &CancellationToken,
) -> Result<ReplayReport> {
    let (entries, mut receiver) = mpsc::channel::<bson::RawDocumentBuf>(256);
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut reader = BsonReader::new(spooled.data);
        while let Some(entry) = reader.next_document().map_err(|e| Error::Consistency(format!("the spooled oplog is unreadable: {e}")))? {
            if entries.blocking_send(entry.to_raw_document_buf()).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut replayer = Replayer::new(client, filter, map, limit);
    while let Some(entry) = receiver.recv().await {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        replayer.apply(&entry).await?;
    }
    reader.await.expect("the oplog reader does not panic")?;
    info!(applied = replayer.report.applied, skipped = replayer.report.skipped, "Replayed the oplog.");
    Ok(replayer.report)
}
