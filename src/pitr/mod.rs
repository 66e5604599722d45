//! Point-in-time recovery: oplog slices in the store and the restorable ranges they
//! make with the backups they chain from.
//!
//! A slice is `oplog/<start>_<end>.bson.gz` (the oplog entries with `start < ts <= end`,
//! as BSON, gzip) with its sidecar `oplog/<start>_<end>.json` ([`SliceMeta`]), written
//! last: a slice without its sidecar is incomplete and never used. Timestamps in names
//! are `T.I` with both parts zero-padded to ten digits, so names sort in time order.
//!
//! A chain starts at a backup's consistency point (its `consistency.end`) and continues
//! with the slices recorded as chaining from that backup, each starting where the one
//! before ended. A chain covers `[backup end, last slice end]`: restoring to any time
//! in it is the backup plus its slices replayed up to that time ([`plan_restore`]).

pub mod check;
pub mod replay;
pub mod slice_job;

use std::collections::BTreeMap;

use chrono::DateTime;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oplog::timestamp::Timestamp;
use crate::oplog::wall_time;
use crate::store::{object, Store, StoreErrorKind, StoredBackup};

/// The folder of slices, relative to the store's root.
pub use crate::store::keys::{is_slice_key, slice_key, slice_sidecar_key as sidecar_key, SLICE_PREFIX};

/// The sidecar of one slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceMeta {
    /// The slice's object key (`oplog/<start>_<end>.bson.gz`).
    pub file: String,
    /// Entries after this timestamp are in the slice (the previous slice's end, or the
    /// base backup's consistency point).
    pub start: Timestamp,
    /// The newest entry read: every entry with `start < ts <= end` is in the slice.
    pub end: Timestamp,
    /// `start` as a wall time (RFC 3339).
    pub start_time: String,
    /// `end` as a wall time (RFC 3339).
    pub end_time: String,
    /// Oplog entries in the slice (after namespace filters).
    pub entries: u64,
    /// BSON bytes before compression.
    pub bytes: u64,
    /// Size of the stored object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored object.
    pub sha256: String,
    /// `gzip`.
    pub compression: String,
    /// The end of the slice before this one in the chain; `None` for the first, which
    /// starts at the base backup's consistency point.
    pub previous_end: Option<Timestamp>,
    /// The backup the chain starts from.
    pub base_backup: String,
    /// The namespace filters the slice was taken with.
    #[serde(default)]
    pub include: Vec<String>,
    /// The namespace filters the slice was taken with.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The age public keys an encrypted slice (`.bson.gz.age`) is encrypted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
}

/// An unnamed temporary file in the spool directory `dir` (created when missing; the
/// file is gone when closed): where slices are staged on their way to or from the store.
///
/// # Errors
/// The directory cannot be created or written, named with `what`.
pub fn scratch_file(dir: &std::path::Path, what: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).and_then(|()| tempfile::tempfile_in(dir)).map_err(Error::io(format!("cannot create {what}"), dir))
}

/// A point to restore to: a wall time (every entry of that second included) or an
/// exact oplog timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetTime(pub Timestamp);

impl TargetTime {
    /// Parses `2026-12-01T10:20:00Z` (RFC 3339) or `1764584400.3` (`T.I`).
    ///
    /// # Errors
    /// A usage error naming both accepted forms.
    pub fn parse(text: &str) -> Result<TargetTime> {
        let text = text.trim();
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            let seconds = u32::try_from(time.timestamp())
                .map_err(|_| Error::usage(format!("--to-time {text:?} is outside the range of oplog timestamps (1970 to 2106)")))?;
            return Ok(TargetTime(Timestamp { t: seconds, i: u32::MAX }));
        }
        if let Some(ts) = Timestamp::parse_label(text) {
            return Ok(TargetTime(ts));
        }
        Err(Error::usage(format!("--to-time {text:?} is neither an RFC 3339 time (2026-12-01T10:20:00Z) nor an oplog timestamp T.I (1764584400.3)")))
    }
}

/// A complete backup with an oplog consistency point: where a chain can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The backup name.
    pub name: String,
    /// Its consistency point.
    pub end: Timestamp,
}

/// The bases of a store listing: complete backups whose manifest has an oplog end.
pub fn bases(backups: &[StoredBackup]) -> Vec<Base> {
    let mut found: Vec<Base> = backups
        .iter()
        .filter_map(|backup| {
            let manifest = crate::store::parse_sidecar(backup.sidecar.as_deref()?).ok()?;
            Some(Base { name: backup.name.clone(), end: manifest.consistency.end? })
        })
        .collect();
    found.sort_by_key(|base| base.end);
    found
}

/// Every complete slice (with its sidecar) in the store, oldest first. A sidecar
/// that does not parse, or does not name the slice beside it, is left out with a
/// warning (`verify --pitr` reports it): one damaged object must not stop slicing,
/// restores of other ranges or retention.
///
/// # Errors
/// The store could not be listed or a sidecar read.
pub async fn list_slices(store: &Store) -> Result<Vec<SliceMeta>> {
    let (slices, problems) = list_slices_and_problems(store).await?;
    for problem in problems {
        tracing::warn!(%problem, "An oplog slice sidecar is left out.");
    }
    Ok(slices)
}

