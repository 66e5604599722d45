//! The plan of a tarball without a manifest: a dump directory written by any mongodump
//! release (or by hand) and packed with `tar -czf`, read the way mongorestore reads a
//! dump directory. Collections come from their `.metadata.json` files (canonical,
//! relaxed or legacy Extended JSON, or the legacy shell format), from `.bson` files
//! without metadata (default options, only the `_id` index, or the index definitions of
//! a pre-3.0 `system.indexes.bson`), and time-series collections from their
//! `system.buckets.<name>.bson` file; `<collection>.bin` is read as `.bson` (as
//! mongorestore does, for dumps of old tools). `prelude.json` names the server that was
//! dumped. With several candidate dump directories, the one the layout names
//! (`data/db/dump/<name>/`) is read; with none or several of those, nothing is.

use bson::Document;

use super::legacy_json;
use super::plan::{stores_buckets_raw, Plan, PlannedNamespace, TIMESERIES_BUCKETS_PREFIX};
use crate::dump::{manifest_path, OPLOG_FILE};
use crate::error::{Error, Result};
use crate::filter::{NamespaceFilter, NamespaceMap};

const METADATA_SUFFIX: &str = ".metadata.json";
/// Extensions of collection data files: `.bin` is what old tools wrote, and
/// mongorestore still reads it as BSON.
const DATA_SUFFIXES: [&str; 2] = [".bson", ".bin"];
/// Where the original ingest backup scripts (and this tool) put the dump directory.
const NAMED_DUMP_PREFIX: &str = "data/db/dump/";
const SYSTEM_INDEXES_FILE: &str = "system.indexes.bson";
const PRELUDE_FILE: &str = "prelude.json";

/// One `.metadata.json` file, parsed.
#[derive(Debug)]
struct MetadataFile {
    /// Its directory in the archive, with a trailing slash (empty at the top).
    dir: String,
    /// Its file stem (the escaped collection name).
    stem: String,
    /// The collection it describes.
    collection: String,
    /// Its content (empty for an empty file).
    metadata: Document,
}

/// Index definitions of one database of a pre-3.0 dump.
#[derive(Debug)]
struct SystemIndexes {
    dir: String,
    specs: Vec<Document>,
}

/// Collects a legacy tarball's members, read in a first pass, and turns them into a plan.
#[derive(Debug, Default)]
pub struct LegacyScan {
    /// `--db NAME`: the archive holds one database directory, restored as `NAME`.
    database_level: Option<String>,
    metadata: Vec<MetadataFile>,
    files: Vec<String>,
    system_indexes: Vec<SystemIndexes>,
    /// The server version `prelude.json` names (mongodump 100.12 and later).
    pub source_version: Option<String>,
    /// Whether the archive holds an ingest-backup manifest (then it is not legacy).
    pub has_manifest: bool,
}

/// The directory (with a trailing slash, empty at the top) and file name of a member.
fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file.to_string()),
        None => (String::new(), path.to_string()),
    }
}

/// The parent of a directory (both with a trailing slash).
fn parent(dir: &str) -> String {
    split(dir.trim_end_matches('/')).0
}

impl LegacyScan {
    /// A scan of a dump directory (`None`), or of one database directory restored under
    /// the name given (`restore --db NAME`, as mongorestore's `--db` with a directory).
    pub fn new(database_level: Option<String>) -> Self {
        Self { database_level, ..Self::default() }
    }

    /// Whether [`LegacyScan::member`] needs the content of the member at `path`.
    pub fn wants_content(path: &str) -> bool {
        let (_, file) = split(&normalize(path));
        file.ends_with(METADATA_SUFFIX) || file == SYSTEM_INDEXES_FILE || file == PRELUDE_FILE
    }

