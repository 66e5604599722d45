//! S3 Object Lock, as the store seam sees it: the lock a bucket puts on new objects
//! ([`BucketLock`]), the lock of one object version ([`ObjectLock`]), and the lock a
//! job asks for on what it writes ([`WriteLock`]). Stores that cannot lock (a local
//! directory, memory) report "no lock" and refuse to set one.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How an object is locked (S3 Object Lock retention modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Nobody deletes or overwrites the version before its date, except a principal
    /// holding `s3:BypassGovernanceRetention` who asks to bypass it.
    Governance,
    /// Nobody at all deletes the version or shortens its date before the date passes.
    Compliance,
}

impl LockMode {
    /// Parses `governance` or `compliance` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }

    /// The word used in flags and reports.
    pub fn label(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

/// The Object Lock setting of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketLock {
    /// Whether the bucket was created with (or given) Object Lock; then it is versioned.
    pub enabled: bool,
    /// The retention the bucket puts on every new object version by itself, if any.
    pub default_retention: Option<(LockMode, chrono::Duration)>,
}

/// The lock on one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectLock {
    /// Its retention mode, when it has a retention date.
    pub mode: Option<LockMode>,
    /// Until when it cannot be deleted (it may be in the past: the lock expired).
    pub retain_until: Option<DateTime<Utc>>,
    /// Whether a legal hold keeps it, whatever the date.
    pub legal_hold: bool,
}

impl ObjectLock {
    /// Whether the version cannot be deleted at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.legal_hold || self.retain_until.is_some_and(|until| until > now)
    }

    /// The lock of several objects taken together: the latest date, any hold, the strictest mode.
    pub fn combine(self, other: ObjectLock) -> ObjectLock {
        let mode = match (self.mode, other.mode) {
            (Some(LockMode::Compliance), _) | (_, Some(LockMode::Compliance)) => Some(LockMode::Compliance),
            (a, b) => a.or(b),
        };
        ObjectLock { mode, retain_until: self.retain_until.max(other.retain_until), legal_hold: self.legal_hold || other.legal_hold }
    }
}

/// The lock a job puts on the objects it writes: every object of a backup but the
/// run locks under `locks/` (they are short-lived and deleted by their run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLock {
    /// The retention mode.
    pub mode: LockMode,
    /// The retain-until date of every object written.
    pub retain_until: DateTime<Utc>,
}

/// One version of an object in a versioned bucket, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The key, relative to the store's root.
    pub key: String,
    /// The store's id of the version.
    pub version_id: String,
    /// Whether it is the current version (what a plain GET returns).
    pub is_latest: bool,
    /// Whether it is a delete marker (a delete that left the older versions in place).
    pub delete_marker: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_locks_take_the_latest_date_any_hold_and_the_strictest_mode() {
        let early = ObjectLock { mode: Some(LockMode::Governance), retain_until: Some("2026-01-01T00:00:00Z".parse().unwrap()), legal_hold: false };
        let late = ObjectLock { mode: Some(LockMode::Compliance), retain_until: Some("2026-02-01T00:00:00Z".parse().unwrap()), legal_hold: false };
        let held = ObjectLock { legal_hold: true, ..ObjectLock::default() };
        let all = early.combine(late).combine(held);
        assert_eq!(all.retain_until, late.retain_until);
        assert_eq!(all.mode, Some(LockMode::Compliance));
        assert!(all.legal_hold);
        let between: DateTime<Utc> = "2026-01-15T00:00:00Z".parse().unwrap();
        assert!(!early.holds_at(between) && late.holds_at(between) && held.holds_at("2099-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(LockMode::parse(" Compliance"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("legal"), None);
    }
}
