//! Getting one JSON body to one URL: bounded retries with exponential backoff, a timeout
//! per request and a deadline for the whole delivery. HTTP client errors embed the URL,
//! so they are reduced here to a [`DeliveryFailure`] kind and never formatted.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests at most (the first included).
    pub attempts: u32,
    /// The wait after the first failed request; it doubles after each further one.
    pub first_backoff: Duration,
    /// The longest one request may take.
    pub request_timeout: Duration,
    /// The longest the whole delivery may take, waits included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waits of 0.5, 1 and 2 s, 10 s per request, 30 s in all.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.first_backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }
}

/// Why an event was not delivered. Never contains the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// The server answered with this non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// No connection could be made (refused, DNS, TLS).
    #[error("cannot connect")]
    Connect,
    /// A request took longer than the per-request timeout.
    #[error("request timed out")]
    Timeout,
    /// The delivery's overall deadline passed.
    #[error("deadline passed")]
    Deadline,
    /// The HTTP client could not be built (no TLS roots, ...).
    #[error("HTTP client unavailable")]
    Client,
    /// The request failed in another way (the connection dropped mid-request).
    #[error("request failed")]
    Request,
}

impl DeliveryFailure {
    /// Whether another attempt can help: connection problems, timeouts, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryFailure::Status(status) => *status == 429 || (500..600).contains(status),
            DeliveryFailure::Connect | DeliveryFailure::Timeout | DeliveryFailure::Request => true,
            DeliveryFailure::Deadline | DeliveryFailure::Client => false,
        }
    }

    fn from_reqwest(error: &reqwest::Error) -> DeliveryFailure {
        if error.is_timeout() {
            DeliveryFailure::Timeout
        } else if error.is_connect() {
            DeliveryFailure::Connect
        } else {
            DeliveryFailure::Request
        }
    }
}

/// The HTTP client alerts are sent with.
pub(super) fn client(policy: &RetryPolicy) -> Result<reqwest::Client, DeliveryFailure> {
    reqwest::Client::builder()
        .user_agent(concat!("ingest-backup/", env!("CARGO_PKG_VERSION")))
        .timeout(policy.request_timeout)
        .connect_timeout(policy.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| DeliveryFailure::Client)
}

/// POSTs `body` to `url`; returns the attempts made and the accepting status or the last failure.
pub(super) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    policy: &RetryPolicy,
) -> (u32, Result<u16, DeliveryFailure>) {
    retry(policy, || async move {
        match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err(DeliveryFailure::Status(response.status().as_u16())),
            Err(error) => Err(DeliveryFailure::from_reqwest(&error)),
        }
    })
    .await
}

/// GETs `url` (a heartbeat); returns the attempts made and the accepting status or the last failure.
pub(super) async fn get(client: &reqwest::Client, url: &str, policy: &RetryPolicy) -> (u32, Result<u16, DeliveryFailure>) {
    retry(policy, || async move {
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err(DeliveryFailure::Status(response.status().as_u16())),
            Err(error) => Err(DeliveryFailure::from_reqwest(&error)),
        }
    })
    .await
}

/// Runs `attempt` until it succeeds, fails for good, runs out of attempts or passes the
/// deadline; each attempt is cut off at the per-request timeout.
pub(super) async fn retry<F, Fut>(policy: &RetryPolicy, mut attempt: F) -> (u32, Result<u16, DeliveryFailure>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u16, DeliveryFailure>>,
{
    let deadline = Instant::now() + policy.deadline;
    let mut made = 0;
    loop {
        made += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limit = policy.request_timeout.min(remaining);
        let result = match tokio::time::timeout(limit, attempt()).await {
            Ok(result) => result,
            Err(_) if limit < policy.request_timeout => Err(DeliveryFailure::Deadline),
            Err(_) => Err(DeliveryFailure::Timeout),
        };
        let failure = match result {
            Ok(status) => return (made, Ok(status)),
            Err(failure) => failure,
        };
        let wait = policy.backoff(made);
        if !failure.is_retryable() || made >= policy.attempts || Instant::now() + wait >= deadline {
            return (made, Err(failure));
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy { attempts, first_backoff: Duration::from_millis(1), request_timeout: Duration::from_secs(5), deadline: Duration::from_secs(20) }
    }

    /// Runs `retry` against a scripted sequence of results; returns (attempts, result).
    async fn scripted(policy: &RetryPolicy, script: &[Result<u16, DeliveryFailure>]) -> (u32, Result<u16, DeliveryFailure>) {
        let calls = AtomicU32::new(0);
        retry(policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let result = script[n.min(script.len() - 1)].clone();
            async move { result }
        })
        .await
    }

    #[test]
    fn backoff_doubles_from_half_a_second() {
        let policy = RetryPolicy::default();
        let waits: Vec<_> = (1..=3).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000]);
        let worst = waits.iter().sum::<u128>() + u128::from(policy.attempts) * policy.request_timeout.as_millis();
        assert!(policy.deadline.as_millis() < worst, "the deadline, not the attempts, bounds the worst case");
        assert!(policy.deadline <= Duration::from_secs(30));
    }

    #[test]
    fn which_failures_are_retried() {
        for retried in [
            DeliveryFailure::Status(500),
            DeliveryFailure::Status(503),
            DeliveryFailure::Status(429),
            DeliveryFailure::Connect,
            DeliveryFailure::Timeout,
        ] {
            assert!(retried.is_retryable(), "{retried:?}");
        }
        for final_ in [DeliveryFailure::Status(400), DeliveryFailure::Status(403), DeliveryFailure::Status(404), DeliveryFailure::Deadline] {
            assert!(!final_.is_retryable(), "{final_:?}");
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_accepted() {
        let script = [Err(DeliveryFailure::Status(500)), Err(DeliveryFailure::Connect), Ok(200)];
        assert_eq!(scripted(&quick(4), &script).await, (3, Ok(200)));
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried() {
        let script = [Err(DeliveryFailure::Status(404)), Ok(200)];
        assert_eq!(scripted(&quick(4), &script).await, (1, Err(DeliveryFailure::Status(404))));
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let script = [Err(DeliveryFailure::Status(503))];
        assert_eq!(scripted(&quick(4), &script).await, (4, Err(DeliveryFailure::Status(503))));
    }

    #[tokio::test]
    async fn a_hanging_request_is_cut_off_by_the_deadline() {
        let policy = RetryPolicy { deadline: Duration::from_millis(50), ..quick(4) };
        let (attempts, result) = retry(&policy, futures::future::pending).await;
        assert_eq!((attempts, result), (1, Err(DeliveryFailure::Deadline)));
    }

    #[tokio::test]
    async fn a_hanging_request_times_out_and_is_retried() {
        let policy = RetryPolicy { request_timeout: Duration::from_millis(20), ..quick(2) };
        let (attempts, result) = retry(&policy, futures::future::pending).await;
        assert_eq!((attempts, result), (2, Err(DeliveryFailure::Timeout)));
    }
}
