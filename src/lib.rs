//! `ingest-backup`: back up a MongoDB deployment into a mongodump-layout tar archive
//! with a checksum manifest, and keep it in a store.
//!
//! Data flows one way, one module per stage:
//! [`source`] (the live server: discovery, cursors, the oplog window) -> [`dump`] (mongodump file
//! layout, metadata documents, per-namespace digests) -> [`archive`] (tar plus gzip or
//! zstd, hashed as it is written) -> [`store`] (where finished archives live).
//! `backup` wires the stages together with bounded channels and one cancellation
//! token. [`jobs`] runs each operation to a typed report, [`command`] maps a parsed
//! [`cli::Command`] to its job, and the binary in `main.rs` only parses flags and
//! prints the report. `oplog` holds what oplog entries and timestamps mean, and their
//! replay, for `restore` and `pitr`.
//!
//! Public: what the binary, the integration tests and the benchmarks use (the stages,
//! the command line, the jobs, the sample data set); the rest is `pub(crate)`.

pub mod archive;
pub(crate) mod backup;
pub mod cli;
pub mod command;
pub mod crypto;
pub mod digest;
pub(crate) mod drill;
pub mod dump;
pub mod error;
pub mod events;
pub(crate) mod exporter;
pub(crate) mod filter;
pub(crate) mod iam;
pub(crate) mod immutable;
pub mod jobs;
pub(crate) mod manifest;
pub(crate) mod naming;
pub(crate) mod notify;
pub(crate) mod oplog;
pub(crate) mod pitr;
pub mod progress;
pub(crate) mod prune;
pub(crate) mod redact;
pub(crate) mod restore;
pub(crate) mod retry;
pub mod sample;
pub(crate) mod schedule;
pub(crate) mod server_codes;
pub mod source;
pub mod store;
pub(crate) mod test_hooks;
pub(crate) mod verify;

pub use error::{Error, Result};
