//! S3 client settings from the environment, as the original ingest backup scripts and the AWS tools name them:
//! the standard credential chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`,
//! profiles, web identity / IRSA), `AWS_ROLE_ARN` to assume a role through STS first,
//! `AWS_REGION`, and `S3_ENDPOINT` for S3-compatible servers (path-style addressing);
//! and the client's timeouts and retries (`S3_CONNECT_TIMEOUT`, `S3_ATTEMPT_TIMEOUT`,
//! `S3_OPERATION_TIMEOUT`, `S3_MAX_ATTEMPTS`, `S3_RETRY_MODE`), set on purpose so that
//! a request the server never answers fails and is retried instead of hanging the run.

use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{self, error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;

use crate::error::{Error, Result};
use crate::store::tuning::RequestTuning;

/// How the S3 store connects and uploads.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `S3_ENDPOINT`: an S3-compatible server's URL (path-style addressing is used).
    pub endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `us-east-1` when an endpoint is set and no region is.
    pub region: Option<String>,
    /// `AWS_ROLE_ARN`: a role to assume before touching the bucket (unless web
    /// identity is configured, in which case the chain itself assumes it).
    pub role_arn: Option<String>,
    /// `AWS_ROLE_SESSION_NAME`, default `ingest-backup`.
    pub role_session_name: String,
    /// `AWS_ROLE_DURATION_SECONDS`, default 3600; credentials are refreshed before expiry.
    pub role_duration: Duration,
    /// `S3_SSE`: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub sse: Option<ServerSideEncryption>,
    /// `S3_SSE_KMS_KEY_ID`: the KMS key for SSE-KMS.
    pub sse_kms_key_id: Option<String>,
    /// `S3_STORAGE_CLASS`, for example `STANDARD_IA`.
    pub storage_class: Option<StorageClass>,
    /// Bytes per multipart part (at least 5 MiB).
    pub part_size: usize,
    /// The Object Lock put on every object written but the run locks (`backup --lock-mode`).
    pub write_lock: Option<crate::store::WriteLock>,
    /// `--s3-checksum` / `S3_CHECKSUM`: checksums on every request that supports one (the
    /// AWS SDK's default), or only where the API requires one.
    pub checksum: ChecksumPolicy,
    /// `S3_FORCE_PATH_STYLE`: `bucket` in the path rather than the host name; by default
    /// whenever `S3_ENDPOINT` is set.
    pub force_path_style: Option<bool>,
    /// Parts uploaded at once; memory is about `part_size x (parts_in_flight + 2)`.
    pub parts_in_flight: usize,
}

/// When the SDK adds CRC checksums to requests (and checks them on responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumPolicy {
    /// On every request that supports one (the AWS SDK's default since 2025).
    #[default]
    WhenSupported,
    /// Only where the API requires one: for S3-compatible servers that reject the
    /// SDK's default checksums. Object Lock writes still carry a CRC32 (S3 requires one).
    WhenRequired,
}

impl ChecksumPolicy {
    /// Parses `when_supported` or `when_required`.
    ///
    /// # Errors
    /// A usage error naming the two values.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "when_supported" | "" => Ok(ChecksumPolicy::WhenSupported),
            "when_required" => Ok(ChecksumPolicy::WhenRequired),
            other => Err(Error::usage(format!(
                "--s3-checksum / S3_CHECKSUM {other:?} is invalid: use when_supported (the default) or when_required (for S3-compatible servers that reject the SDK's checksums)"
            ))),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl S3Settings {
    /// Reads the environment; `part_size_mb` and `parts_in_flight` come from flags.
    ///
    /// # Errors
    /// A usage error naming the malformed variable and its accepted values.
    pub fn from_env(part_size_mb: usize, parts_in_flight: usize) -> Result<Self> {
        if !(5..=5120).contains(&part_size_mb) {
            return Err(Error::usage(format!("--part-size-mb {part_size_mb} is out of range: S3 parts are 5 to 5120 MiB")));
        }
        if !(1..=64).contains(&parts_in_flight) {
            return Err(Error::usage(format!("--parts-in-flight {parts_in_flight} is out of range: use 1 to 64")));
        }
        let role_arn = env("AWS_ROLE_ARN");
        if let Some(arn) = &role_arn {
            validate_role_arn(arn)?;
        }
        let role_duration = match env("AWS_ROLE_DURATION_SECONDS") {
            None => Duration::from_secs(3600),
            Some(text) => match text.parse::<u64>() {
                Ok(seconds) if (900..=43_200).contains(&seconds) => Duration::from_secs(seconds),
                _ => return Err(Error::usage(format!("AWS_ROLE_DURATION_SECONDS={text:?} is invalid: give 900 to 43200 seconds"))),
            },
        };
        let sse = match env("S3_SSE").as_deref() {
            None => None,
            Some("AES256") => Some(ServerSideEncryption::Aes256),
            Some("aws:kms") => Some(ServerSideEncryption::AwsKms),
            Some(other) => return Err(Error::usage(format!("S3_SSE={other:?} is invalid: use AES256 (SSE-S3) or aws:kms (SSE-KMS)"))),
        };
        let sse_kms_key_id = env("S3_SSE_KMS_KEY_ID");
        if sse_kms_key_id.is_some() && sse != Some(ServerSideEncryption::AwsKms) {
            return Err(Error::usage("S3_SSE_KMS_KEY_ID is set but S3_SSE is not aws:kms; set S3_SSE=aws:kms to use the key"));
        }
        let storage_class = match env("S3_STORAGE_CLASS") {
            None => None,
            Some(text) if StorageClass::values().contains(&text.as_str()) => Some(StorageClass::from(text.as_str())),
            Some(text) => {
                return Err(Error::usage(format!(
                    "S3_STORAGE_CLASS={text:?} is not an S3 storage class: use one of {}",
                    StorageClass::values().join(", ")
                )))
            }
        };
        ClientTuning::from_env()?;
        let endpoint = env("S3_ENDPOINT");
        if let Some(endpoint) = &endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(Error::usage(format!("S3_ENDPOINT={endpoint:?} is invalid: give a URL such as http://minio:9000")));
            }
        }
        Ok(Self {
            endpoint,
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            role_arn,
            role_session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "ingest-backup".into()),
            role_duration,
            sse,
            sse_kms_key_id,
            storage_class,
            part_size: part_size_mb << 20,
            parts_in_flight,
            write_lock: None,
            checksum: ChecksumPolicy::default(),
            force_path_style: match env("S3_FORCE_PATH_STYLE").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => None,
                Some("true" | "1" | "yes") => Some(true),
                Some("false" | "0" | "no") => Some(false),
                Some(other) => return Err(Error::usage(format!("S3_FORCE_PATH_STYLE={other:?} is invalid: use true or false"))),
            },
        })
    }

    /// Adds encryption and storage class to a PutObject request.
    pub fn apply_to_put(
        &self,
        request: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        request
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_storage_class(self.storage_class.clone())
    }
}