/// [`list_slices`], with a sentence per sidecar left out.
///
/// # Errors
/// The store could not be listed or a sidecar read.
pub async fn list_slices_and_problems(store: &Store) -> Result<(Vec<SliceMeta>, Vec<String>)> {
    let objects = store.objects().list(SLICE_PREFIX).await?;
    let sidecars: Vec<String> = objects.iter().filter(|o| o.key.ends_with(".json")).map(|o| o.key.clone()).collect();
    let read: Vec<std::result::Result<SliceMeta, String>> = futures::stream::iter(sidecars)
        .map(|key| async move {
            match object::get_bytes(store.objects().as_ref(), &key).await {
                Ok(bytes) => Ok(Some(match serde_json::from_slice::<SliceMeta>(&bytes) {
                    Ok(meta) if sidecar_key(&meta.file) == key && is_slice_key(&meta.file) => Ok(meta),
                    Ok(meta) => Err(format!("{key}: names the slice {:?}, not the one beside it; it is not used", meta.file)),
                    Err(e) => Err(format!("{key}: unreadable ({e}); the slice beside it is not used")),
                })),
                Err(error) if error.kind() == StoreErrorKind::NotFound => Ok(None),
                Err(error) => Err(Error::from(error)),
            }
        })
        .buffer_unordered(crate::store::LIST_CONCURRENCY)
        .try_filter_map(|slice| async move { Ok(slice) })
        .try_collect()
        .await?;
    let (mut slices, mut problems) = (Vec::new(), Vec::new());
    for entry in read {
        match entry {
            Ok(meta) => slices.push(meta),
            Err(problem) => problems.push(problem),
        }
    }
    slices.sort_by_key(|slice| (slice.start, slice.end));
    problems.sort();
    Ok((slices, problems))
}

/// A restorable range: a base backup and the slices that continue it without a hole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// The base backup.
    pub base: String,
    /// The base's consistency point: the earliest restorable time of the chain.
    pub from: Timestamp,
    /// The newest restorable time of the chain (the last slice's end, or `from`).
    pub to: Timestamp,
    /// The slices, in order.
    #[serde(skip)]
    pub slices: Vec<SliceMeta>,
    /// Slices of this base that do not continue the chain (a hole before them).
    pub broken_at: Option<String>,
    /// Slices that start before the chain's end where they join it (a second run
    /// over the same window): still used, their entries already applied are skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overlaps: Vec<String>,
}

impl Chain {
    /// `2026-12-01T00:00:42Z - 2026-12-01T10:20:00Z`.
    pub fn describe(&self) -> String {
        format!("{} - {} (from backup {})", wall_time(self.from).to_rfc3339(), wall_time(self.to).to_rfc3339(), self.base)
    }
}

/// The chains of a store: one per base, continued by its slices (oldest start first)
/// until one starts after the chain's end (a hole). A slice that starts before the
/// chain's end still continues it when it reaches further (it is noted as an
/// overlap); one that reaches no further adds nothing.
pub fn chains(bases: &[Base], slices: &[SliceMeta]) -> Vec<Chain> {
    let mut by_base: BTreeMap<&str, Vec<&SliceMeta>> = BTreeMap::new();
    for slice in slices {
        by_base.entry(slice.base_backup.as_str()).or_default().push(slice);
    }
    bases
        .iter()
        .map(|base| {
            let mut chain =
                Chain { base: base.name.clone(), from: base.end, to: base.end, slices: Vec::new(), broken_at: None, overlaps: Vec::new() };
            for slice in by_base.get(base.name.as_str()).into_iter().flatten() {
                if slice.start > chain.to {
                    chain.broken_at = Some(slice.file.clone());
                    break;
                }
                if slice.start < chain.to {
                    chain.overlaps.push(slice.file.clone());
                }
                if slice.end > chain.to {
                    chain.to = slice.end;
                    chain.slices.push((*slice).clone());
                }
            }
            chain
        })
        .collect()
}

/// What `restore --to-time` does: the base backup, then these slices up to the target.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The backup to restore first.
    pub base: String,
    /// The slices to replay after it, in order (the last may reach past the target).
    pub slices: Vec<SliceMeta>,
    /// The target.
    pub target: Timestamp,
}

