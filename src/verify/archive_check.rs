//! Stage one of `verify`: the archive against its manifest, with no server. The
//! stored bytes are streamed once: their size and SHA-256 are compared with the
//! sidecar, every tar member is read, every BSON document walked, and per namespace
//! the count, byte count, SHA-256 and content hash are recomputed and compared, as are
//! the `.metadata.json` options and index specs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::findings::{Finding, FIX_DAMAGED};
use crate::archive::reader::{ArchiveFormat, ArchiveReader};
use crate::crypto::Identities;
use crate::digest::{DigestSummary, NamespaceDigest};
use crate::dump::bson_reader::{BsonReader, BsonStreamError};
use crate::dump::{manifest_path, OPLOG_FILE};
use crate::manifest::{Manifest, NamespaceEntry};
use crate::progress::{ItemProgress, Progress};

/// Largest JSON member (metadata or manifest) read into memory.
const MAX_JSON_MEMBER: u64 = 64 << 20;

/// What stage one found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveCheck {
    /// No error finding: the archive holds exactly what the manifest says.
    pub intact: bool,
    /// Stored bytes read.
    pub archive_bytes: u64,
    /// SHA-256 of the stored bytes.
    pub archive_sha256: String,
    /// Tar members read.
    pub members: u64,
    /// BSON documents walked (collections and oplog).
    pub documents: u64,
    /// Uncompressed BSON bytes walked.
    pub bson_bytes: u64,
    /// Whether the content was read and checked: false for an encrypted backup checked
    /// without its identity, whose stored bytes only were compared with the sidecar.
    pub content_checked: bool,
    /// Every difference found.
    pub findings: Vec<Finding>,
}

/// Checks the archive read from `stored` against `manifest` (the sidecar, whose
/// `archive` field holds the expected size and SHA-256). `sidecar` is the same
/// sidecar as plain JSON: the archive's own copy of the manifest must equal it (its
/// `archive` field aside) as JSON, not merely read back as the same [`Manifest`],
/// since the schema's defaults would hide a key removed from either. Blocks: run it on
/// a blocking thread.
pub fn check_archive(
    stored: impl Read,
    file_name: &str,
    manifest: &Manifest,
    sidecar: &serde_json::Value,
    identities: Option<&Identities>,
    cancel: &CancellationToken,
) -> ArchiveCheck {
    let mut check = ArchiveCheck { content_checked: true, ..ArchiveCheck::default() };
    let Some(format) = ArchiveFormat::of_file(file_name) else {
        check.findings.push(Finding::error(file_name, "file name", ".tar.gz or .tar.zst", file_name, "rename it to its format's suffix"));
        return check;
    };
    let mut walker = Walker::new(manifest, sidecar);
    let (live, _display) = Progress::show("verify", "bytes");
    live.expect(Some(manifest.totals.documents), Some(manifest.totals.bytes));
    walker.live = live;
    let walked = (|| -> std::io::Result<crate::archive::ArchiveDigest> {
        let mut reader = ArchiveReader::open(stored, file_name, format, identities)?;
        for entry in reader.entries()? {
            if cancel.is_cancelled() {
                return Err(std::io::Error::other("verification cancelled"));
            }
            let entry = entry?;
            walker.member(entry, &mut check)?;
        }
        reader.finish()
    })();
    let members = check.members;
    record_digest(&mut check, walked, |error| {
        Finding::error(
            "archive",
            "stream",
            "a complete, readable archive",
            format!("unreadable after {members} members: {error}"),
            if crate::crypto::is_encrypted(file_name) && members == 0 {
                "the error above names the cause: a wrong identity (give one of the recipients' keys the sidecar lists), or an archive altered or damaged (restore an older backup)"
            } else {
                "the archive is truncated or corrupt; restore an older backup and run a new backup"
            },
        )
    });
    walker.report_missing(manifest, &mut check.findings);
    compare_stored_bytes(manifest, file_name, &mut check);
    check.intact = check.findings.iter().all(|f| f.severity != super::findings::Severity::Error);
    check
}

