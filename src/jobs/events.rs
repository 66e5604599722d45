//! The events job: reads the stored oplog slices between two points (by default the
//! whole range they cover) and lists drops, renames, index drops and bursts of deletes
//! or updates, each with the `restore --to-time` value that restores the state just
//! before it (detection in `crate::events`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::table::{Align, Table};
use super::{Render, TextTarget};
use crate::crypto::{is_encrypted, Identities};
use crate::error::{Error, Result};
use crate::events::{Detector, Event};
use crate::filter::NamespaceFilter;
use crate::oplog::timestamp::{wall_time, Timestamp};
use crate::pitr::{self, replay::fetch_checked, replay::read_entries, SliceMeta};
use crate::store::Store;

/// What `events` searches.
#[derive(Debug, Clone)]
pub struct EventsOptions {
    /// Entries at or after this point (`None`: from the oldest slice).
    pub from: Option<Timestamp>,
    /// Entries at or before this point (`None`: to the newest slice).
    pub to: Option<Timestamp>,
    /// The namespaces reported.
    pub filter: NamespaceFilter,
    /// The fewest documents a burst of deletes or updates holds.
    pub burst: u64,
    /// The identities that decrypt encrypted slices.
    pub identities: Option<Arc<Identities>>,
    /// Where slices are staged while read.
    pub spool_dir: PathBuf,
}

/// What `events` found.
#[derive(Debug, Clone, Serialize)]
pub struct EventsReport {
    /// The store searched.
    pub store: String,
    /// The start of the range searched (RFC 3339).
    pub from: String,
    /// The end of the range searched (RFC 3339).
    pub to: String,
    /// Oplog slices read.
    pub slices_read: usize,
    /// Oplog entries read in the range.
    pub entries_read: u64,
    /// The fewest documents a burst holds.
    pub burst: u64,
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// Reads the slices meeting the range and lists the events in them.
///
/// # Errors
/// No slice in the store or the range; an encrypted slice without `--identity`; a
/// damaged slice (named).
pub async fn run(location: &str, store: &Store, options: &EventsOptions) -> Result<EventsReport> {
    let mut slices: Vec<SliceMeta> = pitr::list_slices(store)
        .await?
        .into_iter()
        .filter(|slice| options.from.is_none_or(|from| slice.end >= from) && options.to.is_none_or(|to| slice.start < to))
        .collect();
    slices.sort_by_key(|slice| (slice.start, slice.end));
    let (Some(first), Some(last)) = (slices.first(), slices.iter().map(|s| s.end).max()) else {
        return Err(Error::Refused(format!(
            "{location} holds no oplog slice in the range asked: nothing to search; take slices with `ingest-backup oplog` \
             (or `schedule --oplog-every`), or widen --from/--to"
        )));
    };
    if options.identities.is_none() && slices.iter().any(|slice| is_encrypted(&slice.file)) {
        return Err(Error::usage(format!("the oplog slices of {location} are encrypted: give --identity (or AGE_IDENTITY) to read them")));
    }
    let from = options.from.unwrap_or(first.start).max(first.start);
    let to = options.to.unwrap_or(last).min(last);
    let mut detector = Detector::new(options.burst, options.filter.clone());
    let (mut entries_read, mut read_through) = (0u64, None::<Timestamp>);
    for slice in &slices {
        let file = fetch_checked(store, slice, &options.spool_dir).await?;
        read_entries(file, &slice.file, options.identities.as_deref(), |entry| {
            let Some(ts) = entry.get_timestamp("ts").ok().map(Timestamp::from) else { return Ok(true) };
            // Slices may overlap (two runs over one window): each entry is read once.
            if read_through.is_some_and(|through| ts <= through) || ts < from {
                return Ok(true);
            }
            if ts > to {
                return Ok(false);
            }
            entries_read += 1;
            detector.entry(entry);
            Ok(true)
        })?;
        read_through = read_through.max(Some(slice.end));
    }
    Ok(EventsReport {
        store: location.to_string(),
        from: wall_time(from).to_rfc3339(),
        to: wall_time(to).to_rfc3339(),
        slices_read: slices.len(),
        entries_read,
        burst: options.burst,
        events: detector.finish(),
    })
}

impl Render for EventsReport {
    fn text(&self) -> String {
        let mut out = format!(
            "{} events in {} oplog entries of {} slices, {} - {} (bursts: {} documents or more):\n",
            self.events.len(),
            self.entries_read,
            self.slices_read,
            self.from,
            self.to,
            self.burst
        );
        if self.events.is_empty() {
            return out;
        }
        let mut table = Table::new(&[
            ("TIME", Align::Left),
            ("OP", Align::Left),
            ("NAMESPACE", Align::Left),
            ("DOCUMENTS", Align::Right),
            ("DETAIL", Align::Left),
            ("RESTORE JUST BEFORE", Align::Left),
        ]);
        for event in &self.events {
            table.row(vec![
                event.time.clone(),
                event.op.as_str().to_string(),
                event.ns.clone(),
                event.documents.map_or("-".into(), |d| d.to_string()),
                event.detail.clone().unwrap_or_else(|| "-".into()),
                format!("--to-time {}", event.to_time),
            ]);
        }
        out.push_str(&table.render());
        out
    }

    fn text_target(&self) -> TextTarget {
        TextTarget::Stdout
    }

    fn text_beside_json(&self) -> bool {
        false
    }
}
