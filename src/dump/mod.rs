//! The mongodump directory layout: which namespaces a dump holds, where each file
//! goes, what its `.metadata.json` says, and the spool that turns a cursor into a
//! `.bson` member with its digests.
//!
//! The rules follow mongo-tools (`mongodump/prepare.go`, `mongodump/metadata_dump.go`,
//! `mongorestore/filepath.go`) so that the official `mongorestore` reads our output as
//! its own.

pub mod bson_reader;
pub mod layout;
pub mod metadata;
pub mod spool;

pub use layout::{bson_path, dump_root, is_dumped_namespace, manifest_path, metadata_path, OPLOG_FILE};
pub use metadata::metadata_json;
pub use spool::BsonSpool;
