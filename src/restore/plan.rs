//! What a restore will do, decided before any document moves: which namespaces of the
//! backup are restored, under which target names, with which options and indexes, and
//! what their `.bson` files must hash to. It comes from the manifest, or, for a
//! tarball made by the original `mongodump` + `tar -czf` pipeline, from the archive's
//! `.metadata.json` files.

use bson::{Bson, Document};

use crate::dump::{manifest_path, OPLOG_FILE};
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::manifest::Manifest;

/// `--ns-from` / `--ns-to`: restore one database under another name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseRename {
    /// Source database name.
    pub from: String,
    /// Target database name.
    pub to: String,
}

impl DatabaseRename {
    /// Parses the flags; both or neither must be given. `db` and `db.*` are accepted.
    ///
    /// # Errors
    /// A usage error naming the bad flag.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Option<Self>> {
        let database = |flag: &str, value: &str| -> Result<String> {
            let name = value.strip_suffix(".*").unwrap_or(value);
            if name.is_empty() || name.contains(['.', '/', '\\', ' ', '"', '$', '*']) {
                return Err(Error::usage(format!("{flag} {value:?} is not a database name: give a database such as ingest (or ingest.*)")));
            }
            Ok(name.to_string())
        };
        match (from, to) {
            (None, None) => Ok(None),
            (Some(from), Some(to)) => Ok(Some(Self { from: database("--ns-from", from)?, to: database("--ns-to", to)? })),
            _ => Err(Error::usage("--ns-from and --ns-to go together: give both, for example --ns-from ingest --ns-to ingest_copy")),
        }
    }
}

/// Maps source namespaces to target namespaces.
#[derive(Debug, Clone, Default)]
pub struct NamespaceMap {
    rename: Option<DatabaseRename>,
}

impl NamespaceMap {
    /// A map applying `rename`, if any.
    pub fn new(rename: Option<DatabaseRename>) -> Self {
        Self { rename }
    }

    /// The target database of source database `database`.
    pub fn database<'a>(&'a self, database: &'a str) -> &'a str {
        match &self.rename {
            Some(rename) if rename.from == database => &rename.to,
            _ => database,
        }
    }
}

/// Expected digests of a `.bson` file, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Documents.
    pub documents: u64,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// The order-independent content hash of its documents.
    pub content_hash: String,
}

/// One namespace to restore.
#[derive(Debug, Clone)]
pub struct PlannedNamespace {
    /// Source database.
    pub database: String,
    /// Source collection or view.
    pub collection: String,
    /// Target database (after `--ns-from` / `--ns-to`).
    pub target_database: String,
    /// `collection` or `view`.
    pub kind: String,
    /// `listCollections` options to create it with.
    pub options: Document,
    /// Index specs to build after the documents are in.
    pub indexes: Vec<Document>,
    /// Path of its `.bson` member in the archive (none for a view).
    pub bson_member: Option<String>,
    /// What that member must hash to (none for a legacy tarball).
    pub expected: Option<Expected>,
}

impl PlannedNamespace {
    /// `db.collection` in the backup.
    pub fn source(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }

    /// `db.collection` in the target.
    pub fn target(&self) -> String {
        format!("{}.{}", self.target_database, self.collection)
    }

    /// Whether this is a view.
    pub fn is_view(&self) -> bool {
        self.kind == "view"
    }
}

/// A restore plan: the namespaces, where `oplog.bson` is, and the manifest's member.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Namespaces to restore, in backup order.
    pub namespaces: Vec<PlannedNamespace>,
    /// Path of `oplog.bson` in the archive, when the backup has one.
    pub oplog_member: Option<String>,
    /// Path of the archive's own copy of the manifest (none for a legacy tarball).
    pub manifest_member: Option<String>,
    /// Namespaces left out by the filters, or because they are never restored.
    pub skipped: Vec<String>,
    /// Files of a legacy tarball that are not restored, each with the reason.
    pub unread_files: Vec<String>,
}

