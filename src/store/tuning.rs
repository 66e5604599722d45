//! How long an object store's client waits and how often it tries, read from
//! `<PREFIX>CONNECT_TIMEOUT`, `<PREFIX>ATTEMPT_TIMEOUT`, `<PREFIX>OPERATION_TIMEOUT` and
//! `<PREFIX>MAX_ATTEMPTS`: `S3_*` for S3, `STORE_*` for Google Cloud Storage and Azure
//! Blob Storage. Set on purpose so that a request the server takes and never answers
//! ends and is retried instead of hanging the run.

use std::time::Duration;

use crate::error::{Error, Result};

/// The prefix of the variables that tune the Google Cloud Storage and Azure clients.
pub const CLOUD_PREFIX: &str = "STORE_";

/// Timeouts and attempts of every request to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTuning {
    /// `*_CONNECT_TIMEOUT` (default 5 s): one TCP (and TLS) connection attempt.
    pub connect: Duration,
    /// `*_ATTEMPT_TIMEOUT` (default 300 s): one attempt of a request, a whole part's
    /// upload included.
    pub attempt: Duration,
    /// `*_OPERATION_TIMEOUT` (default 30 min, at least `attempt`): a request with all
    /// its retries.
    pub operation: Duration,
    /// `*_MAX_ATTEMPTS` (default 5, 1 to 20): attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for RequestTuning {
    fn default() -> Self {
        Self { connect: Duration::from_secs(5), attempt: Duration::from_secs(300), operation: Duration::from_secs(1800), max_attempts: 5 }
    }
}

impl RequestTuning {
    /// The wait before the first retry; each later wait doubles, up to [`Self::MAX_BACKOFF`].
    pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
    /// The longest wait between two attempts.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

    /// Reads the `STORE_*` variables of the Google Cloud Storage and Azure clients.
    ///
    /// # Errors
    /// As [`RequestTuning::from_lookup`].
    pub fn cloud_from_env() -> Result<Self> {
        Self::from_lookup(CLOUD_PREFIX, |name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()))
    }

    /// Reads `<prefix>CONNECT_TIMEOUT`, `<prefix>ATTEMPT_TIMEOUT`, `<prefix>OPERATION_TIMEOUT`
    /// (durations such as `30s`, `5m`, `500ms`, or whole seconds) and `<prefix>MAX_ATTEMPTS`
    /// through `lookup`; unset variables keep their defaults.
    ///
    /// # Errors
    /// A usage error naming the malformed variable and its accepted values.
    pub fn from_lookup(prefix: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let defaults = Self::default();
        let duration = |name: &str, default: Duration| -> Result<Duration> {
            let name = format!("{prefix}{name}");
            let Some(text) = lookup(&name) else { return Ok(default) };
            let text = text.trim();
            let parsed = match text.parse::<u64>() {
                Ok(seconds) => Ok(Duration::from_secs(seconds)),
                Err(_) => humantime::parse_duration(text),
            };
            match parsed {
                Ok(value) if !value.is_zero() => Ok(value),
                _ => Err(Error::usage(format!("{name}={text:?} is invalid: give a duration above zero such as 30s, 5m or 500ms"))),
            }
        };
        let connect = duration("CONNECT_TIMEOUT", defaults.connect)?;
        let attempt = duration("ATTEMPT_TIMEOUT", defaults.attempt)?;
        let operation = duration("OPERATION_TIMEOUT", defaults.operation.max(attempt))?;
        if operation < attempt {
            return Err(Error::usage(format!(
                "{prefix}OPERATION_TIMEOUT ({}) is shorter than {prefix}ATTEMPT_TIMEOUT ({}): it bounds a request with all its retries, so give at least the attempt timeout",
                humantime::format_duration(operation),
                humantime::format_duration(attempt)
            )));
        }
        let attempts_name = format!("{prefix}MAX_ATTEMPTS");
        let max_attempts = match lookup(&attempts_name) {
            None => defaults.max_attempts,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=20).contains(&n) => n,
                _ => return Err(Error::usage(format!("{attempts_name}={text:?} is invalid: give 1 to 20 attempts (1: no retry)"))),
            },
        };
        Ok(Self { connect, attempt, operation, max_attempts })
    }

    /// The `object_store` crate's client options: the connection and attempt timeouts.
    pub fn client_options(&self) -> object_store::ClientOptions {
        object_store::ClientOptions::new().with_connect_timeout(self.connect).with_timeout(self.attempt)
    }

    /// The `object_store` crate's retries: `max_attempts - 1` retries within `operation`,
    /// with the backoff of [`Self::FIRST_BACKOFF`] doubling up to [`Self::MAX_BACKOFF`].
    pub fn retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig { init_backoff: Self::FIRST_BACKOFF, max_backoff: Self::MAX_BACKOFF, base: 2.0 },
            max_retries: self.max_attempts.saturating_sub(1) as usize,
            retry_timeout: self.operation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(pairs: &[(&str, &str)]) -> Result<RequestTuning> {
        let map: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RequestTuning::from_lookup(CLOUD_PREFIX, |name| map.get(name).cloned())
    }

    #[test]
    fn the_cloud_variables_have_defaults_and_overrides() {
        assert_eq!(tuning(&[]).unwrap(), RequestTuning::default());
        let set = tuning(&[("STORE_ATTEMPT_TIMEOUT", "3s"), ("STORE_MAX_ATTEMPTS", "2"), ("STORE_CONNECT_TIMEOUT", "500ms")]).unwrap();
        assert_eq!((set.connect, set.attempt, set.max_attempts), (Duration::from_millis(500), Duration::from_secs(3), 2));
        assert_eq!(set.retry_config().max_retries, 1);
        // The S3 names do not tune the other stores.
        assert_eq!(tuning(&[("S3_MAX_ATTEMPTS", "2")]).unwrap(), RequestTuning::default());
    }

    #[test]
    fn malformed_cloud_variables_are_usage_errors_naming_the_variable() {
        for (name, value) in [("STORE_ATTEMPT_TIMEOUT", "soon"), ("STORE_CONNECT_TIMEOUT", "0"), ("STORE_MAX_ATTEMPTS", "21")] {
            let error = tuning(&[(name, value)]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{name}={value}");
            assert!(error.to_string().contains(name), "{error}");
        }
        let error = tuning(&[("STORE_ATTEMPT_TIMEOUT", "10m"), ("STORE_OPERATION_TIMEOUT", "1m")]).unwrap_err();
        assert!(error.to_string().contains("shorter than STORE_ATTEMPT_TIMEOUT"), "{error}");
    }
}
