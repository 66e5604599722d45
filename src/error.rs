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
    #[error("MongoDB: {context}: {}{}", summarize_driver_error(&source.kind), connection_hint(source))]
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
    /// Data read back is damaged: an archive member, an oplog slice, a sidecar, a
    /// metadata file. The message names the object and what to do (usually: use an
    /// older backup). Trying again does not help.
    #[error("{0}")]
    Damaged(String),
    /// The command refuses to go on, before anything is written: no such backup, an
    /// incomplete one, a restore that could not be faithful. The message names the fix.
    #[error("{0}")]
    Refused(String),
    /// What the source server returned cannot be backed up consistently (an empty
    /// oplog, a collection entry without a name).
    #[error("{0}")]
    Inconsistent(String),
    /// The oplog rolled over past the end of a point-in-time chain: writes are lost to
    /// point-in-time recovery until the next full backup.
    #[error("{0}")]
    OplogGap(String),
    /// Another run holds the store (a prune asked while a backup or prune is live).
    #[error("{0}")]
    Locked(String),
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
    if text.contains(INCOMPLETE_SCRAM) {
        return ""; // explained by `incomplete_scram_hint`: the password is not necessarily wrong
    }
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

/// Longest server message quoted from one write error.
pub const MAX_QUOTED_MESSAGE: usize = 300;

/// Longest description of any other driver error.
const MAX_DRIVER_MESSAGE: usize = 1000;

/// A driver error in a few lines. The driver's own `Display` of a failed
/// `insert_many` or bulk write lists every write error of the batch (up to 1000, each
/// with the offending document's details: over 100,000 characters when a whole batch
/// is refused); this gives the number of write errors, the first one (by position in
/// the batch) with its code and its message cut to [`MAX_QUOTED_MESSAGE`] characters,
/// and any write concern error. The namespace is the caller's context.
pub fn summarize_driver_error(kind: &mongodb::error::ErrorKind) -> String {
    use mongodb::error::{ErrorKind, WriteFailure};
    match kind {
        ErrorKind::InsertMany(failure) => {
            let errors = failure.write_errors.as_deref().unwrap_or_default();
            let first = errors.iter().min_by_key(|e| e.index).map(|e| (e.index, e.code, e.code_name.as_deref(), e.message.as_str()));
            let concern = failure.write_concern_error.iter().map(|e| (e.code, Some(e.code_name.as_str()), e.message.as_str()));
            summarize_writes(errors.len(), first, concern)
        }
        ErrorKind::BulkWrite(failure) => {
            let first = failure.write_errors.iter().min_by_key(|(index, _)| **index);
            let first = first.map(|(index, e)| (*index, e.code, e.code_name.as_deref(), e.message.as_str()));
            let concern = failure.write_concern_errors.iter().map(|e| (e.code, Some(e.code_name.as_str()), e.message.as_str()));
            summarize_writes(failure.write_errors.len(), first, concern)
        }
        ErrorKind::Write(WriteFailure::WriteError(e)) => format!("write error {}", quote_server_error(e.code, e.code_name.as_deref(), &e.message)),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => {
            format!("write concern error {}", quote_server_error(e.code, Some(&e.code_name), &e.message))
        }
        other => truncate_message(&other.to_string(), MAX_DRIVER_MESSAGE),
    }
}

/// `count` write errors, the first of them, and the write concern errors.
fn summarize_writes<'a>(
    count: usize,
    first: Option<(usize, i32, Option<&str>, &str)>,
    concern: impl Iterator<Item = (i32, Option<&'a str>, &'a str)>,
) -> String {
    let mut parts = Vec::new();
    if let Some((index, code, code_name, message)) = first {
        let more = match count.saturating_sub(1) {
            0 => String::new(),
            1 => " (and 1 more write error)".to_string(),
            n => format!(" (and {n} more write errors)"),
        };
        let noun = if count == 1 { "write error" } else { "write errors" };
        parts.push(format!("{count} {noun}; the first, document {index} of the batch: {}{more}", quote_server_error(code, code_name, message)));
    }
    let concern: Vec<String> = concern.map(|(code, name, message)| quote_server_error(code, name, message)).collect();
    if let Some(first) = concern.first() {
        let more = if concern.len() > 1 { format!(" (and {} more)", concern.len() - 1) } else { String::new() };
        parts.push(format!("write concern error {first}{more}"));
    }
    if parts.is_empty() {
        "the write failed without a write error or write concern error".to_string()
    } else {
        parts.join("; ")
    }
}