/// Authentication data a plain insert cannot restore; `mongorestore
/// --restoreDbUsersAndRoles` handles it.
fn is_auth_collection(database: &str, collection: &str) -> bool {
    database == "admin" && matches!(collection, "system.users" | "system.roles" | "system.version")
}

/// Canonical Extended JSON (as stored in manifests and metadata files) back to BSON.
///
/// # Errors
/// A consistency error naming `what` when the JSON is not Extended JSON of a document.
pub fn document_from_extjson(value: &serde_json::Value, what: &str) -> Result<Document> {
    match Bson::try_from(value.clone()) {
        Ok(Bson::Document(document)) => Ok(document),
        Ok(other) => Err(Error::Consistency(format!("{what} is not a document: {other}"))),
        Err(error) => Err(Error::Consistency(format!("{what} is not valid Extended JSON: {error}"))),
    }
}

impl Plan {
    /// The plan for a backup with a manifest.
    ///
    /// # Errors
    /// A consistency error for options or index specs that are not valid Extended JSON.
    pub fn from_manifest(manifest: &Manifest, filter: &NamespaceFilter, map: &NamespaceMap) -> Result<Self> {
        let mut plan = Plan::default();
        for entry in &manifest.namespaces {
            let source = format!("{}.{}", entry.database, entry.collection);
            if !filter.keeps(&entry.database, &entry.collection) || is_auth_collection(&entry.database, &entry.collection) {
                plan.skipped.push(source);
                continue;
            }
            let indexes =
                entry.indexes.iter().map(|spec| document_from_extjson(spec, &format!("an index spec of {source}"))).collect::<Result<Vec<_>>>()?;
            plan.namespaces.push(PlannedNamespace {
                database: entry.database.clone(),
                collection: entry.collection.clone(),
                target_database: map.database(&entry.database).to_string(),
                kind: entry.kind.clone(),
                options: document_from_extjson(&entry.options, &format!("the options of {source}"))?,
                indexes,
                bson_member: entry.bson_file.as_ref().map(|file| format!("{}{file}", manifest.dump_root)),
                expected: Some(Expected {
                    documents: entry.documents,
                    bytes: entry.bytes,
                    sha256: entry.sha256.clone(),
                    content_hash: entry.content_hash.clone(),
                }),
            });
        }
        if manifest.consistency.oplog {
            plan.oplog_member = Some(format!("{}{OPLOG_FILE}", manifest.dump_root));
        }
        plan.manifest_member = Some(manifest_path(&manifest.name));
        Ok(plan)
    }
}

/// Builds a plan for a legacy tarball from its members, read in a first pass:
/// `(path, metadata.json bytes)` for each metadata file, and every other file path.
#[derive(Debug, Default)]
pub struct LegacyScan {
    /// The dump directory, with a trailing slash, once known.
    root: Option<String>,
    metadata: Vec<(String, String, Document)>,
    files: Vec<String>,
    /// Whether the archive holds an ingest-backup manifest (then it is not legacy).
    pub has_manifest: bool,
}

