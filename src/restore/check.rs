//! The check phase of a restore, as pure verdicts: each namespace's `.bson` digests
//! against the manifest, its insert tally, the archive's bytes against the sidecar,
//! the archive's own manifest against the sidecar, and `oplog.bson` against the
//! manifest. Each problem is a sentence for the report; nothing here stops a restore.

use super::plan::PlannedNamespace;
use super::target::InsertTally;
use crate::archive::ArchiveDigest;
use crate::digest::DigestSummary;
use crate::manifest::Manifest;

/// `ok`, `MISMATCH` or `unchecked` for one namespace's `.bson` member (`found`: its
/// digests, `None` when the archive lacks it), and the problem of a mismatch.
pub fn checksum(planned: &PlannedNamespace, found: Option<&DigestSummary>) -> (&'static str, Option<String>) {
    match (&planned.expected, found) {
        (None, _) => ("unchecked", None),
        (Some(_), None) if planned.is_view() => ("ok", None),
        (Some(_), None) => ("MISMATCH", Some(format!("{}: its .bson file is missing from the archive", planned.source()))),
        (Some(expected), Some(found))
            if expected.sha256 == found.sha256
                && expected.documents == found.documents
                && expected.bytes == found.bytes
                && expected.content_hash == found.content_hash =>
        {
            ("ok", None)
        }
        (Some(expected), Some(found)) => (
            "MISMATCH",
            Some(format!(
                "{}: the .bson file's sha256 is {} but the manifest says {} ({} documents, manifest {}; {} bytes, manifest {}; content hash {}, manifest {}): \
                 the archive or its manifest is damaged",
                planned.source(),
                found.sha256,
                expected.sha256,
                found.documents,
                expected.documents,
                found.bytes,
                expected.bytes,
                found.content_hash,
                expected.content_hash
            )),
        ),
    }
}

/// The documents of one namespace the target refused: duplicates, then other refusals.
pub fn tally_problems(planned: &PlannedNamespace, tally: &InsertTally) -> Vec<String> {
    let mut problems = Vec::new();
    if tally.duplicates > 0 {
        problems.push(format!(
            "{}: {} documents were not restored because documents with the same key already exist; use --drop to replace the collection",
            planned.target(),
            tally.duplicates
        ));
    }
    if tally.failed > 0 {
        problems.push(format!("{}: {} documents were refused: {}", planned.target(), tally.failed, tally.first_failure.as_deref().unwrap_or("")));
    }
    problems
}

/// Why the archive's stored bytes are not those the sidecar records, if they are not.
pub fn archive_problem(manifest: &Manifest, found: &ArchiveDigest) -> Option<String> {
    let expected = manifest.archive.as_ref()?;
    (expected.sha256 != found.sha256 || expected.size != found.size).then(|| {
        format!(
            "the archive's bytes differ from the sidecar (size {} vs {}, sha256 {} vs {}): it was altered after the backup",
            found.size, expected.size, found.sha256, expected.sha256
        )
    })
}

/// Why the archive's own manifest is not the sidecar (its `archive` field aside), if
/// it is not: one of the two was altered, and the sidecar is what the restore followed.
pub fn embedded_manifest_problem(manifest: &Manifest, sidecar: &[u8], embedded: Option<&[u8]>) -> Option<String> {
    let member = crate::dump::manifest_path(&manifest.name);
    let Some(embedded) = embedded else {
        return Some(format!("the archive lacks its own manifest ({member}): it is damaged or is not this backup's"));
    };
    let mut expected: serde_json::Value = serde_json::from_slice(sidecar).ok()?;
    expected.as_object_mut()?.remove("archive");
    match serde_json::from_slice::<serde_json::Value>(embedded) {
        Ok(found) if found == expected => None,
        _ => Some(format!(
            "the sidecar {}.manifest.json differs from the archive's own manifest ({member}): one was altered after the backup; \
             the restore followed the sidecar, so check the target or restore an older backup",
            manifest.name
        )),
    }
}

/// Why `oplog.bson` must not be replayed, if it must not: it is missing though the
/// manifest records one, or its entries or SHA-256 differ from the manifest's.
pub fn oplog_problem(manifest: &Manifest, found: Option<&DigestSummary>) -> Option<String> {
    let consistency = &manifest.consistency;
    if !consistency.oplog {
        return None;
    }
    let Some(found) = found else {
        return Some(format!("oplog.bson is missing from the archive of {}: nothing was replayed", manifest.name));
    };
    let sha_differs = consistency.oplog_sha256.as_deref().is_some_and(|expected| expected != found.sha256);
    if sha_differs || consistency.oplog_entries != found.documents {
        return Some(format!(
            "oplog.bson in the archive of {} is damaged ({} entries, sha256 {}; the manifest says {} entries, sha256 {}): \
             it was not replayed, so the target holds the collections as dumped, not one point in time; restore an older backup",
            manifest.name,
            found.documents,
            found.sha256,
            consistency.oplog_entries,
            consistency.oplog_sha256.as_deref().unwrap_or("none")
        ));
    }
    None
}
