//! Transient faults do not fail a run. A dropped connection on a `getMore`, a failover
//! or a server that is briefly unreachable interrupts one read; that read starts again
//! (a collection from its start, its spool discarded; the oplog window from its start
//! point; discovery and `listIndexes` as a whole), at most `--retries` times with a
//! doubling backoff. Everything else (authentication, bad input, damaged data, a full
//! disk) fails at once: retrying cannot help it.

use std::future::Future;
use std::time::Duration;

use mongodb::error::ErrorKind;
use tracing::warn;

use crate::error::{Error, Result};

/// Retries of one interrupted read when `--retries` is not given.
pub const DEFAULT_RETRIES: u32 = 3;

/// Server error codes of a transient condition: the network (6 HostUnreachable,
/// 7 HostNotFound, 89 NetworkTimeout, 9001 SocketException), a server shutting down
/// (91, 11600) and a primary changing (189, 10107, 11602, 13435, 13436); with 262
/// ExceededTimeLimit, the codes the drivers' retryable-reads specification lists.
pub const TRANSIENT_CODES: &[i32] = &[6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];

/// Error labels the server or driver put on an operation worth trying again.
const RETRYABLE_LABELS: &[&str] = &["RetryableError", "RetryableWriteError"];

/// How often and how patiently an interrupted read is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 fails on the first error.
    pub retries: u32,
    /// The wait before the first retry; each later wait doubles.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_RETRIES)
    }
}

impl RetryPolicy {
    /// `retries` retries, waiting 0.5 s, 1 s, 2 s, ... (at most 15 s) between attempts.
    pub fn new(retries: u32) -> Self {
        Self { retries, first_backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(15) }
    }

    /// No retries: the first error is the result.
    pub fn none() -> Self {
        Self::new(0)
    }

    /// The wait before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// Runs `attempt` (given the 0-based attempt number) until it succeeds, fails with
    /// an error that is not [transient](is_transient), or has failed `retries + 1`
    /// times. Each retry is logged as a warning naming `what`, the attempt and the
    /// kind of error. An attempt must start its work afresh: whatever an earlier,
    /// interrupted attempt produced is the caller's to discard (dropping it suffices).
    ///
    /// # Errors
    /// The first permanent error, or the last transient one wrapped in
    /// [`Error::GaveUp`] when retries were allowed.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut number = 0;
        loop {
            match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(error) if !is_transient(&error) => return Err(error),
                Err(error) if number >= self.retries => {
                    return Err(if self.retries == 0 { error } else { Error::GaveUp { retries: self.retries, source: Box::new(error) } })
                }
                Err(error) => {
                    number += 1;
                    let wait = self.backoff(number);
                    warn!(
                        operation = what,
                        attempt = number + 1,
                        attempts = self.retries + 1,
                        error_kind = %error_kind(&error),
                        %error,
                        backoff_ms = wait.as_millis() as u64,
                        "Transient error: trying again."
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Whether trying the same read again can succeed: network and I/O errors of the
/// driver (a connection closed or reset), server-selection timeouts, a cleared pool,
/// the [`TRANSIENT_CODES`] and errors labelled `RetryableError` or
/// `RetryableWriteError`. Never authentication failures, usage errors, bad data, local
/// files, the store or cancellation.
pub fn is_transient(error: &Error) -> bool {
    let Error::Mongo { source, .. } = error else { return false };
    mongo_transient(source)
}

fn mongo_transient(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Authentication { .. } => false,
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(command) if TRANSIENT_CODES.contains(&command.code) => true,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(concern)) if TRANSIENT_CODES.contains(&concern.code) => true,
        _ => RETRYABLE_LABELS.iter().any(|label| error.contains_label(label)),
    }
}

/// A short name of the error's kind for the retry log line (no message, no URI).
pub fn error_kind(error: &Error) -> String {
    let Error::Mongo { source, .. } = error else { return "other".into() };
    match source.kind.as_ref() {
        ErrorKind::Io(io) => format!("network ({:?})", io.kind()),
        ErrorKind::ConnectionPoolCleared { .. } => "connection pool cleared".into(),
        ErrorKind::ServerSelection { .. } => "server selection timeout".into(),
        ErrorKind::Command(command) => format!("server error {} ({})", command.code, command.code_name),
        _ => "labelled retryable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn mongo(kind: ErrorKind) -> Error {
        Error::Mongo { context: "reading a.b".into(), source: mongodb::error::Error::from(kind) }
    }

    fn network() -> Error {
        mongo(ErrorKind::Io(std::sync::Arc::new(std::io::ErrorKind::UnexpectedEof.into())))
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(is_transient(&network()));
        let other = Error::Mongo { context: "reading a.b".into(), source: mongodb::error::Error::custom("not a fault of the network") };
        assert!(!is_transient(&other));
        assert!(!is_transient(&Error::usage("bad flag")));
        assert!(!is_transient(&Error::Damaged("damaged".into())));
        assert!(!is_transient(&Error::Io { context: "spool".into(), path: "/tmp".into(), source: std::io::ErrorKind::StorageFull.into() }));
        assert!(!is_transient(&Error::GaveUp { retries: 3, source: Box::new(network()) }), "a run that gave up is not retried again");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let policy = RetryPolicy::new(10);
        let waits: Vec<u64> = (1..=7).map(|n| policy.backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
        assert_eq!(policy.backoff(40), policy.max_backoff);
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_and_a_persistent_one_gives_up_after_the_retries() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy { first_backoff: Duration::from_millis(1), ..RetryPolicy::new(2) };
        let recovered = policy
            .run("reading a.b", |n| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n < 2 {
                        Err(network())
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(recovered.unwrap(), 2);
        assert_eq!(calls.load(Ordering::Relaxed), 3);

        let failed = policy.run("reading a.b", |_| async { Err::<(), _>(network()) }).await.unwrap_err();
        assert!(matches!(failed, Error::GaveUp { retries: 2, .. }));
        assert!(failed.to_string().contains("reading a.b") && failed.to_string().contains("gave up after 2 retries"), "{failed}");

        calls.store(0, Ordering::Relaxed);
        let permanent = policy
            .run("reading a.b", |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(Error::Damaged("damaged".into())) }
            })
            .await
            .unwrap_err();
        assert!(matches!(permanent, Error::Damaged(_)));
        assert_eq!(calls.load(Ordering::Relaxed), 1, "a permanent error is not retried");
    }
}
