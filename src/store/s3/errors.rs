//! Turns S3 SDK errors into messages that name the cause and the fix. The messages
//! carry error codes and object names only: never a key, token or signature.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::store::error::{connection_lost, StoreError, StoreErrorKind};

/// Describes a failed S3 request on `url` while `doing` something; `assumes_role`
/// (the settings name a role, `AWS_ROLE_ARN`) words a credential failure as the role's.
pub fn describe<E>(error: &SdkError<E, HttpResponse>, url: &str, doing: &str, assumes_role: bool) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        // Neither I/O nor a timeout: the request was never signed, because the
        // credentials (or the role assumption) failed.
        // A connection the server (or a proxy) closed mid-request is reported by the
        // HTTP client as neither: it is the network all the same.
        SdkError::DispatchFailure(failure) if !failure.is_io() && !failure.is_timeout() && !connection_lost(&deepest_cause(error)) => {
            credential_problem(error, url, doing, assumes_role)
        }
        // A cut connection reported as a failure to build the request (the credential
        // provider's own request cut, say): still the network, not the credentials.
        SdkError::ConstructionFailure(_) if connection_lost(&deepest_cause(error)) => {
            endpoint_unreachable(error, url, doing, "the connection was cut")
        }
        SdkError::DispatchFailure(failure) => {
            let cause = if failure.is_timeout() {
                "the connection timed out"
            } else if failure.is_io() {
                "the connection failed"
            } else {
                "the request could not be sent"
            };
            endpoint_unreachable(error, url, doing, cause)
        }
        SdkError::TimeoutError(_) => StoreError::new(StoreErrorKind::Retryable, format!("{doing} {url}: the S3 request timed out; retry later")),
        SdkError::ConstructionFailure(_) => credential_problem(error, url, doing, assumes_role),
        _ => {
            let code = error.code().unwrap_or("");
            let status = error.raw_response().map(|response| response.status().as_u16());
            from_code(code, status, url, doing).unwrap_or_else(|| {
                StoreError::new(
                    if matches!(status, Some(500..=599)) { StoreErrorKind::Retryable } else { StoreErrorKind::Other },
                    format!(
                        "{doing} {url} failed: {} {}",
                        if code.is_empty() { "error" } else { code },
                        error.message().unwrap_or("(no message from the server)")
                    ),
                )
            })
        }
    }
}

/// The message of the innermost cause of `error`.
fn deepest_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        deepest = cause.to_string();
        source = cause.source();
    }
    deepest
}

fn credential_problem<E>(error: &SdkError<E, HttpResponse>, url: &str, doing: &str, assumes_role: bool) -> StoreError
where
    E: std::error::Error + 'static,
{
    let chain = deepest_cause(error);
    let assume_role = chain.contains("AssumeRole") || chain.contains("assume") || assumes_role;
    let message = if assume_role {
        format!(
            "{doing} {url}: the role in AWS_ROLE_ARN could not be assumed ({}); check the ARN, that the base credentials may call sts:AssumeRole on it, and the role's trust policy",
            first_line(&chain)
        )
    } else {
        format!(
            "{doing} {url}: no usable AWS credentials ({}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or web identity",
            first_line(&chain)
        )
    };
    StoreError::new(StoreErrorKind::Denied, message)
}

/// The S3 endpoint could not be reached (`cause`, then the error's innermost message).
fn endpoint_unreachable<E>(error: &SdkError<E, HttpResponse>, url: &str, doing: &str, cause: &str) -> StoreError
where
    E: std::error::Error + 'static,
{
    StoreError::new(
        StoreErrorKind::Retryable,
        format!(
            "{doing} {url}: cannot reach the S3 endpoint ({cause}: {}); check S3_ENDPOINT, AWS_REGION and the network",
            first_line(&deepest_cause(error))
        ),
    )
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(200).collect()
}

fn from_code(code: &str, status: Option<u16>, url: &str, doing: &str) -> Option<StoreError> {
    let error = |kind: StoreErrorKind, message: String| Some(StoreError::new(kind, message));
    match (code, status) {
        ("NoSuchBucket", _) => {
            error(StoreErrorKind::Misconfigured, format!("{doing} {url}: the bucket does not exist; create it or fix --store / S3_BUCKET"))
        }
        // HeadObject answers a missing key with a bare 404 (no body), which the SDK calls NotFound.
        ("NoSuchKey", _) | ("NotFound", _) | ("NoSuchUpload", _) | ("", Some(404)) => error(StoreErrorKind::NotFound, format!("{doing} {url}: no such object")),
        // versitygw answers an unknown access key with XAdminUserNotFound.
        ("InvalidAccessKeyId", _) | ("XAdminUserNotFound", _) | ("SignatureDoesNotMatch", _) | ("InvalidToken", _) | ("ExpiredToken", _) => error(
            StoreErrorKind::Denied,
            format!("{doing} {url}: the AWS credentials were rejected ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile / role)"),
        ),
        ("AccessDenied", _) | ("", Some(403)) | ("Forbidden", _) => error(
            StoreErrorKind::Denied,
            format!(
                "{doing} {url}: access denied; the credentials need s3:ListBucket, s3:GetObject, s3:PutObject, s3:AbortMultipartUpload and s3:ListBucketMultipartUploads on this bucket (README, IAM policy)"
            ),
        ),
        ("AuthorizationHeaderMalformed", _) | ("PermanentRedirect", _) | ("IllegalLocationConstraintException", _) | ("", Some(301)) => {
            error(StoreErrorKind::Misconfigured, format!("{doing} {url}: the bucket is in another region; set AWS_REGION to the bucket's region"))
        }
        ("PreconditionFailed", _) | ("", Some(412)) => Some(StoreError::already_exists(url, doing)),
        ("RequestTimeTooSkewed", _) => error(
            StoreErrorKind::Other,
            format!("{doing} {url}: this machine's clock differs too much from the server's; synchronise the clock (NTP)"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_connection_is_the_network_never_the_credentials() {
        let cut: SdkError<aws_sdk_s3::operation::get_object::GetObjectError, HttpResponse> =
            SdkError::construction_failure(std::io::Error::other("connection closed before message completed"));
        let described = describe(&cut, "s3://b/k", "reading", false);
        assert_eq!(described.kind(), StoreErrorKind::Retryable, "{described}");
        assert!(described.to_string().contains("cannot reach the S3 endpoint") && !described.to_string().contains("credentials"), "{described}");
        let unsigned: SdkError<aws_sdk_s3::operation::get_object::GetObjectError, HttpResponse> =
            SdkError::construction_failure(std::io::Error::other("no credentials in the chain"));
        assert_eq!(describe(&unsigned, "s3://b/k", "reading", false).kind(), StoreErrorKind::Denied);
    }
}
