//! Google Cloud Storage (`gs://bucket/prefix`): the `object_store` crate's client for
//! reads, writes, listing and deletes, with the credentials GCS users expect:
//! `GOOGLE_APPLICATION_CREDENTIALS` (a service-account or user JSON file), the other
//! `GOOGLE_*` variables the crate reads, else the metadata server (GKE Workload
//! Identity). `STORAGE_EMULATOR_HOST` points everything at an emulator, unauthenticated
//! unless `GOOGLE_APPLICATION_CREDENTIALS` or `GCE_METADATA_HOST` is set too: then the
//! requests carry those credentials' tokens, as they would on GCS.
//!
//! Large objects go up as a resumable upload of the JSON API ([`Resumable`]): chunks in
//! order, every one but the last a multiple of 256 KiB (the parts are 8 MiB; the last part
//! is held back until `complete` so that it is sent as the final chunk with the total
//! size), created with `ifGenerationMatch=0` so that completion never replaces an object.
//!
//! Every request is bounded and retried as the `STORE_*` variables say
//! ([`RequestTuning`]): the crate's by its own retry loop, the resumable upload's by
//! [`Resumable::retrying`]. A chunk that failed (a 5xx or 429 answer, a cut connection, an
//! attempt past its timeout) is sent again whole at the same offset, as Google's own
//! client libraries do; a 308 answer whose `Range` shows that the server kept less than
//! was sent gets the rest sent again.

use std::sync::Arc;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use object_store::path::Path;

use super::{CloudStore, Uploads};
use crate::error::{Error, Result};
use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::object::{MultipartUpload, ObjectStore};
use crate::store::tuning::RequestTuning;

/// The variables named in credential errors.
const HINT: &str = "GOOGLE_APPLICATION_CREDENTIALS (a service-account JSON file) or the metadata server (GKE Workload Identity)";

/// Bytes per chunk of a resumable upload (a multiple of 256 KiB).
pub const PART_SIZE: usize = 8 << 20;

/// Resumable uploads into one bucket.
#[derive(Clone)]
pub struct Resumable {
    http: reqwest::Client,
    base_url: String,
    bucket: String,
    /// `None` with an unauthenticated emulator.
    credentials: Option<GcpCredentialProvider>,
    tuning: RequestTuning,
}

/// What the server holds of a resumable upload after a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    /// The object is written (the final chunk's answer).
    Complete,
    /// Bytes `0..n` are kept; more are expected (a 308 answer).
    Upto(u64),
}

/// The end of what a 308 answer's `Range: bytes=0-N` says the server keeps (`N + 1`);
/// no header means nothing kept.
fn kept_bytes(range: Option<&str>) -> Option<u64> {
    let Some(range) = range else { return Some(0) };
    let last = range.trim().strip_prefix("bytes=")?.split_once('-')?.1;
    last.trim().parse::<u64>().ok().map(|n| n + 1)
}

