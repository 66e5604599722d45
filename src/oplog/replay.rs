//! Replaying `oplog.bson` over restored collections, up to the backup's consistency
//! point, so the target holds the state at that point (as `mongorestore
//! --oplogReplay`). Entries are applied one by one with ordinary commands rather than
//! `applyOps` (which not every server has), each made idempotent: an insert is an
//! upsert by `_id` (the dump may already hold the document), an update applies its
//! `$v: 2` diff as `$set` / `$unset`, a delete removes by `_id`. [`super::feed`] feeds
//! it; `restore --to-time` uses the same replayer across the oplog slices.

use bson::{doc, Bson, Document, RawDocument};
use mongodb::Client;
use tracing::warn;

use super::timestamp::Timestamp;
use crate::error::{Error, Result};
use crate::filter::{NamespaceFilter, NamespaceMap};
// Server error codes a replay tolerates: the effect is already there.
use crate::server_codes::{server_code, INDEX_NOT_FOUND, NAMESPACE_EXISTS, NAMESPACE_NOT_FOUND};

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Entries applied.
    pub applied: u64,
    /// Entries skipped: no-ops, namespaces not restored, operations with no effect on data.
    pub skipped: u64,
    /// The newest entry applied or skipped (the point the target reached).
    pub reached: Option<Timestamp>,
}

/// Applies oplog entries to a target.
pub struct Replayer<'a> {
    client: &'a Client,
    filter: &'a NamespaceFilter,
    map: &'a NamespaceMap,
    limit: Option<Timestamp>,
    /// The running tally.
    pub report: ReplayReport,
}

impl<'a> Replayer<'a> {
    /// A replayer for entries up to `limit` (inclusive; `None`: every entry).
    pub fn new(client: &'a Client, filter: &'a NamespaceFilter, map: &'a NamespaceMap, limit: Option<Timestamp>) -> Self {
        Self { client, filter, map, limit, report: ReplayReport::default() }
    }

    /// The newest timestamp applied (`None`: every entry).
    pub fn limit(&self) -> Option<Timestamp> {
        self.limit
    }

    /// Applies one top-level entry; entries past the limit are counted as skipped.
    ///
    /// # Errors
    /// The target refused the operation; the error names the entry.
    pub async fn apply(&mut self, entry: &RawDocument) -> Result<()> {
        let ts: Option<Timestamp> = entry.get_timestamp("ts").ok().map(Into::into);
        if let (Some(ts), Some(limit)) = (ts, self.limit) {
            if ts > limit {
                self.report.skipped += 1;
                return Ok(());
            }
        }
        let entry = bson::Document::try_from(entry).map_err(|e| Error::Damaged(format!("an oplog entry is not valid BSON: {e}")))?;
        let applied = Box::pin(self.apply_document(&entry)).await.map_err(|error| match error {
            Error::Mongo { context, source } => Error::Mongo {
                context: format!(
                    "replaying the oplog entry {} {} at {}: {context}",
                    entry.get_str("op").unwrap_or("?"),
                    entry.get_str("ns").unwrap_or("?"),
                    ts.map_or("?".into(), |t| format!("{}:{}", t.t, t.i))
                ),
                source,
            },
            other => other,
        })?;
        if applied {
            self.report.applied += 1;
        } else {
            self.report.skipped += 1;
        }
        if ts.is_some() {
            self.report.reached = ts;
        }
        Ok(())
    }

    fn selected(&self, database: &str, collection: &str) -> bool {
        !matches!(database, "local" | "config" | "admin") && self.filter.keeps(database, collection)
    }

