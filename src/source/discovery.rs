//! What a backup holds: every database but `local` and `config`, the collections and
//! views mongodump would keep, filtered by `--ns-include` / `--ns-exclude`, with their
//! `listCollections` options and UUIDs and their `listIndexes` specs.

use bson::{Bson, Document};
use futures::TryStreamExt;
use mongodb::Client;

use crate::dump::is_dumped_namespace;
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::manifest::NamespaceKind;

/// One collection or view as `listCollections` described it.
#[derive(Debug, Clone)]
pub struct CollectionInfo {
    /// Database name.
    pub database: String,
    /// Collection or view name.
    pub name: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: NamespaceKind,
    /// The `options` document, verbatim.
    pub options: Document,
    /// The collection UUID as lowercase hex, when the server reports one.
    pub uuid: Option<String>,
}

impl CollectionInfo {
    /// `database.name`.
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// Whether this is a view (metadata only, no documents).
    pub fn is_view(&self) -> bool {
        self.kind == NamespaceKind::View
    }

    /// Whether this is a time-series collection (its documents are the buckets of
    /// `system.buckets.<name>`).
    pub fn is_timeseries(&self) -> bool {
        self.kind == NamespaceKind::Timeseries
    }

    /// The collection whose documents are dumped: the collection itself, or for a
    /// time-series collection the `system.buckets.<name>` collection holding its
    /// buckets (what mongodump dumps from MongoDB 5.0 to 8.2).
    pub fn data_collection(&self) -> String {
        if self.is_timeseries() {
            format!("{TIMESERIES_BUCKETS_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The prefix of the collection that stores a time-series collection's buckets.
pub const TIMESERIES_BUCKETS_PREFIX: &str = "system.buckets.";

/// Lists every namespace to back up, sorted by database then name.
///
/// # Errors
/// A MongoDB error when listing fails; a consistency error for a time-series
/// collection stored the MongoDB 8.3 way, which this version cannot back up faithfully.
pub async fn discover(client: &Client, filter: &NamespaceFilter) -> Result<Vec<CollectionInfo>> {
    let mut found = Vec::new();
    let mut databases = client.list_database_names().await.map_err(Error::mongo("listing databases"))?;
    databases.sort();
    for database in databases {
        if database == "local" || database == "config" {
            continue;
        }
        let cursor =
            client.database(&database).list_collections().await.map_err(Error::mongo(format!("listing collections of database {database}")))?;
        let specs: Vec<Document> =
            cursor.with_type::<Document>().try_collect().await.map_err(Error::mongo(format!("listing collections of database {database}")))?;
        let names: Vec<&str> = specs.iter().filter_map(|spec| spec.get_str("name").ok()).collect();
        for spec in &specs {
            let info = collection_info(&database, spec)?;
            if !is_dumped_namespace(&info.database, &info.name) || !filter.keeps(&info.database, &info.name) {
                continue;
            }
            if info.is_timeseries() && !names.contains(&info.data_collection().as_str()) {
                // MongoDB 8.3 and later keep a time-series collection's buckets under its
                // own name, readable only with the rawData option.
                return Err(Error::Inconsistent(format!(
                    "{} is a time-series collection without a {} collection (MongoDB 8.3 or later), which this version cannot back up \
                     without losing its buckets; exclude it with --ns-exclude {} and back it up with mongodump",
                    info.namespace(),
                    info.data_collection(),
                    info.namespace()
                )));
            }
            found.push(info);
        }
    }
    found.sort_by(|a, b| (&a.database, &a.name).cmp(&(&b.database, &b.name)));
    Ok(found)
}

fn collection_info(database: &str, spec: &Document) -> Result<CollectionInfo> {
    let name =
        spec.get_str("name").map_err(|_| Error::Inconsistent(format!("listCollections on {database} returned an entry without a name: {spec}")))?;
    let uuid = match spec.get_document("info").ok().and_then(|info| info.get("uuid")) {
        Some(Bson::Binary(binary)) => Some(hex::encode(&binary.bytes)),
        _ => None,
    };
    Ok(CollectionInfo {
        database: database.to_string(),
        name: name.to_string(),
        kind: spec.get_str("type").unwrap_or("collection").into(),
        options: spec.get_document("options").cloned().unwrap_or_default(),
        uuid,
    })
}

/// The index specs of a collection, exactly as `listIndexes` returns them.
///
/// # Errors
/// A MongoDB error naming the namespace.
pub async fn list_index_specs(client: &Client, info: &CollectionInfo) -> Result<Vec<Document>> {
    if info.is_view() {
        return Ok(Vec::new());
    }
    let collection = client.database(&info.database).collection::<Document>(&info.name);
    let context = || format!("listing the indexes of {}", info.namespace());
    let cursor = collection.list_indexes().await.map_err(Error::mongo(context()))?;
    cursor.with_type::<Document>().try_collect().await.map_err(Error::mongo(context()))
}

/// Documents and BSON bytes of each collection, from `collStats`, keyed by namespace:
/// what a backup expects to read, for its progress display. A collection the server
/// gives no figures for (a view, a server without `collStats`) is left out.
pub async fn collection_sizes(client: &Client, namespaces: &[CollectionInfo], parallel: usize) -> std::collections::HashMap<String, (u64, u64)> {
    use futures::StreamExt;
    futures::stream::iter(namespaces.iter().filter(|info| !info.is_view()))
        .map(|info| async move {
            let stats = client.database(&info.database).run_command(bson::doc! { "collStats": info.data_collection() }).await.ok()?;
            let figure = |field: &str| {
                stats.get(field).and_then(|value| value.as_i64().or(value.as_i32().map(i64::from)).or(value.as_f64().map(|v| v as i64)))
            };
            Some((info.namespace(), (figure("count")?.max(0) as u64, figure("size")?.max(0) as u64)))
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|found| async move { found })
        .collect()
        .await
}