impl Resumable {
    /// A client for `base_url`'s `bucket` with the connection and attempt timeouts of `tuning`.
    fn new(base_url: String, bucket: &str, credentials: Option<GcpCredentialProvider>, tuning: RequestTuning) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(tuning.connect)
            .timeout(tuning.attempt)
            .build()
            .map_err(|e| Error::usage(format!("gs://{bucket}: cannot set up the HTTP client ({e})")))?;
        Ok(Resumable { http, base_url, bucket: bucket.to_string(), credentials, tuning })
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retryable, has
    /// run `STORE_MAX_ATTEMPTS` times, or `STORE_OPERATION_TIMEOUT` has passed; waits
    /// with a doubling, jittered backoff between attempts, logging each retry.
    async fn retrying<T, F, Fut>(&self, location: &str, doing: &str, attempt: F) -> std::result::Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, StoreError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(RequestTuning::FIRST_BACKOFF)
            .with_max_delay(RequestTuning::MAX_BACKOFF)
            .with_max_times(self.tuning.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        let attempts = attempt.retry(backoff).when(|error: &StoreError| error.kind() == StoreErrorKind::Retryable).notify(|error, wait| {
            tracing::warn!(operation = doing, object = location, %error, backoff_ms = wait.as_millis() as u64, "Store request failed: trying again.");
        });
        match tokio::time::timeout(self.tuning.operation, attempts).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Retryable,
                format!(
                    "{doing} {location}: the request timed out after {} with its retries (STORE_OPERATION_TIMEOUT)",
                    humantime::format_duration(self.tuning.operation)
                ),
            )),
        }
    }

    /// `request` with the OAuth bearer token of the configured credentials (none with
    /// an unauthenticated emulator).
    async fn authorized(&self, request: reqwest::RequestBuilder, location: &str) -> std::result::Result<reqwest::RequestBuilder, StoreError> {
        let Some(provider) = &self.credentials else { return Ok(request) };
        let credential = provider
            .get_credential()
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::Denied, format!("writing {location}: no usable Google credentials; set {HINT}")))?;
        Ok(request.bearer_auth(&credential.bearer))
    }

    fn failed(&self, location: &str, doing: &str, status: reqwest::StatusCode) -> StoreError {
        match status.as_u16() {
            401 | 403 => StoreError::new(
                StoreErrorKind::Denied,
                format!("{doing} {location}: access denied (HTTP {status}); the credentials ({HINT}) need storage.objects.create"),
            ),
            404 => StoreError::new(
                StoreErrorKind::Misconfigured,
                format!("{doing} {location}: the bucket or the upload does not exist (HTTP 404); create the bucket or fix --store"),
            ),
            412 => StoreError::already_exists(location, doing),
            code if code >= 500 || code == 429 => {
                StoreError::new(StoreErrorKind::Retryable, format!("{doing} {location}: the server answered HTTP {status}; retry later"))
            }
            _ => StoreError::new(StoreErrorKind::Other, format!("{doing} {location} failed: HTTP {status}")),
        }
    }

    fn unreachable(location: &str, doing: &str, error: &reqwest::Error) -> StoreError {
        let cause = if error.is_timeout() { "the request timed out" } else { "the connection failed" };
        StoreError::new(
            StoreErrorKind::Retryable,
            format!("{doing} {location}: cannot reach Google Cloud Storage ({cause}); check the network (or STORAGE_EMULATOR_HOST)"),
        )
    }

    /// Opens a session for `path`; returns its URI (a capability: never shown).
    pub(super) async fn start(&self, path: &Path, location: &str) -> std::result::Result<String, StoreError> {
        let url = url::Url::parse_with_params(
            &format!("{}/upload/storage/v1/b/{}/o", self.base_url, self.bucket),
            &[("uploadType", "resumable"), ("name", path.as_ref()), ("ifGenerationMatch", "0")],
        )
        .map_err(|_| {
            StoreError::new(StoreErrorKind::Misconfigured, format!("starting the upload of {location}: the Cloud Storage URL is invalid"))
        })?;
        let doing = "starting the upload of";
        self.retrying(location, doing, || async {
            let request = self.authorized(self.http.post(url.clone()).header("Content-Type", "application/json").body("{}"), location).await?;
            let response = request.send().await.map_err(|e| Self::unreachable(location, doing, &e))?;
            if !response.status().is_success() {
                return Err(self.failed(location, doing, response.status()));
            }
            response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| StoreError::new(StoreErrorKind::Other, format!("{doing} {location}: the server gave no session for the upload")))
        })
        .await
    }

    /// Writes a small object in one request (`uploadType=media`), with
    /// `ifGenerationMatch=0` when it must not replace one.
    pub(super) async fn put_media(&self, path: &Path, bytes: Bytes, create: bool, location: &str) -> std::result::Result<(), StoreError> {
        let mut params = vec![("uploadType", "media"), ("name", path.as_ref())];
        if create {
            params.push(("ifGenerationMatch", "0"));
        }
        let url = url::Url::parse_with_params(&format!("{}/upload/storage/v1/b/{}/o", self.base_url, self.bucket), &params)
            .map_err(|_| StoreError::new(StoreErrorKind::Misconfigured, format!("writing {location}: the Cloud Storage URL is invalid")))?;
        self.retrying(location, "writing", || async {
            let request =
                self.authorized(self.http.post(url.clone()).header("Content-Type", "application/octet-stream").body(bytes.clone()), location).await?;
            let response = request.send().await.map_err(|e| Self::unreachable(location, "writing", &e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(self.failed(location, "writing", response.status()))
            }
        })
        .await
    }

    /// Sends `chunk` at `offset` (`total` is given with the final chunk) until the server
    /// holds all of it: retried as [`Resumable::retrying`] says, and what a 308 answer
    /// shows was not kept is sent again.
    async fn send(&self, session: &str, chunk: Bytes, offset: u64, total: Option<u64>, location: &str) -> std::result::Result<(), StoreError> {
        let doing = if total.is_some() { "completing the upload of" } else { "uploading" };
        let end = offset + chunk.len() as u64;
        let mut from = offset;
        // Each round sends what the server does not hold yet; a server that keeps
        // nothing of a round gets as many rounds as attempts.
        for _ in 0..self.tuning.max_attempts {
            let rest = chunk.slice((from - offset) as usize..);
            match self.retrying(location, doing, || self.send_once(session, rest.clone(), from, total, location, doing)).await? {
                Received::Complete => return Ok(()),
                Received::Upto(kept) if kept >= end && total.is_none() => return Ok(()),
                Received::Upto(kept) => {
                    tracing::warn!(object = location, sent_to = end, kept, "The store kept less than was sent: sending the rest again.");
                    from = kept.clamp(offset, end);
                }
            }
        }
        Err(StoreError::new(StoreErrorKind::Retryable, format!("{doing} {location}: the server did not keep the bytes sent; retry later")))
    }

    /// One request of [`Resumable::send`]: `chunk` at `offset`.
    async fn send_once(
        &self,
        session: &str,
        chunk: Bytes,
        offset: u64,
        total: Option<u64>,
        location: &str,
        doing: &str,
    ) -> std::result::Result<Received, StoreError> {
        let range = match (chunk.is_empty(), total) {
            (true, Some(total)) => format!("bytes */{total}"),
            (_, Some(total)) => format!("bytes {offset}-{}/{total}", offset + chunk.len() as u64 - 1),
            (_, None) => format!("bytes {offset}-{}/*", offset + chunk.len() as u64 - 1),
        };
        let request = self.authorized(self.http.put(session).header("Content-Range", range).body(chunk), location).await?;
        let response = request.send().await.map_err(|e| Self::unreachable(location, doing, &e))?;
        let status = response.status();
        if status.as_u16() == 308 {
            let range = response.headers().get("range").and_then(|value| value.to_str().ok());
            return kept_bytes(range).map(Received::Upto).ok_or_else(|| {
                StoreError::new(StoreErrorKind::Other, format!("{doing} {location}: the server answered with an unreadable Range header"))
            });
        }
        if status.is_success() {
            Ok(Received::Complete)
        } else {
            Err(self.failed(location, doing, status))
        }
    }

    /// Cancels a session (nothing of it remains).
    pub(super) async fn cancel(&self, session: &str, location: &str) -> std::result::Result<(), StoreError> {
        let doing = "aborting the upload of";
        self.retrying(location, doing, || async {
            let request = self.authorized(self.http.delete(session), location).await?;
            let response = request.send().await.map_err(|e| Self::unreachable(location, doing, &e))?;
            // 499 is GCS's answer to a cancelled session; 404/410: gone already.
            match response.status().as_u16() {
                200..=299 | 404 | 410 | 499 => Ok(()),
                _ => Err(self.failed(location, doing, response.status())),
            }
        })
        .await
    }
}

