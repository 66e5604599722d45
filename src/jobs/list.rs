//! The list job: every backup in the store, newest first, complete or not, with its
//! latest verification and drill; the point-in-time ranges the oplog slices cover; uploads left
//! open by runs that died.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use super::table::{human_bytes, Align, Table};
use super::{Render, TextTarget};
use crate::crypto::is_encrypted;
use crate::drill::DrillRecord;
use crate::error::Result;
use crate::oplog;
use crate::pitr::{self, Chain};
use crate::prune;
use crate::store::{Store, StoreLocation, StoredBackup};
use crate::verify::{VerificationRecord, VerifyStatus};

/// What `list` shows (field names are the `--json` contract).
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// The store listed.
    pub store: String,
    /// Every backup, newest first.
    pub backups: Vec<ListedBackup>,
    /// The point-in-time ranges, one per base backup with slices.
    pub pitr: Vec<PitrRange>,
    /// Bytes of every oplog slice in the store as stored, in a chain or not.
    pub slice_bytes: u64,
    /// Multipart uploads open for longer than `--stale-after`.
    pub stale_uploads: Vec<StaleUpload>,
    /// Whether the bucket has Object Lock (then each backup shows its lock).
    pub object_lock: bool,
    /// `--stale-after`, for the warning text.
    #[serde(skip)]
    pub stale_after: Duration,
}

/// One backup in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListedBackup {
    /// The backup name.
    pub name: String,
    /// The archive's object name.
    pub archive: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// Whether the sidecar manifest exists (and reads).
    pub complete: bool,
    /// Documents, from the manifest.
    pub documents: Option<u64>,
    /// Wall time of the backup, from the manifest.
    pub duration_seconds: Option<f64>,
    /// `gzip` or `zstd`, from the manifest.
    pub compression: Option<String>,
    /// Whether the archive is encrypted.
    pub encrypted: bool,
    /// The age recipients, when the manifest names them.
    pub recipients: Option<Vec<String>>,
    /// When the backup finished, from the manifest (RFC 3339).
    pub finished_at: Option<String>,
    /// The latest verification, when there is one.
    pub verification: Option<VerificationSummary>,
    /// The latest restore drill, when there is one.
    pub drill: Option<DrillSummary>,
    /// Until when Object Lock keeps it (the latest date of its objects); on a bucket with Object Lock only.
    pub locked_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a legal hold keeps it (`ingest-backup hold`).
    pub legal_hold: bool,
}

/// The latest verification of a backup, as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationSummary {
    /// The verdict.
    pub status: VerifyStatus,
    /// When it finished.
    pub verified_at: String,
    /// Error findings.
    pub errors: Option<usize>,
}

/// The latest restore drill of a backup, as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    /// Whether it passed.
    pub passed: bool,
    /// The measured recovery time (restore seconds).
    pub recovery_seconds: Option<f64>,
    /// When it finished.
    pub drilled_at: String,
}

/// A point-in-time range: a base backup and the slices chained from it.
#[derive(Debug, Clone, Serialize)]
pub struct PitrRange {
    /// The base backup.
    pub base: String,
    /// The earliest restorable point (`T.I`).
    pub from: String,
    /// The newest restorable point (`T.I`).
    pub to: String,
    /// `from` as RFC 3339.
    pub from_time: String,
    /// `to` as RFC 3339.
    pub to_time: String,
    /// Slices in the chain.
    pub slices: usize,
    /// Bytes of the chain's slices as stored.
    pub stored_bytes: u64,
    /// The first slice that does not continue the chain, when there is a gap.
    pub broken_at: Option<String>,
}

/// A multipart upload a dead run left open.
#[derive(Debug, Clone, Serialize)]
pub struct StaleUpload {
    /// The object key.
    pub key: String,
    /// When the upload started, RFC 3339.
    pub initiated: Option<String>,
}

/// `list`.
///
/// # Errors
/// Store errors.
pub async fn run(location: &StoreLocation, store: &Store, stale_after: Duration) -> Result<ListReport> {
    let backups = store.list().await?;
    let slices = pitr::list_slices(store).await?;
    let slice_bytes = slices.iter().map(|slice| slice.stored_bytes).sum();
    let mut chains = pitr::chains(&pitr::bases(&backups), &slices);
    chains.retain(|chain| !chain.slices.is_empty());
    let uploads = store.objects().list_multipart_uploads("").await?;
    let stale_uploads = prune::stale_uploads(&uploads, chrono::Utc::now(), stale_after)
        .into_iter()
        .map(|upload| StaleUpload { key: upload.key.clone(), initiated: upload.initiated.map(|t| t.to_rfc3339()) })
        .collect();
    let object_lock = store.objects().bucket_lock().await?.enabled;
    let mut listed: Vec<ListedBackup> = backups.iter().map(ListedBackup::new).collect();
    if object_lock {
        let key_sets: Vec<Vec<String>> = backups.iter().map(Store::backup_keys).collect();
        for (entry, lock) in listed.iter_mut().zip(store.locks_of(&key_sets).await?) {
            entry.locked_until = lock.retain_until;
            entry.legal_hold = lock.legal_hold;
        }
    }
    Ok(ListReport {
        object_lock,
        store: location.to_string(),
        backups: listed,
        pitr: chains.iter().map(PitrRange::new).collect(),
        slice_bytes,
        stale_uploads,
        stale_after,
    })
}

