//! The restore job: a stored backup (and with `--to-time` its oplog slices) into a
//! target server; the report says per namespace what was written.

use tokio_util::sync::CancellationToken;

use super::Render;
use crate::error::Result;
use crate::oplog;
use crate::restore::{self, RestoreOptions, RestoreReport};

/// `restore`.
///
/// # Errors
/// As [`restore::run_restore`]: refusals before anything is written, or the error
/// that interrupted the restore (naming what was written).
pub async fn run(options: &RestoreOptions, cancel: CancellationToken) -> Result<RestoreReport> {
    restore::run_restore(options, cancel).await
}

impl Render for RestoreReport {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for namespace in &self.namespaces {
            let _ = writeln!(
                out,
                "restored {} -> {}: {} of {} documents, {} indexes, checksum {}",
                namespace.source, namespace.target, namespace.inserted, namespace.documents, namespace.indexes, namespace.checksum
            );
        }
        if let Some(merged) = &self.users_and_roles {
            let _ = writeln!(out, "users and roles restored with {}: {} users, {} roles", merged.method, merged.users, merged.roles);
        }
        if let Some(oplog) = &self.oplog {
            let reached = oplog.reached.map_or("-".to_string(), |t| format!("{}:{}", t.t, t.i));
            let _ = writeln!(out, "oplog replayed: {} entries applied, {} skipped, reached {reached}", oplog.applied, oplog.skipped);
        }
        if let (Some(slices), Some(target)) = (&self.pitr, self.to_time) {
            let reached = slices.reached.map_or("-".to_string(), |t| format!("{}:{}", t.t, t.i));
            let _ = writeln!(
                out,
                "oplog slices replayed to {} ({}): {} entries applied, {} skipped, reached {reached}",
                oplog::timestamp_label(target),
                oplog::wall_time(target).to_rfc3339(),
                slices.applied,
                slices.skipped
            );
        }
        for file in &self.unread_files {
            let _ = writeln!(out, "not restored: {file}");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
        let _ = writeln!(
            out,
            "restore of {} {} in {:.1}s: {} documents",
            self.name,
            if self.passed() { "complete" } else { "FINISHED WITH PROBLEMS" },
            self.duration_seconds,
            self.documents
        );
        out
    }

    fn succeeded(&self) -> bool {
        self.passed()
    }
}
