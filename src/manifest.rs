//! The manifest: what a backup holds and how to prove it. It is stored inside the
//! archive (beside the dump directory) and, with the archive's own size and hash
//! added, as the sidecar `<name>.manifest.json`, written last.

use serde::{Deserialize, Serialize};

use crate::oplog::Timestamp;

/// Version of the manifest format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// A backup's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// Backup name (`2018-04-04T11_37`).
    pub name: String,
    /// Where the data came from (hosts only, never credentials).
    pub source: SourceInfo,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// End time, RFC 3339 UTC.
    pub finished_at: String,
    /// `gzip` or `zstd`.
    pub compression: String,
    /// Path of the dump directory inside the archive.
    pub dump_root: String,
    /// The point in time the dump plus oplog represent.
    pub consistency: Consistency,
    /// The `--ns-include` / `--ns-exclude` patterns the backup was taken with (both
    /// empty: the whole deployment). Verification uses them to tell a namespace
    /// created since the backup from one the backup left out on purpose.
    #[serde(default)]
    pub selection: Selection,
    /// Every namespace in the dump, sorted by database and name (empty in the sidecar
    /// of an encrypted backup, whose details are sealed: see [`EncryptionInfo`]).
    #[serde(default)]
    pub namespaces: Vec<NamespaceEntry>,
    /// Sums over all namespaces.
    pub totals: Totals,
    /// The client-side encryption of the archive, when it is encrypted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption: Option<EncryptionInfo>,
    /// The archive object itself; present only in the sidecar.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub archive: Option<ArchiveInfo>,
}

/// How an encrypted backup is encrypted (public facts only: never a private key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncryptionInfo {
    /// Always `age` (X25519 recipients; the format the stock `age` command reads).
    pub format: String,
    /// The recipients' public keys (`age1...`): any one of their identities decrypts.
    pub recipients: Vec<String>,
    /// Only in a sidecar: the whole manifest, age-encrypted to the same recipients
    /// and ASCII-armored, when the sidecar leaves its namespace details out.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sealed_manifest: Option<String>,
}

/// Name and version of the writing tool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolInfo {
    /// Always `ingest-backup`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

impl ToolInfo {
    /// This build.
    pub fn current() -> Self {
        Self { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// The backed-up deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    /// Seed hosts from the URI, `host:port`.
    pub hosts: Vec<String>,
    /// Replica set name, if any.
    pub replica_set: Option<String>,
    /// Server version from `buildInfo`, if reported.
    #[serde(default)]
    pub server_version: Option<String>,
}

/// The consistency point of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Consistency {
    /// Whether `oplog.bson` was captured.
    pub oplog: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Newest oplog entry before the first collection was read.
    pub start: Option<Timestamp>,
    /// Newest oplog entry after the last collection was read: the point in time
    /// `mongorestore --oplogReplay` reaches.
    pub end: Option<Timestamp>,
    /// Entries in `oplog.bson`.
    pub oplog_entries: u64,
    /// Bytes of `oplog.bson`.
    pub oplog_bytes: u64,
    /// SHA-256 of `oplog.bson`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub oplog_sha256: Option<String>,
}

/// One collection or view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceEntry {
    /// Database name.
    pub database: String,
    /// Collection or view name.
    pub collection: String,
    /// `collection`, `view` or `timeseries` (`listCollections`' `type`).
    #[serde(rename = "type")]
    pub kind: NamespaceKind,
    /// Collection UUID (hex) when known.
    pub uuid: Option<String>,
    /// `listCollections` options, canonical Extended JSON.
    pub options: serde_json::Value,
    /// `listIndexes` specs, canonical Extended JSON.
    pub indexes: Vec<serde_json::Value>,
    /// The `.bson` file, relative to the dump root (absent for a view).
    pub bson_file: Option<String>,
    /// The `.metadata.json` file, relative to the dump root.
    pub metadata_file: String,
    /// Documents in the `.bson` file.
    pub documents: u64,
    /// Bytes of the `.bson` file.
    pub bytes: u64,
    /// SHA-256 of the `.bson` file.
    pub sha256: String,
    /// Order-independent content hash (see [`crate::digest::ContentHash`]).
    pub content_hash: String,
}

