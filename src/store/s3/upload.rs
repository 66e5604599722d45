//! S3 multipart upload. Each part handed to `put_part` is uploaded by a task in a
//! `JoinSet`; `put_part` first waits until fewer than `parts_in_flight` parts are
//! uploading, so the bound cannot be forgotten by a caller and memory stays near
//! `part_size x parts_in_flight`. The SDK retries each part with backoff. `complete`
//! is conditional (`If-None-Match: *`): it never replaces an archive another run
//! finished. `abort` is explicit and awaited; dropping an open upload only spawns a
//! best-effort abort.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::task::JoinSet;

use super::errors::describe;
use super::S3Settings;
use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::object::MultipartUpload;
use crate::store::WriteLock;

/// How long `abort` keeps trying while the server is unreachable (a brief outage is
/// what often failed the upload in the first place).
const ABORT_PATIENCE: Duration = Duration::from_secs(60);

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: i32 = 10_000;

/// One object being uploaded in parts.
pub struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    part_size: usize,
    parts_in_flight: usize,
    next_part: i32,
    /// The settings name a role to assume (for the wording of credential errors).
    assumes_role: bool,
    uploading: JoinSet<Result<CompletedPart, StoreError>>,
    completed: Vec<CompletedPart>,
    open: bool,
}

impl S3Upload {
    /// Starts a multipart upload of `key`.
    ///
    /// # Errors
    /// The store's clear error when CreateMultipartUpload fails.
    pub async fn start(client: Client, bucket: &str, key: &str, settings: &S3Settings, lock: Option<WriteLock>) -> Result<Self, StoreError> {
        let mut request = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(if key.ends_with(".zst") { "application/zstd" } else { "application/gzip" })
            .set_server_side_encryption(settings.sse.clone())
            .set_ssekms_key_id(settings.sse_kms_key_id.clone())
            .set_storage_class(settings.storage_class.clone());
        if let Some(lock) = lock {
            request = request
                .object_lock_mode(super::object_lock::sdk_mode(lock.mode))
                .object_lock_retain_until_date(super::object_lock::sdk_time(lock.retain_until));
        }
        let url = format!("s3://{bucket}/{key}");
        let assumes_role = settings.role_arn.is_some();
        let created = request.send().await.map_err(|e| describe(&e, &url, "starting the upload of", assumes_role))?;
        let upload_id =
            created.upload_id().ok_or_else(|| StoreError::new(StoreErrorKind::Retryable, format!("{url}: the server returned no upload id")))?;
        Ok(Self {
            client,
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            part_size: settings.part_size,
            parts_in_flight: settings.parts_in_flight.max(1),
            next_part: 1,
            assumes_role,
            uploading: JoinSet::new(),
            completed: Vec::new(),
            open: true,
        })
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Waits for one part upload to finish, keeping its result.
    async fn collect_one(&mut self) -> Result<(), StoreError> {
        if let Some(done) = self.uploading.join_next().await {
            let part = done.map_err(|e| StoreError::new(StoreErrorKind::Retryable, format!("{}: a part upload task failed: {e}", self.url())))??;
            self.completed.push(part);
        }
        Ok(())
    }
}

#[async_trait]
impl MultipartUpload for S3Upload {
    fn part_size(&self) -> usize {
        self.part_size
    }

    async fn wait_for_capacity(&mut self) -> Result<(), StoreError> {
        while self.uploading.len() >= self.parts_in_flight {
            self.collect_one().await?;
        }
        Ok(())
    }

