//! The check of a drill: each namespace of the manifest read back from the scratch
//! server after the restore (count and content hash scanned from the server, index
//! specs from `listIndexes`, a view's definition) and compared with the manifest. The
//! comparison ([`compare`]) is pure; [`read_back`] does the reading.

use std::collections::BTreeMap;

use mongodb::Client;
use serde::Serialize;
use serde_json::Value;

use crate::digest::DigestSummary;
use crate::dump::metadata::canonical_value;
use crate::error::Result;
use crate::filter::NamespaceFilter;
use crate::manifest::{Manifest, NamespaceEntry, NamespaceKind};
use crate::source::{discover, list_index_specs, live_digest, CollectionInfo};

/// One namespace of the backup as the drill found it on the scratch server.
#[derive(Debug, Clone, Serialize)]
pub struct DrillNamespace {
    /// `db.collection`.
    pub namespace: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: NamespaceKind,
    /// Documents the manifest records.
    pub expected_documents: u64,
    /// Documents read back from the scratch server (`None`: missing there, or a view).
    pub documents: Option<u64>,
    /// `match`, `MISMATCH`, or `replayed` (with `--to-time` the oplog changed the data
    /// after the backup, so the backup's hash no longer applies).
    pub content: &'static str,
    /// Index specs the manifest records.
    pub indexes_expected: usize,
    /// Of those, the ones found on the scratch server with the same name, key and uniqueness.
    pub indexes_matched: usize,
    /// Whether everything matched.
    pub passed: bool,
    /// What differs, in words (empty when it passed).
    pub problem: String,
}

/// A namespace as read back from the scratch server.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Its kind and options, when it exists.
    pub info: Option<(NamespaceKind, Value)>,
    /// Its documents' digest (not for a view).
    pub digest: Option<DigestSummary>,
    /// Its index specs, as `listIndexes` returns them (canonical Extended JSON).
    pub indexes: Vec<Value>,
}

/// The namespaces of `manifest` a drill restores and checks: collections, time-series
/// collections and views (users and roles are not restored by a drill).
pub fn checked_entries(manifest: &Manifest) -> impl Iterator<Item = &NamespaceEntry> {
    manifest.namespaces.iter().filter(|entry| !matches!(entry.kind, NamespaceKind::Users | NamespaceKind::Roles))
}

/// Reads every checked namespace of `manifest` back from `client`, compares each with
/// the manifest; `replayed`: the restore replayed oplog slices past the backup, so
/// counts and hashes are recorded but not compared.
///
/// # Errors
/// A MongoDB error reading the scratch server.
pub async fn read_back(client: &Client, manifest: &Manifest, replayed: bool) -> Result<Vec<DrillNamespace>> {
    let everything = NamespaceFilter::new(&[], &[])?;
    let present: BTreeMap<String, CollectionInfo> = discover(client, &everything).await?.into_iter().map(|info| (info.namespace(), info)).collect();
    let mut rows = Vec::new();
    for entry in checked_entries(manifest) {
        let namespace = format!("{}.{}", entry.database, entry.collection);
        let found = match present.get(&namespace) {
            None => Found::default(),
            Some(info) => read_namespace(client, info).await?,
        };
        rows.push(compare(entry, &found, replayed));
    }
    Ok(rows)
}

async fn read_namespace(client: &Client, info: &CollectionInfo) -> Result<Found> {
    let mut found = Found { info: Some((info.kind.clone(), canonical_value(&info.options))), ..Found::default() };
    if info.is_view() {
        return Ok(found);
    }
    found.digest = Some(live_digest(client, &info.database, &info.data_collection()).await?);
    found.indexes = list_index_specs(client, info).await?.iter().map(canonical_value).collect();
    Ok(found)
}

/// Compares one manifest entry with what was read back.
pub fn compare(entry: &NamespaceEntry, found: &Found, replayed: bool) -> DrillNamespace {
    let namespace = format!("{}.{}", entry.database, entry.collection);
    let is_view = entry.kind == NamespaceKind::View;
    let expected_indexes: Vec<IndexShape> = if is_view { Vec::new() } else { entry.indexes.iter().filter_map(IndexShape::of).collect() };
    let found_indexes: Vec<IndexShape> = found.indexes.iter().filter_map(IndexShape::of).collect();
    let matched = expected_indexes.iter().filter(|index| found_indexes.contains(index)).count();
    let mut problems = Vec::new();
    let mut content = if replayed { "replayed" } else { "match" };
    match &found.info {
        None => {
            problems.push("missing on the scratch server after the restore".to_string());
            content = "MISMATCH";
        }
        Some((kind, options)) if is_view => {
            if *kind != entry.kind || *options != entry.options {
                problems.push("the view's definition differs from the manifest".to_string());
                content = "MISMATCH";
            }
        }
        Some(_) => {
            if let (Some(digest), false) = (&found.digest, replayed) {
                if digest.documents != entry.documents {
                    problems.push(format!("{} documents read back, the manifest says {}", digest.documents, entry.documents));
                    content = "MISMATCH";
                } else if digest.content_hash != entry.content_hash {
                    problems.push("same count, different documents (content hash)".to_string());
                    content = "MISMATCH";
                }
            }
        }
    }
    if found.info.is_some() && matched < expected_indexes.len() {
        let missing: Vec<&str> = expected_indexes.iter().filter(|index| !found_indexes.contains(index)).map(|index| index.name.as_str()).collect();
        problems.push(format!("index(es) {} missing or different", missing.join(", ")));
    }
    DrillNamespace {
        namespace,
        kind: entry.kind.clone(),
        expected_documents: entry.documents,
        documents: found.digest.as_ref().map(|digest| digest.documents),
        content,
        indexes_expected: expected_indexes.len(),
        indexes_matched: matched,
        passed: problems.is_empty(),
        problem: problems.join("; "),
    }
}