impl ListedBackup {
    fn new(backup: &StoredBackup) -> ListedBackup {
        let manifest = backup.sidecar.as_deref().and_then(|bytes| crate::store::parse_sidecar(bytes).ok());
        let duration = manifest.as_ref().and_then(|m| {
            let start = chrono::DateTime::parse_from_rfc3339(&m.started_at).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(&m.finished_at).ok()?;
            Some((end - start).num_milliseconds() as f64 / 1000.0)
        });
        let verification = backup.verification.as_deref().and_then(VerificationRecord::parse).map(|record| VerificationSummary {
            status: record.status,
            errors: record.errors(),
            verified_at: record.verified_at,
        });
        let drill = backup.drill.as_deref().and_then(DrillRecord::parse).map(|record| DrillSummary {
            passed: record.passed,
            recovery_seconds: record.recovery_seconds,
            drilled_at: record.finished_at,
        });
        ListedBackup {
            name: backup.name.clone(),
            archive: backup.archive.clone(),
            size: backup.size,
            complete: manifest.is_some(),
            documents: manifest.as_ref().map(|m| m.totals.documents),
            duration_seconds: duration,
            finished_at: manifest.as_ref().map(|m| m.finished_at.clone()),
            compression: manifest.as_ref().map(|m| m.compression.clone()),
            encrypted: manifest.as_ref().map_or(is_encrypted(&backup.archive), |m| m.encryption.is_some()),
            recipients: manifest.as_ref().and_then(|m| m.encryption.as_ref()).map(|e| e.recipients.clone()),
            verification,
            drill,
            locked_until: None,
            legal_hold: false,
        }
    }
}

impl PitrRange {
    fn new(chain: &Chain) -> PitrRange {
        PitrRange {
            base: chain.base.clone(),
            from: oplog::timestamp_label(chain.from),
            to: oplog::timestamp_label(chain.to),
            from_time: oplog::wall_time(chain.from).to_rfc3339(),
            to_time: oplog::wall_time(chain.to).to_rfc3339(),
            slices: chain.slices.len(),
            stored_bytes: chain.slices.iter().map(|slice| slice.stored_bytes).sum(),
            broken_at: chain.broken_at.clone(),
        }
    }
}

impl Render for ListReport {
    fn warnings(&self) -> String {
        let mut out = String::new();
        for upload in &self.stale_uploads {
            let _ = writeln!(
                out,
                "WARNING: {} is an upload open since {} (older than {}): its backup died; `ingest-backup prune` aborts it",
                upload.key,
                upload.initiated.as_deref().unwrap_or("?"),
                humantime::format_duration(self.stale_after)
            );
        }
        out
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let mut columns = vec![
            ("NAME", Align::Left),
            ("SIZE", Align::Right),
            ("DOCUMENTS", Align::Right),
            ("SECONDS", Align::Right),
            ("COMPR", Align::Left),
            ("VERIFIED", Align::Left),
            ("DRILL", Align::Left),
        ];
        if self.object_lock {
            columns.extend([("LOCKED UNTIL", Align::Left), ("HOLD", Align::Left)]);
        }
        columns.push(("STATUS", Align::Left));
        let mut table = Table::new(&columns);
        for backup in &self.backups {
            let verified = match &backup.verification {
                None => "never".to_string(),
                Some(v) => format!("{} {}", v.status.as_str(), v.verified_at),
            };
            let mut cells = vec![
                backup.name.clone(),
                human_bytes(backup.size),
                backup.documents.map_or("-".into(), |d| d.to_string()),
                backup.duration_seconds.map_or("-".into(), |d| format!("{d:.1}")),
                backup.compression.clone().unwrap_or_else(|| "-".into()),
                verified,
                backup.drill.as_ref().map_or("never".to_string(), |drill| {
                    let recovery = drill.recovery_seconds.map_or(String::new(), |s| format!(" {s:.1}s"));
                    format!("{}{recovery} {}", if drill.passed { "passed" } else { "FAILED" }, drill.drilled_at)
                }),
            ];
            if self.object_lock {
                cells.push(backup.locked_until.map_or("-".to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
                cells.push(if backup.legal_hold { "yes" } else { "-" }.to_string());
            }
            let mut status = if backup.complete { "complete".to_string() } else { "INCOMPLETE (no sidecar manifest)".to_string() };
            if backup.encrypted {
                let recipients = backup.recipients.as_deref().unwrap_or_default();
                let to = if recipients.is_empty() { "unknown recipients".to_string() } else { recipients.join(", ") };
                status.push_str(&format!(", encrypted (age) to {to}"));
            }
            cells.push(status);
            table.row(cells);
        }
        out.push_str(&table.render());
        for range in &self.pitr {
            let _ = writeln!(
                out,
                "PITR: {} - {} (backup {} + {} oplog slices){}",
                range.from_time,
                range.to_time,
                range.base,
                range.slices,
                range.broken_at.as_ref().map_or(String::new(), |slice| format!("; GAP: {slice} does not continue it"))
            );
        }
        out
    }

    fn text_target(&self) -> TextTarget {
        TextTarget::Stdout
    }

    fn text_beside_json(&self) -> bool {
        false
    }
}