    async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        if self.next_part > MAX_PARTS {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("{}: the archive needs more than {MAX_PARTS} parts of {} MiB; raise --part-size-mb", self.url(), self.part_size >> 20),
            ));
        }
        self.wait_for_capacity().await?;
        let number = self.next_part;
        self.next_part += 1;
        let request =
            self.client.upload_part().bucket(&self.bucket).key(&self.key).upload_id(&self.upload_id).part_number(number).body(ByteStream::from(part));
        let (url, assumes_role) = (self.url(), self.assumes_role);
        self.uploading.spawn(async move {
            let uploaded = request.send().await.map_err(|e| describe(&e, &url, &format!("uploading part {number} of"), assumes_role))?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(str::to_string)).build())
        });
        Ok(())
    }

    async fn complete(&mut self) -> Result<String, StoreError> {
        if self.next_part == 1 {
            // S3 needs at least one part, even an empty one.
            self.put_part(Bytes::new()).await?;
        }
        while !self.uploading.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = self.completed.clone();
        parts.sort_by_key(|part| part.part_number());
        let request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            // Never replace an archive another run finished under the same name.
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        request.send().await.map_err(|e| describe(&e, &self.url(), "completing the upload of", self.assumes_role))?;
        self.open = false;
        Ok(self.url())
    }

    async fn abort(&mut self) -> Result<(), StoreError> {
        self.settle_parts_in_flight().await;
        let url = self.url();
        let deadline = tokio::time::Instant::now() + ABORT_PATIENCE;
        self.abort_until_gone(&url, deadline).await?;
        // A part the server was still storing when the abort arrived can bring the
        // upload back (AWS documents this; versitygw does it): look, and abort again.
        for _ in 0..ABORT_CONFIRMATIONS {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !self.upload_still_listed().await {
                break;
            }
            tracing::warn!(object = %url, "A part stored during the abort reopened the upload; aborting it again.");
            self.abort_until_gone(&url, deadline).await?;
        }
        self.open = false;
        tracing::info!(object = %url, "Aborted the multipart upload; no parts remain.");
        Ok(())
    }
}

/// How long `abort` lets the parts already sent finish before it cancels them, so the
/// server is not still storing a part when the upload is aborted.
const PART_SETTLE: Duration = Duration::from_secs(10);

/// How many times `abort` checks that the upload stayed gone.
const ABORT_CONFIRMATIONS: usize = 3;

impl S3Upload {
    /// Waits (at most `PART_SETTLE`) for the part uploads in flight, then cancels the rest.
    async fn settle_parts_in_flight(&mut self) {
        let uploading = &mut self.uploading;
        let _ = tokio::time::timeout(PART_SETTLE, async { while uploading.join_next().await.is_some() {} }).await;
        self.uploading.abort_all();
        while self.uploading.join_next().await.is_some() {}
    }

    /// Sends AbortMultipartUpload until the server says the upload is gone, retrying
    /// transient failures until `deadline`.
    async fn abort_until_gone(&self, url: &str, deadline: tokio::time::Instant) -> Result<(), StoreError> {
        loop {
            let attempt = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(&self.upload_id).send().await;
            let error = match attempt {
                Ok(_) => return Ok(()),
                Err(error) => describe(&error, url, "aborting the upload of", self.assumes_role),
            };
            if error.kind() == StoreErrorKind::NotFound {
                return Ok(()); // aborted already (or completed by a retried request)
            }
            if !error.is_retryable() || tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tracing::warn!(object = %url, %error, "Retrying the abort of the multipart upload.");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Whether ListParts still finds this upload (any answer but "no such upload" counts
    /// as gone, since a server or policy without ListParts cannot tell).
    async fn upload_still_listed(&self) -> bool {
        self.client.list_parts().bucket(&self.bucket).key(&self.key).upload_id(&self.upload_id).send().await.is_ok()
    }
}

impl Drop for S3Upload {
    /// Never blocks: an upload dropped open (a panic, a caller that forgot `abort`) gets
    /// one abort request on the runtime if there is one, and a log line either way.
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        self.uploading.abort_all();
        tracing::warn!(
            object = %self.url(),
            "A multipart upload was dropped without complete or abort; remove it with AbortMultipartUpload or a bucket lifecycle rule if it remains."
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let request = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(&self.upload_id);
            runtime.spawn(async move {
                let _ = request.send().await;
            });
        }
    }
}
