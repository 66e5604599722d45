//! The `<collection>.metadata.json` document, as `mongodump/metadata_dump.go` writes
//! it: one line of canonical Extended JSON v2 with, in order, `options` (omitted when
//! empty), `indexes`, `uuid` (hex, omitted when unknown), `collectionName` and `type`.

use bson::{Bson, Document};

use crate::manifest::NamespaceKind;

/// Renders the metadata document of one collection or view.
///
/// `indexes` are the specs exactly as `listIndexes` returned them (empty for a view).
pub fn metadata_json(collection: &str, kind: &NamespaceKind, options: &Document, uuid: Option<&str>, indexes: &[Document]) -> String {
    let mut meta = Document::new();
    if !options.is_empty() {
        meta.insert("options", options.clone());
    }
    meta.insert("indexes", indexes.iter().cloned().map(Bson::Document).collect::<Vec<_>>());
    if let Some(uuid) = uuid {
        meta.insert("uuid", uuid);
    }
    meta.insert("collectionName", collection);
    if !kind.as_str().is_empty() {
        meta.insert("type", kind.as_str());
    }
    canonical_extjson(&meta)
}

/// One line of canonical Extended JSON v2 for `document`, keys in document order.
pub fn canonical_extjson(document: &Document) -> String {
    Bson::Document(document.clone()).into_canonical_extjson().to_string()
}

/// The canonical Extended JSON value of `document` (used by the manifest).
pub fn canonical_value(document: &Document) -> serde_json::Value {
    Bson::Document(document.clone()).into_canonical_extjson()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn capped_options(size: i64) -> Document {
        doc! { "capped": true, "size": size }
    }

    #[test]
    fn field_order_and_canonical_numbers_match_mongodump() {
        let index = doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" };
        let json = metadata_json("project", &NamespaceKind::Collection, &capped_options(4096), Some("0a0b"), &[index]);
        assert_eq!(
            json,
            r#"{"options":{"capped":true,"size":{"$numberLong":"4096"}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"0a0b","collectionName":"project","type":"collection"}"#
        );
    }

    #[test]
    fn empty_options_and_missing_uuid_are_omitted() {
        let json = metadata_json("v", &NamespaceKind::View, &Document::new(), None, &[]);
        assert_eq!(json, r#"{"indexes":[],"collectionName":"v","type":"view"}"#);
    }
}
