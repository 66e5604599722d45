//! Google Cloud Storage and Azure Blob Storage: [`CloudStore`], our [`ObjectStore`]
//! over the `object_store` crate (the maintained Rust client of both services, used by
//! DataFusion and delta-rs), with its credential chains. S3 stays on aws-sdk-s3.
//!
//! What the crate does not give is added here:
//! - **Open uploads are listed.** Neither service lists them through the crate, so each
//!   multipart upload writes a small marker object under [`keys::UPLOAD_PREFIX`] when it
//!   starts and removes it when it completes or aborts; `list_multipart_uploads` lists
//!   the markers, and `abort_multipart` aborts the service's upload (Azure keeps
//!   uncommitted blocks until they expire, seven days) and removes the marker.
//! - **Completion never replaces an object**: the key is checked just before the
//!   upload is committed (the services' block-list commit has no "if absent").
//! - **Prefix listing by string**: the crate lists by path segment; a prefix such as
//!   `<name>.` is listed from its folder and filtered.

pub mod azure;
pub mod gcs;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{PutMode as CratePutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::error::{connection_lost, StoreError, StoreErrorKind};
use super::keys;
use super::object::{ByteStream, MultipartUpload, ObjectMeta, ObjectStore, PendingUpload, PutMode};

/// How a cloud store uploads in parts.
#[derive(Clone)]
pub enum Uploads {
    /// The crate's multipart API (Azure: blocks, then the block list).
    Parts(Arc<dyn MultipartStore>),
    /// GCS resumable uploads (the JSON API, which every GCS server and emulator has).
    Resumable(gcs::Resumable),
}

/// Objects under `<scheme>://<bucket>/<prefix>/` on a cloud object store.
#[derive(Clone)]
pub struct CloudStore {
    backend: Arc<dyn object_store::ObjectStore>,
    uploads: Uploads,
    scheme: &'static str,
    bucket: String,
    prefix: String,
    part_size: usize,
    parts_in_flight: usize,
    /// Which variables hold the credentials, for the messages.
    credentials_hint: &'static str,
}

impl std::fmt::Debug for CloudStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudStore").field("scheme", &self.scheme).field("bucket", &self.bucket).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// A marker of an open multipart upload.
#[derive(Debug, Serialize, Deserialize)]
struct UploadMarker {
    key: String,
    service_id: String,
    initiated: chrono::DateTime<Utc>,
}

impl CloudStore {
    /// A store over `backend`, checked by listing (a missing bucket or refused
    /// credentials fail here, before anything else is done).
    ///
    /// # Errors
    /// The bucket is missing or cannot be listed with these credentials.
    pub async fn open(
        backend: Arc<dyn object_store::ObjectStore>,
        uploads: Uploads,
        scheme: &'static str,
        bucket: &str,
        prefix: &str,
        part_size: usize,
        credentials_hint: &'static str,
    ) -> Result<Self, StoreError> {
        let store = CloudStore {
            backend,
            uploads,
            scheme,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            part_size,
            parts_in_flight: 4,
            credentials_hint,
        };
        let root = store.path("");
        let first = store.backend.list(Some(&root)).next().await;
        if let Some(Err(error)) = first {
            let error = store.error(error, "checking the bucket", "");
            return Err(match error.kind() {
                StoreErrorKind::NotFound => StoreError::new(
                    StoreErrorKind::Misconfigured,
                    format!("checking {}: the bucket does not exist; create it or fix --store", store.location("")),
                ),
                _ => error,
            });
        }
        Ok(store)
    }

