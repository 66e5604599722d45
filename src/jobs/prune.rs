//! The prune job: the retention policy applied to the store, alerted when it fails.

use super::{Context, Render, TextTarget};
use crate::cli::PruneArgs;
use crate::error::Result;
use crate::notify::{Event, Operation};
use crate::prune::{self, PruneReport};

/// `prune`.
///
/// # Errors
/// A usage error for bad flags or an empty policy, or what stopped the prune (alerted).
pub async fn run(context: &Context, args: &PruneArgs) -> Result<PruneReport> {
    let result = async { prune::run_prune(&args.options()?, context.cancel.clone()).await }.await;
    if let Err(error) = &result {
        context.events.emit(&Event::failed(Operation::Prune, context.store.clone(), error)).await;
    }
    result
}

impl Render for PruneReport {
    fn text(&self) -> String {
        prune::render(self)
    }

    fn text_target(&self) -> TextTarget {
        TextTarget::Stdout
    }
}