    /// Notes one member; `content` is given for the members [`LegacyScan::wants_content`] names.
    ///
    /// # Errors
    /// A consistency error for a metadata file, `system.indexes.bson` or `prelude.json`
    /// that cannot be read (mongorestore refuses such a dump too).
    pub fn member(&mut self, path: &str, content: Option<&[u8]>) -> Result<()> {
        let path = normalize(path);
        if path.ends_with(".manifest.json") && path.starts_with("data/db/dump/") && !path.contains(".manifest.json/") {
            let name = path.trim_start_matches("data/db/dump/").trim_end_matches(".manifest.json");
            if manifest_path(name) == path {
                self.has_manifest = true;
            }
        }
        let (dir, file) = split(&path);
        let Some(bytes) = content else {
            self.files.push(path);
            return Ok(());
        };
        if file == PRELUDE_FILE {
            let prelude: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                Error::Damaged(format!("{path} is not valid JSON ({e}); mongorestore refuses such a dump too: repair or remove the file"))
            })?;
            self.source_version = prelude.get("ServerVersion").and_then(|v| v.as_str()).map(str::to_string);
            return Ok(());
        }
        if file == SYSTEM_INDEXES_FILE {
            let specs = read_bson_documents(bytes).map_err(|e| Error::Damaged(format!("{path} is not a BSON file: {e}")))?;
            self.system_indexes.push(SystemIndexes { dir, specs });
            self.files.push(path);
            return Ok(());
        }
        let Some(stem) = file.strip_suffix(METADATA_SUFFIX) else {
            self.files.push(path);
            return Ok(());
        };
        // An empty metadata file is no metadata (default options, only the _id index),
        // as mongorestore reads it.
        let metadata = if bytes.iter().all(u8::is_ascii_whitespace) { Document::new() } else { legacy_json::parse_metadata(bytes, &path)? };
        let collection = match metadata.get_str("collectionName") {
            Ok(name) if !name.is_empty() => name.to_string(),
            _ => unescape(stem),
        };
        self.metadata.push(MetadataFile { dir, stem: stem.to_string(), collection, metadata });
        Ok(())
    }

    /// The database a directory of data files holds, if the layout says.
    fn database_of(&self, dir: &str) -> Option<String> {
        if let Some(name) = &self.database_level {
            return Some(name.clone());
        }
        let name = dir.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        (!name.is_empty()).then(|| name.to_string())
    }

    /// The dump directory a directory of data files belongs to.
    fn root_of(&self, dir: &str) -> String {
        if self.database_level.is_some() {
            dir.to_string()
        } else {
            parent(dir)
        }
    }

    /// Whether a time-series collection's buckets are stored in `system.buckets.<name>`
    /// (a source before MongoDB 8.3, or an unknown one) rather than under its own name.
    fn buckets_in_system_collection(&self) -> bool {
        !self.source_version.as_deref().is_some_and(stores_buckets_raw)
    }

    /// The plan, once every member was seen.
    pub fn into_plan(self, filter: &NamespaceFilter, map: &NamespaceMap) -> Plan {
        let mut plan = Plan::default();
        let layout = match self.layout() {
            Ok(layout) => layout,
            Err(ambiguous) => {
                plan.ambiguous_root = Some(ambiguous);
                return plan;
            }
        };
        let mut found = self.described_collections(&layout.root, &mut plan);
        found.extend(self.undescribed_collections(&layout, &mut plan));
        for collection in found {
            plan_collection(&mut plan, collection, filter, map);
        }
        let oplog = format!("{}{OPLOG_FILE}", layout.root);
        if self.files.contains(&oplog) {
            plan.oplog_member = Some(oplog);
        }
        plan
    }

    /// Where the dump directory is and which data files its metadata files describe;
    /// `Err` names the candidates when the dump directory cannot be told.
    fn layout(&self) -> std::result::Result<Layout, String> {
        let data_files: Vec<(String, String)> = self.files.iter().map(|path| split(path)).filter(|(_, file)| data_stem(file).is_some()).collect();
        let root = self.dump_directory(&data_files)?;
        // `oplog.bson` at the dump's root is the oplog; anywhere else it is a collection.
        let data_files = data_files.into_iter().filter(|(dir, file)| !(file == OPLOG_FILE && *dir == root)).collect();
        let described = self.metadata.iter().map(|file| self.data_file_of(file)).collect();
        let dirs_with_metadata = self.metadata.iter().map(|file| file.dir.clone()).collect();
        Ok(Layout { root, data_files, described, dirs_with_metadata })
    }

    /// The dump directory: the one holding the metadata and data files; of several, the one the layout names (`data/db/dump/<name>/`); `Err` when that
    /// does not single one out.
    fn dump_directory(&self, data_files: &[(String, String)]) -> std::result::Result<String, String> {
        let data_dirs = data_files.iter().filter(|(_, file)| file != OPLOG_FILE).map(|(dir, _)| dir);
        let dirs = self.metadata.iter().map(|file| &file.dir).chain(data_dirs);
        let mut candidates: Vec<String> = dirs.filter(|dir| self.database_of(dir).is_some()).map(|dir| self.root_of(dir)).collect();
        candidates.sort();
        candidates.dedup();
        match candidates.as_slice() {
            [] => return Ok(self.metadata.first().map(|file| self.root_of(&file.dir)).unwrap_or_default()),
            [only] => return Ok(only.clone()),
            _ => {}
        }
        let named: Vec<&String> = candidates.iter().filter(|dir| is_named_dump_directory(dir)).collect();
        if let [only] = named.as_slice() {
            return Ok((*only).clone());
        }
        let listed = candidates.iter().map(|dir| if dir.is_empty() { "the top of the archive".to_string() } else { dir.clone() }).collect::<Vec<_>>();
        Err(format!(
            "the archive holds {} directories that each look like a dump ({}) and {} the one its layout names (data/db/dump/<name>/), \
             so it cannot tell which to restore and wrote nothing: repack the archive with the one dump directory you mean, \
             or unpack it and give that directory to the official mongorestore",
            candidates.len(),
            listed.join(", "),
            if named.is_empty() { "none is" } else { "more than one is" },
        ))
    }

    /// The data file a metadata file describes, by path: `<stem>.bson`, or the legacy
    /// `<stem>.bin` when only that is in the archive.
    fn data_file_of(&self, file: &MetadataFile) -> String {
        let stem = if file.metadata.get_str("type") == Ok("timeseries") && self.buckets_in_system_collection() {
            format!("{}{TIMESERIES_BUCKETS_PREFIX}{}", file.dir, file.stem)
        } else {
            format!("{}{}", file.dir, file.stem)
        };
        let legacy = format!("{stem}.bin");
        if self.files.contains(&legacy) && !self.files.contains(&format!("{stem}.bson")) {
            legacy
        } else {
            format!("{stem}.bson")
        }
    }

    /// The collections of the metadata files inside the dump directory `root` (the
    /// others are noted as unread).
    fn described_collections(&self, root: &str, plan: &mut Plan) -> Vec<FoundCollection> {
        let mut found = Vec::new();
        for file in &self.metadata {
            let Some(database) = self.database_of(&file.dir) else {
                plan.unread_files.push(format!("{}{}{METADATA_SUFFIX}: {}", file.dir, file.stem, TOP_LEVEL));
                continue;
            };
            if self.root_of(&file.dir) != root {
                plan.unread_files.push(format!("{}{}{METADATA_SUFFIX}: outside the dump directory {root}", file.dir, file.stem));
                continue;
            }
            let data = self.data_file_of(file);
            let data = self.files.contains(&data).then_some(data);
            found.push(FoundCollection { database, collection: file.collection.clone(), metadata: file.metadata.clone(), bson_member: data });
        }
        found
    }

    /// The collections of the `.bson` files no metadata file describes; files that are
    /// not restored are noted as unread, or refused.
    fn undescribed_collections(&self, layout: &Layout, plan: &mut Plan) -> Vec<FoundCollection> {
        let root = &layout.root;
        let mut found = Vec::new();
        for (dir, file) in &layout.data_files {
            let path = format!("{dir}{file}");
            if layout.described.contains(&path) {
                continue;
            }
            let Some(database) = self.database_of(dir) else {
                plan.unread_files.push(format!("{path}: {TOP_LEVEL}"));
                continue;
            };
            let collection = unescape(data_stem(file).unwrap_or(file));
            if self.root_of(dir) != *root {
                plan.unread_files.push(format!("{path}: outside the dump directory {root}"));
            } else if file == SYSTEM_INDEXES_FILE {
                if layout.dirs_with_metadata.contains(dir) {
                    plan.unread_files
                        .push(format!("{path}: not read, as mongorestore does not, because the database's .metadata.json files hold its indexes"));
                }
            } else if collection == "system.profile" {
                plan.unread_files.push(format!("{path}: system.profile is never restored (as mongorestore)"));
            } else if collection.starts_with(TIMESERIES_BUCKETS_PREFIX) {
                plan.refusals.push(format!(
                    "{path}: the buckets of a time-series collection without its .metadata.json, which mongorestore refuses too \
                     (the collection's options are needed to recreate it)"
                ));
            } else {
                let indexes = self.system_indexes_of(dir, &collection);
                let mut metadata = Document::new();
                if !indexes.is_empty() {
                    metadata.insert("indexes", indexes);
                }
                found.push(FoundCollection { database, collection, metadata, bson_member: Some(path) });
            }
        }
        found
    }

    /// Pre-3.0 dumps keep index definitions in `system.indexes.bson`, each with its `ns`:
    /// those of `collection` in directory `dir`.
    fn system_indexes_of(&self, dir: &str, collection: &str) -> Vec<Document> {
        self.system_indexes
            .iter()
            .filter(|found| found.dir == dir)
            .flat_map(|found| found.specs.iter())
            .filter(|spec| spec.get_str("ns").ok().and_then(|ns| ns.split_once('.')).map(|(_, c)| c) == Some(collection))
            .cloned()
            .map(with_simple_collation)
            .map(|mut spec| {
                // Options of MongoDB 2.x that current servers refuse.
                spec.remove("dropDups");
                spec.remove("safe");
                spec
            })
            .collect()
    }
}

