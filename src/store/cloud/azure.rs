//! Azure Blob Storage (`az://container/prefix`): the `object_store` crate's client with
//! the credentials Azure users expect. In order: `AZURE_STORAGE_CONNECTION_STRING`
//! (account, key or SAS, and the endpoint: how Azurite is reached), then
//! `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`, then
//! what the crate finds itself: workload identity (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`) or the managed identity of the machine.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use super::CloudStore;
use crate::error::{Error, Result};
use crate::store::tuning::RequestTuning;

/// The variables named in credential errors.
const HINT: &str =
    "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or workload identity";

/// Bytes per block of a multipart upload.
pub const PART_SIZE: usize = 8 << 20;

/// The fields of a connection string that matter here.
#[derive(Debug, Default, PartialEq)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    endpoint: Option<String>,
}

/// Parses `Key=Value;Key=Value` (values may hold `=`, as keys in base64 do).
fn parse_connection_string(text: &str) -> Result<ConnectionString> {
    let mut parsed = ConnectionString::default();
    for field in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((name, value)) = field.split_once('=') else {
            return Err(Error::usage(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected Name=Value pairs separated by ';' (copy it from the portal's Access keys page)",
            ));
        };
        let value = Some(value.to_string());
        match name.to_ascii_lowercase().as_str() {
            "accountname" => parsed.account = value,
            "accountkey" => parsed.key = value,
            "sharedaccesssignature" => parsed.sas = value,
            "blobendpoint" => parsed.endpoint = value,
            _ => {}
        }
    }
    if parsed.account.is_none() {
        // A SAS connection string (the portal's "Shared access signature" page) names
        // the account only in its endpoint.
        parsed.account = parsed.endpoint.as_deref().and_then(account_of_endpoint);
    }
    if parsed.account.is_none() {
        return Err(Error::usage(
            "AZURE_STORAGE_CONNECTION_STRING has no AccountName= and no BlobEndpoint= naming the account: copy the whole string from the portal's Access keys or Shared access signature page",
        ));
    }
    Ok(parsed)
}

/// The account an endpoint names: `https://<account>.blob.core.windows.net`, or the first
/// path segment of an emulator's `http://127.0.0.1:10000/<account>`.
fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let account = match url.host()? {
        url::Host::Domain(name) if name != "localhost" => name.split('.').next()?.to_string(),
        _ => url.path_segments()?.next()?.to_string(),
    };
    (!account.is_empty()).then_some(account)
}

/// A SAS token as query pairs (with or without its leading `?`).
fn sas_pairs(token: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(token.trim_start_matches('?').as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The credentials of an Azure store, from the environment (or given by a test).
#[derive(Clone, Default)]
pub struct AzureSettings {
    /// `AZURE_STORAGE_CONNECTION_STRING`.
    pub connection_string: Option<String>,
    /// `AZURE_STORAGE_ACCOUNT`.
    pub account: Option<String>,
    /// `AZURE_STORAGE_KEY`.
    pub key: Option<String>,
    /// `AZURE_STORAGE_SAS_TOKEN`.
    pub sas_token: Option<String>,
    /// The `STORE_*` timeouts and attempts.
    pub tuning: RequestTuning,
}

impl std::fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSettings").field("account", &self.account).finish_non_exhaustive()
    }
}

impl AzureSettings {
    /// The `AZURE_STORAGE_*` variables and the `STORE_*` timeouts and attempts.
    ///
    /// # Errors
    /// A usage error for a malformed `STORE_*` variable.
    pub fn from_env() -> Result<Self> {
        Ok(AzureSettings {
            connection_string: env("AZURE_STORAGE_CONNECTION_STRING"),
            account: env("AZURE_STORAGE_ACCOUNT"),
            key: env("AZURE_STORAGE_KEY"),
            sas_token: env("AZURE_STORAGE_SAS_TOKEN"),
            tuning: RequestTuning::cloud_from_env()?,
        })
    }
}

/// Opens `az://container/prefix` and checks that the container can be listed.
///
/// # Errors
/// A usage error when no account is configured or the connection string is malformed;
/// a store error when the container is missing or the credentials are refused.
pub async fn open(container: &str, prefix: &str, settings: &AzureSettings) -> Result<CloudStore> {
    // The client options first: `with_allow_http` below amends them.
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_client_options(settings.tuning.client_options())
        .with_retry(settings.tuning.retry_config());
    if let Some(text) = &settings.connection_string {
        let parsed = parse_connection_string(text)?;
        builder = builder.with_account(parsed.account.clone().unwrap_or_default());
        if let Some(key) = parsed.key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = parsed.sas {
            builder = builder.with_sas_authorization(sas_pairs(&sas));
        }
        if let Some(endpoint) = parsed.endpoint {
            builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
        }
    } else {
        if let Some(account) = &settings.account {
            builder = builder.with_account(account);
        }
        if let Some(key) = &settings.key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = &settings.sas_token {
            builder = builder.with_sas_authorization(sas_pairs(sas));
        }
    }
    let backend = builder.build().map_err(|e| {
        Error::usage(format!("az://{container}: cannot set up Azure Blob Storage ({}); set {HINT}", super::without_secrets(&e.to_string())))
    })?;
    let backend = Arc::new(backend);
    Ok(CloudStore::open(backend.clone(), super::Uploads::Parts(backend), "az", container, prefix, PART_SIZE, HINT).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_give_account_key_and_endpoint() {
        let parsed = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5PT0=;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )
        .unwrap();
        assert_eq!(parsed.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(parsed.key.as_deref(), Some("a2V5PT0="));
        assert_eq!(parsed.endpoint.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));
        for bad in ["AccountKey=abc", "garbage"] {
            let error = parse_connection_string(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(!error.to_string().contains("abc"), "{error}");
        }
        assert_eq!(account_of_endpoint("https://prodbackups.blob.core.windows.net/").as_deref(), Some("prodbackups"));
        assert_eq!(account_of_endpoint("http://127.0.0.1:10000/devstoreaccount1").as_deref(), Some("devstoreaccount1"));
        assert_eq!(account_of_endpoint("http://127.0.0.1:10000/"), None);
        assert_eq!(sas_pairs("?sv=2021&sig=x%2By"), [("sv".to_string(), "2021".to_string()), ("sig".to_string(), "x+y".to_string())]);
    }
}