    pub(super) fn path(&self, key: &str) -> Path {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => Path::from(key),
            (false, true) => Path::from(self.prefix.as_str()),
            (false, false) => Path::from(format!("{}/{key}", self.prefix)),
        }
    }

    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(&self.prefix).and_then(|rest| rest.strip_prefix('/')).unwrap_or(full).to_string()
    }

    /// Turns a crate error into a [`StoreError`] naming the object and the fix. The
    /// crate's own text is cut at any URL query (a SAS token is a credential).
    pub(super) fn error(&self, error: object_store::Error, doing: &str, key: &str) -> StoreError {
        use object_store::Error as E;
        let location = self.location(key);
        match error {
            E::NotFound { .. } => StoreError::not_found(&location, doing),
            E::AlreadyExists { .. } | E::Precondition { .. } => StoreError::already_exists(&location, doing),
            E::PermissionDenied { .. } => StoreError::new(
                StoreErrorKind::Denied,
                format!(
                    "{doing} {location}: access denied; the credentials ({}) need read, write, list and delete on this bucket",
                    self.credentials_hint
                ),
            ),
            E::Unauthenticated { .. } => {
                StoreError::new(StoreErrorKind::Denied, format!("{doing} {location}: the credentials were rejected; check {}", self.credentials_hint))
            }
            other => {
                let text = without_secrets(&other.to_string());
                if let Some(kind) = transport_failure(&other) {
                    return transport_error(kind, doing, &location, &text);
                }
                // The crate wraps many HTTP answers as generic errors: read the status.
                if text.contains("status code: 404") {
                    return StoreError::not_found(&location, doing);
                }
                if text.contains("status code: 401") || text.contains("status code: 403") {
                    return StoreError::new(
                        StoreErrorKind::Denied,
                        format!("{doing} {location}: the credentials were rejected or lack the permission; check {}", self.credentials_hint),
                    );
                }
                let retryable = ["connect", "timed out", "timeout", "500", "502", "503", "504", "reset"].iter().any(|hint| text.contains(hint));
                let kind = if retryable { StoreErrorKind::Retryable } else { StoreErrorKind::Other };
                StoreError::new(kind, format!("{doing} {location} failed: {text}"))
            }
        }
    }

    async fn write_marker(&self, marker_id: &str, marker: &UploadMarker) -> Result<(), StoreError> {
        let key = format!("{}{marker_id}.json", keys::UPLOAD_PREFIX);
        let bytes = serde_json::to_vec(marker).expect("a marker always serializes");
        self.put(&key, Bytes::from(bytes), PutMode::Overwrite).await
    }

    async fn read_marker(&self, marker_id: &str) -> Result<UploadMarker, StoreError> {
        let key = format!("{}{marker_id}.json", keys::UPLOAD_PREFIX);
        let bytes = super::object::get_bytes(self, &key).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{}: not an upload marker ({e}); delete it", self.location(&key))))
    }

    pub(super) async fn remove_marker(&self, marker_id: &str) -> Result<(), StoreError> {
        let key = format!("{}{marker_id}.json", keys::UPLOAD_PREFIX);
        self.delete(&key).await
    }
}

/// What failed in transport behind a crate error, read from its causes' texts: the
/// crate keeps its transport error kinds private and wraps another `reqwest` than ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    TimedOut,
    Unreachable,
    Cut,
}

fn transport_failure(error: &object_store::Error) -> Option<Transport> {
    let mut causes = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        causes.push(current.to_string().to_ascii_lowercase());
        source = current.source();
    }
    let any = |needles: &[&str]| causes.iter().any(|cause| needles.iter().any(|needle| cause.contains(needle)));
    if any(&["timed out", "deadline has elapsed"]) {
        Some(Transport::TimedOut)
    } else if any(&["error trying to connect", "connection refused", "tcp connect error", "dns error"]) {
        Some(Transport::Unreachable)
    } else if any(&["error sending request"]) || causes.iter().any(|cause| connection_lost(cause)) {
        Some(Transport::Cut)
    } else {
        None
    }
}

/// A retryable error naming a transport failure as what it is, with the variable that
/// bounds it.
fn transport_error(kind: Transport, doing: &str, location: &str, text: &str) -> StoreError {
    let cause = match kind {
        Transport::TimedOut => "the request timed out (each attempt is bounded by STORE_ATTEMPT_TIMEOUT, the retries by STORE_MAX_ATTEMPTS)",
        Transport::Unreachable => "cannot connect to the store (bounded by STORE_CONNECT_TIMEOUT); check the network and the endpoint",
        Transport::Cut => "the connection to the store failed or was cut; check the network",
    };
    StoreError::new(StoreErrorKind::Retryable, format!("{doing} {location}: {cause} ({text})"))
}