impl LegacyScan {
    /// Notes one member. `metadata` is the parsed `.metadata.json` when the member is one.
    ///
    /// # Errors
    /// A consistency error for a metadata file that is not valid Extended JSON.
    pub fn member(&mut self, path: &str, metadata: Option<&[u8]>) -> Result<()> {
        let path = normalize(path);
        if path.ends_with(".manifest.json") && path.starts_with("data/db/dump/") && !path.contains(".manifest.json/") {
            let name = path.trim_start_matches("data/db/dump/").trim_end_matches(".manifest.json");
            if manifest_path(name) == path {
                self.has_manifest = true;
            }
        }
        let Some(bytes) = metadata else {
            self.files.push(path);
            return Ok(());
        };
        let parts: Vec<&str> = path.rsplitn(3, '/').collect();
        let (file, database, root) = match parts.as_slice() {
            [file, database, root] => (*file, *database, format!("{root}/")),
            [file, database] => (*file, *database, String::new()),
            _ => return Ok(()),
        };
        // An empty metadata file is no metadata (default options, only the _id index),
        // as mongorestore reads it.
        let metadata = if bytes.iter().all(u8::is_ascii_whitespace) {
            Document::new()
        } else {
            let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Consistency(format!("{path} is not valid JSON: {e}")))?;
            document_from_extjson(&json, &path)?
        };
        let collection = match metadata.get_str("collectionName") {
            Ok(name) => name.to_string(),
            Err(_) => unescape(file.trim_end_matches(".metadata.json")),
        };
        self.root.get_or_insert(root);
        self.metadata.push((database.to_string(), collection, metadata));
        Ok(())
    }

    /// The plan, once every member was seen. A `.bson` file without a metadata file is
    /// restored with default options and only the `_id` index, as mongorestore does.
    pub fn into_plan(mut self, filter: &NamespaceFilter, map: &NamespaceMap) -> Plan {
        let bson_files: Vec<(String, String, String)> = self
            .files
            .iter()
            .filter(|path| path.ends_with(".bson"))
            .filter_map(|path| match path.rsplitn(3, '/').collect::<Vec<_>>().as_slice() {
                [file, database, root] if *file != OPLOG_FILE => Some((format!("{root}/"), database.to_string(), file.to_string())),
                // A dump directory packed from inside (`tar -C DIR .`): `db/collection.bson`.
                [file, database] if *file != OPLOG_FILE => Some((String::new(), database.to_string(), file.to_string())),
                _ => None,
            })
            .collect();
        // Without any metadata file, the dump directory is where most data files are.
        let root = self.root.take().unwrap_or_else(|| most_common(bson_files.iter().map(|(root, _, _)| root.as_str())).unwrap_or_default());
        let mut plan = Plan::default();
        // Data files without metadata, by namespace: their own path (not re-escaped).
        let mut found_members: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let described: std::collections::HashSet<String> = self
            .metadata
            .iter()
            .map(|(database, collection, _)| format!("{root}{database}/{}.bson", crate::dump::layout::escape_collection_name(collection)))
            .collect();
        for (file_root, database, file) in &bson_files {
            let path = format!("{file_root}{database}/{file}");
            if described.contains(&path) {
                continue;
            }
            if *file_root != root {
                plan.unread_files.push(format!("{path}: outside the dump directory {root}"));
            } else if file == "system.indexes.bson" {
                plan.unread_files.push(format!("{path}: index definitions of a dump older than MongoDB 3.0, which this restore does not read"));
            } else {
                let collection = unescape(file.trim_end_matches(".bson"));
                found_members.insert(format!("{database}.{collection}"), path);
                self.metadata.push((database.clone(), collection, Document::new()));
            }
        }
        for (database, collection, metadata) in self.metadata {
            let source = format!("{database}.{collection}");
            if !filter.keeps(&database, &collection) || is_auth_collection(&database, &collection) {
                plan.skipped.push(source);
                continue;
            }
            let kind = metadata.get_str("type").ok().filter(|k| !k.is_empty()).unwrap_or("collection").to_string();
            let bson_member = found_members
                .remove(&source)
                .unwrap_or_else(|| format!("{root}{database}/{}.bson", crate::dump::layout::escape_collection_name(&collection)));
            let has_bson = self.files.contains(&bson_member);
            let indexes = match metadata.get_array("indexes") {
                Ok(specs) => specs.iter().filter_map(|s| s.as_document().cloned()).collect(),
                Err(_) => Vec::new(),
            };
            plan.namespaces.push(PlannedNamespace {
                target_database: map.database(&database).to_string(),
                database,
                collection,
                kind,
                options: metadata.get_document("options").cloned().unwrap_or_default(),
                indexes,
                bson_member: has_bson.then_some(bson_member),
                expected: None,
            });
        }
        let oplog = format!("{root}{OPLOG_FILE}");
        if self.files.contains(&oplog) {
            plan.oplog_member = Some(oplog);
        }
        plan
    }
}

