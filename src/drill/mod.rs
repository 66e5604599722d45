//! `drill`: a restore rehearsed for real. A stored backup (the newest verified one by
//! default) is restored into a scratch server, read back and compared with its
//! manifest ([`readback`]), the result recorded beside the backup
//! (`<name>.drill.json`, with the measured recovery time), and what the drill restored
//! dropped again ([`scratch`]). The scratch server is never the backup's source.

pub mod readback;
pub mod scratch;

use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::oplog::timestamp_label;
use crate::restore::{self, RestoreOptions, RestoreReport};
use crate::store::{self, Store, StoredBackup};
use crate::verify::{VerificationRecord, VerifyStatus};
use readback::DrillNamespace;

/// The backup selector of a drill that takes the newest complete backup whose latest
/// verification passed.
pub const VERIFIED: &str = "verified";

/// What to drill and where.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The restore the drill runs: its `backup` is a name, `latest` or [`VERIFIED`],
    /// its `uri` the scratch server.
    pub restore: RestoreOptions,
    /// Leave the restored data on the scratch server.
    pub keep: bool,
}

/// What a drill found (also the record `<name>.drill.json`; field names are the
/// `--json` contract).
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The backup drilled (with `--to-time`: the base backup).
    pub backup: String,
    /// The store, as displayed (no secret).
    pub store: String,
    /// Hosts of the scratch server.
    pub target: Vec<String>,
    /// With `--to-time`: the point restored to (`T.I`).
    pub to_time: Option<String>,
    /// When the drill started, RFC 3339 UTC.
    pub started_at: String,
    /// When it finished, RFC 3339 UTC.
    pub finished_at: String,
    /// Whether every namespace matched and the restore reported no problem.
    pub passed: bool,
    /// The measured recovery time: the restore's wall time, from opening the archive to
    /// the last index built and oplog entry replayed (`None` when the restore failed).
    pub recovery_seconds: Option<f64>,
    /// The read-back check's wall time.
    pub check_seconds: f64,
    /// Documents restored.
    pub documents: u64,
    /// BSON bytes restored.
    pub bytes: u64,
    /// Per namespace of the backup.
    pub namespaces: Vec<DrillNamespace>,
    /// Everything that failed the drill, in words.
    pub problems: Vec<String>,
    /// Whether the restored data was left on the scratch server (`--keep`).
    pub kept: bool,
    /// The namespaces dropped from the scratch server afterwards.
    pub dropped: Vec<String>,
    /// Where the record was written, when it was.
    pub recorded: Option<String>,
}

/// A drill as recorded beside its backup, read back: the fields `list` and the
/// exporter show.
#[derive(Debug, Clone, Deserialize)]
pub struct DrillRecord {
    /// Whether it passed.
    pub passed: bool,
    /// The measured recovery time.
    pub recovery_seconds: Option<f64>,
    /// When it finished, RFC 3339.
    #[serde(default)]
    pub finished_at: String,
}