    /// Applies an entry (top-level or inside `applyOps`); `false` when skipped.
    async fn apply_document(&self, entry: &Document) -> Result<bool> {
        let op = entry.get_str("op").unwrap_or("");
        let ns = entry.get_str("ns").unwrap_or("");
        let object = entry.get_document("o").cloned().unwrap_or_default();
        if op == "c" {
            let database = ns.strip_suffix(".$cmd").unwrap_or(ns);
            return self.apply_command(database, object).await;
        }
        let Some((database, collection)) = ns.split_once('.') else { return Ok(false) };
        if !matches!(op, "i" | "u" | "d") || !self.selected(database, collection) {
            return Ok(false);
        }
        let target = self.client.database(self.map.database(database)).collection::<Document>(collection);
        let context = || format!("writing to {}.{collection}", self.map.database(database));
        match op {
            "i" => {
                let id = object.get("_id").cloned().unwrap_or(Bson::Null);
                target.replace_one(doc! { "_id": id }, object).upsert(true).await.map_err(Error::mongo(context()))?;
            }
            "d" => {
                target.delete_one(object).await.map_err(Error::mongo(context()))?;
            }
            _ => {
                let filter = entry.get_document("o2").cloned().unwrap_or_default();
                match update_from_oplog(&object) {
                    Update::Replace(replacement) => {
                        target.replace_one(filter, replacement).upsert(true).await.map_err(Error::mongo(context()))?;
                    }
                    Update::Steps(steps) => {
                        for step in steps {
                            target.update_one(filter.clone(), step).await.map_err(Error::mongo(context()))?;
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    async fn apply_command(&self, database: &str, mut command: Document) -> Result<bool> {
        if let Ok(inner) = command.get_array("applyOps") {
            let mut any = false;
            for op in inner.iter().filter_map(Bson::as_document) {
                any |= Box::pin(self.apply_document(op)).await?;
            }
            return Ok(any);
        }
        let Some((name, value)) = command.iter().next().map(|(k, v)| (k.clone(), v.clone())) else { return Ok(false) };
        let collection = value.as_str().unwrap_or("").to_string();
        let target = self.map.database(database).to_string();
        let run = |command: Document, tolerated: &'static [i32]| self.run(target.clone(), command, tolerated);
        match name.as_str() {
            "create" if self.selected(database, &collection) => {
                command.remove("idIndex");
                run(command, &[NAMESPACE_EXISTS]).await
            }
            "drop" if self.selected(database, &collection) => run(command, &[NAMESPACE_NOT_FOUND]).await,
            "createIndexes" | "commitIndexBuild" if self.selected(database, &collection) => {
                let specs = match command.get_array("indexes") {
                    Ok(indexes) => indexes.iter().filter_map(Bson::as_document).cloned().collect(),
                    Err(_) => {
                        let mut spec = command.clone();
                        spec.remove(&name);
                        vec![spec]
                    }
                };
                let existing = self.index_names(&target, &collection).await?;
                let missing: Vec<Bson> = specs
                    .into_iter()
                    .filter(|spec| !spec.get_str("name").is_ok_and(|n| existing.iter().any(|e| e == n)))
                    .map(|mut spec| {
                        // SecantusDB records its storage format in the spec but refuses it back.
                        spec.remove("entryFormat");
                        Bson::Document(spec)
                    })
                    .collect();
                if missing.is_empty() {
                    return Ok(false);
                }
                run(doc! { "createIndexes": &collection, "indexes": missing }, &[]).await
            }
            "dropIndexes" | "deleteIndexes" | "collMod" if self.selected(database, &collection) => {
                run(command, &[NAMESPACE_NOT_FOUND, INDEX_NOT_FOUND]).await
            }
            "dropDatabase" if self.selected(database, "") || !self.filter.is_filtering() => {
                if matches!(database, "local" | "config" | "admin") {
                    return Ok(false);
                }
                self.client.database(&target).drop().await.map_err(Error::mongo(format!("dropping database {target}")))?;
                Ok(true)
            }
            "renameCollection" => self.rename(&command).await,
            "startIndexBuild" | "abortIndexBuild" | "commitTransaction" | "abortTransaction" => Ok(false),
            "create" | "drop" | "createIndexes" | "commitIndexBuild" | "dropIndexes" | "deleteIndexes" | "collMod" | "dropDatabase" => Ok(false),
            other => {
                warn!(command = other, database, "Skipping an oplog command the replay does not apply.");
                Ok(false)
            }
        }
    }

    /// Replays `renameCollection` (`db.a` to `db.b`, each database as mapped); a rename
    /// already applied (the source gone) is tolerated. A rename between a namespace the
    /// restore selects and one it does not cannot be replayed consistently: refused.
    async fn rename(&self, command: &Document) -> Result<bool> {
        let (Ok(from), Ok(to)) = (command.get_str("renameCollection"), command.get_str("to")) else { return Ok(false) };
        let (Some((from_db, from_coll)), Some((to_db, to_coll))) = (from.split_once('.'), to.split_once('.')) else { return Ok(false) };
        match (self.selected(from_db, from_coll), self.selected(to_db, to_coll)) {
            (false, false) => Ok(false),
            (true, true) => {
                let mut rename = doc! {
                    "renameCollection": format!("{}.{from_coll}", self.map.database(from_db)),
                    "to": format!("{}.{to_coll}", self.map.database(to_db)),
                };
                if let Ok(drop_target) = command.get_bool("dropTarget") {
                    rename.insert("dropTarget", drop_target);
                }
                self.run("admin".to_string(), rename, &[NAMESPACE_NOT_FOUND]).await
            }
            _ => Err(Error::Refused(format!(
                "the oplog renames {from} to {to}, and only one of them is restored (--ns-include/--ns-exclude): \
                 the rename cannot be replayed consistently; restore both namespaces or choose a point before the rename"
            ))),
        }
    }

    /// Names of the indexes a target collection has (none when it does not exist).
    async fn index_names(&self, database: &str, collection: &str) -> Result<Vec<String>> {
        match self.client.database(database).collection::<Document>(collection).list_index_names().await {
            Ok(names) => Ok(names),
            Err(error) if server_code(&error) == Some(NAMESPACE_NOT_FOUND) => Ok(Vec::new()),
            Err(error) => Err(Error::Mongo { context: format!("listing the indexes of {database}.{collection}"), source: error }),
        }
    }

    async fn run(&self, database: String, command: Document, tolerated: &[i32]) -> Result<bool> {
        match self.client.database(&database).run_command(command.clone()).await {
            Ok(_) => Ok(true),
            Err(error) if tolerated.contains(&server_code(&error).unwrap_or(0)) => Ok(true),
            Err(error) => Err(Error::Mongo { context: format!("running {command} on {database}"), source: error }),
        }
    }
}

/// How an update entry is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The whole document is replaced.
    Replace(Document),
    /// Update documents applied in order (an array truncation first, then `$set` / `$unset`).
    Steps(Vec<Document>),
}

/// Turns an update entry's `o` into the updates that have its effect. Understands
/// MongoDB's `$v: 2` delta format (`u`, `i`, `d`, `s<field>`, arrays with `a`, `l`,
/// `u<index>`), the change-event form (`updatedFields`, `removedFields`,
/// `truncatedArrays`), the older `$set` / `$unset` form, and whole replacements.
pub fn update_from_oplog(object: &Document) -> Update {
    if let Ok(diff) = object.get_document("diff") {
        let mut changes = Changes::default();
        if diff.contains_key("updatedFields") || diff.contains_key("removedFields") || diff.contains_key("truncatedArrays") {
            changes.add_change_event(diff);
        } else {
            changes.add_delta(diff, "");
        }
        return Update::Steps(changes.into_steps());
    }
    if object.keys().next().is_some_and(|k| k.starts_with('$')) {
        let mut update = object.clone();
        update.remove("$v");
        return Update::Steps(vec![update]);
    }
    Update::Replace(object.clone())
}

#[derive(Default)]
struct Changes {
    set: Document,
    unset: Document,
    truncate: Vec<(String, i64)>,
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

impl Changes {
    fn add_change_event(&mut self, diff: &Document) {
        if let Ok(updated) = diff.get_document("updatedFields") {
            for (field, value) in updated {
                self.set.insert(field, value.clone());
            }
        }
        if let Ok(removed) = diff.get_array("removedFields") {
            for field in removed.iter().filter_map(Bson::as_str) {
                self.unset.insert(field, "");
            }
        }
        if let Ok(truncated) = diff.get_array("truncatedArrays") {
            for item in truncated.iter().filter_map(Bson::as_document) {
                if let (Ok(field), Some(size)) = (item.get_str("field"), item.get("newSize").and_then(as_i64)) {
                    self.truncate.push((field.to_string(), size));
                }
            }
        }
    }

    fn add_delta(&mut self, diff: &Document, prefix: &str) {
        let is_array = diff.get_bool("a").unwrap_or(false);
        for (key, value) in diff {
            match (key.as_str(), value) {
                ("a", _) => {}
                ("l", length) if is_array => {
                    if let Some(length) = as_i64(length) {
                        self.truncate.push((prefix.to_string(), length));
                    }
                }
                ("u" | "i", Bson::Document(fields)) => {
                    for (field, value) in fields {
                        self.set.insert(join(prefix, field), value.clone());
                    }
                }
                ("d", Bson::Document(fields)) => {
                    for (field, _) in fields {
                        self.unset.insert(join(prefix, field), "");
                    }
                }
                (key, value) if is_array && key.starts_with('u') => {
                    self.set.insert(join(prefix, &key[1..]), value.clone());
                }
                (key, Bson::Document(sub)) if key.starts_with('s') => self.add_delta(sub, &join(prefix, &key[1..])),
                _ => {}
            }
        }
    }

    fn into_steps(self) -> Vec<Document> {
        let mut steps: Vec<Document> =
            self.truncate.into_iter().map(|(field, length)| doc! { "$push": { field: { "$each": [], "$slice": length } } }).collect();
        let mut update = Document::new();
        if !self.set.is_empty() {
            update.insert("$set", self.set);
        }
        if !self.unset.is_empty() {
            update.insert("$unset", self.unset);
        }
        if !update.is_empty() {
            steps.push(update);
        }
        steps
    }
}

fn as_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_updates_become_set_unset_and_truncation() {
        let object = doc! { "$v": 2, "diff": {
            "u": { "status": "done" },
            "i": { "added": 1 },
            "d": { "gone": false },
            "sbody": { "u": { "x": 2 }, "snested": { "d": { "y": false } } },
            "stags": { "a": true, "l": 2, "u1": "b" },
        } };
        let Update::Steps(steps) = update_from_oplog(&object) else { panic!("an update") };
        assert_eq!(steps[0], doc! { "$push": { "tags": { "$each": [], "$slice": 2_i64 } } });
        assert_eq!(
            steps[1],
            doc! { "$set": { "status": "done", "added": 1, "body.x": 2, "tags.1": "b" }, "$unset": { "gone": "", "body.nested.y": "" } }
        );
    }

    #[test]
    fn change_event_diffs_and_old_style_updates_and_replacements() {
        let object = doc! { "$v": 2, "diff": { "updatedFields": { "x": 2, "sub.z": 3 }, "removedFields": ["sub.y"], "truncatedArrays": [{ "field": "arr", "newSize": 1 }] } };
        assert_eq!(
            update_from_oplog(&object),
            Update::Steps(vec![
                doc! { "$push": { "arr": { "$each": [], "$slice": 1_i64 } } },
                doc! { "$set": { "x": 2, "sub.z": 3 }, "$unset": { "sub.y": "" } },
            ])
        );
        assert_eq!(update_from_oplog(&doc! { "$v": 1, "$set": { "a": 1 } }), Update::Steps(vec![doc! { "$set": { "a": 1 } }]));
        assert_eq!(update_from_oplog(&doc! { "_id": 1, "whole": true }), Update::Replace(doc! { "_id": 1, "whole": true }));
    }
}