/// One object being written by a resumable upload.
pub struct ResumableUpload {
    resumable: Resumable,
    store: Arc<CloudStore>,
    key: String,
    session: String,
    marker_id: String,
    held: Option<Bytes>,
    offset: u64,
    open: bool,
}

impl ResumableUpload {
    pub(super) fn new(resumable: Resumable, store: Arc<CloudStore>, key: &str, session: String, marker_id: String) -> Self {
        ResumableUpload { resumable, store, key: key.to_string(), session, marker_id, held: None, offset: 0, open: true }
    }
}

#[async_trait]
impl MultipartUpload for ResumableUpload {
    fn part_size(&self) -> usize {
        PART_SIZE
    }

    async fn put_part(&mut self, part: Bytes) -> std::result::Result<(), StoreError> {
        // The part before this one is not the last: it goes now.
        if let Some(previous) = self.held.replace(part) {
            let length = previous.len() as u64;
            self.resumable.send(&self.session, previous, self.offset, None, &self.store.location(&self.key)).await?;
            self.offset += length;
        }
        Ok(())
    }

    async fn complete(&mut self) -> std::result::Result<String, StoreError> {
        let last = self.held.take().unwrap_or_default();
        let total = self.offset + last.len() as u64;
        let location = self.store.location(&self.key);
        self.resumable.send(&self.session, last, self.offset, Some(total), &location).await?;
        self.open = false;
        self.store.remove_marker(&self.marker_id).await?;
        Ok(location)
    }

