//! The object-level seam, shaped like the `object_store` crate: a small async trait
//! ([`ObjectStore`]) over keys and bytes, and [`MultipartUpload`] for large objects
//! written in parts with an explicit `complete().await` or `abort().await`. The
//! backup-level [`super::Store`] is built on it; [`super::local`], [`super::memory`]
//! and [`super::s3`] implement it.
//!
//! Keys are relative to the store's root (an S3 prefix, a directory), use `/` as the
//! separator, and never start with `/` or hold `..`.

use std::io::Read;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::error::{StoreError, StoreErrorKind};
use super::retention::{BucketLock, LockMode, ObjectLock, ObjectVersion};

/// The stored bytes of one object, in chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, when the store says.
    pub last_modified: Option<DateTime<Utc>>,
}

/// A multipart upload left open (by a crashed run, say): what cleanup needs to abort it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key the upload would create.
    pub key: String,
    /// The store's id of the upload.
    pub upload_id: String,
    /// When the upload was started, when the store says.
    pub initiated: Option<DateTime<Utc>>,
}

/// Whether a `put` may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Write only if the key is free (S3 `If-None-Match: *`); otherwise fail with
    /// [`super::StoreErrorKind::AlreadyExists`] and leave the existing object alone.
    Create,
}

/// An object store: the calls the backup layer needs, all async, all naming the object
/// in their errors.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where `key` is, for messages and reports (`s3://bucket/prefix/key`, a path).
    fn location(&self, key: &str) -> String;

    /// Writes `bytes` to `key` at once (for small objects).
    ///
    /// # Errors
    /// `AlreadyExists` for [`PutMode::Create`] on a taken key; the store's error otherwise.
    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError>;

    /// Starts writing `key` in parts. Nothing is visible under `key` until
    /// [`MultipartUpload::complete`], which never replaces an existing object.
    ///
    /// # Errors
    /// The store refused to start the upload.
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, StoreError>;

    /// Streams the bytes of `key`.
    ///
    /// # Errors
    /// `NotFound` when there is no such object; the store's error otherwise.
    async fn get(&self, key: &str) -> Result<ByteStream, StoreError>;

    /// The size and time of `key`.
    ///
    /// # Errors
    /// `NotFound` when there is no such object.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// Every object whose key starts with `prefix` (at any depth), in no set order.
    ///
    /// # Errors
    /// The store could not be listed.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Deletes `key`; deleting a missing object succeeds.
    ///
    /// # Errors
    /// The store refused the delete.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Multipart uploads started under `prefix` and neither completed nor aborted.
    ///
    /// # Errors
    /// The store could not be listed.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;

    /// Aborts an open multipart upload found by [`ObjectStore::list_multipart_uploads`].
    ///
    /// # Errors
    /// `NotFound` when it is gone already; the store's error otherwise.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;

    /// The bucket's Object Lock setting. Stores that cannot lock say "not enabled".
    ///
    /// # Errors
    /// The store could not be asked.
    async fn bucket_lock(&self) -> Result<BucketLock, StoreError> {
        Ok(BucketLock::default())
    }

    /// The lock on `key` (its current version, or `version_id`); none on stores that cannot lock.
    ///
    /// # Errors
    /// `NotFound` when there is no such object.
    async fn object_lock(&self, key: &str, version_id: Option<&str>) -> Result<ObjectLock, StoreError> {
        let _ = (key, version_id);
        Ok(ObjectLock::default())
    }

    /// Sets the retain-until date of the current version of `key` (S3 `PutObjectRetention`).
    /// Callers only ever extend a lock; the store refuses to shorten one.
    ///
    /// # Errors
    /// The store cannot lock objects, or refused.
    async fn set_retention(&self, key: &str, mode: LockMode, retain_until: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = (mode, retain_until);
        Err(cannot_lock(&self.location(key)))
    }

    /// Sets or clears the legal hold of the current version of `key`.
    ///
    /// # Errors
    /// The store cannot lock objects, or refused.
    async fn set_legal_hold(&self, key: &str, on: bool) -> Result<(), StoreError> {
        let _ = on;
        Err(cannot_lock(&self.location(key)))
    }

    /// Every version and delete marker under `prefix` (empty on an unversioned store).
    ///
    /// # Errors
    /// The store could not be listed.
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// Deletes one version (or delete marker) for good.
    ///
    /// # Errors
    /// The version is locked, or the store refused.
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), StoreError> {
        let _ = version_id;
        Err(cannot_lock(&self.location(key)))
    }
}

/// The refusal of a store without Object Lock.
fn cannot_lock(location: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Misconfigured,
        format!("{location}: this store cannot lock objects; Object Lock needs an S3 bucket created with Object Lock enabled"),
    )
}

/// A large object being written in parts. The caller ends it with exactly one of
/// [`complete`](MultipartUpload::complete) or [`abort`](MultipartUpload::abort), and
/// awaits it: dropping an upload never blocks, so cleanup left to `Drop` is best effort.
#[async_trait]
pub trait MultipartUpload: Send {
    /// The part size the caller should cut the object into (the last part may be
    /// shorter). For S3, parts below 5 MiB are refused.
    fn part_size(&self) -> usize;

    /// Waits until [`put_part`](MultipartUpload::put_part) can start a part at once
    /// (the store's bound on parts in flight), so a caller can hold back the next part
    /// until it is needed. Stores without a bound return at once.
    ///
    /// # Errors
    /// A part already uploading failed; the caller should abort.
    async fn wait_for_capacity(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Appends the next part. May wait for capacity (the store's bound on parts in
    /// flight), which is what keeps memory bounded.
    ///
    /// # Errors
    /// The part could not be stored; the caller should [`abort`](MultipartUpload::abort).
    async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError>;

    /// Waits for every part and publishes the object, unless the key is taken
    /// (`AlreadyExists`; nothing is replaced). Returns the object's location.
    ///
    /// # Errors
    /// A part or the completion failed; the caller should still abort.
    async fn complete(&mut self) -> Result<String, StoreError>;

    /// Discards every part written; afterwards nothing of the upload remains.
    ///
    /// # Errors
    /// The store could not be reached to discard the parts (cleanup must remove them).
    async fn abort(&mut self) -> Result<(), StoreError>;
}

/// Reads a whole (small) object into memory.
///
/// # Errors
/// As [`ObjectStore::get`], or a failure mid-stream.
pub async fn get_bytes(store: &dyn ObjectStore, key: &str) -> Result<Bytes, StoreError> {
    let chunks: Vec<Bytes> = store.get(key).await?.try_collect().await?;
    if chunks.len() == 1 {
        return Ok(chunks.into_iter().next().expect("one chunk"));
    }
    Ok(Bytes::from(chunks.concat()))
}

/// Turns an object's stream into a blocking reader for a `spawn_blocking` thread (the
/// archive readers of `verify` and `restore`). Must be called inside the runtime.
pub fn blocking_reader(stream: ByteStream) -> Box<dyn Read + Send> {
    let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other).boxed());
    Box::new(tokio_util::io::SyncIoBridge::new_with_handle(reader, tokio::runtime::Handle::current()))
}
