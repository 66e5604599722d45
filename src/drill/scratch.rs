//! The scratch server of a drill: never the backup's source (refused when it shares
//! a host with it), empty of the backup's namespaces before the restore, and left as
//! it was found afterwards (every namespace the drill created dropped).

use std::collections::BTreeSet;

use mongodb::Client;

use crate::error::{Error, Result};
use crate::manifest::SourceInfo;
use crate::redact::redact_uri;
use crate::source::Source;

/// The `host:port`s the scratch server answers for: its seeds and, for a replica-set
/// member, every member `hello` names, lowercased.
///
/// # Errors
/// A MongoDB error asking `hello`.
pub async fn hosts_of(scratch: &Source) -> Result<BTreeSet<String>> {
    let hello =
        scratch.client.database("admin").run_command(bson::doc! { "hello": 1 }).await.map_err(Error::mongo("asking the scratch server hello"))?;
    let mut hosts: BTreeSet<String> = scratch.hosts.iter().map(|host| host.to_lowercase()).collect();
    for field in ["hosts", "passives", "arbiters"] {
        if let Ok(members) = hello.get_array(field) {
            hosts.extend(members.iter().filter_map(|member| member.as_str()).map(str::to_lowercase));
        }
    }
    if let Ok(me) = hello.get_str("me") {
        hosts.insert(me.to_lowercase());
    }
    Ok(hosts)
}

