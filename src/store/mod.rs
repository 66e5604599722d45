//! Where finished backups live. A store holds, per backup `<name>`, the archive
//! `<name>.tar.gz` (or `.tar.zst`) and the sidecar manifest `<name>.manifest.json`,
//! which is written last: an archive without its sidecar is an incomplete backup.
//!
//! Two layers, as in the `object_store` crate:
//! - [`ObjectStore`] (`object.rs`): async put (overwrite or conditional create),
//!   multipart upload with an explicit `complete`/`abort`, get as a stream, head,
//!   list, delete, open-upload cleanup; errors are one [`StoreError`] whose
//!   [`StoreErrorKind`] callers match on. Implemented by [`local::LocalStore`] (a
//!   directory), [`memory::MemoryStore`] (unit tests) and [`s3::S3Store`] (aws-sdk-s3).
//! - [`Store`] (`catalog.rs`): backups on any object store: free names, archives,
//!   sidecars, verification records, the newest-first listing.
//!
//! [`parts::PartWriter`] feeds a multipart upload from the synchronous archive thread.

mod backup_locks;
mod catalog;
pub mod cloud;
pub mod conformance;
pub mod error;
pub mod keys;
pub mod local;
pub mod lock;
pub mod memory;
pub mod object;
pub mod parts;
pub mod retention;
pub mod s3;
pub mod sidecar;
pub mod tuning;

use std::path::PathBuf;

pub use catalog::{open, open_with, select, Latest, Store, StoredBackup, LIST_CONCURRENCY, UNVERIFIED};
pub use error::{StoreError, StoreErrorKind};
pub use object::{ByteStream, MultipartUpload, ObjectMeta, ObjectStore, PendingUpload, PutMode};
pub use retention::{BucketLock, LockMode, ObjectLock, ObjectVersion, WriteLock};
pub use sidecar::{open_sidecar, parse_sidecar, OpenedSidecar, SidecarProblem};

use crate::error::{Error, Result};

pub use keys::{DRILL_SUFFIX, SIDECAR_SUFFIX, VERIFICATION_SUFFIX};

/// Where backups are kept, as given by `--store` or the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory.
    Local(PathBuf),
    /// A Google Cloud Storage bucket and object name prefix.
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Prefix, possibly empty.
        prefix: String,
    },
    /// An Azure Blob Storage container and blob name prefix.
    Azure {
        /// Container name.
        container: String,
        /// Prefix, possibly empty.
        prefix: String,
    },
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
        if let Some(rest) = text.strip_prefix("gs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_valid_gcs_bucket_name(bucket) {
                return Err(Error::usage(format!(
                    "store {text:?}: {bucket:?} is not a valid Cloud Storage bucket name (3-63 characters of a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit); use gs://bucket/prefix"
                )));
            }
            return Ok(StoreLocation::Gcs { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        if let Some(rest) = text.strip_prefix("az://") {
            let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_valid_container_name(container) {
                return Err(Error::usage(format!(
                    "store {text:?}: {container:?} is not a valid Azure container name (3-63 characters of a-z, 0-9 and single '-', starting with a letter or digit); use az://container/prefix"
                )));
            }
            return Ok(StoreLocation::Azure { container: container.to_string(), prefix: prefix.trim_matches('/').to_string() });
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
                "store {text:?}: unsupported scheme {scheme:?}; use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, file:///absolute/path or a plain directory"
            )));
        }
        Ok(StoreLocation::Local(PathBuf::from(text)))
    }

    /// The default store: `s3://$S3_BUCKET/$BACKUP_DIR` when `S3_BUCKET` is set (the
    /// original ingest backup scripts' variables), else `./backups`.
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
            StoreLocation::Gcs { bucket, prefix } if prefix.is_empty() => write!(f, "gs://{bucket}"),
            StoreLocation::Gcs { bucket, prefix } => write!(f, "gs://{bucket}/{prefix}"),
            StoreLocation::Azure { container, prefix } if prefix.is_empty() => write!(f, "az://{container}"),
            StoreLocation::Azure { container, prefix } => write!(f, "az://{container}/{prefix}"),
        }
    }
}

fn is_valid_gcs_bucket_name(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_valid_container_name(container: &str) -> bool {
    let bytes = container.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !container.contains("--")
}

fn is_valid_bucket_name(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
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
        assert_eq!(StoreLocation::parse("az://backups/prod/").unwrap(), StoreLocation::Azure { container: "backups".into(), prefix: "prod".into() });
        assert_eq!(StoreLocation::parse("gs://my_bucket/db").unwrap(), StoreLocation::Gcs { bucket: "my_bucket".into(), prefix: "db".into() });
        for bad in ["s3://My_Bucket/x", "s3://", "file://relative", "ftp://x/y", "", "az://Bad--Name/x", "az://ab", "gs://-x-/y", "gs://"] {
            let err = StoreLocation::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("use") || err.to_string().contains("give") || err.to_string().contains("valid"), "{err}");
        }
    }

    #[test]
    fn original_environment_selects_the_bucket_and_dir() {
        assert_eq!(
            StoreLocation::from_env(Some("ingest-backups"), Some("dev")).unwrap(),
            StoreLocation::S3 { bucket: "ingest-backups".into(), prefix: "dev".into() }
        );
        assert_eq!(StoreLocation::from_env(None, Some("dev")).unwrap(), StoreLocation::Local("backups".into()));
        assert_eq!(StoreLocation::from_env(Some("Bad Bucket"), None).unwrap_err().exit_code(), 2);
    }
}
