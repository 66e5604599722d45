//! The drill job: a stored backup restored into a scratch server and checked
//! ([`crate::drill`]), the result alerted (a failed drill always, a passed one with
//! `NOTIFY_SUCCESS`).

use super::table::{Align, Table};
use super::{Context, Render};
use crate::drill::{self, DrillOptions, DrillReport};
use crate::error::Result;
use crate::notify::{Counts, Event, Operation, Outcome};

/// `drill`.
///
/// # Errors
/// As [`drill::run`]; the refusal is alerted too.
pub async fn run(context: &Context, options: &DrillOptions) -> Result<DrillReport> {
    let result = drill::run(options, &context.store, context.cancel.clone()).await;
    let event = match &result {
        Ok(report) => finished(report),
        Err(error) => {
            let mut event = Event::failed(Operation::Drill, context.store.clone(), error);
            event.backup = Some(options.restore.backup.clone());
            event
        }
    };
    context.events.emit(&event).await;
    result
}

/// The event of a drill that ran to the end: failed at stage `drill` with its problems
/// as details, or succeeded with its recovery time.
fn finished(report: &DrillReport) -> Event {
    let (outcome, stage, reason) = if report.passed {
        (Outcome::Succeeded, None, None)
    } else {
        let first = report.problems.first().cloned().unwrap_or_default();
        (Outcome::Failed, Some("drill".to_string()), Some(format!("{} problem(s); first: {first}", report.problems.len())))
    };
    Event {
        operation: Operation::Drill,
        outcome,
        backup: Some(report.backup.clone()),
        store: report.store.clone(),
        stage,
        reason,
        counts: Counts {
            namespaces: Some(report.namespaces.len() as u64),
            documents: Some(report.documents),
            bytes: Some(report.bytes),
            archive_bytes: None,
        },
        duration_seconds: report.recovery_seconds,
        details: report.problems.clone(),
    }
}

impl Render for DrillReport {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut table = Table::new(&[
            ("NAMESPACE", Align::Left),
            ("EXPECTED", Align::Right),
            ("READ BACK", Align::Right),
            ("CONTENT", Align::Left),
            ("INDEXES", Align::Right),
            ("RESULT", Align::Left),
        ]);
        for namespace in &self.namespaces {
            table.row(vec![
                namespace.namespace.clone(),
                namespace.expected_documents.to_string(),
                namespace.documents.map_or("-".to_string(), |d| d.to_string()),
                namespace.content.to_string(),
                format!("{}/{}", namespace.indexes_matched, namespace.indexes_expected),
                if namespace.passed { "ok".to_string() } else { format!("FAILED: {}", namespace.problem) },
            ]);
        }
        let mut out = table.render();
        for problem in self.problems.iter().filter(|p| !self.namespaces.iter().any(|n| !n.passed && p.starts_with(&n.namespace))) {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
        if self.kept {
            let _ = writeln!(out, "restored data kept on the scratch server (--keep)");
        } else {
            let _ = writeln!(out, "{} namespaces dropped from the scratch server", self.dropped.len());
        }
        if let Some(location) = &self.recorded {
            let _ = writeln!(out, "recorded in {location}");
        }
        let recovery = self.recovery_seconds.map_or("-".to_string(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "drill of {}{} {}: recovery time {recovery}, {} documents, checked in {:.1}s",
            self.backup,
            self.to_time.as_ref().map_or(String::new(), |t| format!(" to {t}")),
            if self.passed { "passed" } else { "FAILED" },
            self.documents,
            self.check_seconds
        );
        out
    }

    fn succeeded(&self) -> bool {
        self.passed
    }
}