/// The addresses `host:port` resolves to, as `ip:port` (none when it does not resolve).
async fn addresses(host: &str) -> BTreeSet<String> {
    match tokio::net::lookup_host(host).await {
        Ok(found) => found.map(|address| address.to_string()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Refuses a scratch server that is the backup's source: one of its hosts (by name or
/// by resolved address) is one the backup was taken from.
///
/// # Errors
/// A usage error (exit 2) naming the shared host and the fix.
pub async fn refuse_source(source: &SourceInfo, scratch_hosts: &BTreeSet<String>, uri: &str) -> Result<()> {
    let mut scratch_addresses = BTreeSet::new();
    for host in scratch_hosts {
        scratch_addresses.extend(addresses(host).await);
    }
    for host in &source.hosts {
        let lowered = host.to_lowercase();
        let same_name = scratch_hosts.contains(&lowered);
        let same_address = addresses(&lowered).await.iter().any(|address| scratch_addresses.contains(address));
        if same_name || same_address {
            let set = source.replica_set.as_deref().map_or(String::new(), |set| format!(" (replica set {set})"));
            return Err(Error::usage(format!(
                "the drill's scratch server {} is the backup's source: {host}{set} served the backup; a drill restores into a server of its own \
                 and drops what it restored, so nothing was written. Give --uri (or DRILL_URI) a scratch server that is not the backed-up deployment",
                redact_uri(uri)
            )));
        }
    }
    Ok(())
}

/// Every `db.collection` on the server, `local` and `config` and internal collections
/// (`system.*`, except the buckets of time-series collections) aside.
///
/// # Errors
/// A MongoDB error listing databases or collections.
pub async fn namespaces(client: &Client) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for database in client.list_database_names().await.map_err(Error::mongo("listing the scratch server's databases"))? {
        if database == "local" || database == "config" {
            continue;
        }
        let names = client
            .database(&database)
            .list_collection_names()
            .await
            .map_err(Error::mongo(format!("listing the collections of {database} on the scratch server")))?;
        found.extend(
            names
                .into_iter()
                .filter(|name| !name.starts_with("system.") || name.starts_with(crate::source::discovery::TIMESERIES_BUCKETS_PREFIX))
                .map(|name| format!("{database}.{name}")),
        );
    }
    Ok(found)
}

/// Refuses a scratch server that already holds one of `wanted` (`db.collection`s the
/// drill would restore): the drill would mix its data with what is there, and drop it
/// afterwards.
///
/// # Errors
/// A usage error (exit 2) naming the namespaces and the fix.
pub fn refuse_occupied(present: &BTreeSet<String>, wanted: &[String], uri: &str) -> Result<()> {
    let occupied: Vec<&str> = wanted.iter().filter(|namespace| present.contains(*namespace)).map(String::as_str).collect();
    if occupied.is_empty() {
        return Ok(());
    }
    let shown = occupied.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    let more = if occupied.len() > 5 { format!(" and {} more", occupied.len() - 5) } else { String::new() };
    Err(Error::usage(format!(
        "the drill's scratch server {} already holds {shown}{more}, which the backup would restore, so nothing was written: a drill needs a scratch \
         server without the backup's namespaces (it drops what it restored). Drop them there (an earlier `drill --keep` leaves them), \
         or give --uri (or DRILL_URI) another scratch server",
        redact_uri(uri)
    )))
}

/// What a server holds: its databases and namespaces (see [`namespaces`]).
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Database names (`local` and `config` aside).
    pub databases: BTreeSet<String>,
    /// `db.collection`s.
    pub namespaces: BTreeSet<String>,
}

impl Contents {
    /// Reads what `client`'s server holds now.
    ///
    /// # Errors
    /// A MongoDB error listing databases or collections.
    pub async fn of(client: &Client) -> Result<Contents> {
        let namespaces = namespaces(client).await?;
        let databases = client
            .list_database_names()
            .await
            .map_err(Error::mongo("listing the scratch server's databases"))?
            .into_iter()
            .filter(|database| database != "local" && database != "config")
            .collect();
        Ok(Contents { databases, namespaces })
    }
}

/// Drops what is on the server now and was not `before`: a database that is new is
/// dropped whole; in a database that was there, each new namespace (views and
/// time-series collections first, then what remains). Returns the namespaces dropped.
/// A namespace already gone is not an error.
///
/// # Errors
/// A MongoDB error listing or dropping.
pub async fn drop_created(client: &Client, before: &Contents) -> Result<Vec<String>> {
    let now = Contents::of(client).await?;
    let created: Vec<&String> = now.namespaces.difference(&before.namespaces).collect();
    let (internal, visible): (Vec<&String>, Vec<&String>) = created.iter().partition(|namespace| namespace.contains(".system."));
    let mut dropped = Vec::new();
    for namespace in visible.into_iter().chain(internal) {
        let Some((database, collection)) = namespace.split_once('.') else { continue };
        if !before.databases.contains(database) {
            dropped.push(namespace.clone());
            continue;
        }
        match client.database(database).collection::<bson::Document>(collection).drop().await {
            Ok(()) => dropped.push(namespace.clone()),
            Err(error) if crate::server_codes::server_code(&error) == Some(crate::server_codes::NAMESPACE_NOT_FOUND) => {}
            Err(error) => return Err(Error::mongo(format!("dropping {namespace} from the scratch server"))(error)),
        }
    }
    for database in now.databases.difference(&before.databases) {
        client.database(database).drop().await.map_err(Error::mongo(format!("dropping database {database} from the scratch server")))?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scratch_server_sharing_a_host_or_an_address_with_the_source_is_refused() {
        let source = SourceInfo { hosts: vec!["127.0.0.1:27017".into()], replica_set: Some("rs0".into()), server_version: None };
        let named = BTreeSet::from(["127.0.0.1:27017".to_string()]);
        let error = refuse_source(&source, &named, "mongodb://u:secret@127.0.0.1:27017/").await.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("is the backup's source") && !error.to_string().contains("secret"), "{error}");
        let alias = BTreeSet::from(["localhost:27017".to_string()]);
        assert!(refuse_source(&source, &alias, "mongodb://localhost:27017/").await.is_err(), "localhost resolves to the source's address");
        let other = BTreeSet::from(["127.0.0.1:27018".to_string()]);
        refuse_source(&source, &other, "mongodb://127.0.0.1:27018/").await.unwrap();
    }

    #[test]
    fn namespaces_already_on_the_scratch_server_are_refused_by_name() {
        let present = BTreeSet::from(["shop.orders".to_string(), "other.things".to_string()]);
        refuse_occupied(&present, &["shop.items".to_string()], "mongodb://h/").unwrap();
        let error = refuse_occupied(&present, &["shop.orders".to_string()], "mongodb://h/").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("already holds shop.orders"), "{error}");
    }
}
