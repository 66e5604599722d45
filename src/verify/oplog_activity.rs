//! Which namespaces the oplog shows written since a point in time. Verification uses
//! it to tell drift (the live database moved on after the backup, as it should) from
//! an unexplained difference (the data differs and nothing wrote to it).

use std::collections::{BTreeMap, BTreeSet};

use bson::{doc, RawDocument, RawDocumentBuf};
use mongodb::options::FindOptions;
use mongodb::Client;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oplog::Timestamp;

/// What the oplog of the verified server says happened after the reference point.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OplogActivity {
    /// Whether the oplog's oldest entry is at or before the reference point, so every
    /// write since then is in it. When false, a difference cannot be explained.
    pub reaches_back: bool,
    /// Why it does not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Oldest entry in the oplog.
    pub oldest: Option<Timestamp>,
    /// Entries read after the reference point.
    pub entries: u64,
    /// Document writes (and creates or drops) per namespace since the reference point.
    pub writes: BTreeMap<String, u64>,
    /// Databases dropped whole since the reference point.
    pub dropped_databases: BTreeSet<String>,
}

impl OplogActivity {
    /// Whether the oplog explains a change to `database.collection`, and by how many writes.
    pub fn writes_to(&self, database: &str, collection: &str) -> Option<u64> {
        if self.dropped_databases.contains(database) {
            return Some(self.writes.get(&format!("{database}.{collection}")).copied().unwrap_or(0) + 1);
        }
        self.writes.get(&format!("{database}.{collection}")).copied()
    }

    /// Activity of a server with no usable oplog.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self { reaches_back: false, reason: Some(reason.into()), ..Self::default() }
    }
}

/// Reads the oplog after `since` (exclusive).
///
/// # Errors
/// A MongoDB error while reading `local.oplog.rs`.
pub async fn since(client: &Client, replica_set: bool, since: Timestamp) -> Result<OplogActivity> {
    if !replica_set {
        return Ok(OplogActivity::unavailable("the server is not a replica-set member, so it keeps no oplog"));
    }
    let oplog = client.database("local").collection::<RawDocumentBuf>("oplog.rs");
    let context = "reading local.oplog.rs to explain differences";
    let mut oldest_cursor = oplog
        .find(doc! {})
        .with_options(FindOptions::builder().sort(doc! { "$natural": 1 }).limit(1).build())
        .await
        .map_err(Error::mongo(context))?;
    let oldest = match oldest_cursor.advance().await.map_err(Error::mongo(context))? {
        true => oldest_cursor.current().get_timestamp("ts").ok().map(Timestamp::from),
        false => None,
    };
    let Some(oldest) = oldest else {
        return Ok(OplogActivity::unavailable("the server's oplog is empty"));
    };
    let mut activity = OplogActivity { reaches_back: oldest <= since, oldest: Some(oldest), ..OplogActivity::default() };
    if !activity.reaches_back {
        activity.reason = Some(format!(
            "the oldest oplog entry ({}:{}) is newer than the backup's reference point ({}:{}): writes in between are lost from it",
            oldest.t, oldest.i, since.t, since.i
        ));
    }
    let mut cursor = oplog.find(doc! { "ts": { "$gt": bson::Timestamp::from(since) } }).await.map_err(Error::mongo(context))?;
    while cursor.advance().await.map_err(Error::mongo(context))? {
        activity.entries += 1;
        for touch in touches(cursor.current()) {
            match touch {
                Touch::Namespace(ns) => *activity.writes.entry(ns).or_default() += 1,
                Touch::Database(db) => {
                    activity.dropped_databases.insert(db);
                }
            }
        }
    }
    Ok(activity)
}

/// A change an oplog entry makes to stored documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// Documents of `db.collection` were written, or the collection was created or dropped.
    Namespace(String),
    /// The whole database was dropped.
    Database(String),
}

/// The namespaces whose documents an oplog entry changes. Index and option changes
/// (`createIndexes`, `collMod`, ...) change no document and explain no difference.
pub fn touches(entry: &RawDocument) -> Vec<Touch> {
    let op = entry.get_str("op").unwrap_or("");
    let ns = entry.get_str("ns").unwrap_or("");
    match op {
        "i" | "u" | "d" => vec![Touch::Namespace(ns.to_string())],
        "c" => {
            let database = ns.strip_suffix(".$cmd").unwrap_or(ns);
            let Ok(command) = entry.get_document("o") else { return Vec::new() };
            command_touches(database, command)
        }
        _ => Vec::new(),
    }
}

fn command_touches(database: &str, command: &RawDocument) -> Vec<Touch> {
    if let Ok(inner) = command.get_array("applyOps") {
        return inner.into_iter().filter_map(|op| op.ok()?.as_document().map(touches)).flatten().collect();
    }
    let Some(Ok((name, value))) = command.into_iter().next() else { return Vec::new() };
    let collection = value.as_str().unwrap_or("");
    match name {
        "create" | "drop" | "convertToCapped" | "emptycapped" => vec![Touch::Namespace(format!("{database}.{collection}"))],
        "renameCollection" => {
            let mut touched = vec![Touch::Namespace(collection.to_string())];
            if let Ok(to) = command.get_str("to") {
                touched.push(Touch::Namespace(to.to_string()));
            }
            touched
        }
        "dropDatabase" => vec![Touch::Database(database.to_string())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(entry: bson::Document) -> Vec<Touch> {
        touches(&RawDocumentBuf::from_document(&entry).unwrap())
    }

    #[test]
    fn document_writes_creates_drops_and_transactions_touch_their_namespaces() {
        let ns = |s: &str| Touch::Namespace(s.into());
        assert_eq!(touched(doc! { "op": "i", "ns": "ingest.project", "o": { "_id": 1 } }), vec![ns("ingest.project")]);
        assert_eq!(touched(doc! { "op": "d", "ns": "ingest.file", "o": { "_id": 1 } }), vec![ns("ingest.file")]);
        assert_eq!(touched(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "create": "audit" } }), vec![ns("ingest.audit")]);
        assert_eq!(touched(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "drop": "audit" } }), vec![ns("ingest.audit")]);
        assert_eq!(touched(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "dropDatabase": 1 } }), vec![Touch::Database("ingest".into())]);
        assert_eq!(touched(doc! { "op": "c", "ns": "admin.$cmd", "o": { "renameCollection": "a.x", "to": "a.y" } }), vec![ns("a.x"), ns("a.y")]);
        assert_eq!(
            touched(doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [{ "op": "u", "ns": "a.b", "o": {}, "o2": { "_id": 1 } }] } }),
            vec![ns("a.b")]
        );
    }

    #[test]
    fn index_builds_and_no_ops_touch_nothing() {
        assert!(touched(doc! { "op": "c", "ns": "a.$cmd", "o": { "createIndexes": "b", "indexes": [] } }).is_empty());
        assert!(touched(doc! { "op": "c", "ns": "a.$cmd", "o": { "collMod": "b" } }).is_empty());
        assert!(touched(doc! { "op": "n", "ns": "", "o": { "msg": "periodic noop" } }).is_empty());
    }
}
