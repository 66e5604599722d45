//! The verify job: a stored backup against its manifest and the live database, or
//! (`--pitr`) the oplog slices of a time range; the result alerted.

use super::{Context, Render, Rendered};
use crate::cli::VerifyArgs;
use crate::error::Result;
use crate::notify::Event;
use crate::pitr;
use crate::pitr::check::PitrCheck;
use crate::store;
use crate::verify::{self, VerifyOptions, VerifyReport};

/// `verify`: the backup named, or with `--pitr` the slices of a range.
///
/// # Errors
/// A usage error for bad flags; errors that stopped the verification before it had a
/// report (an unknown backup, an unreachable store). A failed verification is a report.
pub async fn run(context: &Context, args: &VerifyArgs) -> Result<Rendered> {
    if let Some(range) = &args.pitr {
        let (from, to) = pitr::check::parse_range(range)?;
        let (location, s3) = args.store.resolve()?;
        let store = store::open_with(&location, s3).await?;
        let check = pitr::check::check_pitr(&store, from, to, args.identity.resolve()?).await?;
        return Ok(Rendered::of(&check));
    }
    let options = match args.options() {
        Ok(options) => options,
        Err(error) => {
            let failed = Err(error);
            context.events.emit(&Event::verify_ended(&failed, &context.store, &args.backup)).await;
            return failed.map(|report: VerifyReport| Rendered::of(&report));
        }
    };
    verify_backup(context, &options).await.map(|report| Rendered::of(&report))
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
