//! The healthcheck job: asks a running `schedule` for its `/healthz`, the container
//! healthcheck of an image without curl.

use serde::Serialize;

use super::Render;
use crate::error::{Error, Result};

/// What `/healthz` answered.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The URL asked.
    pub url: String,
    /// Whether it answered 200.
    pub healthy: bool,
    /// The HTTP status, when there was an answer.
    pub http_status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
}

/// `healthcheck`: exit 0 on 200, 1 otherwise.
///
/// # Errors
/// The HTTP client could not be built.
pub async fn run(url: String, timeout: std::time::Duration) -> Result<HealthReport> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|error| Error::Store { message: format!("cannot build an HTTP client: {error}"), retryable: false })?;
    let (http_status, error) = match client.get(&url).send().await {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(error) => (None, Some(error.to_string())),
    };
    Ok(HealthReport { healthy: http_status == Some(200), url, http_status, error })
}

impl Render for HealthReport {
    fn text(&self) -> String {
        match (self.http_status, &self.error) {
            (Some(200), _) => format!("{}: healthy\n", self.url),
            (Some(status), _) => format!("{}: unhealthy (HTTP {status})\n", self.url),
            (None, error) => format!(
                "{}: no answer ({}); is `ingest-backup schedule` running and listening there (LISTEN_ADDR)?\n",
                self.url,
                error.as_deref().unwrap_or("unknown")
            ),
        }
    }

    fn succeeded(&self) -> bool {
        self.healthy
    }
}
