//! Oplog entries as data: which entries a filtered backup or slice keeps, and which
//! make a dump plus oplog impossible to replay. Pure: nothing here talks to a server.

use bson::RawDocument;

use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;

/// Whether a filtered backup keeps an oplog entry: document writes by their `ns`;
/// commands (`<db>.$cmd`) by the collection their first field names (`create`, `drop`,
/// `createIndexes`, ...); commands that name no collection (`dropDatabase`,
/// `applyOps`) when the filter keeps anything of that database could match `<db>.`;
/// entries with no namespace (no-ops) always.
pub fn entry_kept_by(filter: &NamespaceFilter, entry: &RawDocument) -> bool {
    let Ok(ns) = entry.get_str("ns") else { return true };
    let Some((database, collection)) = ns.split_once('.') else { return true };
    if collection != "$cmd" {
        return filter.keeps(database, collection);
    }
    let Ok(command) = entry.get_document("o") else { return true };
    // A transaction: applyOps holds the writes (kept when any of them is kept);
    // commitTransaction / abortTransaction entries of prepared transactions are kept.
    if let Ok(inner) = command.get_array("applyOps") {
        return inner.into_iter().filter_map(|op| op.ok()?.as_document().map(|d| d.to_raw_document_buf())).any(|op| entry_kept_by(filter, &op));
    }
    let first = command.into_iter().next().and_then(|field| field.ok());
    match first {
        Some(("commitTransaction" | "abortTransaction", _)) => true,
        Some((_, value)) => match value.as_str() {
            Some(collection) => filter.keeps(database, collection),
            None => filter.keeps(database, ""),
        },
        None => true,
    }
}

/// Entries that make a dump plus oplog impossible to replay, as mongodump refuses them.
///
/// # Errors
/// A consistency error for a `renameCollection` entry.
pub fn refuse_unreplayable(entry: &RawDocument) -> Result<()> {
    if let Ok(object) = entry.get_document("o") {
        if let Ok(Some(_)) = object.get("renameCollection") {
            return Err(Error::Refused(
                "a collection was renamed while the backup ran, so the oplog cannot be replayed consistently; run the backup again".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    fn raw(document: bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&document).unwrap()
    }

    #[test]
    fn filtered_backups_keep_only_their_namespaces_entries() {
        let filter = NamespaceFilter::new(&["ingest.*".into()], &["ingest.file".into()]).unwrap();
        let kept = |d| entry_kept_by(&filter, &raw(d));
        assert!(kept(doc! { "op": "i", "ns": "ingest.project", "o": { "_id": 1 } }));
        assert!(!kept(doc! { "op": "i", "ns": "ingest.file", "o": { "_id": 1 } }));
        assert!(!kept(doc! { "op": "u", "ns": "other.project", "o": {}, "o2": { "_id": 1 } }));
        assert!(kept(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "create": "audit" } }));
        assert!(!kept(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "drop": "file" } }));
        assert!(!kept(doc! { "op": "c", "ns": "other.$cmd", "o": { "dropDatabase": 1 } }));
        assert!(kept(doc! { "op": "c", "ns": "ingest.$cmd", "o": { "dropDatabase": 1 } }));
        assert!(kept(doc! { "op": "n", "ns": "", "o": { "msg": "noop" } }));
        let transaction = |ns: &str| doc! { "op": "c", "ns": "admin.$cmd", "o": { "applyOps": [{ "op": "i", "ns": ns, "o": { "_id": 1 } }] } };
        assert!(kept(transaction("ingest.project")), "a transaction writing a kept namespace");
        assert!(!kept(transaction("other.project")));
        assert!(kept(doc! { "op": "c", "ns": "admin.$cmd", "o": { "commitTransaction": 1 } }));
        let everything = NamespaceFilter::default();
        assert!(entry_kept_by(&everything, &raw(doc! { "op": "i", "ns": "x.y", "o": {} })));
    }
}
