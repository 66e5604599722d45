//! The live server: connecting, discovering what to dump, reading collections as raw
//! BSON and capturing the oplog window of a backup. (What oplog entries and timestamps
//! mean, apart from any server, is [`crate::oplog`].)

pub mod discovery;
pub mod id_ranges;
pub mod oplog;

use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::error::{Error, Result};
use crate::redact::redact_uri;
use crate::retry::RetryPolicy;

pub use discovery::{discover, list_index_specs, CollectionInfo};
pub use oplog::OplogWindow;

/// A connected server and what it said about itself.
pub struct Source {
    /// The driver client.
    pub client: Client,
    /// `host:port` of every seed in the URI (no credentials).
    pub hosts: Vec<String>,
    /// The replica set name, when the server is a replica-set member.
    pub replica_set: Option<String>,
    /// The server's version from `buildInfo`, when it reports one.
    pub server_version: Option<String>,
}

/// Parses `uri` and connects (lazily: the first operation reaches the server).
///
/// # Errors
/// A usage error naming the URI (password redacted) when it is malformed; a MongoDB
/// error when the server cannot be reached.
pub async fn connect(uri: &str) -> Result<Source> {
    connect_retrying(uri, &RetryPolicy::none()).await
}

/// [`connect`], trying the first exchange (`hello`) again per `retry` while the
/// server is unreachable or failing over.
///
/// # Errors
/// As [`connect`]; [`Error::GaveUp`] when the server stayed unreachable.
pub async fn connect_retrying(uri: &str, retry: &RetryPolicy) -> Result<Source> {
    let mut options = ClientOptions::parse(uri).await.map_err(|e| {
        Error::usage(format!(
            "the MongoDB URI {} is not valid: {}; give --uri or MONGO_URI as mongodb://[user:password@]host[:port][/?options]",
            redact_uri(uri),
            describe_without_uri(&e, uri)
        ))
    })?;
    apply_defaults(&mut options);
    let hosts = options.hosts.iter().map(ToString::to_string).collect();
    let client = Client::with_options(options).map_err(Error::mongo("creating the client"))?;
    let reach = format!("cannot reach the server at {}; check the host, port and credentials", redact_uri(uri));
    let hello = retry
        .run("connecting", |_| async { client.database("admin").run_command(bson::doc! { "hello": 1 }).await.map_err(Error::mongo(reach.clone())) })
        .await?;
    let replica_set = hello.get_str("setName").ok().map(str::to_string);
    let server_version = match client.database("admin").run_command(bson::doc! { "buildInfo": 1 }).await {
        Ok(info) => info.get_str("version").ok().map(str::to_string),
        Err(_) => None,
    };
    Ok(Source { client, hosts, replica_set, server_version })
}

/// The connect timeout when the URI gives none: the Go driver's (and so mongodump's)
/// default. It also bounds each heartbeat, and a heartbeat that times out makes the
/// driver interrupt every read in flight; the Rust driver's 10 s default let one slow
/// answer from a busy server abort a 300 MiB backup.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Settings the URI leaves open: the application name and the connect timeout.
fn apply_defaults(options: &mut ClientOptions) {
    options.app_name.get_or_insert_with(|| "ingest-backup".to_string());
    options.connect_timeout.get_or_insert(DEFAULT_CONNECT_TIMEOUT);
}

/// The driver's parse error text, with the URI removed should it quote it.
fn describe_without_uri(error: &mongodb::error::Error, uri: &str) -> String {
    error.to_string().replace(uri, &redact_uri(uri))
}

/// Recomputes the digests of a live collection by scanning it (in whatever order the
/// server returns documents; the content hash does not depend on it).
///
/// # Errors
/// A MongoDB error naming the namespace.
pub async fn live_digest(client: &Client, database: &str, collection: &str) -> Result<crate::digest::DigestSummary> {
    let context = || format!("reading {database}.{collection}");
    let mut cursor =
        client.database(database).collection::<bson::RawDocumentBuf>(collection).find(bson::doc! {}).await.map_err(Error::mongo(context()))?;
    let mut digest = crate::digest::NamespaceDigest::default();
    while cursor.advance().await.map_err(Error::mongo(context()))? {
        digest.add_document(cursor.current().as_bytes());
    }
    Ok(digest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn defaults_for(uri: &str) -> ClientOptions {
        let mut options = ClientOptions::parse(uri).await.unwrap();
        apply_defaults(&mut options);
        options
    }

    #[tokio::test]
    async fn the_connect_timeout_defaults_to_mongodumps_and_the_uri_wins() {
        let defaulted = defaults_for("mongodb://127.0.0.1:1/").await;
        assert_eq!(defaulted.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(defaulted.app_name.as_deref(), Some("ingest-backup"));
        let given = defaults_for("mongodb://127.0.0.1:1/?connectTimeoutMS=2500&appName=ops").await;
        assert_eq!(given.connect_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(given.app_name.as_deref(), Some("ops"));
    }
}
