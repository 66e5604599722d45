//! The library's one error type. Each variant names the thing that failed and says
//! whether the user's input (exit status 2) or the run itself (exit status 1) is at fault.

use std::path::PathBuf;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a backup, with enough context to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line or environment is wrong; nothing was attempted.
    #[error("{message}")]
    Usage {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The MongoDB server refused or failed an operation.
    #[error("MongoDB: {context}: {}{}", source.kind, connection_hint(source))]
    Mongo {
        /// Which operation on which namespace.
        context: String,
        /// The driver's error (never carries the URI's password).
        #[source]
        source: mongodb::error::Error,
    },
    /// A local file operation failed.
    #[error("{context} ({path}): {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the archive stream failed (disk full, broken upload).
    #[error("writing the archive failed: {context}: {source}")]
    Archive {
        /// Which member or stage.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store (S3) failed a request; the message names the object and the fix.
    #[error("{message}")]
    Store {
        /// What failed, on which object, and what to do.
        message: String,
        /// Whether trying again later can help.
        retryable: bool,
    },
    /// The data read from the server cannot be backed up consistently.
    #[error("{0}")]
    Consistency(String),
    /// A transient fault (a dropped connection, an unreachable server) persisted
    /// through every retry; the error names the operation and the namespace.
    #[error("{source}; gave up after {retries} retries (raise --retries, or check the server and the network)")]
    GaveUp {
        /// The retries made after the first attempt.
        retries: u32,
        /// The last attempt's error.
        #[source]
        source: Box<Error>,
    },
    /// A restore stopped part way: what it had written is in the message and in
    /// `written`, and running it again with `--drop` replaces it.
    #[error("{source}; the restore stopped after writing {}; run it again with --drop to replace what was written", describe_written(.written))]
    RestoreInterrupted {
        /// Documents inserted so far, per target namespace (`db.collection`).
        written: Vec<(String, u64)>,
        /// What stopped it.
        #[source]
        source: Box<Error>,
    },
    /// SIGTERM or SIGINT arrived; the run was abandoned and cleaned up.
    #[error("interrupted by a signal: the backup was abandoned and its partial archive removed")]
    Cancelled,
}

/// What to do about a driver error that says the connection settings are wrong:
/// credentials refused or missing, or a TLS certificate the client does not trust.
/// Empty for every other error. Never repeats the URI.
pub fn connection_hint(error: &mongodb::error::Error) -> &'static str {
    use mongodb::error::ErrorKind;
    let text = error.kind.to_string();
    let code = match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    };
    if matches!(error.kind.as_ref(), ErrorKind::Authentication { .. }) || code == Some(18) || text.contains("AuthenticationFailed") {
        "; authentication failed: check the user name and password in the URI (percent-encode special characters) \
         and authSource, the database that holds the user (usually authSource=admin)"
    } else if code == Some(13) && text.contains("requires authentication") {
        "; the server requires authentication: give the credentials in the URI as \
         mongodb://user:password@host/?authSource=admin"
    } else if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") || text.contains("certificate verify failed") {
        "; TLS: the server's certificate is not signed by a trusted CA: give the CA that signed it as tlsCAFile=/path/ca.pem \
         in the URI (tlsAllowInvalidCertificates=true only for tests)"
    } else if matches!(error.kind.as_ref(), ErrorKind::InvalidTlsConfig { .. }) {
        "; TLS: the TLS settings in the URI are unusable: check that tlsCAFile and tlsCertificateKeyFile name readable PEM files"
    } else {
        ""
    }
}

fn describe_written(written: &[(String, u64)]) -> String {
    let documents: u64 = written.iter().map(|(_, n)| n).sum();
    let namespaces: Vec<String> = written.iter().filter(|(_, n)| *n > 0).map(|(ns, n)| format!("{ns} {n}")).collect();
    if namespaces.is_empty() {
        "no documents".to_string()
    } else {
        format!("{documents} documents ({})", namespaces.join(", "))
    }
}

impl Error {
    /// Builds a usage error (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage { message: message.into() }
    }

    /// Wraps a driver error with the operation it interrupted. A known server
    /// incompatibility (see [`incomplete_scram_hint`]) adds its cause and fix.
    pub fn mongo(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let context = context.into();
        move |source| {
            let context = match incomplete_scram_hint(&source.kind.to_string()) {
                Some(hint) => format!("{context}: {hint}"),
                None => context,
            };
            Error::Mongo { context, source }
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(context: impl Into<String>, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        let path = path.into();
        move |source| Error::Io { context, path, source }
    }

    /// The process exit status this error maps to: 2 for bad usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => 2,
            _ => 1,
        }
    }
}

/// The Rust driver's message when a server answers the client's final SCRAM message
/// with `done: false`.
const INCOMPLETE_SCRAM: &str = "expected SCRAM authentication to have completed";

/// The cause and fix of the driver's "expected SCRAM authentication to have completed",
/// when `driver_message` is that error. FerretDB v1 with `--test-enable-new-auth`
/// answers the client's final SCRAM message (it carries the server signature) with
/// `done: false` and ignores `skipEmptyExchange`; the Rust driver asks for that and
/// then requires `done: true`, so it gives up, while the Go driver (mongodump) sends one
/// more empty `saslContinue` and succeeds. The password was not necessarily wrong.
pub fn incomplete_scram_hint(driver_message: &str) -> Option<&'static str> {
    driver_message.contains(INCOMPLETE_SCRAM).then_some(
        "the server did not finish the SCRAM conversation the way the Rust driver requires: it answered the final \
         message (the one with the server signature) with done: false and ignored skipEmptyExchange, as FerretDB v1 \
         does with --test-enable-new-auth, so the credentials are not necessarily wrong (mongodump's Go driver sends one \
         more empty step and gets through); such a FerretDB offers SCRAM only, so run it without --test-enable-new-auth \
         and connect with authMechanism=PLAIN&authSource=$external (FerretDB's default authentication: the PostgreSQL \
         backend checks the password, the SQLite backend none), or back up a server that completes SCRAM (MongoDB)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incomplete_scram_error_is_explained_and_others_are_not() {
        let hint = incomplete_scram_hint("SCRAM failure: expected SCRAM authentication to have completed").unwrap();
        assert!(hint.contains("done: false") && hint.contains("FerretDB") && hint.contains("authMechanism=PLAIN"), "{hint}");
        assert_eq!(incomplete_scram_hint("SCRAM failure: Authentication failed."), None);
        assert_eq!(incomplete_scram_hint("Command failed: Unauthorized"), None);
    }
}