impl DrillRecord {
    /// Reads a record; `None` when the bytes are not one.
    pub fn parse(bytes: &[u8]) -> Option<DrillRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Runs a drill.
///
/// # Errors
/// Refusals before anything is written (no such backup, a sidecar that cannot be
/// opened, the scratch server is the source or already holds the backup's
/// namespaces: exit 2 for the last two), and a stop (cancellation). A restore that
/// fails once begun is a failed drill, reported and recorded, not an error.
pub async fn run(options: &DrillOptions, store_display: &str, cancel: CancellationToken) -> Result<DrillReport> {
    let started_at = now_text();
    let mut restore_options = options.restore.clone();
    let store = store::open_with(&restore_options.store, restore_options.s3.clone()).await?;
    restore_options.backup = select_backup(&store, &restore_options).await?;
    let (_, backup, _) = restore::choose_backup(&restore_options).await?;
    restore_options.backup.clone_from(&backup.name);
    if crate::crypto::is_encrypted(&backup.archive) && restore_options.identities.is_none() {
        return Err(Error::usage(format!(
            "backup {} is encrypted and no identity was given, so nothing was written: give --identity FILE (or AGE_IDENTITY_FILE, \
             or AGE_IDENTITY) holding the private key of one of its recipients",
            backup.name
        )));
    }
    let Some((manifest, _)) = restore::read_manifest(&backup, false, restore_options.identities.as_deref())? else {
        unreachable!("a manifest is required")
    };
    let scratch = crate::source::connect_retrying(&restore_options.uri, &restore_options.retry).await?;
    scratch::refuse_source(&manifest.source, &scratch::hosts_of(&scratch).await?, &restore_options.uri).await?;
    let before = scratch::Contents::of(&scratch.client).await?;
    let wanted: Vec<String> = readback::checked_entries(&manifest).map(|entry| format!("{}.{}", entry.database, entry.collection)).collect();
    scratch::refuse_occupied(&before.namespaces, &wanted, &restore_options.uri)?;
    info!(backup = %backup.name, target = ?scratch.hosts, "Drill: restoring into the scratch server.");

    let restored = restore::run_restore(&restore_options, cancel.clone()).await;
    let mut problems = Vec::new();
    let (restore_report, namespaces, check_seconds) = match restored {
        Ok(report) => {
            let clock = Instant::now();
            let namespaces = readback::read_back(&scratch.client, &manifest, report.to_time.is_some()).await;
            let check_seconds = clock.elapsed().as_secs_f64();
            problems.extend(report.problems.iter().cloned());
            match namespaces {
                Ok(namespaces) => (Some(report), namespaces, check_seconds),
                Err(error) => {
                    problems.push(format!("reading the restored data back failed: {error}"));
                    (Some(report), Vec::new(), check_seconds)
                }
            }
        }
        Err(error) if matches!(error, Error::Cancelled | Error::Usage { .. }) => {
            clean_up(&scratch.client, &before, options.keep).await;
            return Err(error);
        }
        Err(error) => {
            problems.push(format!("the restore failed: {error}"));
            (None, Vec::new(), 0.0)
        }
    };
    problems.extend(namespaces.iter().filter(|n| !n.passed).map(|n| format!("{}: {}", n.namespace, n.problem)));
    let dropped = clean_up(&scratch.client, &before, options.keep).await;
    scratch.client.shutdown().await;
    let mut report = DrillReport {
        backup: backup.name.clone(),
        store: store_display.to_string(),
        target: scratch.hosts.clone(),
        to_time: restore_report.as_ref().and_then(|r| r.to_time).map(timestamp_label),
        started_at,
        finished_at: now_text(),
        passed: problems.is_empty(),
        recovery_seconds: restore_report.as_ref().map(|r| r.duration_seconds),
        check_seconds,
        documents: restore_report.as_ref().map_or(0, |r: &RestoreReport| r.documents),
        bytes: restore_report.as_ref().map_or(0, |r| r.bytes),
        namespaces,
        problems,
        kept: options.keep,
        dropped,
        recorded: None,
    };
    report.recorded = record(&store, &report).await;
    Ok(report)
}

/// The backup name a selector means: [`VERIFIED`] is the newest complete backup whose
/// latest verification passed; a name or `latest` is left to the restore's choice.
async fn select_backup(store: &Store, options: &RestoreOptions) -> Result<String> {
    if options.backup != VERIFIED {
        return Ok(options.backup.clone());
    }
    let listing = store.list().await?;
    let verified = listing.iter().find(|backup| backup.sidecar.is_some() && verification_passed(backup)).map(|backup| backup.name.clone());
    match (verified, options.to_time.is_some()) {
        // A point in time picks its own base (the newest covering it); a verified one is asked for only without it.
        (_, true) => Ok("latest".to_string()),
        (Some(name), false) => Ok(name),
        (None, false) => Err(Error::Refused(format!(
            "{} holds no complete backup whose verification passed, so there is nothing to drill; run `ingest-backup verify` \
             (the verify CronJob), or name a backup to drill",
            options.store
        ))),
    }
}

fn verification_passed(backup: &StoredBackup) -> bool {
    backup.verification.as_deref().and_then(VerificationRecord::parse).is_some_and(|record| record.status != VerifyStatus::Failed)
}

/// Drops what the drill created on the scratch server, unless `keep`: the namespaces
/// that were not there `before`, and the databases that were not (with whatever the
/// server keeps in them, such as `system.views`). A failure to drop is logged (the
/// report then lists fewer namespaces dropped).
async fn clean_up(client: &mongodb::Client, before: &scratch::Contents, keep: bool) -> Vec<String> {
    if keep {
        return Vec::new();
    }
    match scratch::drop_created(client, before).await {
        Ok(dropped) => dropped,
        Err(error) => {
            warn!(%error, "Cannot drop what the drill restored from the scratch server.");
            Vec::new()
        }
    }
}

/// Records the report beside the backup, locked like the backup when it is; a
/// failure to record is logged, not fatal (the report says where it was recorded).
async fn record(store: &Store, report: &DrillReport) -> Option<String> {
    let key = crate::store::keys::drill_key(&report.backup);
    let recorded = DrillReport { recorded: Some(store.objects().location(&key)), ..report.clone() };
    let mut bytes = serde_json::to_vec_pretty(&recorded).expect("a report always serializes");
    bytes.push(b'\n');
    match store.put_drill(&report.backup, &bytes).await {
        Ok(location) => {
            if let Err(error) = store.lock_like_backup(&[crate::store::keys::drill_key(&report.backup)], &report.backup).await {
                warn!(%error, "Cannot lock the drill record like its backup (Object Lock).");
            }
            Some(location)
        }
        Err(error) => {
            warn!(%error, "Cannot record the drill result in the store.");
            None
        }
    }
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
