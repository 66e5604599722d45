//! Stage two of `verify`: the manifest against the live database. Every backed-up
//! namespace is rescanned (one at a time by default, to bound the load) and its count
//! and content hash compared. A difference is then explained, or not, by the oplog:
//! writes since the backup's consistency start are drift the live database is
//! expected to have; a difference with no such writes, in an oplog that reaches back
//! that far, is a real problem.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::oplog_activity::{self, OplogActivity};
use crate::dump::metadata::canonical_value;
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::manifest::{Manifest, NamespaceEntry};
use crate::oplog::Timestamp;
use crate::retry::RetryPolicy;
use crate::source::{discover, live_digest, CollectionInfo, Source};

/// How a namespace compares with the live database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveStatus {
    /// Same documents (count and content hash) or, for a view, the same definition.
    Identical,
    /// It differs, and the oplog shows writes to it since the backup: expected drift.
    Changed,
    /// It differs, and the oplog, which reaches back to the backup, shows no writes
    /// to it: the backup or the database is wrong.
    Unexplained,
    /// It differs, and no oplog reaches back to the backup to say why.
    Undetermined,
}

impl LiveStatus {
    /// The label used in the table.
    pub fn label(self) -> &'static str {
        match self {
            LiveStatus::Identical => "identical",
            LiveStatus::Changed => "changed",
            LiveStatus::Unexplained => "UNEXPLAINED",
            LiveStatus::Undetermined => "undetermined",
        }
    }
}

/// One namespace's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct LiveNamespace {
    /// `db.collection`.
    pub namespace: String,
    /// The verdict.
    pub status: LiveStatus,
    /// Documents in the backup (0 for a namespace created since).
    pub backup_documents: u64,
    /// Documents in the live collection (`None` when it no longer exists).
    pub live_documents: Option<u64>,
    /// `live_documents - backup_documents`.
    pub delta: i64,
    /// Oplog entries writing to it since the reference point.
    pub oplog_writes: u64,
    /// What differs, in words.
    pub note: String,
}

/// What stage two found.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCheck {
    /// Hosts of the verified server.
    pub hosts: Vec<String>,
    /// Oplog time after which writes explain differences (the backup's start).
    pub reference: Timestamp,
    /// Whether the live oplog covers everything since the reference point.
    pub oplog_reaches_back: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oplog_reason: Option<String>,
    /// Oplog entries read after the reference point.
    pub oplog_entries: u64,
    /// One row per namespace of the backup, then per namespace created since.
    pub namespaces: Vec<LiveNamespace>,
}

impl LiveCheck {
    /// Namespaces with the given status.
    pub fn count(&self, status: LiveStatus) -> usize {
        self.namespaces.iter().filter(|n| n.status == status).count()
    }
}

/// The oplog time after which a write explains a difference: the backup's consistency
/// start, or (for a backup without an oplog) its start time.
pub fn reference_point(manifest: &Manifest) -> Timestamp {
    manifest.consistency.start.unwrap_or_else(|| {
        let started = chrono::DateTime::parse_from_rfc3339(&manifest.started_at).map(|t| t.timestamp()).unwrap_or(0);
        Timestamp { t: u32::try_from(started.max(0)).unwrap_or(u32::MAX), i: 0 }
    })
}

/// Compares `manifest` with the live database behind `source`, scanning at most
/// `parallel` collections at a time. A read interrupted by a transient fault starts
/// again from its beginning (a scan with a fresh digest), per `retry`; a read that
/// still fails is an error, never a pass.
///
/// # Errors
/// A MongoDB error (the server is unreachable, a scan failed even after its retries)
/// or cancellation.
pub async fn check_live(source: &Source, manifest: &Manifest, parallel: usize, retry: &RetryPolicy, cancel: &CancellationToken) -> Result<LiveCheck> {
    let reference = reference_point(manifest);
    let replica_set = source.replica_set.is_some();
    let activity = retry.run("reading the oplog since the backup", |_| oplog_activity::since(&source.client, replica_set, reference)).await?;
    let filter = NamespaceFilter::new(&manifest.selection.include, &manifest.selection.exclude)?;
    let filter = &filter;
    let live: BTreeMap<String, CollectionInfo> =
        retry.run("discovering namespaces", |_| discover(&source.client, filter)).await?.into_iter().map(|info| (info.namespace(), info)).collect();

    let compare = futures::stream::iter(manifest.namespaces.iter())
        .map(|entry| compare_namespace(source, entry, live.get(&format!("{}.{}", entry.database, entry.collection)), &activity, retry))
        .buffered(parallel.max(1))
        .try_collect::<Vec<_>>();
    let mut namespaces = tokio::select! {
        rows = compare => rows?,
        _ = cancel.cancelled() => return Err(Error::Cancelled),
    };
    for (namespace, info) in &live {
        let backed_up = manifest.namespaces.iter().any(|e| e.database == info.database && e.collection == info.name);
        if !backed_up {
            namespaces.push(retry.run(&format!("counting {namespace}"), |_| created_since(source, namespace, info, &activity)).await?);
        }
    }
    Ok(LiveCheck {
        hosts: source.hosts.clone(),
        reference,
        oplog_reaches_back: activity.reaches_back,
        oplog_reason: activity.reason.clone(),
        oplog_entries: activity.entries,
        namespaces,
    })
}