/// How long the S3 client waits and how often it tries: read from the environment
/// when the client is built (and checked by [`S3Settings::from_env`], so a malformed
/// value is a usage error before anything runs).
///
/// Every request is bounded: a connection attempt by `connect`, each attempt of a
/// request (sending the body and receiving the response's headers) by `attempt`, and
/// a request with all its retries by `operation`. A stalled request (a server or proxy
/// that takes the body and never answers) therefore ends after `attempt` and is
/// retried like a 503, up to `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTuning {
    /// `S3_CONNECT_TIMEOUT` (default 5 s): one TCP (and TLS) connection attempt.
    pub connect: Duration,
    /// `S3_ATTEMPT_TIMEOUT` (default 300 s): one attempt of a request, a whole part's
    /// upload included; raise it with large `--part-size-mb` on a slow link.
    pub attempt: Duration,
    /// `S3_OPERATION_TIMEOUT` (default 30 min): a request with all its retries; at
    /// least `attempt`.
    pub operation: Duration,
    /// `S3_MAX_ATTEMPTS` (default 5, 1 to 20): attempts per request, the first included.
    pub max_attempts: u32,
    /// `S3_RETRY_MODE`: `standard` (default; exponential backoff with jitter from 200 ms)
    /// or `adaptive` (standard plus client-side rate limiting after throttling errors).
    pub mode: RetryMode,
}

impl Default for ClientTuning {
    fn default() -> Self {
        let RequestTuning { connect, attempt, operation, max_attempts } = RequestTuning::default();
        Self { connect, attempt, operation, max_attempts, mode: RetryMode::Standard }
    }
}

impl ClientTuning {
    /// Reads `S3_CONNECT_TIMEOUT`, `S3_ATTEMPT_TIMEOUT`, `S3_OPERATION_TIMEOUT`
    /// (durations such as `30s`, `5m`, `500ms`, or whole seconds), `S3_MAX_ATTEMPTS` and
    /// `S3_RETRY_MODE`; unset variables keep their defaults.
    ///
    /// # Errors
    /// A usage error naming the malformed variable and its accepted values.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env)
    }

    /// [`ClientTuning::from_env`] over any lookup of variable names (pure, for tests).
    ///
    /// # Errors
    /// As [`ClientTuning::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let RequestTuning { connect, attempt, operation, max_attempts } = RequestTuning::from_lookup("S3_", &lookup)?;
        let mode = match lookup("S3_RETRY_MODE").map(|text| text.trim().to_ascii_lowercase()).as_deref() {
            None | Some("standard") => RetryMode::Standard,
            Some("adaptive") => RetryMode::Adaptive,
            Some(other) => return Err(Error::usage(format!("S3_RETRY_MODE={other:?} is invalid: use standard (the default) or adaptive"))),
        };
        Ok(Self { connect, attempt, operation, max_attempts, mode })
    }

    fn retry_config(&self) -> RetryConfig {
        let config = match self.mode {
            RetryMode::Adaptive => RetryConfig::adaptive(),
            _ => RetryConfig::standard(),
        };
        config.with_max_attempts(self.max_attempts).with_initial_backoff(RequestTuning::FIRST_BACKOFF)
    }

    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder().connect_timeout(self.connect).operation_attempt_timeout(self.attempt).operation_timeout(self.operation).build()
    }
}