/// Where a legacy dump directory is, and what its metadata files describe.
struct Layout {
    /// The dump directory (with a trailing slash, empty at the top).
    root: String,
    /// `.bson` files (directory, file name), `oplog.bson` at the root left out.
    data_files: Vec<(String, String)>,
    /// Paths of the data files the metadata files describe.
    described: std::collections::HashSet<String>,
    /// Directories holding metadata files.
    dirs_with_metadata: std::collections::HashSet<String>,
}

/// A collection found in a legacy tarball, before the filters.
struct FoundCollection {
    database: String,
    collection: String,
    /// Its metadata (empty without a metadata file).
    metadata: Document,
    /// Its `.bson` member, when the archive has one.
    bson_member: Option<String>,
}

/// Adds a found collection to the plan (or to its skipped namespaces).
fn plan_collection(plan: &mut Plan, found: FoundCollection, filter: &NamespaceFilter, map: &NamespaceMap) {
    let FoundCollection { database, collection, metadata, bson_member } = found;
    let Some(admitted) = plan.admit(&database, &collection, filter, map) else { return };
    let kind = match admitted.users_or_roles {
        Some(kind) => kind,
        None => metadata.get_str("type").ok().filter(|kind| !kind.is_empty()).unwrap_or("collection").into(),
    };
    // As mongorestore: the server picks the index version (a pre-3.0 `v: 0` is
    // refused by every current server) and the namespace is the target's.
    let indexes = match metadata.get_array("indexes") {
        Ok(specs) => specs
            .iter()
            .filter_map(|spec| spec.as_document().cloned())
            .map(|mut spec| {
                spec.remove("v");
                spec.remove("ns");
                spec
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let planned = PlannedNamespace {
        target_database: admitted.target_database,
        database,
        collection,
        kind,
        options: metadata.get_document("options").cloned().unwrap_or_default(),
        indexes,
        bson_member,
        expected: None,
    };
    plan.add(planned);
}

/// An index definition of `system.indexes.bson` as mongorestore builds it: nothing in
/// such a dump says the collection has no default collation, so an index without a
/// collation gets the simple one (a version 1 index cannot carry a collation).
fn with_simple_collation(mut spec: Document) -> Document {
    let version_one = matches!(spec.get("v"), Some(bson::Bson::Int32(1)) | Some(bson::Bson::Int64(1))) || spec.get_f64("v") == Ok(1.0);
    if !version_one && !spec.contains_key("collation") {
        spec.insert("collation", bson::doc! { "locale": "simple" });
    }
    spec
}

/// Why a data file at the top of the archive is not read.
const TOP_LEVEL: &str = "at the top of the archive, outside any database directory: if the archive holds one database's directory, \
                         restore it with --db NAME";

/// Deepest nesting accepted in `system.indexes.bson` (an index spec needs a handful).
const MAX_INDEX_SPEC_DEPTH: usize = 32;

/// The documents of a small BSON file, each checked (length inside the file, nesting
/// depth) before it is decoded, so hostile bytes get an error, not an abort.
fn read_bson_documents(bytes: &[u8]) -> std::result::Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = rest.get(..4).map(|prefix| i32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]])).unwrap_or(-1);
        let length =
            usize::try_from(length).ok().filter(|length| (5..=rest.len()).contains(length)).ok_or("a document length is outside the file")?;
        let raw = bson::RawDocument::from_bytes(&rest[..length]).map_err(|e| e.to_string())?;
        check_depth(raw, 0)?;
        documents.push(Document::try_from(raw).map_err(|e| e.to_string())?);
        rest = &rest[length..];
    }
    Ok(documents)
}

