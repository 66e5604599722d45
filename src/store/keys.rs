//! Every object name in a store, in one place: a backup's archive, sidecar,
//! verification and drill records, the oplog slices and their sidecars, the lock objects. Other
//! modules ask here instead of composing keys, so the store layout is written once
//! (and documented once, in the book's store-layout page).

use chrono::{DateTime, Utc};

use crate::crypto::AGE_SUFFIX;
use crate::oplog::{timestamp_label, Timestamp};

/// File suffix of the sidecar manifest.
pub const SIDECAR_SUFFIX: &str = ".manifest.json";

/// File suffix of the latest verification result of a backup (`verify` rewrites it).
pub const VERIFICATION_SUFFIX: &str = ".verify.json";

/// File suffix of the latest restore drill of a backup (`drill` rewrites it).
pub const DRILL_SUFFIX: &str = ".drill.json";

/// Folder of the point-in-time oplog slices.
pub const SLICE_PREFIX: &str = "oplog/";

/// Folder of the lock objects.
pub const LOCK_PREFIX: &str = "locks/";

/// Where cloud stores (GCS, Azure) keep a marker of each multipart upload while it is open.
pub const UPLOAD_PREFIX: &str = "uploads/";

/// The archive of backup `name`: `<name>.<extension>` (`tar.gz`, `tar.zst`), `.age` added when encrypted.
pub fn archive_key(name: &str, extension: &str, encrypted: bool) -> String {
    format!("{name}.{extension}{}", if encrypted { AGE_SUFFIX } else { "" })
}

/// The sidecar manifest of backup `name`.
pub fn sidecar_key(name: &str) -> String {
    format!("{name}{SIDECAR_SUFFIX}")
}

/// The latest verification record of backup `name`.
pub fn verification_key(name: &str) -> String {
    format!("{name}{VERIFICATION_SUFFIX}")
}

/// The latest restore drill record of backup `name`.
pub fn drill_key(name: &str) -> String {
    format!("{name}{DRILL_SUFFIX}")
}

/// The slice from `start` to `end` (`.bson.gz`, `.bson.gz.age` when encrypted); the
/// timestamps are zero-padded so that keys sort in time.
pub fn slice_key(start: Timestamp, end: Timestamp, encrypted: bool) -> String {
    let suffix = if encrypted { AGE_SUFFIX } else { "" };
    format!("{SLICE_PREFIX}{}_{}.bson.gz{suffix}", timestamp_label(start), timestamp_label(end))
}

/// Whether `key` is a slice object (`.bson.gz`, or `.bson.gz.age`).
pub fn is_slice_key(key: &str) -> bool {
    key.starts_with(SLICE_PREFIX) && key.strip_suffix(AGE_SUFFIX).unwrap_or(key).ends_with(".bson.gz")
}

/// The sidecar (`.json`) of the slice stored under `slice_key`.
pub fn slice_sidecar_key(slice_key: &str) -> String {
    let slice_key = slice_key.strip_suffix(AGE_SUFFIX).unwrap_or(slice_key);
    format!("{}.json", slice_key.trim_end_matches(".bson.gz"))
}

/// A new lock object of `operation` taken at `now` (`nonce` keeps two runs in the same
/// microsecond apart).
pub fn lock_key(operation: &str, now: DateTime<Utc>, nonce: u32) -> String {
    format!("{LOCK_PREFIX}{operation}-{}-{nonce:08x}.json", now.format("%Y%m%dT%H%M%S%.6fZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(archive_key("2018-04-04T11_37", "tar.gz", false), "2018-04-04T11_37.tar.gz");
        assert_eq!(archive_key("2018-04-04T11_37", "tar.zst", true), "2018-04-04T11_37.tar.zst.age");
        assert_eq!(sidecar_key("2018-04-04T11_37"), "2018-04-04T11_37.manifest.json");
        assert_eq!(verification_key("2018-04-04T11_37"), "2018-04-04T11_37.verify.json");
        assert_eq!(drill_key("2018-04-04T11_37"), "2018-04-04T11_37.drill.json");
        let slice = slice_key(Timestamp { t: 1, i: 2 }, Timestamp { t: 3, i: 4 }, true);
        assert_eq!(slice, "oplog/0000000001.0000000002_0000000003.0000000004.bson.gz.age");
        assert!(is_slice_key(&slice) && !is_slice_key(&slice_sidecar_key(&slice)));
        assert_eq!(slice_sidecar_key(&slice), "oplog/0000000001.0000000002_0000000003.0000000004.json");
        let at = DateTime::parse_from_rfc3339("2026-12-04T05:36:12.5Z").unwrap().with_timezone(&Utc);
        assert_eq!(lock_key("backup", at, 0xab), "locks/backup-20261204T053612.500000Z-000000ab.json");
    }
}
