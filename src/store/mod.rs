//! Where finished backups live. A store holds, per backup `<name>`, the archive
//! `<name>.tar.gz` (or `.tar.zst`) and the sidecar manifest `<name>.manifest.json`,
//! which is written last: an archive without its sidecar is an incomplete backup.
//!
//! The seam is the [`Store`] trait; [`local::LocalStore`] is the directory store.

pub mod local;
pub mod s3;

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// File suffix of the sidecar manifest.
pub const SIDECAR_SUFFIX: &str = ".manifest.json";

/// File suffix of the latest verification result of a backup (`verify` rewrites it).
pub const VERIFICATION_SUFFIX: &str = ".verify.json";

/// Where backups are kept, as given by `--store` or the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and key prefix (no leading or trailing slash).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
}

impl StoreLocation {
    /// Parses `s3://bucket/prefix`, `file:///abs/path` or a plain path.
    ///
    /// # Errors
    /// A usage error naming the malformed part.
    pub fn parse(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(Error::usage("--store is empty: give s3://bucket/prefix, file:///absolute/path or a directory"));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_valid_bucket_name(bucket) {
                return Err(Error::usage(format!(
                    "store {text:?}: {bucket:?} is not a valid S3 bucket name (3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit)"
                )));
            }
            return Ok(StoreLocation::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Error::usage(format!(
                    "store {text:?}: a file:// store needs an absolute path (file:///var/backups); for a relative directory give the plain path"
                )));
            }
            return Ok(StoreLocation::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(Error::usage(format!(
                "store {text:?}: unsupported scheme {scheme:?}; use s3://bucket/prefix, file:///absolute/path or a plain directory"
            )));
        }
        Ok(StoreLocation::Local(PathBuf::from(text)))
    }

    /// The default store: `s3://$S3_BUCKET/$BACKUP_DIR` when `S3_BUCKET` is set (the
    /// seed's variables), else `./backups`.
    ///
    /// # Errors
    /// A usage error when `S3_BUCKET` is not a valid bucket name.
    pub fn from_env(s3_bucket: Option<&str>, backup_dir: Option<&str>) -> Result<Self> {
        match s3_bucket.filter(|b| !b.is_empty()) {
            Some(bucket) => Self::parse(&format!("s3://{bucket}/{}", backup_dir.unwrap_or("")))
                .map_err(|e| Error::usage(format!("the S3_BUCKET environment variable is invalid: {e}"))),
            None => Ok(StoreLocation::Local(PathBuf::from("backups"))),
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Local(path) => write!(f, "{}", path.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn is_valid_bucket_name(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// An archive being written to a store. Dropping it without [`ArchiveUpload::commit`]
/// discards everything written, so a failed run leaves nothing behind.
pub trait ArchiveUpload: Write + Send {
    /// Makes the archive visible under its final name.
    ///
    /// # Errors
    /// The store could not persist or publish the archive.
    fn commit(self: Box<Self>) -> Result<String>;
}

/// One backup found in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    /// The backup name (`2018-04-04T11_37`).
    pub name: String,
    /// The archive's file or object name.
    pub archive: String,
    /// Archive size in bytes.
    pub size: u64,
    /// The sidecar manifest's bytes, when present (the backup is complete).
    pub sidecar: Option<Vec<u8>>,
    /// The latest verification result's bytes, when the backup was verified.
    pub verification: Option<Vec<u8>>,
}

/// What `latest` means to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    /// The newest backup, complete or not (`verify`: a failed last night must fail).
    Newest,
    /// The newest complete backup (`restore`: never an incomplete one).
    NewestComplete,
}

/// The selector for the newest complete backup that has no verification yet.
pub const UNVERIFIED: &str = "unverified";

/// Picks backup `wanted` (a name, `latest`, or [`UNVERIFIED`]: the newest complete
/// backup without a verification result) from a store's listing (newest first).
///
/// # Errors
/// A usage error when no such backup exists, naming the ones that do; for
/// [`UNVERIFIED`], an operation error (exit status 1) when every complete backup is
/// verified already, which means no backup finished since the last verification.
pub fn select(backups: Vec<StoredBackup>, wanted: &str, store: &StoreLocation, latest: Latest) -> Result<StoredBackup> {
    if wanted == UNVERIFIED {
        let newest_complete = backups.iter().find(|b| b.sidecar.is_some()).map(|b| b.name.clone());
        return backups.into_iter().find(|b| b.sidecar.is_some() && b.verification.is_none()).ok_or_else(|| match newest_complete {
            Some(name) => Error::Consistency(format!(
                "{store} holds no complete backup without a verification: the newest complete one, {name}, is verified already, \
                 so no backup finished since the last verification; check the backup runs (kubectl get jobs, or the backup's alerts), \
                 or name a backup to verify it again"
            )),
            None => {
                Error::Consistency(format!("{store} holds no complete backup to verify; check that backups run and finish (`ingest-backup list`)"))
            }
        });
    }
    if wanted == "latest" {
        let newest = backups.first().map(|b| b.name.clone());
        let found = match latest {
            Latest::Newest => backups.into_iter().next(),
            Latest::NewestComplete => backups.into_iter().find(|b| b.sidecar.is_some()),
        };
        return found.ok_or_else(|| {
            Error::usage(match newest {
                Some(name) => format!("{store} holds no complete backup (the newest, {name}, has no sidecar manifest); run a backup first"),
                None => format!("{store} holds no backups; run `ingest-backup backup` first, or give --store (or S3_BUCKET and BACKUP_DIR) for the store that holds them"),
            })
        });
    }
    let names: Vec<String> = backups.iter().take(5).map(|b| b.name.clone()).collect();
    backups.into_iter().find(|b| b.name == wanted).ok_or_else(|| {
        Error::usage(format!(
            "no backup named {wanted:?} in {store}; the newest are: {}; `ingest-backup list` shows them all",
            if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
        ))
    })
}

/// A place that keeps backups. Methods block (an S3 store waits on the network):
/// call them from a blocking thread, never from async code.
pub trait Store: Send + Sync {
    /// Whether any object of backup `name` exists (archive, partial upload or sidecar).
    ///
    /// # Errors
    /// The store could not be read.
    fn name_taken(&self, name: &str) -> Result<bool>;

    /// Starts writing the archive `file_name` (for example `2018-04-04T11_37.tar.gz`).
    ///
    /// # Errors
    /// The store refused the write.
    fn begin_archive(&self, file_name: &str) -> Result<Box<dyn ArchiveUpload>>;

    /// Writes the sidecar manifest of backup `name`; called only after the archive
    /// has been committed.
    ///
    /// # Errors
    /// The store refused the write.
    fn put_sidecar(&self, name: &str, manifest: &[u8]) -> Result<String>;

    /// Every backup archive in the store, complete or not, newest first.
    ///
    /// # Errors
    /// The store could not be listed.
    fn list(&self) -> Result<Vec<StoredBackup>>;

    /// Streams the stored bytes of archive `file_name`.
    ///
    /// # Errors
    /// The archive is missing or the store could not be read.
    fn open_archive(&self, file_name: &str) -> Result<Box<dyn Read + Send>>;

    /// Records the latest verification result of backup `name`, replacing any earlier
    /// one (the archive and the sidecar are never touched).
    ///
    /// # Errors
    /// The store refused the write.
    fn put_verification(&self, name: &str, result: &[u8]) -> Result<String>;

    /// The names of the backups whose archive is being written right now (a local
    /// `<name>.tar.gz.partial`, an open S3 multipart upload of `<name>.tar.gz`), oldest
    /// first. An upload abandoned by a killed process also shows here until it is removed.
    ///
    /// # Errors
    /// The store could not be listed.
    fn in_progress(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The backup name of an archive file name (`<name>.tar.gz` or `<name>.tar.zst`).
pub fn archive_backup_name(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(".tar.gz").or_else(|| file_name.strip_suffix(".tar.zst")).filter(|name| crate::naming::is_backup_name(name))
}

/// Opens the store at `location`; `s3_settings` is consulted only for an S3 store.
///
/// The returned store's methods block: call them from a blocking thread.
///
/// # Errors
/// A usage error for bad settings, or the store's own error (a missing bucket, denied
/// access, an unreachable endpoint).
pub async fn open(location: &StoreLocation, s3_settings: impl FnOnce() -> Result<s3::S3Settings>) -> Result<Box<dyn Store>> {
    match location {
        StoreLocation::Local(path) => Ok(Box::new(local::LocalStore::open(path)?)),
        StoreLocation::S3 { bucket, prefix } => Ok(Box::new(s3::S3Store::open(bucket, prefix, s3_settings()?).await?)),
    }
}

/// Opens the store at `location` and finds backup `wanted` in it (see [`select`]).
///
/// # Errors
/// As [`open`] and [`select`].
pub async fn open_backup(
    location: &StoreLocation,
    s3: Option<s3::S3Settings>,
    wanted: &str,
    latest: Latest,
) -> Result<(std::sync::Arc<dyn Store>, StoredBackup)> {
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::from(open(location, || s3.ok_or_else(|| Error::usage("an S3 store needs S3 settings"))).await?);
    let backup = {
        let (store, wanted, location) = (store.clone(), wanted.to_string(), location.clone());
        tokio::task::spawn_blocking(move || select(store.list()?, &wanted, &location, latest)).await.expect("listing does not panic")?
    };
    Ok((store, backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            StoreLocation::parse("s3://my-bucket/prod/backups/").unwrap(),
            StoreLocation::S3 { bucket: "my-bucket".into(), prefix: "prod/backups".into() }
        );
        assert_eq!(StoreLocation::parse("file:///var/b").unwrap(), StoreLocation::Local("/var/b".into()));
        assert_eq!(StoreLocation::parse("./backups").unwrap(), StoreLocation::Local("./backups".into()));
    }

    #[test]
    fn malformed_stores_are_usage_errors_with_the_fix() {
        for bad in ["s3://My_Bucket/x", "s3://", "file://relative", "ftp://x/y", ""] {
            let err = StoreLocation::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("use") || err.to_string().contains("give") || err.to_string().contains("valid"), "{err}");
        }
    }

    #[test]
    fn seed_environment_selects_the_bucket_and_dir() {
        assert_eq!(
            StoreLocation::from_env(Some("ingest-backups"), Some("dev")).unwrap(),
            StoreLocation::S3 { bucket: "ingest-backups".into(), prefix: "dev".into() }
        );
        assert_eq!(StoreLocation::from_env(None, Some("dev")).unwrap(), StoreLocation::Local("backups".into()));
        assert_eq!(StoreLocation::from_env(Some("Bad Bucket"), None).unwrap_err().exit_code(), 2);
    }
}
