//! The prune job: the retention policy applied to the store, alerted when it fails.

use super::{Context, Render, TextTarget};
use crate::error::Result;
use crate::notify::{Event, Operation};
use crate::prune::{self, PruneOptions, PruneReport};

/// `prune`.
///
/// # Errors
/// An empty policy, or what stopped the prune (alerted).
pub async fn run(context: &Context, options: &PruneOptions) -> Result<PruneReport> {
    let result = prune::run_prune(options, context.cancel.clone()).await;
    if let Err(error) = &result {
        context.events.emit(&failure(context, error)).await;
    }
    result
}

/// The event of a prune that failed with `error`.
pub fn failure(context: &Context, error: &crate::Error) -> Event {
    Event::failed(Operation::Prune, context.store.clone(), error)
}

impl Render for PruneReport {
    fn text(&self) -> String {
        prune::render(self)
    }

    fn text_target(&self) -> TextTarget {
        TextTarget::Stdout
    }
}
