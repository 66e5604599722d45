//! The heartbeat: a dead-man's switch. After each successful run (backup, verification,
//! and any later operation that calls [`Heartbeat::ping`]) the tool calls one URL, the
//! pattern healthchecks.io, Cronitor, Dead Man's Snitch and Alertmanager's watchdog are
//! built on: the monitoring service alerts when the pings *stop*. So a failure the tool
//! never sees (an image that cannot be pulled, a missing Secret, an OOM kill, an
//! eviction, a CronJob that never fires) still alerts, by silence.
//!
//! `HEARTBEAT_URL` is a credential like the webhook URLs: it is never printed. A
//! `{operation}` in it is replaced by the operation's name (`backup`, `verify`, ...),
//! so each operation can ping a check of its own. A ping is retried like an alert and
//! never changes the run's exit status.

use std::fmt;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::delivery::{self, DeliveryFailure, RetryPolicy};
use crate::error::{Error, Result};

/// The environment variable holding the heartbeat URL.
pub const HEARTBEAT_URL: &str = "HEARTBEAT_URL";
/// The environment variable choosing the heartbeat's HTTP method (`GET`, the default, or `POST`).
pub const HEARTBEAT_METHOD: &str = "HEARTBEAT_METHOD";
/// The placeholder in [`HEARTBEAT_URL`] replaced by the operation's name.
pub const OPERATION_PLACEHOLDER: &str = "{operation}";

/// How the heartbeat URL is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatMethod {
    /// A plain GET (what healthchecks.io and Cronitor document).
    Get,
    /// A POST of a small JSON document naming the operation and the backup.
    Post,
}

/// A configured heartbeat. Its `Debug` shows nothing of the URL.
#[derive(Clone)]
pub struct Heartbeat {
    template: String,
    method: HeartbeatMethod,
    policy: RetryPolicy,
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat").field("url", &"***").field("method", &self.method).finish()
    }
}

impl Heartbeat {
    /// Reads `HEARTBEAT_URL` and `HEARTBEAT_METHOD` through `lookup`; `None` when the URL
    /// is unset or empty.
    ///
    /// # Errors
    /// A usage error (exit status 2) naming the variable, never showing the URL, when the
    /// URL is not an http(s) URL with a host or the method is neither GET nor POST.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Heartbeat>> {
        let Some(text) = lookup(HEARTBEAT_URL).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        // Checked with the placeholder filled in, as it will be sent.
        super::SecretUrl::parse(HEARTBEAT_URL, &text.replace(OPERATION_PLACEHOLDER, "backup"))?;
        let method = match lookup(HEARTBEAT_METHOD).map(|m| m.trim().to_ascii_uppercase()).as_deref() {
            None | Some("" | "GET") => HeartbeatMethod::Get,
            Some("POST") => HeartbeatMethod::Post,
            Some(other) => return Err(Error::usage(format!("{HEARTBEAT_METHOD}={other:?} is not GET or POST"))),
        };
        Ok(Some(Heartbeat { template: text, method, policy: RetryPolicy::default() }))
    }

    /// Replaces the retry and timeout policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Heartbeat {
        self.policy = policy;
        self
    }

    /// The method the heartbeat is called with.
    #[cfg(test)]
    pub fn method(&self) -> HeartbeatMethod {
        self.method
    }

    /// Calls the heartbeat for a successful `operation` (of `backup`, when there is
    /// one), retrying as alerts are retried. Never fails: returns the attempts made and
    /// the accepting status or why the ping was not delivered (never the URL).
    pub async fn ping(&self, operation: &str, backup: Option<&str>) -> (u32, std::result::Result<u16, DeliveryFailure>) {
        let url = self.template.replace(OPERATION_PLACEHOLDER, operation);
        let client = match delivery::client(&self.policy) {
            Ok(client) => client,
            Err(failure) => return (0, Err(failure)),
        };
        match self.method {
            HeartbeatMethod::Get => delivery::get(&client, &url, &self.policy).await,
            HeartbeatMethod::Post => delivery::post_json(&client, &url, &document(operation, backup), &self.policy).await,
        }
    }
}

/// The JSON body of a POST heartbeat.
pub fn document(operation: &str, backup: Option<&str>) -> Value {
    json!({
        "source": "ingest-backup",
        "version": env!("CARGO_PKG_VERSION"),
        "sent_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "operation": operation,
        "outcome": "succeeded",
        "backup": backup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::lookup;

    #[test]
    fn unset_is_off_and_get_is_the_default() {
        assert!(Heartbeat::from_lookup(lookup(&[(HEARTBEAT_URL, " ")])).unwrap().is_none());
        let heartbeat = Heartbeat::from_lookup(lookup(&[(HEARTBEAT_URL, "https://hc-ping.com/s3cret/{operation}")])).unwrap().unwrap();
        assert_eq!(heartbeat.method(), HeartbeatMethod::Get);
        assert!(!format!("{heartbeat:?}").contains("s3cret"));
        let post = Heartbeat::from_lookup(lookup(&[(HEARTBEAT_URL, "http://127.0.0.1:9/x"), (HEARTBEAT_METHOD, "post")])).unwrap().unwrap();
        assert_eq!(post.method(), HeartbeatMethod::Post);
    }

    #[test]
    fn malformed_values_are_usage_errors_that_hide_the_url() {
        for bad in [vec![(HEARTBEAT_URL, "hc-ping.com/s3cret")], vec![(HEARTBEAT_URL, "https://h/x"), (HEARTBEAT_METHOD, "PUT")]] {
            let error = Heartbeat::from_lookup(lookup(&bad)).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains("HEARTBEAT_"), "{error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }
}