/// The value seen most often (the first of equals), if any.
fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    counts.iter().rev().max_by_key(|(_, count)| *count).map(|(value, _)| value.to_string())
}

/// A member path without a leading `./` or `/`.
pub fn normalize(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').to_string()
}

/// Go's `url.QueryUnescape`, for collection files without a metadata name.
fn unescape(stem: &str) -> String {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_need_both_flags_and_plain_database_names() {
        assert_eq!(DatabaseRename::parse(None, None).unwrap(), None);
        assert_eq!(DatabaseRename::parse(Some("ingest.*"), Some("copy")).unwrap(), Some(DatabaseRename { from: "ingest".into(), to: "copy".into() }));
        assert_eq!(DatabaseRename::parse(Some("ingest"), None).unwrap_err().exit_code(), 2);
        assert_eq!(DatabaseRename::parse(Some("a.b"), Some("c")).unwrap_err().exit_code(), 2);
        let map = NamespaceMap::new(DatabaseRename::parse(Some("ingest"), Some("copy")).unwrap());
        assert_eq!(map.database("ingest"), "copy");
        assert_eq!(map.database("other"), "other");
    }

    #[test]
    fn legacy_tarballs_are_planned_from_their_metadata_files() {
        let mut scan = LegacyScan::default();
        let meta = br#"{"options":{"capped":true,"size":{"$numberInt":"4096"}},"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"collectionName":"log","type":"collection"}"#;
        scan.member("./data/db/dump/2018-04-04T11_37/", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.metadata.json", Some(meta)).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/oplog.bson", None).unwrap();
        assert!(!scan.has_manifest);
        let plan = scan.into_plan(&NamespaceFilter::default(), &NamespaceMap::default());
        assert_eq!(plan.namespaces.len(), 1);
        let log = &plan.namespaces[0];
        assert_eq!(log.source(), "ingest.log");
        assert_eq!(log.bson_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/ingest/log.bson"));
        assert!(log.options.get_bool("capped").unwrap());
        assert_eq!(plan.oplog_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/oplog.bson"));
    }

    #[test]
    fn data_files_without_metadata_and_empty_metadata_restore_with_defaults() {
        let mut scan = LegacyScan::default();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/project.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/file%24s.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.metadata.json", Some(b"  \n")).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/old/system.indexes.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/oplog.bson", None).unwrap();
        let plan = scan.into_plan(&NamespaceFilter::default(), &NamespaceMap::new(None));
        let mut packed_from_inside = LegacyScan::default();
        packed_from_inside.member("./ingest/project.bson", None).unwrap();
        let inside = packed_from_inside.into_plan(&NamespaceFilter::default(), &NamespaceMap::new(None));
        assert_eq!(inside.namespaces[0].source(), "ingest.project");
        assert_eq!(inside.namespaces[0].bson_member.as_deref(), Some("ingest/project.bson"));
        let mut names: Vec<String> = plan.namespaces.iter().map(PlannedNamespace::source).collect();
        names.sort();
        assert_eq!(names, ["ingest.file$s", "ingest.log", "ingest.project"]);
        assert!(plan.namespaces.iter().all(|n| n.options.is_empty() && n.indexes.is_empty() && n.bson_member.is_some()));
        assert_eq!(plan.oplog_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/oplog.bson"));
        assert_eq!(plan.unread_files.len(), 1, "{:?}", plan.unread_files);
        assert!(plan.unread_files[0].contains("older than MongoDB 3.0"));
    }

    #[test]
    fn query_unescape_reverses_mongodump_file_names() {
        assert_eq!(unescape("with+space%2Fslash"), "with space/slash");
        assert_eq!(unescape("plain"), "plain");
    }
}
