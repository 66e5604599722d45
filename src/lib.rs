//! `ingest-backup`: back up a MongoDB deployment into a mongodump-layout tar archive
//! with a checksum manifest, and keep it in a store.
//!
//! Data flows one way, one module per stage:
//! [`source`] (the live server: discovery, cursors, the oplog window) -> [`dump`] (mongodump file
//! layout, metadata documents, per-namespace digests) -> [`archive`] (tar plus gzip or
//! zstd, hashed as it is written) -> [`store`] (where finished archives live).
//! [`backup`] wires the stages together with bounded channels and one cancellation
//! token; the binary in `main.rs` only parses flags and reports. [`oplog`] holds what
//! oplog entries and timestamps mean, and their replay, for `restore` and [`pitr`].

pub mod archive;
pub mod backup;
pub mod cli;
pub mod command;
pub mod crypto;
pub mod digest;
pub mod dump;
pub mod error;
pub mod filter;
pub mod jobs;
pub mod manifest;
pub mod naming;
pub mod notify;
pub mod oplog;
pub mod pitr;
pub mod progress;
pub mod prune;
pub mod redact;
pub mod restore;
pub mod retry;
pub mod sample;
pub mod schedule;
pub mod server_codes;
pub mod source;
pub mod store;
pub mod test_hooks;
pub mod verify;

pub use error::{Error, Result};