/// Picks the newest chain that covers `target` (or the chain of `base` when given).
///
/// # Errors
/// A usage error naming the restorable ranges when no chain covers the target.
pub fn plan_restore(chains: &[Chain], target: TargetTime, base: Option<&str>) -> Result<RestorePlan> {
    // A wall-clock second (`i == u32::MAX`) is covered when the chain reaches into it:
    // the restore then reaches the chain's last entry of that second.
    let covers = |chain: &&Chain| chain.from <= target.0 && (target.0 <= chain.to || (target.0.t == chain.to.t && target.0.i == u32::MAX));
    let covering = chains.iter().filter(|chain| base.is_none_or(|b| chain.base == b)).filter(covers).max_by_key(|chain| chain.from);
    match covering {
        Some(chain) => Ok(RestorePlan {
            base: chain.base.clone(),
            slices: chain.slices.iter().filter(|slice| slice.start < target.0).cloned().collect(),
            target: target.0,
        }),
        _ => {
            let ranges: Vec<String> = chains.iter().map(Chain::describe).collect();
            Err(Error::usage(format!(
                "no backup and oplog slices reach {} ({}.{}): the restorable ranges are {}; pick a time inside one (or take slices with `ingest-backup oplog`)",
                wall_time(target.0).to_rfc3339(),
                target.0.t,
                target.0.i,
                if ranges.is_empty() { "none".to_string() } else { ranges.join("; ") }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: u32, i: u32) -> Timestamp {
        Timestamp { t, i }
    }

    fn slice(base: &str, start: Timestamp, end: Timestamp) -> SliceMeta {
        SliceMeta {
            file: slice_key(start, end, false),
            recipients: None,
            start,
            end,
            start_time: String::new(),
            end_time: String::new(),
            entries: 1,
            bytes: 1,
            stored_bytes: 1,
            sha256: String::new(),
            compression: "gzip".into(),
            previous_end: None,
            base_backup: base.into(),
            include: vec![],
            exclude: vec![],
        }
    }

    #[test]
    fn names_sort_in_time_order() {
        assert!(slice_key(ts(999, 5), ts(1000, 1), false) < slice_key(ts(1000, 1), ts(1000, 12), false));
        assert_eq!(sidecar_key(&slice_key(ts(1, 2), ts(3, 4), false)), "oplog/0000000001.0000000002_0000000003.0000000004.json");
    }

    #[test]
    fn targets_parse_as_times_or_timestamps() {
        assert_eq!(TargetTime::parse("1970-01-01T00:01:40Z").unwrap(), TargetTime(ts(100, u32::MAX)));
        assert_eq!(TargetTime::parse("100.7").unwrap(), TargetTime(ts(100, 7)));
        assert_eq!(TargetTime::parse("yesterday").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn chains_follow_their_slices_until_a_hole_and_plans_pick_the_covering_one() {
        let bases = [Base { name: "b1".into(), end: ts(100, 1) }, Base { name: "b2".into(), end: ts(300, 1) }];
        let slices = [
            slice("b1", ts(100, 1), ts(150, 2)),
            slice("b1", ts(150, 2), ts(200, 1)),
            slice("b1", ts(250, 1), ts(260, 1)), // after a hole
            slice("b2", ts(300, 1), ts(400, 1)),
        ];
        let chains = chains(&bases, &slices);
        assert_eq!((chains[0].from, chains[0].to, chains[0].slices.len()), (ts(100, 1), ts(200, 1), 2));
        assert_eq!(chains[0].broken_at.as_deref(), Some(slice_key(ts(250, 1), ts(260, 1), false).as_str()));
        assert_eq!((chains[1].from, chains[1].to), (ts(300, 1), ts(400, 1)));

        let plan = plan_restore(&chains, TargetTime(ts(150, 9)), None).unwrap();
        assert_eq!((plan.base.as_str(), plan.slices.len()), ("b1", 2), "the second slice holds entries up to the target");
        let plan = plan_restore(&chains, TargetTime(ts(120, 0)), None).unwrap();
        assert_eq!(plan.slices.len(), 1);
        let plan = plan_restore(&chains, TargetTime(ts(350, 0)), None).unwrap();
        assert_eq!(plan.base, "b2");
        let gap = plan_restore(&chains, TargetTime(ts(250, 0)), None).unwrap_err();
        assert!(gap.to_string().contains("restorable ranges are"), "{gap}");
        assert!(plan_restore(&chains, TargetTime(ts(50, 0)), None).is_err(), "before every backup");
        assert!(plan_restore(&chains, TargetTime(ts(350, 0)), Some("b1")).is_err(), "b1's chain ends at 200");
        // A newer backup without slices yet does not hide an older chain reaching past it.
        let bases = [Base { name: "b1".into(), end: ts(100, 1) }, Base { name: "b2".into(), end: ts(150, 1) }];
        let chains = super::chains(&bases, &slices[..2]);
        assert_eq!(plan_restore(&chains, TargetTime(ts(180, 0)), None).unwrap().base, "b1");
        assert_eq!(plan_restore(&chains, TargetTime(ts(150, 1)), None).unwrap().base, "b2");
    }

    #[test]
    fn a_second_run_over_the_same_window_does_not_stall_the_chain() {
        let bases = [Base { name: "b1".into(), end: ts(100, 1) }];
        let slices = [
            slice("b1", ts(100, 1), ts(120, 1)),
            slice("b1", ts(100, 1), ts(130, 1)), // a manual run beside the scheduled one
            slice("b1", ts(130, 1), ts(140, 1)),
            slice("b1", ts(135, 1), ts(138, 1)), // nothing new
        ];
        let chain = chains(&bases, &slices).pop().unwrap();
        assert_eq!((chain.to, chain.slices.len(), chain.broken_at), (ts(140, 1), 3, None));
        assert_eq!(chain.overlaps, [slice_key(ts(100, 1), ts(130, 1), false), slice_key(ts(135, 1), ts(138, 1), false)]);
    }
}
