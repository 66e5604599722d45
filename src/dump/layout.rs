//! Paths inside the archive and the namespaces mongodump keeps.
//!
//! `tar -xzf <name>.tar.gz` yields `data/db/dump/<name>/` (the original ingest backup scripts' layout), and
//! inside it one directory per database holding `<collection>.bson` and
//! `<collection>.metadata.json`, plus `oplog.bson` at the root when captured.
//! mongorestore treats every root directory as a database and warns about other root
//! files, so the manifest sits beside the dump directory, not inside it.

use sha1::{Digest, Sha1};

/// File name of the captured oplog at the dump root (mongodump `--oplog`).
pub const OPLOG_FILE: &str = "oplog.bson";

/// Longest escaped collection file stem before mongodump shortens it with a hash.
const MAX_ESCAPED_STEM: usize = 238;
/// Bytes of the escaped name kept in front of the hash when shortening.
const KEPT_ESCAPED_PREFIX: usize = 208;

/// The dump directory of backup `name` inside the archive, with a trailing slash.
pub fn dump_root(name: &str) -> String {
    format!("data/db/dump/{name}/")
}

/// Where the manifest of backup `name` sits in the archive: beside the dump directory.
pub fn manifest_path(name: &str) -> String {
    format!("data/db/dump/{name}.manifest.json")
}

/// Path of a collection's `.bson` file relative to the dump root.
pub fn bson_path(database: &str, collection: &str) -> String {
    format!("{database}/{}.bson", escape_collection_name(collection))
}

/// Path of a collection's `.metadata.json` file relative to the dump root.
pub fn metadata_path(database: &str, collection: &str) -> String {
    format!("{database}/{}.metadata.json", escape_collection_name(collection))
}

/// The file stem mongodump uses for a collection: the name query-escaped (as Go's
/// `url.QueryEscape`), and when that is longer than 238 bytes, its first 208 bytes,
/// `%24`, and the unpadded URL-safe base64 of the SHA-1 of the original name.
pub fn escape_collection_name(collection: &str) -> String {
    let escaped = query_escape(collection);
    if escaped.len() <= MAX_ESCAPED_STEM {
        return escaped;
    }
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha1::digest(collection.as_bytes()));
    format!("{}%24{hash}", &escaped[..KEPT_ESCAPED_PREFIX])
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Whether mongodump would dump `database.collection` in a whole-deployment dump.
///
/// `local` and `config` are skipped whole; in `admin` only the users, roles and
/// version system collections are kept; elsewhere `system.js` is kept and every other
/// `system.*` collection is skipped; names holding `$` are skipped.
pub fn is_dumped_namespace(database: &str, collection: &str) -> bool {
    if database == "local" || database == "config" {
        return false;
    }
    if collection.contains('$') {
        return false;
    }
    if !collection.starts_with("system.") {
        return true;
    }
    match database {
        "admin" => matches!(collection, "system.users" | "system.roles" | "system.version"),
        _ => collection == "system.js",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_scripts_layout_paths() {
        assert_eq!(dump_root("2018-04-04T11_37"), "data/db/dump/2018-04-04T11_37/");
        assert_eq!(manifest_path("2018-04-04T11_37"), "data/db/dump/2018-04-04T11_37.manifest.json");
        assert_eq!(bson_path("ingest", "project"), "ingest/project.bson");
        assert_eq!(metadata_path("ingest", "project"), "ingest/project.metadata.json");
    }

    #[test]
    fn odd_names_are_query_escaped_like_go() {
        assert_eq!(escape_collection_name("a b/c?d"), "a+b%2Fc%3Fd");
        assert_eq!(escape_collection_name("weird.name-~_x"), "weird.name-~_x");
        assert_eq!(escape_collection_name("é"), "%C3%A9");
        assert_eq!(escape_collection_name("a*b"), "a%2Ab");
    }

    #[test]
    fn long_names_are_truncated_with_a_sha1_suffix() {
        let long = "x".repeat(300);
        let stem = escape_collection_name(&long);
        assert_eq!(stem.len(), 208 + 3 + 27);
        assert!(stem.starts_with(&"x".repeat(208)));
        assert!(stem[208..].starts_with("%24"));
        assert_ne!(escape_collection_name(&"x".repeat(301)), stem);
        assert_eq!(escape_collection_name(&"y".repeat(238)), "y".repeat(238));
    }

    #[test]
    fn system_namespaces_follow_mongodump() {
        assert!(is_dumped_namespace("ingest", "project"));
        assert!(is_dumped_namespace("ingest", "system.js"));
        assert!(!is_dumped_namespace("ingest", "system.views"));
        assert!(!is_dumped_namespace("ingest", "system.profile"));
        assert!(is_dumped_namespace("admin", "system.users"));
        assert!(is_dumped_namespace("admin", "system.roles"));
        assert!(is_dumped_namespace("admin", "system.version"));
        assert!(!is_dumped_namespace("admin", "system.keys"));
        assert!(!is_dumped_namespace("local", "oplog.rs"));
        assert!(!is_dumped_namespace("config", "settings"));
        assert!(!is_dumped_namespace("ingest", "a$b"));
    }
}