/// `code N (Name): message`, the message cut to [`MAX_QUOTED_MESSAGE`] characters.
fn quote_server_error(code: i32, code_name: Option<&str>, message: &str) -> String {
    let name = code_name.filter(|n| !n.is_empty()).map_or(String::new(), |n| format!(" ({n})"));
    format!("code {code}{name}: {}", truncate_message(message, MAX_QUOTED_MESSAGE))
}

/// `message` cut to at most `max` characters (on a character boundary), saying how
/// much was left out.
pub fn truncate_message(message: &str, max: usize) -> String {
    match message.char_indices().nth(max) {
        None => message.to_string(),
        Some((cut, _)) => format!("{}... ({} more characters)", &message[..cut], message[cut..].chars().count()),
    }
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

    use bson::doc;
    use mongodb::error::{ErrorKind, InsertManyError};

    /// A failed `insert_many` as the driver reports it: `n` write errors, each quoting
    /// a long message (FerretDB's quote the whole refused document).
    fn insert_many_failure(n: i32, message: &str) -> mongodb::error::Error {
        let write_errors: Vec<bson::Bson> = (0..n)
            .rev()
            .map(|i| doc! { "index": i, "code": 11000 + i, "codeName": "DuplicateKey", "errmsg": format!("{message} {i}") }.into())
            .collect();
        let failure: InsertManyError = bson::from_document(doc! { "writeErrors": write_errors }).expect("the driver's own field names");
        mongodb::error::Error::from(ErrorKind::InsertMany(failure))
    }

    #[test]
    fn a_failed_bulk_write_prints_its_first_error_and_a_count_not_the_whole_list() {
        let long = "E11000 duplicate key error ".to_string() + &"x".repeat(5_000);
        let error = Error::Mongo { context: "inserting into ingest.file".into(), source: insert_many_failure(1000, &long) };
        let text = error.to_string();
        assert!(text.len() < 2_000, "{} characters: {text}", text.len());
        assert!(
            text.starts_with(
                "MongoDB: inserting into ingest.file: 1000 write errors; the first, document 0 of the batch: code 11000 (DuplicateKey): E11000"
            ),
            "{text}"
        );
        assert!(text.contains("(and 999 more write errors)"), "{text}");
        assert!(text.contains("more characters)"), "the message is cut and says so: {text}");
        assert!(!text.contains(" 1\""), "no second error is quoted: {text}");
    }

    #[test]
    fn one_write_error_is_quoted_whole_and_other_errors_are_cut() {
        let error = Error::Mongo { context: "inserting into a.b".into(), source: insert_many_failure(1, "short") };
        assert_eq!(
            error.to_string(),
            "MongoDB: inserting into a.b: 1 write error; the first, document 0 of the batch: code 11000 (DuplicateKey): short 0"
        );
        let refused: mongodb::error::CommandError =
            bson::from_document(doc! { "code": 2, "codeName": "BadValue", "errmsg": "y".repeat(10_000) }).expect("the server's field names");
        let text = Error::Mongo { context: "reading a.b".into(), source: ErrorKind::Command(refused).into() }.to_string();
        assert!(text.starts_with("MongoDB: reading a.b: Command failed: Error code 2 (BadValue): yyy"), "{text}");
        assert!(text.len() < 2_000, "{text}");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_message("abc", 3), "abc");
        assert_eq!(truncate_message("ééééé", 2), "éé... (3 more characters)");
    }
}
