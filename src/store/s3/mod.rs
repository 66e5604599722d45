//! The S3 store: an [`ObjectStore`] over aws-sdk-s3. Archives are streamed with
//! multipart upload while they are produced (never whole in memory or on disk); a
//! failed or cancelled upload is aborted explicitly so no orphaned parts remain.
//! Works with AWS and any S3-compatible server (`S3_ENDPOINT`, path-style).

mod config;
mod errors;
mod object_lock;
mod upload;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use config::{ChecksumPolicy, ClientTuning, S3Settings};
use errors::describe;
use upload::S3Upload;

use super::error::{StoreError, StoreErrorKind};
use super::object::{ByteStream, MultipartUpload, ObjectMeta, ObjectStore, PendingUpload, PutMode};
use super::retention::{BucketLock, LockMode, ObjectLock, ObjectVersion};

/// Objects under `s3://bucket/prefix/`.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    settings: S3Settings,
}

impl S3Store {
    /// Whether the settings name a role to assume (`AWS_ROLE_ARN`).
    fn assumes_role(&self) -> bool {
        self.settings.role_arn.is_some()
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.bucket).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client (credentials chain, optional role assumption, endpoint) and
    /// checks that the bucket exists and can be reached.
    ///
    /// # Errors
    /// A clear error when the bucket is missing, access is denied, the region is
    /// wrong, the endpoint is unreachable, or the role cannot be assumed.
    pub async fn open(bucket: &str, prefix: &str, settings: S3Settings) -> Result<Self, StoreError> {
        let client = config::client(&settings).await.map_err(|e| StoreError::new(StoreErrorKind::Misconfigured, e.to_string()))?;
        Self::with_client(client, bucket, prefix, settings).await
    }

    /// [`S3Store::open`] with a client built elsewhere (tests, other credentials).
    ///
    /// # Errors
    /// As [`S3Store::open`].
    pub async fn with_client(client: Client, bucket: &str, prefix: &str, settings: S3Settings) -> Result<Self, StoreError> {
        let store = Self { client, bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string(), settings };
        // ListObjectsV2 rather than HeadBucket: a HEAD response has no body, so a
        // rejected signature and a denied permission would both be a bare 403.
        store.client.list_objects_v2().bucket(&store.bucket).prefix(store.key("")).max_keys(1).send().await.map_err(|e| {
            let error = describe(&e, &store.location(""), "checking the bucket", store.settings.role_arn.is_some());
            match error.kind() {
                StoreErrorKind::NotFound => StoreError::new(
                    StoreErrorKind::Misconfigured,
                    format!("checking the bucket {}: the bucket does not exist; create it or fix --store / S3_BUCKET", store.location("")),
                ),
                _ => error,
            }
        })?;
        Ok(store)
    }

    /// The lock to put on `key` when written: the settings' write lock, except on run locks.
    fn write_lock_for(&self, key: &str) -> Option<crate::store::WriteLock> {
        self.settings.write_lock.filter(|_| !key.starts_with(crate::store::keys::LOCK_PREFIX))
    }

    /// The bucket's key of store key `key`.
    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The store key of bucket key `key` (which is under the prefix).
    fn relative<'a>(&self, key: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.prefix).and_then(|rest| rest.strip_prefix('/')).unwrap_or(key)
        }
    }
}

fn to_utc(time: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let time = time?;
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
    }

    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let content_type = if key.ends_with(".json") { "application/json" } else { "application/octet-stream" };
        let mut request =
            self.client.put_object().bucket(&self.bucket).key(self.key(key)).content_type(content_type).body(SdkByteStream::from(bytes));
        if mode == PutMode::Create {
            request = request.if_none_match("*");
        }
        if let Some(lock) = self.write_lock_for(key) {
            // S3 refuses a locked write without a checksum, whatever --s3-checksum says.
            request = request
                .object_lock_mode(object_lock::sdk_mode(lock.mode))
                .object_lock_retain_until_date(object_lock::sdk_time(lock.retain_until))
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32);
        }
        let request = self.settings.apply_to_put(request);
        request.send().await.map_err(|e| describe(&e, &self.location(key), "writing", self.assumes_role()))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let lock = self.write_lock_for(key);
        Ok(Box::new(S3Upload::start(self.client.clone(), &self.bucket, &self.key(key), &self.settings, lock).await?))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let location = self.location(key);
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| describe(&e, &location, "reading", self.assumes_role()))?;
        let chunks = futures::stream::unfold((object.body, location), |(mut body, location)| async move {
            match body.next().await? {
                Ok(chunk) => Some((Ok(chunk), (body, location))),
                Err(e) => {
                    let error = StoreError::new(StoreErrorKind::Retryable, format!("reading {location}: the download broke off: {e}"));
                    Some((Err(error), (body, location)))
                }
            }
        });
        Ok(chunks.boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| describe(&e, &self.location(key), "looking up", self.assumes_role()))?;
        Ok(ObjectMeta { key: key.to_string(), size: head.content_length().unwrap_or(0).max(0) as u64, last_modified: to_utc(head.last_modified()) })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(self.key(prefix)).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| describe(&e, &self.location(prefix), "listing objects under", self.assumes_role()))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                found.push(ObjectMeta {
                    key: self.relative(key).to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: to_utc(object.last_modified()),
                });
            }
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| describe(&e, &self.location(key), "deleting", self.assumes_role()))?;
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        // No `prefix` in the request: MinIO lists uploads under a prefix only when it
        // names the object exactly, so the bucket's (few) open uploads are filtered here.
        let wanted = self.key(prefix);
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| describe(&e, &self.location(prefix), "listing multipart uploads under", self.assumes_role()))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    if key.starts_with(&wanted) {
                        found.push(PendingUpload {
                            key: self.relative(key).to_string(),
                            upload_id: id.to_string(),
                            initiated: to_utc(upload.initiated()),
                        });
                    }
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(found);
            }
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| describe(&e, &self.location(key), "aborting the upload of", self.assumes_role()))?;
        Ok(())
    }

    async fn bucket_lock(&self) -> Result<BucketLock, StoreError> {
        object_lock::bucket_lock(self).await
    }

    async fn object_lock(&self, key: &str, version_id: Option<&str>) -> Result<ObjectLock, StoreError> {
        object_lock::object_lock(self, key, version_id).await
    }

    async fn set_retention(&self, key: &str, mode: LockMode, retain_until: DateTime<Utc>) -> Result<(), StoreError> {
        object_lock::set_retention(self, key, mode, retain_until).await
    }

    async fn set_legal_hold(&self, key: &str, on: bool) -> Result<(), StoreError> {
        object_lock::set_legal_hold(self, key, on).await
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        object_lock::list_versions(self, prefix).await
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), StoreError> {
        object_lock::delete_version(self, key, version_id).await
    }
}
