//! The oplog slice job: one point-in-time slice since the newest captured point,
//! alerted when it fails. `oplog` and `schedule --oplog-every` run this.

use super::{Context, Render};
use crate::error::Result;
use crate::notify::{Event, Operation};
use crate::pitr::slice_job::{SliceOptions, SliceReport};
use crate::{oplog, pitr};

/// Takes one slice; a failure is emitted as an event.
///
/// # Errors
/// What stopped the slice.
pub async fn slice(context: &Context, options: &SliceOptions) -> Result<SliceReport> {
    match pitr::slice_job::run_oplog_slice(options, context.cancel.clone()).await {
        Ok(report) => Ok(report),
        Err(error) => Err(failed(context, error).await),
    }
}

async fn failed(context: &Context, error: crate::Error) -> crate::Error {
    context.events.emit(&failure(context, &error)).await;
    error
}

/// The event of a slice job that failed with `error`.
pub fn failure(context: &Context, error: &crate::Error) -> Event {
    Event::failed(Operation::Oplog, context.store.clone(), error)
}

impl Render for SliceReport {
    fn text(&self) -> String {
        match &self.slice {
            Some(slice) => format!(
                "oplog slice {} written: {} entries, {} bytes of BSON ({} stored), {} .. {}, chained from backup {}\n",
                slice.file, slice.entries, slice.bytes, slice.stored_bytes, slice.start_time, slice.end_time, slice.base_backup
            ),
            None => format!(
                "no oplog entry since {} (chain of backup {}): nothing written\n",
                self.start.map(oplog::timestamp_label).unwrap_or_default(),
                self.base_backup.as_deref().unwrap_or_default()
            ),
        }
    }
}