/// Checks the stored bytes of an encrypted archive read from `stored` against the
/// sidecar's size and SHA-256, without decrypting them (no identity was given):
/// the check reports that the content was not checked. Blocks.
pub fn check_ciphertext(stored: impl Read, file_name: &str, manifest: &Manifest, cancel: &CancellationToken) -> ArchiveCheck {
    let mut check = ArchiveCheck::default();
    let mut hashing = crate::archive::reader::HashingReader::new(stored);
    let mut buffer = vec![0u8; 1 << 16];
    let read = loop {
        if cancel.is_cancelled() {
            break Err(std::io::Error::other("verification cancelled"));
        }
        match hashing.read(&mut buffer) {
            Ok(0) => break Ok(hashing.digest()),
            Ok(_) => {}
            Err(error) => break Err(error),
        }
    };
    record_digest(&mut check, read, |error| {
        Finding::error("archive", "stream", "a complete, readable object", error, "the archive object is unreadable; try again")
    });
    compare_stored_bytes(manifest, file_name, &mut check);
    check.intact = check.findings.iter().all(|f| f.severity != super::findings::Severity::Error);
    check
}

/// Records the stored bytes' digest in `check`, or the finding `failure` makes of the
/// error that stopped the read.
fn record_digest(check: &mut ArchiveCheck, read: std::io::Result<crate::archive::ArchiveDigest>, failure: impl FnOnce(std::io::Error) -> Finding) {
    match read {
        Ok(digest) => {
            check.archive_bytes = digest.size;
            check.archive_sha256 = digest.sha256;
        }
        Err(error) => check.findings.push(failure(error)),
    }
}

/// Compares the stored bytes' size and SHA-256 in `check` (when the stream was read
/// whole) and the archive's file name with the sidecar's record of them.
fn compare_stored_bytes(manifest: &Manifest, file_name: &str, check: &mut ArchiveCheck) {
    let Some(expected) = &manifest.archive else {
        check.findings.push(Finding::error(
            "sidecar",
            "archive",
            "the archive's size and sha256",
            "none",
            "the sidecar manifest lacks the archive's digest: it was not written by a finished backup",
        ));
        return;
    };
    if expected.file != file_name {
        check.findings.push(Finding::error(
            "sidecar",
            "archive file",
            &expected.file,
            file_name,
            "the sidecar describes another archive: it was altered or copied from another backup; do not trust this backup",
        ));
    }
    // An empty hash: the stream broke, its size and hash were never complete.
    if !check.archive_sha256.is_empty() {
        if expected.size != check.archive_bytes {
            check.findings.push(Finding::error("archive", "size", expected.size, check.archive_bytes, FIX_DAMAGED));
        }
        if expected.sha256 != check.archive_sha256 {
            check.findings.push(Finding::error("archive", "sha256", &expected.sha256, &check.archive_sha256, FIX_DAMAGED));
        }
    }
}

/// Matches members to manifest entries and remembers which were seen.
struct Walker<'a> {
    root: &'a str,
    manifest_member: String,
    by_bson: BTreeMap<&'a str, &'a NamespaceEntry>,
    by_metadata: BTreeMap<&'a str, &'a NamespaceEntry>,
    seen: BTreeSet<String>,
    manifest: &'a Manifest,
    /// The sidecar as JSON, without its `archive` field: what the embedded manifest must be.
    sidecar: serde_json::Value,
    /// The progress display: documents and bytes against the manifest's totals.
    live: Progress,
}

