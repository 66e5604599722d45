//! What a restore will do, decided before any document moves: which namespaces of the
//! backup are restored, under which target names, with which options and indexes, and
//! what their `.bson` files must hash to. It comes from the manifest, or, for a
//! tarball made by the original `mongodump` + `tar -czf` pipeline, from the archive's
//! `.metadata.json` files.

use bson::{Bson, Document};

use crate::dump::{manifest_path, OPLOG_FILE};
use crate::error::{Error, Result};
use crate::filter::{NamespaceFilter, NamespaceMap};
use crate::manifest::{Manifest, NamespaceKind};

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
    /// `collection`, `view`, `timeseries`, or the backup's `users` or `roles`.
    pub kind: NamespaceKind,
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
        self.kind == NamespaceKind::View
    }

    /// Whether this is the backup's users or roles (`restore --users-and-roles`).
    pub fn is_users_or_roles(&self) -> bool {
        matches!(self.kind, NamespaceKind::Users | NamespaceKind::Roles)
    }

    /// Whether this is a time-series collection (its `.bson` file holds buckets).
    pub fn is_timeseries(&self) -> bool {
        self.kind == NamespaceKind::Timeseries
    }

    /// The collection the documents of the `.bson` file go into: the collection itself,
    /// for a time-series collection the `system.buckets.<name>` collection that stores
    /// its buckets (as mongorestore inserts them into MongoDB before 8.3), and for users
    /// and roles the temporary collection they are merged from.
    pub fn data_collection(&self) -> String {
        match self.kind {
            NamespaceKind::Users => TEMP_USERS.to_string(),
            NamespaceKind::Roles => TEMP_ROLES.to_string(),
            NamespaceKind::Timeseries => format!("{TIMESERIES_BUCKETS_PREFIX}{}", self.collection),
            _ => self.collection.clone(),
        }
    }
}

pub use crate::source::discovery::TIMESERIES_BUCKETS_PREFIX;

/// The temporary collection of `admin` the users are inserted into (mongorestore's name).
pub const TEMP_USERS: &str = "tempusers";
/// The temporary collection of `admin` the roles are inserted into (mongorestore's name).
pub const TEMP_ROLES: &str = "temproles";

/// Whether a MongoDB `version` ("8.3.0") keeps time-series buckets under the
/// collection's own name (8.3 and later, reached only with `rawData`) rather than in
/// `system.buckets.<name>`.
pub fn stores_buckets_raw(version: &str) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (8, 3)
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
    /// The backup's users and roles (`admin.system.users`, `admin.system.roles`),
    /// restored only with `--users-and-roles`.
    pub users_and_roles: Vec<PlannedNamespace>,
    /// Files of a legacy tarball that are not restored, each with the reason.
    pub unread_files: Vec<String>,
    /// Files that make mongorestore refuse the whole dump (time-series buckets without
    /// their metadata): the restore is refused before anything is written.
    pub refusals: Vec<String>,
    /// Why the archive's dump directory cannot be told (several candidates): a usage
    /// error, since the caller must say which (exit 2).
    pub ambiguous_root: Option<String>,
}

/// Authentication data a plain insert cannot restore; `mongorestore
/// --restoreDbUsersAndRoles` handles it.
fn is_auth_collection(database: &str, collection: &str) -> bool {
    (database == "admin" && matches!(collection, "system.users" | "system.roles" | "system.version")) || collection.starts_with("$admin.system.")
}

/// The plan kind of a collection holding users or roles: `admin.system.users` and
/// `admin.system.roles` of a full dump, or the `$admin.system.users` /
/// `$admin.system.roles` files of a database dumped with `--dumpDbUsersAndRoles`.
fn users_or_roles_kind(database: &str, collection: &str) -> Option<NamespaceKind> {
    match (database, collection) {
        ("admin", "system.users") | (_, "$admin.system.users") => Some(NamespaceKind::Users),
        ("admin", "system.roles") | (_, "$admin.system.roles") => Some(NamespaceKind::Roles),
        _ => None,
    }
}

/// Canonical Extended JSON (as stored in manifests and metadata files) back to BSON.
///
/// # Errors
/// A consistency error naming `what` when the JSON is not Extended JSON of a document.
pub fn document_from_extjson(value: &serde_json::Value, what: &str) -> Result<Document> {
    match Bson::try_from(value.clone()) {
        Ok(Bson::Document(document)) => Ok(document),
        Ok(other) => Err(Error::Damaged(format!("{what} is not a document: {other}"))),
        Err(error) => Err(Error::Damaged(format!("{what} is not valid Extended JSON: {error}"))),
    }
}

/// Where a namespace the plan admits goes.
pub(super) struct Admitted {
    /// The target database: `admin` for users and roles, else the mapped one.
    pub target_database: String,
    /// `users` or `roles` for the backup's users and roles, `None` for anything else.
    pub users_or_roles: Option<NamespaceKind>,
}

impl Plan {
    /// Whether namespace `database.collection` of the backup enters the plan: the
    /// backup's users and roles always do (restored only with `--users-and-roles`),
    /// any other namespace unless the filters leave it out or it is authentication
    /// data. A namespace left out is noted as skipped.
    pub(super) fn admit(&mut self, database: &str, collection: &str, filter: &NamespaceFilter, map: &NamespaceMap) -> Option<Admitted> {
        let users_or_roles = users_or_roles_kind(database, collection);
        if users_or_roles.is_none() && (!filter.keeps(database, collection) || is_auth_collection(database, collection)) {
            self.skipped.push(format!("{database}.{collection}"));
            return None;
        }
        let target_database = if users_or_roles.is_some() { "admin".to_string() } else { map.database(database).to_string() };
        Some(Admitted { target_database, users_or_roles })
    }

    /// Adds a planned namespace: to the users and roles, restored only with
    /// `--users-and-roles`, or to the namespaces.
    pub(super) fn add(&mut self, planned: PlannedNamespace) {
        if planned.is_users_or_roles() {
            self.users_and_roles.push(planned);
        } else {
            self.namespaces.push(planned);
        }
    }

    /// The plan for a backup with a manifest.
    ///
    /// # Errors
    /// A consistency error for options or index specs that are not valid Extended JSON.
    pub fn from_manifest(manifest: &Manifest, filter: &NamespaceFilter, map: &NamespaceMap) -> Result<Self> {
        let mut plan = Plan::default();
        for entry in &manifest.namespaces {
            let Some(admitted) = plan.admit(&entry.database, &entry.collection, filter, map) else { continue };
            let source = format!("{}.{}", entry.database, entry.collection);
            let indexes =
                entry.indexes.iter().map(|spec| document_from_extjson(spec, &format!("an index spec of {source}"))).collect::<Result<Vec<_>>>()?;
            let planned = PlannedNamespace {
                database: entry.database.clone(),
                collection: entry.collection.clone(),
                target_database: admitted.target_database,
                kind: admitted.users_or_roles.unwrap_or_else(|| entry.kind.clone()),
                options: document_from_extjson(&entry.options, &format!("the options of {source}"))?,
                indexes,
                bson_member: entry.bson_file.as_ref().map(|file| format!("{}{file}", manifest.dump_root)),
                expected: Some(Expected {
                    documents: entry.documents,
                    bytes: entry.bytes,
                    sha256: entry.sha256.clone(),
                    content_hash: entry.content_hash.clone(),
                }),
            };
            plan.add(planned);
        }
        if manifest.consistency.oplog {
            plan.oplog_member = Some(format!("{}{OPLOG_FILE}", manifest.dump_root));
        }
        plan.manifest_member = Some(manifest_path(&manifest.name));
        Ok(plan)
    }
}
