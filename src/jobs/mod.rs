//! The jobs: one function per operation (backup, verify, restore, oplog slice, prune,
//! list, ...), each taking a [`Context`] and returning a typed, serialisable report
//! that implements [`Render`]. The binary parses flags, calls [`run`] for one command
//! and prints what comes back (the dispatch is `crate::command`); `schedule` calls the same jobs, so "backup, alert,
//! prune, alert" is written once.
//!
//! Why a layer of its own: the stages below (source, dump, archive, store) know
//! nothing of alerts, metrics or printing, and the binary knows nothing of how a job
//! is put together. Every observable outcome of a job is an [`Event`] handed to the
//! context's [`EventSink`], which logs it (in `schedule`), counts it (the metrics) and
//! alerts on it (the notifier): one event feeds all three.

pub mod backup;
pub mod drill;
pub mod events;
pub mod healthcheck;
pub mod hold;
pub mod list;
pub mod oplog;
pub mod prune;
mod render;
pub mod restore;
pub mod sample_data;
pub mod table;
pub mod verify;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use render::{error_document, Render, Rendered, TextTarget};

use crate::error::{Error, Result};
use crate::notify::{Event, Notifier, Outcome};

/// What every job runs with: where its events go, the store as alerts name it, and
/// the token that stops it.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where the job's events go.
    pub events: EventSink,
    /// The store as alerts and reports show it (never a secret).
    pub store: String,
    /// Cancelled on SIGTERM/SIGINT (or, in `schedule`, when the grace period is over).
    pub cancel: CancellationToken,
}

impl Context {
    /// A context for a one-shot command: events are alerted, not logged or counted.
    pub fn one_shot(notifier: Notifier, store: impl Into<String>, cancel: CancellationToken) -> Context {
        Context { events: EventSink::alerts(notifier), store: store.into(), cancel }
    }

    /// Passes `options` through, or emits the failure of a job whose options did not
    /// validate (the event `failed` builds) and returns the error.
    ///
    /// # Errors
    /// The validation error, unchanged.
    pub async fn refused<T>(&self, options: Result<T>, failed: impl FnOnce(&Error) -> Event) -> Result<T> {
        if let Err(error) = &options {
            self.events.emit(&failed(error)).await;
        }
        options
    }
}

/// Something that counts events (the `schedule` metrics).
pub trait EventRecorder: Send + Sync + std::fmt::Debug {
    /// Records one finished operation.
    fn record(&self, event: &Event);
}

/// Where the events of a job go: the alert channels always; in `schedule` also a log
/// line and the metrics.
#[derive(Debug, Clone)]
pub struct EventSink {
    notifier: Notifier,
    recorder: Option<Arc<dyn EventRecorder>>,
    log: bool,
}

impl EventSink {
    /// Events go to the alert channels only (a one-shot command prints its own report).
    pub fn alerts(notifier: Notifier) -> EventSink {
        EventSink { notifier, recorder: None, log: false }
    }

    /// Events are logged, recorded and alerted (`schedule`, where nobody reads a report).
    pub fn logged(notifier: Notifier, recorder: Arc<dyn EventRecorder>) -> EventSink {
        EventSink { notifier, recorder: Some(recorder), log: true }
    }

    /// Logs, counts and alerts one finished operation, as this sink is set up to.
    pub async fn emit(&self, event: &Event) {
        if self.log {
            match event.outcome {
                Outcome::Succeeded => info!(
                    documents = event.counts.documents,
                    archive_bytes = event.counts.archive_bytes,
                    seconds = event.duration_seconds,
                    "{}",
                    event.headline()
                ),
                Outcome::Failed => {
                    error!(reason = event.reason.as_deref().unwrap_or(""), "{}", event.headline());
                    for detail in &event.details {
                        warn!("  {detail}");
                    }
                }
            }
        }
        if let Some(recorder) = &self.recorder {
            recorder.record(event);
        }
        self.notifier.send(event).await;
    }
}