impl<'a> Walker<'a> {
    fn new(manifest: &'a Manifest, sidecar: &serde_json::Value) -> Self {
        let mut sidecar = sidecar.clone();
        if let Some(object) = sidecar.as_object_mut() {
            object.remove("archive");
        }
        Self {
            sidecar,
            root: &manifest.dump_root,
            manifest_member: manifest_path(&manifest.name),
            by_bson: manifest.namespaces.iter().filter_map(|n| Some((n.bson_file.as_deref()?, n))).collect(),
            by_metadata: manifest.namespaces.iter().map(|n| (n.metadata_file.as_str(), n)).collect(),
            seen: BTreeSet::new(),
            manifest,
            live: Progress::hidden("verify"),
        }
    }

    /// Checks one member. An `Err` means the stream itself broke (stop reading);
    /// differences are pushed as findings.
    fn member<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, check: &mut ArchiveCheck) -> std::io::Result<()> {
        check.members += 1;
        let path = entry.path()?.to_string_lossy().into_owned();
        if entry.header().entry_type().is_dir() {
            return Ok(());
        }
        if !self.seen.insert(path.clone()) {
            check.findings.push(Finding::error(&path, "member", "one copy", "a duplicate", FIX_DAMAGED));
            return Ok(());
        }
        if path == self.manifest_member {
            let bytes = read_json_member(&mut entry)?;
            self.compare_embedded_manifest(&bytes, &mut check.findings);
            return Ok(());
        }
        let Some(relative) = path.strip_prefix(self.root) else {
            check.findings.push(Finding::error(&path, "member", "only the dump directory and the manifest", "an unexpected file", FIX_DAMAGED));
            return Ok(());
        };
        if relative == OPLOG_FILE {
            let summary = digest_bson(&mut entry, &path, check, None)?;
            self.compare_oplog(summary, &mut check.findings);
        } else if let Some(namespace) = self.by_bson.get(relative).copied() {
            let item = self.live.item(format!("{}.{}", namespace.database, namespace.collection), Some(namespace.bytes));
            let summary = digest_bson(&mut entry, &path, check, Some(&item));
            item.finish();
            compare_namespace(namespace, summary?, &mut check.findings);
        } else if let Some(namespace) = self.by_metadata.get(relative).copied() {
            let bytes = read_json_member(&mut entry)?;
            compare_metadata(namespace, &bytes, &mut check.findings);
        } else {
            check.findings.push(Finding::error(&path, "member", "a file the manifest lists", "a file it does not list", FIX_DAMAGED));
        }
        Ok(())
    }

    fn compare_embedded_manifest(&self, bytes: &[u8], findings: &mut Vec<Finding>) {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(embedded) if embedded == self.sidecar => {}
            Ok(_) => findings.push(Finding::error(
                &self.manifest_member,
                "manifest",
                "the same content as the sidecar",
                "a different manifest",
                "the sidecar or the archive was altered; trust neither, restore an older backup",
            )),
            Err(error) => findings.push(Finding::error(&self.manifest_member, "manifest", "valid JSON", error, FIX_DAMAGED)),
        }
    }

    fn compare_oplog(&self, found: Option<DigestSummary>, findings: &mut Vec<Finding>) {
        let Some(found) = found else { return };
        let consistency = &self.manifest.consistency;
        let subject = "oplog.bson";
        if consistency.oplog_entries != found.documents {
            findings.push(Finding::error(subject, "entries", consistency.oplog_entries, found.documents, FIX_DAMAGED));
        }
        if consistency.oplog_bytes != found.bytes {
            findings.push(Finding::error(subject, "bytes", consistency.oplog_bytes, found.bytes, FIX_DAMAGED));
        }
        if consistency.oplog_sha256.as_deref() != Some(found.sha256.as_str()) {
            findings.push(Finding::error(subject, "sha256", consistency.oplog_sha256.as_deref().unwrap_or("none"), &found.sha256, FIX_DAMAGED));
        }
    }

    /// Every member the manifest promises but the archive lacked.
    fn report_missing(&self, manifest: &Manifest, findings: &mut Vec<Finding>) {
        let missing = |path: String| !self.seen.contains(&path);
        for namespace in &manifest.namespaces {
            let subject = format!("{}.{}", namespace.database, namespace.collection);
            for file in namespace.bson_file.iter().chain(std::iter::once(&namespace.metadata_file)) {
                if missing(format!("{}{file}", self.root)) {
                    findings.push(Finding::error(&subject, "member", format!("{}{file}", self.root), "missing", FIX_DAMAGED));
                }
            }
        }
        if manifest.consistency.oplog && missing(format!("{}{OPLOG_FILE}", self.root)) {
            findings.push(Finding::error("oplog.bson", "member", format!("{}{OPLOG_FILE}", self.root), "missing", FIX_DAMAGED));
        }
        if missing(self.manifest_member.clone()) {
            findings.push(Finding::error("manifest", "member", &self.manifest_member, "missing", FIX_DAMAGED));
        }
    }
}

