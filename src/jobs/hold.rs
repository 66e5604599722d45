//! `hold` and `release`: an S3 legal hold set on, or cleared from, every object of a
//! backup (its archive, sidecar, verification record and the oplog slices that chain
//! from it), for incident response: kept whatever the retention policy says. And
//! `iam-policy`, the least-privilege policy of each job.

use serde::Serialize;

use super::Render;
use crate::error::{Error, Result};
use crate::store::{self, keys, Latest, Store, StoreLocation};

/// What `hold` or `release` did: the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    /// The backup.
    pub backup: String,
    /// The store.
    pub store: String,
    /// Whether the objects are now under legal hold.
    pub legal_hold: bool,
    /// Every object whose hold was set or cleared.
    pub objects: Vec<String>,
}

/// Sets (`on`) or clears the legal hold of every object of backup `wanted`.
///
/// # Errors
/// A usage error when the store cannot lock or has no such backup; the store's error
/// (a missing `s3:PutObjectLegalHold`, say) otherwise.
pub async fn run(location: &StoreLocation, store: &Store, wanted: &str, on: bool) -> Result<HoldReport> {
    let verb = if on { "hold" } else { "release" };
    if !store.objects().bucket_lock().await?.enabled {
        return Err(Error::usage(format!(
            "{verb}: the store {location} has no Object Lock, so it cannot hold a backup; legal holds need an S3 bucket created with Object Lock enabled"
        )));
    }
    let backup = store::select(store.list().await?, wanted, location, Latest::Newest)?;
    let mut objects = Store::backup_keys(&backup);
    for slice in crate::pitr::list_slices(store).await?.into_iter().filter(|s| s.base_backup == backup.name) {
        objects.push(keys::slice_sidecar_key(&slice.file));
        objects.push(slice.file);
    }
    for key in &objects {
        store.objects().set_legal_hold(key, on).await?;
    }
    tracing::info!(backup = %backup.name, objects = objects.len(), legal_hold = on, "Legal hold {}.", if on { "set" } else { "cleared" });
    Ok(HoldReport { backup: backup.name, store: location.to_string(), legal_hold: on, objects })
}

impl Render for HoldReport {
    fn text(&self) -> String {
        let what = if self.legal_hold {
            "under legal hold: no prune and no delete removes it until `ingest-backup release`"
        } else {
            "released from its legal hold: its retention lock, if any, still applies"
        };
        format!("backup {} in {} is {what} ({} objects)\n", self.backup, self.store, self.objects.len())
    }
}

/// The policy `iam-policy` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct IamPolicyReport(pub serde_json::Value);

/// `iam-policy`.
///
/// # Errors
/// A usage error for an unknown role or an invalid bucket name.
pub fn iam_policy(role: &str, bucket: &str, prefix: &str) -> Result<IamPolicyReport> {
    let role = crate::iam::Role::parse(role).ok_or_else(|| Error::usage(format!("--role {role:?}: give backup, prune, verify, restore or drill")))?;
    StoreLocation::parse(&format!("s3://{bucket}"))?;
    Ok(IamPolicyReport(crate::iam::policy(role, bucket, prefix)))
}

impl Render for IamPolicyReport {
    fn text(&self) -> String {
        format!("{}\n", serde_json::to_string_pretty(&self.0).expect("a policy always serializes"))
    }

    fn text_target(&self) -> super::TextTarget {
        super::TextTarget::Stdout
    }
}