    async fn abort(&mut self) -> std::result::Result<(), StoreError> {
        if self.open {
            self.resumable.cancel(&self.session, &self.store.location(&self.key)).await?;
            self.open = false;
        }
        self.store.remove_marker(&self.marker_id).await
    }
}

/// The credentials of a GCS store, from the environment (or given by a test).
#[derive(Debug, Clone, Default)]
pub struct GcsSettings {
    /// `STORAGE_EMULATOR_HOST`: an emulator's address (`host:port` or a URL).
    pub emulator_host: Option<String>,
    /// Whether credentials were configured explicitly (`GOOGLE_APPLICATION_CREDENTIALS`
    /// or `GCE_METADATA_HOST`): an emulator is then sent their tokens, not none.
    pub explicit_credentials: bool,
    /// The `STORE_*` timeouts and attempts.
    pub tuning: RequestTuning,
}

impl GcsSettings {
    /// `STORAGE_EMULATOR_HOST`, whether credentials are configured explicitly (the
    /// `GOOGLE_*` and `GCE_METADATA_*` variables themselves are read by the crate) and
    /// the `STORE_*` timeouts and attempts.
    ///
    /// # Errors
    /// A usage error for a malformed `STORE_*` variable.
    pub fn from_env() -> Result<Self> {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(GcsSettings {
            emulator_host: set("STORAGE_EMULATOR_HOST"),
            explicit_credentials: set("GOOGLE_APPLICATION_CREDENTIALS").is_some() || set("GCE_METADATA_HOST").is_some(),
            tuning: RequestTuning::cloud_from_env()?,
        })
    }
}

/// The crate's credential chain (key file, else the metadata server), as on GCS.
fn credential_chain(bucket: &str) -> Result<GcpCredentialProvider> {
    let backend = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).build().map_err(|e| unusable_credentials(bucket, &e))?;
    Ok(backend.credentials().clone())
}

fn unusable_credentials(bucket: &str, error: &object_store::Error) -> Error {
    Error::usage(format!("gs://{bucket}: cannot set up Google Cloud Storage ({}); set {HINT}", super::without_secrets(&error.to_string())))
}

/// Opens `gs://bucket/prefix` and checks that the bucket can be listed.
///
/// # Errors
/// A usage error for credentials that cannot be loaded; a store error when the bucket
/// is missing or the credentials are refused.
pub async fn open(bucket: &str, prefix: &str, settings: &GcsSettings) -> Result<CloudStore> {
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(settings.tuning.client_options())
        .with_retry(settings.tuning.retry_config());
    let mut emulator_credentials = None;
    let base_url = match &settings.emulator_host {
        Some(host) => {
            let url = if host.starts_with("http://") || host.starts_with("https://") { host.clone() } else { format!("http://{host}") };
            let url = url.trim_end_matches('/').to_string();
            let key = serde_json::json!({ "gcs_base_url": url, "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": "" });
            builder = builder.with_service_account_key(key.to_string()).with_client_options(settings.tuning.client_options().with_allow_http(true));
            if settings.explicit_credentials {
                let chain = credential_chain(bucket)?;
                builder = builder.with_credentials(chain.clone());
                emulator_credentials = Some(chain);
            }
            url
        }
        None => "https://storage.googleapis.com".to_string(),
    };
    let backend = builder.build().map_err(|e| unusable_credentials(bucket, &e))?;
    let credentials = if settings.emulator_host.is_some() { emulator_credentials } else { Some(backend.credentials().clone()) };
    let resumable = Resumable::new(base_url, bucket, credentials, settings.tuning)?;
    Ok(CloudStore::open(Arc::new(backend), Uploads::Resumable(resumable), "gs", bucket, prefix, PART_SIZE, HINT).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_308_range_header_gives_the_bytes_kept() {
        assert_eq!(kept_bytes(Some("bytes=0-8388607")), Some(8 << 20));
        assert_eq!(kept_bytes(None), Some(0), "no Range header: nothing kept yet");
        assert_eq!(kept_bytes(Some("bytes 0-9")), None);
        assert_eq!(kept_bytes(Some("bytes=0-x")), None);
    }
}
