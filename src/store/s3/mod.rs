//! The S3 store: archives are streamed with multipart upload while they are produced
//! (never whole in memory or on disk), the sidecar is put only after
//! CompleteMultipartUpload succeeds, and a failed or cancelled upload is aborted so no
//! orphaned parts remain. Works with AWS and any S3-compatible server (`S3_ENDPOINT`,
//! path-style).
//!
//! The [`Store`] methods block: call them from a blocking thread
//! (`tokio::task::spawn_blocking`), never from async code.

mod config;
mod errors;
mod upload;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::runtime::Handle;

pub use config::S3Settings;
use errors::describe;
use upload::S3Upload;

use super::{ArchiveUpload, Store, StoredBackup, SIDECAR_SUFFIX, VERIFICATION_SUFFIX};
use crate::error::{Error, Result};
use crate::naming::is_backup_name;

/// Backups under `s3://bucket/prefix/`.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    settings: S3Settings,
    runtime: Handle,
}

impl S3Store {
    /// Builds the client (credentials chain, optional role assumption, endpoint) and
    /// checks that the bucket exists and can be reached.
    ///
    /// # Errors
    /// A clear error when the bucket is missing, access is denied, the region is
    /// wrong, the endpoint is unreachable, or the role cannot be assumed.
    pub async fn open(bucket: &str, prefix: &str, settings: S3Settings) -> Result<Self> {
        let client = config::client(&settings).await?;
        let store = Self { client, bucket: bucket.to_string(), prefix: prefix.to_string(), settings, runtime: Handle::current() };
        // ListObjectsV2 rather than HeadBucket: a HEAD response has no body, so a
        // rejected signature and a denied permission would both be a bare 403.
        store
            .client
            .list_objects_v2()
            .bucket(&store.bucket)
            .prefix(store.key(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| describe(&e, &store.url(""), "checking the bucket"))?;
        Ok(store)
    }

    fn key(&self, file_name: &str) -> String {
        if self.prefix.is_empty() {
            file_name.to_string()
        } else {
            format!("{}/{file_name}", self.prefix)
        }
    }

    fn url(&self, file_name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(file_name))
    }

    /// Every object key (relative to the prefix) under the prefix starting with
    /// `starts_with`, with its size.
    fn list_objects(&self, starts_with: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.key(starts_with);
        let mut found = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = self.runtime.block_on(pages.next()) {
            let page = page.map_err(|e| describe(&e, &self.url(starts_with), "listing objects"))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let relative = if self.prefix.is_empty() { key } else { key.strip_prefix(&format!("{}/", self.prefix)).unwrap_or(key) };
                if !relative.contains('/') {
                    found.push((relative.to_string(), object.size().unwrap_or(0).max(0) as u64));
                }
            }
        }
        Ok(found)
    }

    /// Puts a small JSON object with the store's encryption and storage class;
    /// `create_only` makes the write conditional (`If-None-Match: *`), never an overwrite.
    fn put_json(&self, file_name: &str, bytes: &[u8], create_only: bool, doing: &str) -> Result<String> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(file_name))
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()));
        if create_only {
            request = request.if_none_match("*");
        }
        let request = self.settings.apply_to_put(request);
        self.runtime.block_on(request.send()).map_err(|e| describe(&e, &self.url(file_name), doing))?;
        Ok(self.url(file_name))
    }

    fn get(&self, file_name: &str) -> Result<Vec<u8>> {
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(file_name))
                .send()
                .await
                .map_err(|e| describe(&e, &self.url(file_name), "reading"))?;
            let bytes = object.body.collect().await.map_err(|e| Error::Consistency(format!("reading {}: {e}", self.url(file_name))))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }
}

impl Store for S3Store {
    fn name_taken(&self, name: &str) -> Result<bool> {
        if !self.list_objects(&format!("{name}."))?.is_empty() {
            return Ok(true);
        }
        let uploads = self
            .runtime
            .block_on(self.client.list_multipart_uploads().bucket(&self.bucket).prefix(self.key(&format!("{name}."))).send())
            .map_err(|e| describe(&e, &self.url(name), "listing multipart uploads"))?;
        Ok(!uploads.uploads().is_empty())
    }

    fn begin_archive(&self, file_name: &str) -> Result<Box<dyn ArchiveUpload>> {
        let upload = S3Upload::start(self.client.clone(), self.runtime.clone(), &self.bucket, &self.key(file_name), &self.settings)?;
        Ok(Box::new(upload))
    }

    fn put_sidecar(&self, name: &str, manifest: &[u8]) -> Result<String> {
        let file_name = format!("{name}{SIDECAR_SUFFIX}");
        if self.list_objects(&file_name)?.iter().any(|(key, _)| key == &file_name) {
            return Err(Error::Consistency(format!("{} already exists; refusing to overwrite it", self.url(&file_name))));
        }
        self.put_json(&file_name, manifest, true, "writing the sidecar manifest")
    }

    fn list(&self) -> Result<Vec<StoredBackup>> {
        let objects = self.list_objects("")?;
        let sidecars: std::collections::BTreeSet<&str> = objects.iter().filter_map(|(key, _)| key.strip_suffix(SIDECAR_SUFFIX)).collect();
        let verifications: std::collections::BTreeSet<&str> = objects.iter().filter_map(|(key, _)| key.strip_suffix(VERIFICATION_SUFFIX)).collect();
        let mut found = Vec::new();
        for (key, size) in &objects {
            let Some(name) = key.strip_suffix(".tar.gz").or_else(|| key.strip_suffix(".tar.zst")) else { continue };
            if !is_backup_name(name) {
                continue;
            }
            let sidecar = if sidecars.contains(name) { Some(self.get(&format!("{name}{SIDECAR_SUFFIX}"))?) } else { None };
            let verification = if verifications.contains(name) { Some(self.get(&format!("{name}{VERIFICATION_SUFFIX}"))?) } else { None };
            found.push(StoredBackup { name: name.to_string(), archive: key.clone(), size: *size, sidecar, verification });
        }
        found.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(found)
    }

    fn open_archive(&self, file_name: &str) -> Result<Box<dyn std::io::Read + Send>> {
        let object = self
            .runtime
            .block_on(self.client.get_object().bucket(&self.bucket).key(self.key(file_name)).send())
            .map_err(|e| describe(&e, &self.url(file_name), "reading the archive"))?;
        let body = object.body.into_async_read();
        Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(body, self.runtime.clone())))
    }

    fn put_verification(&self, name: &str, result: &[u8]) -> Result<String> {
        self.put_json(&format!("{name}{VERIFICATION_SUFFIX}"), result, false, "writing the verification result")
    }

    fn in_progress(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let (mut key_marker, mut upload_marker) = (None::<String>, None::<String>);
        loop {
            // No `prefix`: MinIO lists uploads under a prefix only when it names the
            // object exactly, so the whole bucket's (few) open uploads are filtered here.
            let request = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(upload_marker.clone());
            let page = self.runtime.block_on(request.send()).map_err(|e| describe(&e, &self.url(""), "listing multipart uploads"))?;
            for upload in page.uploads() {
                let Some(key) = upload.key() else { continue };
                let relative = if self.prefix.is_empty() {
                    key
                } else {
                    match key.strip_prefix(&format!("{}/", self.prefix)) {
                        Some(relative) => relative,
                        None => continue, // another prefix's backup
                    }
                };
                if let Some(name) = super::archive_backup_name(relative) {
                    names.push(name.to_string());
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            upload_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
