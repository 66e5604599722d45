//! What a verification found: every difference, not just the first, each naming the
//! thing that differs and what to do about it.

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The backup cannot be trusted: verification fails.
    Error,
    /// Worth a look, but the backup is not shown to be wrong.
    Warning,
}

/// One difference between what a backup claims and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The namespace (`db.collection`) or object (`archive`, `sidecar`, a member path).
    pub subject: String,
    /// What was compared (`sha256`, `documents`, `indexes`, `member`, ...).
    pub field: String,
    /// What the manifest or sidecar says.
    pub expected: String,
    /// What was found.
    pub actual: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    /// An error finding.
    pub fn error(subject: impl Into<String>, field: impl Into<String>, expected: impl ToString, actual: impl ToString, fix: &str) -> Self {
        Self {
            severity: Severity::Error,
            subject: subject.into(),
            field: field.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
            fix: fix.to_string(),
        }
    }

    /// A warning finding.
    pub fn warning(subject: impl Into<String>, field: impl Into<String>, expected: impl ToString, actual: impl ToString, fix: &str) -> Self {
        Self { severity: Severity::Warning, ..Self::error(subject, field, expected, actual, fix) }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        };
        write!(f, "{level} {}: {}: expected {}, found {}; {}", self.subject, self.field, self.expected, self.actual, self.fix)
    }
}

/// The fix for an archive whose bytes differ from what was written.
pub const FIX_DAMAGED: &str = "the stored archive is damaged or was altered; do not restore it, restore an older backup and run a new backup";