/// The text with every URL query removed (`?sig=...` of a SAS token, say).
fn without_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for ch in text.chars() {
        if ch == '?' {
            skipping = true;
            out.push_str("?...");
            continue;
        }
        if skipping && (ch.is_whitespace() || ch == '"' || ch == '\'' || ch == ')' || ch == ',') {
            skipping = false;
        }
        if !skipping {
            out.push(ch);
        }
    }
    out.lines().next().unwrap_or("").chars().take(300).collect()
}

#[async_trait]
impl ObjectStore for CloudStore {
    fn location(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            format!("{}://{}/{key}", self.scheme, self.bucket)
        } else {
            format!("{}://{}/{}/{key}", self.scheme, self.bucket, self.prefix)
        }
    }

    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        if let Uploads::Resumable(resumable) = &self.uploads {
            return resumable.put_media(&self.path(key), bytes, mode == PutMode::Create, &self.location(key)).await;
        }
        let mode = match mode {
            PutMode::Overwrite => CratePutMode::Overwrite,
            PutMode::Create => CratePutMode::Create,
        };
        let options = PutOptions { mode, ..Default::default() };
        self.backend.put_opts(&self.path(key), PutPayload::from(bytes), options).await.map_err(|e| self.error(e, "writing", key))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let path = self.path(key);
        let service_id = match &self.uploads {
            Uploads::Parts(parts) => parts.create_multipart(&path).await.map_err(|e| self.error(e, "starting the upload of", key))?,
            Uploads::Resumable(resumable) => resumable.start(&path, &self.location(key)).await?,
        };
        let marker_id = format!("{}-{:016x}", Utc::now().format("%Y%m%dT%H%M%S"), rand::random::<u64>());
        let marker = UploadMarker { key: key.to_string(), service_id: service_id.clone(), initiated: Utc::now() };
        self.write_marker(&marker_id, &marker).await?;
        // A second handle on the same store (its fields are shared handles), for the upload to keep.
        let store = Arc::new(self.clone());
        Ok(match &self.uploads {
            Uploads::Parts(parts) => Box::new(CloudUpload {
                parts_api: parts.clone(),
                store,
                key: key.to_string(),
                path,
                service_id,
                marker_id,
                next_part: 0,
                uploading: JoinSet::new(),
                parts: Vec::new(),
                open: true,
            }),
            Uploads::Resumable(resumable) => Box::new(gcs::ResumableUpload::new(resumable.clone(), store, key, service_id, marker_id)),
        })
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let result = self.backend.get(&self.path(key)).await.map_err(|e| self.error(e, "reading", key))?;
        let location = self.location(key);
        let stream = result.into_stream().map_err(move |e| {
            StoreError::new(StoreErrorKind::Retryable, format!("reading {location}: the download broke off: {}", without_secrets(&e.to_string())))
        });
        Ok(stream.boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let meta = self.backend.head(&self.path(key)).await.map_err(|e| self.error(e, "looking up", key))?;
        Ok(ObjectMeta { key: key.to_string(), size: meta.size, last_modified: Some(meta.last_modified) })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // The crate lists whole folders: list the prefix's folder, keep what starts with it.
        let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
        let listed: Vec<object_store::ObjectMeta> =
            self.backend.list(Some(&self.path(folder))).try_collect().await.map_err(|e| self.error(e, "listing objects under", prefix))?;
        Ok(listed
            .into_iter()
            .map(|meta| ObjectMeta { key: self.relative(&meta.location), size: meta.size, last_modified: Some(meta.last_modified) })
            .filter(|meta| meta.key.starts_with(prefix) && !meta.key.starts_with(keys::UPLOAD_PREFIX))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.backend.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(error, "deleting", key)),
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let markers: Vec<object_store::ObjectMeta> = self
            .backend
            .list(Some(&self.path(keys::UPLOAD_PREFIX.trim_end_matches('/'))))
            .try_collect()
            .await
            .map_err(|e| self.error(e, "listing the open uploads under", prefix))?;
        let mut found = Vec::new();
        for meta in markers {
            let key = self.relative(&meta.location);
            let Some(marker_id) = key.strip_prefix(keys::UPLOAD_PREFIX).and_then(|name| name.strip_suffix(".json")) else { continue };
            match self.read_marker(marker_id).await {
                Ok(marker) if marker.key.starts_with(prefix) => {
                    found.push(PendingUpload { key: marker.key, upload_id: marker_id.to_string(), initiated: Some(marker.initiated) })
                }
                Ok(_) => {}
                // Completed or aborted while being listed.
                Err(error) if error.kind() == StoreErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(found)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let marker = self.read_marker(upload_id).await?;
        match &self.uploads {
            Uploads::Parts(parts) => match parts.abort_multipart(&self.path(key), &marker.service_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.error(error, "aborting the upload of", key)),
            },
            Uploads::Resumable(resumable) => resumable.cancel(&marker.service_id, &self.location(key)).await?,
        }
        self.remove_marker(upload_id).await
    }
}