fn check_depth(document: &bson::RawDocument, depth: usize) -> std::result::Result<(), String> {
    if depth > MAX_INDEX_SPEC_DEPTH {
        return Err(format!("documents nest deeper than {MAX_INDEX_SPEC_DEPTH} levels"));
    }
    for element in document {
        check_value(element.map_err(|e| e.to_string())?.1, depth)?;
    }
    Ok(())
}

fn check_value(value: bson::RawBsonRef<'_>, depth: usize) -> std::result::Result<(), String> {
    match value {
        bson::RawBsonRef::Document(inner) => check_depth(inner, depth + 1),
        bson::RawBsonRef::Array(inner) => {
            if depth + 1 > MAX_INDEX_SPEC_DEPTH {
                return Err(format!("documents nest deeper than {MAX_INDEX_SPEC_DEPTH} levels"));
            }
            for item in inner {
                check_value(item.map_err(|e| e.to_string())?, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The escaped collection name of a data file (`<stem>.bson` or `<stem>.bin`).
fn data_stem(file: &str) -> Option<&str> {
    DATA_SUFFIXES.iter().find_map(|suffix| file.strip_suffix(suffix))
}

/// Whether `dir` is `data/db/dump/<name>/`, the dump directory the layout names.
fn is_named_dump_directory(dir: &str) -> bool {
    dir.strip_prefix(NAMED_DUMP_PREFIX).and_then(|rest| rest.strip_suffix('/')).is_some_and(|name| !name.is_empty() && !name.contains('/'))
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
    use crate::dump::layout::escape_collection_name;
    use bson::doc;

    fn plan(scan: LegacyScan) -> Plan {
        scan.into_plan(&NamespaceFilter::default(), &NamespaceMap::default())
    }

    fn sources(plan: &Plan) -> Vec<String> {
        let mut names: Vec<String> = plan.namespaces.iter().map(PlannedNamespace::source).collect();
        names.sort();
        names
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
        let plan = plan(scan);
        assert_eq!(plan.namespaces.len(), 1);
        let log = &plan.namespaces[0];
        assert_eq!(log.source(), "ingest.log");
        assert_eq!(log.bson_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/ingest/log.bson"));
        assert!(log.options.get_bool("capped").unwrap());
        assert_eq!(plan.oplog_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/oplog.bson"));
    }

    #[test]
    fn bin_files_are_collections_as_mongorestore_reads_them() {
        let mut scan = LegacyScan::default();
        scan.member("dump/shop/orders.bin", None).unwrap();
        scan.member("dump/shop/orders.metadata.json", Some(br#"{"options":{},"indexes":[]}"#)).unwrap();
        scan.member("dump/shop/legacy%24items.bin", None).unwrap();
        let plan = plan(scan);
        assert_eq!(sources(&plan), ["shop.legacy$items", "shop.orders"]);
        let orders = plan.namespaces.iter().find(|n| n.collection == "orders").unwrap();
        assert_eq!(orders.bson_member.as_deref(), Some("dump/shop/orders.bin"), "the metadata file's data is the .bin file");
        assert!(plan.unread_files.is_empty(), "{:?}", plan.unread_files);
    }

    #[test]
    fn of_several_dump_directories_the_named_one_is_read_and_otherwise_none() {
        let named = |scan: &mut LegacyScan| {
            scan.member("data/db/dump/2018-04-04T11_37/ingest/log.bson", None).unwrap();
            scan.member("data/db/dump/2018-04-04T11_37/ingest/log.metadata.json", Some(b"{}")).unwrap();
        };
        let mut scan = LegacyScan::default();
        scan.member("scratch/copy/ingest/log.bson", None).unwrap();
        scan.member("scratch/copy/ingest/log.metadata.json", Some(b"{}")).unwrap();
        named(&mut scan);
        let preferred = plan(scan);
        assert!(preferred.ambiguous_root.is_none());
        assert_eq!(preferred.namespaces[0].bson_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/ingest/log.bson"));
        assert!(preferred.unread_files.iter().any(|f| f.starts_with("scratch/copy/ingest/log.metadata.json")), "{:?}", preferred.unread_files);

        for other in ["data/db/dump/2018-04-05T11_37/", "elsewhere/dump/"] {
            let mut scan = LegacyScan::default();
            named(&mut scan);
            scan.member(&format!("{other}ingest/log.bson"), None).unwrap();
            scan.member(&format!("{other}ingest/log.metadata.json"), Some(b"{}")).unwrap();
            if other.starts_with("elsewhere") {
                // One named directory among others: read, not ambiguous.
                assert!(plan(scan).ambiguous_root.is_none());
                continue;
            }
            let refused = plan(scan);
            let why = refused.ambiguous_root.expect("two named dump directories");
            assert!(why.contains("data/db/dump/2018-04-04T11_37/") && why.contains(other) && why.contains("more than one"), "{why}");
            assert!(refused.namespaces.is_empty());
        }
        let mut scan = LegacyScan::default();
        scan.member("a/shop/orders.bson", None).unwrap();
        scan.member("b/shop/orders.bson", None).unwrap();
        let why = plan(scan).ambiguous_root.expect("two unnamed dump directories");
        assert!(why.contains("a/, b/") && why.contains("none is"), "{why}");
    }

    #[test]
    fn data_files_without_metadata_and_empty_metadata_restore_with_defaults() {
        let mut scan = LegacyScan::default();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/project.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/file%24s.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.bson", None).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/ingest/log.metadata.json", Some(b"  \n")).unwrap();
        scan.member("data/db/dump/2018-04-04T11_37/oplog.bson", None).unwrap();
        let plan = plan(scan);
        let mut packed_from_inside = LegacyScan::default();
        packed_from_inside.member("./ingest/project.bson", None).unwrap();
        let inside = packed_from_inside.into_plan(&NamespaceFilter::default(), &NamespaceMap::new(None));
        assert_eq!(inside.namespaces[0].source(), "ingest.project");
        assert_eq!(inside.namespaces[0].bson_member.as_deref(), Some("ingest/project.bson"));
        assert_eq!(sources(&plan), ["ingest.file$s", "ingest.log", "ingest.project"]);
        assert!(plan.namespaces.iter().all(|n| n.options.is_empty() && n.indexes.is_empty() && n.bson_member.is_some()));
        assert_eq!(plan.oplog_member.as_deref(), Some("data/db/dump/2018-04-04T11_37/oplog.bson"));
        assert!(plan.unread_files.is_empty(), "{:?}", plan.unread_files);
    }

    #[test]
    fn pre_3_0_index_definitions_go_to_their_collections_unless_metadata_files_exist() {
        let specs: Vec<u8> = [
            doc! { "v": 1, "key": { "_id": 1 }, "name": "_id_", "ns": "old.things" },
            doc! { "v": 1, "key": { "sku": 1 }, "name": "sku_1", "ns": "old.things", "unique": true },
            doc! { "v": 1, "key": { "at": -1 }, "name": "at_-1", "ns": "old.log" },
        ]
        .iter()
        .flat_map(|spec| bson::to_vec(spec).unwrap())
        .collect();
        let mut scan = LegacyScan::default();
        scan.member("dump/old/things.bson", None).unwrap();
        scan.member("dump/old/log.bson", None).unwrap();
        scan.member("dump/old/system.indexes.bson", Some(&specs)).unwrap();
        scan.member("dump/new/a.bson", None).unwrap();
        scan.member("dump/new/a.metadata.json", Some(b"{}")).unwrap();
        scan.member("dump/new/system.indexes.bson", Some(&specs)).unwrap();
        let plan = plan(scan);
        assert_eq!(sources(&plan), ["new.a", "old.log", "old.things"]);
        let things = plan.namespaces.iter().find(|n| n.collection == "things").unwrap();
        let names: Vec<&str> = things.indexes.iter().map(|spec| spec.get_str("name").unwrap()).collect();
        assert_eq!(names, ["_id_", "sku_1"]);
        assert!(plan.namespaces.iter().find(|n| n.source() == "new.a").unwrap().indexes.is_empty());
        assert_eq!(plan.unread_files.len(), 1, "{:?}", plan.unread_files);
        assert!(plan.unread_files[0].starts_with("dump/new/system.indexes.bson"));
    }

    #[test]
    fn a_database_directory_needs_a_name() {
        let mut without = LegacyScan::default();
        without.member("orders.bson", None).unwrap();
        let refused = plan(without);
        assert!(refused.namespaces.is_empty());
        assert!(refused.unread_files[0].contains("--db NAME"), "{:?}", refused.unread_files);
        for (path, meta) in [("orders.bson", "orders.metadata.json"), ("shop/orders.bson", "shop/orders.metadata.json")] {
            let mut scan = LegacyScan::new(Some("copy".into()));
            scan.member(path, None).unwrap();
            scan.member(meta, Some(br#"{"options":{},"indexes":[]}"#)).unwrap();
            let planned = plan(scan);
            assert_eq!(sources(&planned), ["copy.orders"]);
            assert_eq!(planned.namespaces[0].bson_member.as_deref(), Some(path));
        }
    }

    #[test]
    fn time_series_buckets_follow_the_source_version() {
        let meta =
            br#"{"options":{"timeseries":{"timeField":"t","granularity":"seconds"}},"indexes":[],"collectionName":"weather","type":"timeseries"}"#;
        let mut old = LegacyScan::default();
        old.member("dump/iot/system.buckets.weather.bson", None).unwrap();
        old.member("dump/iot/weather.metadata.json", Some(meta)).unwrap();
        let planned = plan(old);
        let weather = &planned.namespaces[0];
        assert!(weather.is_timeseries());
        assert_eq!(weather.data_collection(), "system.buckets.weather");
        assert_eq!(weather.bson_member.as_deref(), Some("dump/iot/system.buckets.weather.bson"));
        let mut raw = LegacyScan::default();
        raw.member("dump/prelude.json", Some(br#"{"ServerVersion":"8.3.0","ToolVersion":"100.13.0"}"#)).unwrap();
        raw.member("dump/iot/weather.bson", None).unwrap();
        raw.member("dump/iot/weather.metadata.json", Some(meta)).unwrap();
        assert_eq!(raw.source_version.as_deref(), Some("8.3.0"));
        assert_eq!(plan(raw).namespaces[0].bson_member.as_deref(), Some("dump/iot/weather.bson"));
        let mut orphan = LegacyScan::default();
        orphan.member("dump/iot/system.buckets.weather.bson", None).unwrap();
        let refused = plan(orphan);
        assert!(refused.namespaces.is_empty());
        assert!(refused.refusals[0].contains("time-series"), "{:?}", refused.refusals);
        let mut broken = LegacyScan::default();
        assert_eq!(broken.member("dump/prelude.json", Some(b"{not json")).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn truncated_names_come_from_the_metadata() {
        let long = "c".repeat(300);
        let stem = escape_collection_name(&long);
        assert!(stem.contains("%24"));
        let mut scan = LegacyScan::default();
        scan.member(&format!("dump/db/{stem}.bson"), None).unwrap();
        scan.member(&format!("dump/db/{stem}.metadata.json"), Some(format!(r#"{{"collectionName":"{long}"}}"#).as_bytes())).unwrap();
        let planned = plan(scan);
        assert_eq!(sources(&planned), [format!("db.{long}")]);
        assert_eq!(planned.namespaces[0].bson_member.as_deref(), Some(format!("dump/db/{stem}.bson").as_str()));
    }

    #[test]
    fn hostile_system_indexes_bytes_are_refused_not_fatal() {
        let mut nested = doc! { "leaf": 1 };
        for _ in 0..100 {
            nested = doc! { "n": nested };
        }
        let deep = bson::to_vec(&nested).unwrap();
        assert!(read_bson_documents(&deep).unwrap_err().contains("nest deeper"));
        let mut huge_length = bson::to_vec(&doc! { "a": 1 }).unwrap();
        huge_length[..4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(read_bson_documents(&huge_length).unwrap_err().contains("outside the file"));
        assert!(read_bson_documents(&[1, 2]).is_err());
        let mut scan = LegacyScan::default();
        assert_eq!(scan.member("dump/old/system.indexes.bson", Some(&deep)).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn query_unescape_reverses_mongodump_file_names() {
        assert_eq!(unescape("with+space%2Fslash"), "with space/slash");
        assert_eq!(unescape("plain"), "plain");
    }
}