fn read_json_member(entry: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(MAX_JSON_MEMBER).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Digests a `.bson` member document by document. `Ok(None)` when the member is
/// malformed (a finding is recorded and the walk moves to the next member); `Err`
/// when the stream itself broke.
fn digest_bson(entry: &mut impl Read, path: &str, check: &mut ArchiveCheck, live: Option<&ItemProgress>) -> std::io::Result<Option<DigestSummary>> {
    let mut reader = BsonReader::new(entry);
    let mut digest = NamespaceDigest::default();
    loop {
        match reader.next_document() {
            Ok(Some(document)) => {
                check.documents += 1;
                check.bson_bytes += document.as_bytes().len() as u64;
                digest.add_document(document.as_bytes());
                if let Some(live) = live {
                    live.add(1, document.as_bytes().len() as u64);
                }
            }
            Ok(None) => return Ok(Some(digest.finish())),
            Err(BsonStreamError::Io { source, .. }) => return Err(source),
            Err(malformed) => {
                check.findings.push(Finding::error(path, "bson", "well-formed BSON documents", malformed, FIX_DAMAGED));
                return Ok(None);
            }
        }
    }
}

fn compare_namespace(namespace: &NamespaceEntry, found: Option<DigestSummary>, findings: &mut Vec<Finding>) {
    let Some(found) = found else { return };
    let subject = format!("{}.{}", namespace.database, namespace.collection);
    let pairs = [
        ("documents", namespace.documents.to_string(), found.documents.to_string()),
        ("bytes", namespace.bytes.to_string(), found.bytes.to_string()),
        ("sha256", namespace.sha256.clone(), found.sha256),
        ("content_hash", namespace.content_hash.clone(), found.content_hash),
    ];
    for (field, expected, actual) in pairs {
        if expected != actual {
            findings.push(Finding::error(&subject, field, expected, actual, FIX_DAMAGED));
        }
    }
}

fn compare_metadata(namespace: &NamespaceEntry, bytes: &[u8], findings: &mut Vec<Finding>) {
    let subject = format!("{}.{}", namespace.database, namespace.collection);
    let metadata: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            findings.push(Finding::error(&subject, "metadata.json", "valid JSON", error, FIX_DAMAGED));
            return;
        }
    };
    use serde_json::Value;
    let indexes = Value::Array(namespace.indexes.clone());
    let empty = Value::Object(serde_json::Map::new());
    let uuid = namespace.uuid.clone().map_or(Value::Null, Value::String);
    let fields = [
        ("indexes", &indexes, &Value::Null),
        // mongodump leaves out empty options.
        ("options", &namespace.options, &empty),
        ("uuid", &uuid, &Value::Null),
        ("collectionName", &Value::String(namespace.collection.clone()), &Value::Null),
        ("type", &Value::String(namespace.kind.to_string()), &Value::Null),
    ];
    for (field, expected, absent) in fields {
        let actual = metadata.get(field).unwrap_or(absent);
        if actual != expected {
            findings.push(Finding::error(&subject, format!("metadata {field}"), expected, actual, FIX_DAMAGED));
        }
    }
}
