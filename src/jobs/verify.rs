//! The verify job: a stored backup against its manifest and the live database, or
//! (`--pitr`) the oplog slices of a time range; the result alerted.

use super::{Context, Render};
use std::sync::Arc;

use crate::crypto::Identities;
use crate::error::Result;
use crate::notify::Event;
use crate::oplog::Timestamp;
use crate::pitr;
use crate::pitr::check::PitrCheck;
use crate::store;
use crate::verify::{self, VerifyOptions, VerifyReport};

/// `verify --pitr FROM..TO`: the oplog slices of a range (open ends: the whole chain), read from `store`.
///
/// # Errors
/// Store errors that stop the check; what it finds is in the report.
pub async fn check_pitr(
    store: &store::Store,
    range: (Option<Timestamp>, Option<Timestamp>),
    identities: Option<Arc<Identities>>,
    spool_dir: &std::path::Path,
) -> Result<PitrCheck> {
    pitr::check::check_pitr(store, range.0, range.1, identities, spool_dir).await
}

/// Verifies one backup (`options.backup`: a name, `latest` or `unverified`) and emits
/// the result, passed, failed or stopped.
///
/// # Errors
/// As [`verify::run_verify`].
pub async fn verify_backup(context: &Context, options: &VerifyOptions) -> Result<VerifyReport> {
    let result = verify::run_verify(options, context.cancel.clone()).await;
    context.events.emit(&Event::verify_ended(&result, &context.store, &options.backup)).await;
    result
}

impl Render for VerifyReport {
    fn text(&self) -> String {
        verify::report::render(self)
    }

    fn succeeded(&self) -> bool {
        self.passed()
    }
}

impl Render for PitrCheck {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for chain in &self.chains {
            let _ = writeln!(out, "PITR: {} ({} slices)", chain.describe(), chain.slices.len());
        }
        for finding in &self.findings {
            let _ = writeln!(out, "PROBLEM: {finding}");
        }
        let _ = writeln!(out, "{} oplog slices checked: {}", self.slices_checked, if self.passed() { "passed" } else { "FAILED" });
        out
    }

    fn succeeded(&self) -> bool {
        self.passed()
    }
}