/// Checks the shape `arn:<partition>:iam::<12-digit account>:role/<name>`.
fn validate_role_arn(arn: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
    if valid {
        Ok(())
    } else {
        Err(Error::usage(format!("AWS_ROLE_ARN={arn:?} is not a role ARN: expected arn:aws:iam::<12-digit account id>:role/<name>")))
    }
}

/// Builds the S3 client for `settings`.
///
/// # Errors
/// A usage error for a malformed timeout or retry variable ([`ClientTuning::from_env`]).
pub async fn client(settings: &S3Settings) -> Result<Client> {
    let tuning = ClientTuning::from_env()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(tuning.retry_config()).timeout_config(tuning.timeout_config());
    if let Some(region) = settings.region.clone().or_else(|| settings.endpoint.as_ref().map(|_| "us-east-1".to_string())) {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let mut base = loader.load().await;
    let web_identity = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
    if let (Some(role_arn), false) = (&settings.role_arn, web_identity) {
        let provider = AssumeRole {
            sts: aws_sdk_sts::Client::new(&base),
            role_arn: role_arn.clone(),
            session_name: settings.role_session_name.clone(),
            duration: settings.role_duration,
        };
        base = base.into_builder().credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider)).build();
    }
    let mut config = aws_sdk_s3::config::Builder::from(&base).force_path_style(settings.force_path_style.unwrap_or(settings.endpoint.is_some()));
    if settings.checksum == ChecksumPolicy::WhenRequired {
        config = config
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    }
    let config = config.build();
    Ok(Client::from_conf(config))
}

/// Credentials from STS AssumeRole with the base chain's credentials. The SDK's
/// identity cache keeps them and calls this again before they expire, so long runs
/// keep working. (aws-config's own AssumeRoleProvider insists on parsing the returned
/// AssumedRoleUser ARN, which S3-compatible servers such as MinIO leave empty.)
#[derive(Debug)]
struct AssumeRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    duration: Duration,
}

impl AssumeRole {
    async fn assume(&self) -> provider::Result {
        let assumed = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .duration_seconds(i32::try_from(self.duration.as_secs()).unwrap_or(3600))
            .send()
            .await
            .map_err(|error| {
                use aws_sdk_sts::error::ProvideErrorMetadata;
                CredentialsError::provider_error(format!(
                    "AssumeRole of {} was refused: {} {}",
                    self.role_arn,
                    error.code().unwrap_or("error"),
                    error.message().unwrap_or("")
                ))
            })?;
        let credentials = assumed.credentials().ok_or_else(|| CredentialsError::unhandled("AssumeRole returned no credentials"))?;
        let expiry = std::time::SystemTime::try_from(*credentials.expiration()).ok();
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            expiry,
            "ingest-backup AssumeRole",
        ))
    }
}

impl ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(pairs: &[(&str, &str)]) -> Result<ClientTuning> {
        let map: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ClientTuning::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn timeouts_and_retries_have_defaults_and_overrides() {
        assert_eq!(tuning(&[]).unwrap(), ClientTuning::default());
        let set =
            tuning(&[("S3_ATTEMPT_TIMEOUT", "3s"), ("S3_OPERATION_TIMEOUT", "60"), ("S3_MAX_ATTEMPTS", "2"), ("S3_RETRY_MODE", "Adaptive")]).unwrap();
        assert_eq!(
            (set.attempt, set.operation, set.max_attempts, set.mode),
            (Duration::from_secs(3), Duration::from_secs(60), 2, RetryMode::Adaptive)
        );
        assert_eq!(tuning(&[("S3_CONNECT_TIMEOUT", "500ms")]).unwrap().connect, Duration::from_millis(500));
        // An attempt timeout above the default operation timeout raises the latter with it.
        assert_eq!(tuning(&[("S3_ATTEMPT_TIMEOUT", "1h")]).unwrap().operation, Duration::from_secs(3600));
    }

    #[test]
    fn malformed_timeouts_and_retries_are_usage_errors_naming_the_variable() {
        for (name, value) in [
            ("S3_ATTEMPT_TIMEOUT", "soon"),
            ("S3_CONNECT_TIMEOUT", "0"),
            ("S3_MAX_ATTEMPTS", "0"),
            ("S3_MAX_ATTEMPTS", "21"),
            ("S3_RETRY_MODE", "legacy"),
        ] {
            let error = tuning(&[(name, value)]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{name}={value}");
            assert!(error.to_string().contains(name), "{error}");
        }
        let error = tuning(&[("S3_ATTEMPT_TIMEOUT", "10m"), ("S3_OPERATION_TIMEOUT", "1m")]).unwrap_err();
        assert!(error.to_string().contains("shorter than S3_ATTEMPT_TIMEOUT"), "{error}");
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/ingest-backup").is_ok());
        assert!(validate_role_arn("arn:aws-us-gov:iam::123456789012:role/path/name").is_ok());
        for bad in ["ingest-role", "arn:aws:iam::1234:role/x", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:user/x"] {
            let error = validate_role_arn(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains("role/<name>"), "{error}");
        }
    }
}
