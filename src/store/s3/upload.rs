//! Streaming multipart upload. Bytes written are cut into parts of `part_size`; each
//! full part is uploaded by a task on the runtime while the archive goes on, with at
//! most `parts_in_flight` parts uploading at once (the writer blocks for capacity, so
//! memory stays near `part_size x (parts_in_flight + 1)`). The SDK retries each part
//! with backoff. Any failure, and dropping the upload before `commit`, aborts the
//! multipart upload so no orphaned parts remain and nothing half-written is visible.

use std::io::{self, Write};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use super::errors::describe;
use super::S3Settings;
use crate::error::{Error, Result};
use crate::store::ArchiveUpload;

/// How long a failed upload keeps trying to abort itself while the server is away.
const ABORT_PATIENCE: Duration = Duration::from_secs(60);

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: i32 = 10_000;

/// One archive being uploaded.
pub struct S3Upload {
    client: Client,
    runtime: Handle,
    bucket: String,
    key: String,
    upload_id: String,
    part_size: usize,
    parts_in_flight: usize,
    buffer: Vec<u8>,
    next_part: i32,
    uploading: JoinSet<Result<CompletedPart>>,
    completed: Vec<CompletedPart>,
    finished: bool,
}

impl S3Upload {
    /// Starts a multipart upload of `key` (blocking).
    ///
    /// # Errors
    /// The store's clear error when CreateMultipartUpload fails.
    pub fn start(client: Client, runtime: Handle, bucket: &str, key: &str, settings: &S3Settings) -> Result<Self> {
        let request = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(if key.ends_with(".zst") { "application/zstd" } else { "application/gzip" })
            .set_server_side_encryption(settings.sse.clone())
            .set_ssekms_key_id(settings.sse_kms_key_id.clone())
            .set_storage_class(settings.storage_class.clone());
        let url = format!("s3://{bucket}/{key}");
        let created = runtime.block_on(request.send()).map_err(|e| describe(&e, &url, "starting the upload of"))?;
        let upload_id =
            created.upload_id().ok_or_else(|| Error::Store { message: format!("{url}: the server returned no upload id"), retryable: true })?;
        Ok(Self {
            client,
            runtime,
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            part_size: settings.part_size,
            parts_in_flight: settings.parts_in_flight,
            buffer: Vec::with_capacity(settings.part_size),
            next_part: 1,
            uploading: JoinSet::new(),
            completed: Vec::new(),
            finished: false,
        })
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Waits for one part upload to finish, keeping its result.
    fn collect_one(&mut self) -> Result<()> {
        if let Some(done) = self.runtime.block_on(self.uploading.join_next()) {
            let part = done.map_err(|e| Error::Store { message: format!("{}: a part upload task failed: {e}", self.url()), retryable: true })??;
            self.completed.push(part);
        }
        Ok(())
    }

    /// Sends the buffered bytes as the next part.
    fn send_part(&mut self) -> Result<()> {
        if self.next_part > MAX_PARTS {
            return Err(Error::usage(format!(
                "{}: the archive needs more than {MAX_PARTS} parts of {} MiB; raise --part-size-mb",
                self.url(),
                self.part_size >> 20
            )));
        }
        while self.uploading.len() >= self.parts_in_flight {
            self.collect_one()?;
        }
        let bytes = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        let number = self.next_part;
        self.next_part += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes));
        let url = self.url();
        self.uploading.spawn_on(
            async move {
                let uploaded = request.send().await.map_err(|e| describe(&e, &url, &format!("uploading part {number} of")))?;
                Ok(CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(str::to_string)).build())
            },
            &self.runtime,
        );
        Ok(())
    }

    fn to_io(error: Error) -> io::Error {
        io::Error::other(error.to_string())
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let taken = room.min(data.len());
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == self.part_size {
            self.send_part().map_err(Self::to_io)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveUpload for S3Upload {
    fn commit(mut self: Box<Self>) -> Result<String> {
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part()?;
        }
        while !self.uploading.is_empty() {
            self.collect_one()?;
        }
        let mut parts = std::mem::take(&mut self.completed);
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
        self.runtime.block_on(request.send()).map_err(|e| describe(&e, &self.url(), "completing the upload of"))?;
        self.finished = true;
        Ok(self.url())
    }
}

impl Drop for S3Upload {
    /// Aborts the upload, retrying for up to [`ABORT_PATIENCE`] while the server is
    /// unreachable (a brief outage is what often failed the upload in the first place).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.uploading.abort_all();
        let url = self.url();
        let outcome = self.runtime.block_on(async {
            while self.uploading.join_next().await.is_some() {}
            let deadline = tokio::time::Instant::now() + ABORT_PATIENCE;
            loop {
                let attempt = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(&self.upload_id).send().await;
                match attempt {
                    Ok(_) => return Ok(()),
                    Err(error) if tokio::time::Instant::now() >= deadline => return Err(describe(&error, &url, "aborting the upload of")),
                    Err(error) => {
                        tracing::warn!(object = %url, error = %describe(&error, &url, "aborting the upload of"), "Retrying the abort of the multipart upload.");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
        match outcome {
            Ok(()) => tracing::info!(object = %url, "Aborted the multipart upload; no parts remain."),
            Err(error) => tracing::error!(
                object = %url,
                %error,
                "Could not abort the multipart upload; remove it with AbortMultipartUpload or a bucket lifecycle rule."
            ),
        }
    }
}