async fn compare_namespace(
    source: &Source,
    entry: &NamespaceEntry,
    live: Option<&CollectionInfo>,
    activity: &OplogActivity,
    retry: &RetryPolicy,
) -> Result<LiveNamespace> {
    let namespace = format!("{}.{}", entry.database, entry.collection);
    let writes = activity.writes_to(&entry.database, &entry.collection);
    let (live_documents, difference) = match live {
        None => (None, Some("missing from the live database".to_string())),
        Some(info) if info.is_view() || entry.kind == crate::manifest::NamespaceKind::View => {
            let same = info.kind == entry.kind && canonical_value(&info.options) == entry.options;
            (Some(0), (!same).then(|| "the view's definition differs".to_string()))
        }
        Some(info) => {
            let data = info.data_collection();
            let digest = retry.run(&format!("reading {namespace}"), |_| live_digest(&source.client, &entry.database, &data)).await?;
            let difference = if digest.documents != entry.documents {
                Some(format!("{} documents live, {} in the backup", digest.documents, entry.documents))
            } else if digest.content_hash != entry.content_hash {
                Some("same count, different documents".to_string())
            } else {
                None
            };
            (Some(digest.documents), difference)
        }
    };
    let (status, note) = classify(difference, writes, activity);
    Ok(LiveNamespace {
        namespace,
        status,
        backup_documents: entry.documents,
        live_documents,
        delta: live_documents.unwrap_or(0) as i64 - entry.documents as i64,
        oplog_writes: writes.unwrap_or(0),
        note,
    })
}

async fn created_since(source: &Source, namespace: &str, info: &CollectionInfo, activity: &OplogActivity) -> Result<LiveNamespace> {
    let documents = if info.is_view() {
        0
    } else {
        source
            .client
            .database(&info.database)
            .collection::<bson::Document>(&info.data_collection())
            .count_documents(bson::doc! {})
            .await
            .map_err(Error::mongo(format!("counting {namespace}")))?
    };
    let writes = activity.writes_to(&info.database, &info.name);
    let (status, note) = classify(Some("not in the backup".to_string()), writes, activity);
    Ok(LiveNamespace {
        namespace: namespace.to_string(),
        status,
        backup_documents: 0,
        live_documents: Some(documents),
        delta: documents as i64,
        oplog_writes: writes.unwrap_or(0),
        note,
    })
}

/// The verdict for a namespace: identical when nothing differs; otherwise changed
/// when the oplog shows writes to it, unexplained when an oplog reaching back shows
/// none, undetermined when no oplog reaches back.
pub fn classify(difference: Option<String>, writes: Option<u64>, activity: &OplogActivity) -> (LiveStatus, String) {
    let Some(difference) = difference else { return (LiveStatus::Identical, String::new()) };
    match writes {
        Some(writes) => (LiveStatus::Changed, format!("{difference}; {writes} oplog writes since the backup")),
        None if activity.reaches_back => (
            LiveStatus::Unexplained,
            format!("{difference}, but the oplog shows no write to it since the backup; check that --uri names the backed-up deployment, then investigate the data"),
        ),
        None => (
            LiveStatus::Undetermined,
            format!(
                "{difference}; cannot tell drift from damage: {}",
                activity.reason.as_deref().unwrap_or("no oplog reaches back to the backup")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(reaches_back: bool) -> OplogActivity {
        let mut activity = OplogActivity { reaches_back, ..OplogActivity::default() };
        activity.writes.insert("a.written".into(), 3);
        activity.dropped_databases.insert("gone".into());
        activity
    }

    #[test]
    fn differences_are_explained_only_by_writes_in_the_oplog() {
        let differs = || Some("5 documents live, 4 in the backup".to_string());
        let full = activity(true);
        assert_eq!(classify(None, None, &full).0, LiveStatus::Identical);
        assert_eq!(classify(differs(), full.writes_to("a", "written"), &full).0, LiveStatus::Changed);
        assert_eq!(classify(differs(), full.writes_to("a", "quiet"), &full).0, LiveStatus::Unexplained);
        assert_eq!(classify(differs(), full.writes_to("gone", "any"), &full).0, LiveStatus::Changed, "a dropped database explains its collections");
        let short = activity(false);
        assert_eq!(classify(differs(), short.writes_to("a", "quiet"), &short).0, LiveStatus::Undetermined);
        assert_eq!(classify(differs(), short.writes_to("a", "written"), &short).0, LiveStatus::Changed);
    }
}