/// What makes two index specs the same index: name, key pattern (numbers compared by
/// value, so `1`, `1.0` and `NumberLong(1)` agree) and uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexShape {
    name: String,
    key: Vec<(String, String)>,
    unique: bool,
}

impl IndexShape {
    fn of(spec: &Value) -> Option<IndexShape> {
        let name = spec.get("name")?.as_str()?.to_string();
        let key = spec.get("key")?.as_object()?.iter().map(|(field, direction)| (field.clone(), plain_value(direction))).collect();
        let unique = spec.get("unique").is_some_and(|unique| unique.as_bool().unwrap_or_else(|| plain_value(unique) == "1"));
        Some(IndexShape { name, key, unique })
    }
}

/// A key direction as text: a number (of any canonical Extended JSON type) by value,
/// a string (`"text"`, `"2dsphere"`, `"hashed"`) as is.
fn plain_value(value: &Value) -> String {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::Object(wrapped) => ["$numberInt", "$numberLong", "$numberDouble", "$numberDecimal"]
            .iter()
            .find_map(|tag| wrapped.get(*tag))
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<f64>().ok()),
        _ => None,
    };
    match (number, value) {
        (Some(number), _) => format!("{number}"),
        (None, Value::String(text)) => text.clone(),
        (None, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: NamespaceKind, documents: u64, content_hash: &str, indexes: Vec<Value>) -> NamespaceEntry {
        NamespaceEntry {
            database: "shop".into(),
            collection: "orders".into(),
            kind,
            uuid: None,
            options: json!({}),
            indexes,
            bson_file: Some("shop/orders.bson".into()),
            metadata_file: "shop/orders.metadata.json".into(),
            documents,
            bytes: 10,
            sha256: "s".into(),
            content_hash: content_hash.into(),
        }
    }

    fn digest(documents: u64, content_hash: &str) -> Option<DigestSummary> {
        Some(DigestSummary { documents, bytes: 10, sha256: "x".into(), content_hash: content_hash.into() })
    }

    fn id_index() -> Value {
        json!({"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"})
    }

    fn sku_index(direction: Value, unique: bool) -> Value {
        json!({"v": 2, "key": {"sku": direction}, "name": "sku_1", "unique": unique})
    }

    #[test]
    fn identical_data_and_indexes_pass_whatever_the_number_types() {
        let manifest = entry(NamespaceKind::Collection, 5, "h", vec![id_index(), sku_index(json!({"$numberInt": "1"}), true)]);
        let found = Found {
            info: Some((NamespaceKind::Collection, json!({}))),
            digest: digest(5, "h"),
            indexes: vec![id_index(), sku_index(json!({"$numberDouble": "1.0"}), true)],
        };
        let row = compare(&manifest, &found, false);
        assert!(row.passed, "{row:?}");
        assert_eq!((row.content, row.indexes_expected, row.indexes_matched, row.documents), ("match", 2, 2, Some(5)));
    }

    #[test]
    fn a_different_count_hash_index_or_a_missing_namespace_fails_naming_it() {
        let manifest = entry(NamespaceKind::Collection, 5, "h", vec![id_index(), sku_index(json!(1), true)]);
        let present =
            |documents, hash: &str, indexes| Found { info: Some((NamespaceKind::Collection, json!({}))), digest: digest(documents, hash), indexes };
        let fewer = compare(&manifest, &present(4, "h", vec![id_index(), sku_index(json!(1), true)]), false);
        assert!(!fewer.passed && fewer.content == "MISMATCH" && fewer.problem.contains("4 documents read back, the manifest says 5"), "{fewer:?}");
        let altered = compare(&manifest, &present(5, "other", vec![id_index(), sku_index(json!(1), true)]), false);
        assert!(!altered.passed && altered.problem.contains("content hash"), "{altered:?}");
        let not_unique = compare(&manifest, &present(5, "h", vec![id_index(), sku_index(json!(1), false)]), false);
        assert!(!not_unique.passed && not_unique.problem.contains("sku_1") && not_unique.indexes_matched == 1, "{not_unique:?}");
        let missing = compare(&manifest, &Found::default(), false);
        assert!(!missing.passed && missing.problem.contains("missing on the scratch server"), "{missing:?}");
    }

    #[test]
    fn after_a_replay_counts_are_recorded_not_compared() {
        let manifest = entry(NamespaceKind::Collection, 5, "h", vec![id_index()]);
        let found = Found { info: Some((NamespaceKind::Collection, json!({}))), digest: digest(7, "later"), indexes: vec![id_index()] };
        let row = compare(&manifest, &found, true);
        assert!(row.passed && row.content == "replayed" && row.documents == Some(7), "{row:?}");
    }

    #[test]
    fn a_view_is_compared_by_its_definition() {
        let mut view = entry(NamespaceKind::View, 0, "", Vec::new());
        view.options = json!({"viewOn": "orders", "pipeline": []});
        let same = Found { info: Some((NamespaceKind::View, json!({"viewOn": "orders", "pipeline": []}))), ..Found::default() };
        assert!(compare(&view, &same, false).passed);
        let other = Found { info: Some((NamespaceKind::View, json!({"viewOn": "items", "pipeline": []}))), ..Found::default() };
        assert!(!compare(&view, &other, false).passed);
    }
}
