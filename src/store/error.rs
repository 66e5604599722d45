//! The store seam's one error type. Callers match on [`StoreErrorKind`] (a missing
//! object, a name already taken, refused access, a failure worth retrying); the message
//! names the store and the object and says what to do, never a key, token or signature.

use crate::error::Error;

/// What kind of failure a [`StoreError`] is: the part callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The object (or multipart upload) does not exist.
    NotFound,
    /// A conditional create found the object already there; nothing was overwritten.
    AlreadyExists,
    /// The store refused the credentials or the permission.
    Denied,
    /// The store's settings are wrong (a missing bucket, another region): fix, then run again.
    Misconfigured,
    /// A network failure, timeout or server error: trying again later can help.
    Retryable,
    /// Anything else.
    Other,
}

/// A failed store operation: its kind, and a message naming the object and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    /// For a local file error: what was being done, the path and the OS error, so that
    /// it stays an [`Error::Io`] (stage "local disk", exit status 1) for the caller.
    local: Option<(String, std::path::PathBuf, std::io::Error)>,
}

impl StoreError {
    /// An error of `kind` whose `message` names the store, the object and the fix.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), local: None }
    }

    /// "`doing` `location`: no such object".
    pub fn not_found(location: &str, doing: &str) -> Self {
        Self::new(StoreErrorKind::NotFound, format!("{doing} {location}: no such object"))
    }

    /// "`doing` `location`: the object already exists".
    pub fn already_exists(location: &str, doing: &str) -> Self {
        Self::new(
            StoreErrorKind::AlreadyExists,
            format!("{doing} {location}: the object already exists (another run finished first); nothing was overwritten"),
        )
    }

    /// A local file error while `doing` something to `location`, classified by its kind.
    pub fn io(location: &str, doing: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match error.kind() {
            Io::NotFound => StoreErrorKind::NotFound,
            Io::AlreadyExists => StoreErrorKind::AlreadyExists,
            Io::PermissionDenied => StoreErrorKind::Denied,
            Io::Interrupted | Io::TimedOut | Io::WouldBlock => StoreErrorKind::Retryable,
            _ => StoreErrorKind::Other,
        };
        let fix = match kind {
            StoreErrorKind::Denied => "; check the directory's permissions",
            StoreErrorKind::Other => "; check free space and the path",
            _ => "",
        };
        let mut store_error = Self::new(kind, format!("{doing} {location}: {error}{fix}"));
        store_error.local = Some((format!("{doing} failed{fix}"), location.into(), std::io::Error::new(error.kind(), error.to_string())));
        store_error
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        self.kind == StoreErrorKind::Retryable
    }
}

/// Whether an error message says the connection went away mid-request (hyper's
/// "connection closed before message completed", a reset, a broken pipe, an early end):
/// the network's fault, whichever store client reports it.
pub(crate) fn connection_lost(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["connection closed", "connection reset", "broken pipe", "incomplete message", "unexpected eof", "unexpected end of file"]
        .iter()
        .any(|sign| message.contains(sign))
}

impl From<StoreError> for Error {
    /// A local file error stays an I/O error (exit status 1); refused access and wrong
    /// settings of a remote store are the user's to fix (exit status 2); everything
    /// else is a failed run (exit status 1).
    fn from(error: StoreError) -> Self {
        if let Some((context, path, source)) = error.local {
            return Error::Io { context, path, source };
        }
        match error.kind {
            StoreErrorKind::Denied | StoreErrorKind::Misconfigured => Error::usage(error.message),
            kind => Error::Store { message: error.message, retryable: kind == StoreErrorKind::Retryable },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_misconfigured_are_usage_errors_the_rest_run_failures() {
        for (kind, exit) in [
            (StoreErrorKind::Denied, 2),
            (StoreErrorKind::Misconfigured, 2),
            (StoreErrorKind::NotFound, 1),
            (StoreErrorKind::AlreadyExists, 1),
            (StoreErrorKind::Retryable, 1),
            (StoreErrorKind::Other, 1),
        ] {
            let error: Error = StoreError::new(kind, "m").into();
            assert_eq!(error.exit_code(), exit, "{kind:?}");
        }
        let retry: Error = StoreError::new(StoreErrorKind::Retryable, "m").into();
        assert!(matches!(retry, Error::Store { retryable: true, .. }));
    }

    #[test]
    fn io_errors_keep_their_kind() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(StoreError::io("/x", "reading", &missing).kind(), StoreErrorKind::NotFound);
        let taken = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        assert_eq!(StoreError::io("/x", "writing", &taken).kind(), StoreErrorKind::AlreadyExists);
        let denied = StoreError::io("/x", "writing", &std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.kind(), StoreErrorKind::Denied);
        let error: Error = denied.into();
        assert!(matches!(error, Error::Io { .. }), "a local failure stays a local disk error, exit status 1");
        assert_eq!(error.exit_code(), 1);
    }
}
