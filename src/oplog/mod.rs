//! The oplog as data, apart from any live server or store: [`Timestamp`] and its
//! labels ([`timestamp`]), which entries a filtered backup keeps and which make a
//! replay impossible ([`entry`]), the idempotent [`replay::Replayer`] that applies
//! entries to a target, and the one loop feeding it from a blocking reader ([`feed`]),
//! which both `restore --oplog-replay` and `restore --to-time` use.
//!
//! Reading the live server's oplog is [`crate::source::oplog`]; oplog slices in the
//! store are [`crate::pitr`]. Submodules import each other directly, never through
//! this file's re-exports, so no submodule imports its parent.

pub mod entry;
pub mod feed;
pub mod replay;
pub mod timestamp;

pub use feed::replay_entries;
pub use replay::{ReplayReport, Replayer};
pub use timestamp::{timestamp_label, wall_time, Timestamp};