/// What a namespace is: `listCollections`' `type` (`collection`, `view`, `timeseries`),
/// or, in a restore plan only, the backup's users or roles. Serialized as that string,
/// so manifests and `--json` output read as they always did; a type this version does
/// not know is kept as it was written ([`NamespaceKind::Other`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NamespaceKind {
    /// `collection`.
    Collection,
    /// `view`.
    View,
    /// `timeseries`: its `.bson` file holds the buckets.
    Timeseries,
    /// `users`: the backup's `admin.system.users` (a restore plan's kind).
    Users,
    /// `roles`: the backup's `admin.system.roles` (a restore plan's kind).
    Roles,
    /// Any other type, kept verbatim.
    Other(String),
}

impl NamespaceKind {
    /// The kind as written in manifests, metadata files and reports.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Collection => "collection",
            Self::View => "view",
            Self::Timeseries => "timeseries",
            Self::Users => "users",
            Self::Roles => "roles",
            Self::Other(other) => other,
        }
    }
}

impl From<&str> for NamespaceKind {
    fn from(kind: &str) -> Self {
        match kind {
            "collection" => Self::Collection,
            "view" => Self::View,
            "timeseries" => Self::Timeseries,
            "users" => Self::Users,
            "roles" => Self::Roles,
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<String> for NamespaceKind {
    fn from(kind: String) -> Self {
        Self::from(kind.as_str())
    }
}

impl From<NamespaceKind> for String {
    fn from(kind: NamespaceKind) -> Self {
        match kind {
            NamespaceKind::Other(other) => other,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for NamespaceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Namespace patterns of a filtered backup.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Selection {
    /// `--ns-include` patterns.
    pub include: Vec<String>,
    /// `--ns-exclude` patterns.
    pub exclude: Vec<String>,
}

/// Sums over the namespaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Collections and views.
    pub namespaces: u64,
    /// Documents.
    pub documents: u64,
    /// Uncompressed BSON bytes.
    pub bytes: u64,
}

/// The archive object, recorded in the sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveInfo {
    /// File or object name of the archive.
    pub file: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// SHA-256 of the compressed bytes.
    pub sha256: String,
}

impl Manifest {
    /// Pretty JSON bytes, as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_through_json() {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            tool: ToolInfo::current(),
            name: "2018-04-04T11_37".into(),
            source: SourceInfo { hosts: vec!["mongo-service:27017".into()], replica_set: None, server_version: None },
            started_at: "2018-04-04T11:37:00Z".into(),
            finished_at: "2018-04-04T11:38:00Z".into(),
            compression: "gzip".into(),
            dump_root: "data/db/dump/2018-04-04T11_37/".into(),
            consistency: Consistency {
                oplog: false,
                reason: Some("not a replica set".into()),
                start: None,
                end: None,
                oplog_entries: 0,
                oplog_bytes: 0,
                oplog_sha256: None,
            },
            selection: Selection::default(),
            namespaces: vec![],
            totals: Totals::default(),
            encryption: None,
            archive: None,
        };
        let parsed: Manifest = serde_json::from_slice(&manifest.to_json()).unwrap();
        assert_eq!(parsed, manifest);
        assert!(!String::from_utf8(manifest.to_json()).unwrap().contains("\"archive\""));
    }

    #[test]
    fn namespace_kinds_serialize_as_the_strings_they_replaced() {
        for text in ["collection", "view", "timeseries", "users", "roles", "someday"] {
            let kind = NamespaceKind::from(text);
            assert_eq!(serde_json::to_string(&kind).unwrap(), serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<NamespaceKind>(&format!("{text:?}")).unwrap(), kind);
            assert_eq!((kind.as_str(), kind.to_string()), (text, text.to_string()));
        }
        assert_eq!(NamespaceKind::from("view"), NamespaceKind::View);
        assert_eq!(NamespaceKind::from("someday"), NamespaceKind::Other("someday".into()));
    }
}