/// One object being uploaded in parts, at most `parts_in_flight` at once.
struct CloudUpload {
    parts_api: Arc<dyn MultipartStore>,
    store: Arc<CloudStore>,
    key: String,
    path: Path,
    service_id: String,
    marker_id: String,
    next_part: usize,
    uploading: JoinSet<Result<(usize, PartId), StoreError>>,
    parts: Vec<(usize, PartId)>,
    open: bool,
}

impl CloudUpload {
    async fn collect_one(&mut self) -> Result<(), StoreError> {
        if let Some(done) = self.uploading.join_next().await {
            let location = self.store.location(&self.key);
            let part = done.map_err(|e| StoreError::new(StoreErrorKind::Retryable, format!("{location}: a part upload task failed: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }
}

#[async_trait]
impl MultipartUpload for CloudUpload {
    fn part_size(&self) -> usize {
        self.store.part_size
    }

    async fn wait_for_capacity(&mut self) -> Result<(), StoreError> {
        while self.uploading.len() >= self.store.parts_in_flight {
            self.collect_one().await?;
        }
        Ok(())
    }

    async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        self.wait_for_capacity().await?;
        let index = self.next_part;
        self.next_part += 1;
        let (store, api, path, id, key) = (self.store.clone(), self.parts_api.clone(), self.path.clone(), self.service_id.clone(), self.key.clone());
        self.uploading.spawn(async move {
            let part = api
                .put_part(&path, &id, index, PutPayload::from(part))
                .await
                .map_err(|e| store.error(e, &format!("uploading part {} of", index + 1), &key))?;
            Ok((index, part))
        });
        Ok(())
    }

    async fn complete(&mut self) -> Result<String, StoreError> {
        if self.next_part == 0 {
            self.put_part(Bytes::new()).await?;
        }
        while !self.uploading.is_empty() {
            self.collect_one().await?;
        }
        match self.store.head(&self.key).await {
            Ok(_) => return Err(StoreError::already_exists(&self.store.location(&self.key), "completing the upload of")),
            Err(error) if error.kind() == StoreErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|(index, _)| *index);
        let parts = parts.into_iter().map(|(_, part)| part).collect();
        self.parts_api
            .complete_multipart(&self.path, &self.service_id, parts)
            .await
            .map_err(|e| self.store.error(e, "completing the upload of", &self.key))?;
        self.open = false;
        self.store.remove_marker(&self.marker_id).await?;
        Ok(self.store.location(&self.key))
    }

    async fn abort(&mut self) -> Result<(), StoreError> {
        self.uploading.abort_all();
        while self.uploading.join_next().await.is_some() {}
        if self.open {
            match self.parts_api.abort_multipart(&self.path, &self.service_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.store.error(error, "aborting the upload of", &self.key)),
            }
            self.open = false;
        }
        self.store.remove_marker(&self.marker_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_never_keeps_a_query_string() {
        let text = without_secrets("request to http://127.0.0.1:10000/acct/c/k?sv=2021&sig=SECRET failed (status 500)");
        assert!(!text.contains("SECRET") && text.contains("status 500"), "{text}");
    }
}
