//! Turns a cursor's documents into one `.bson` tar member.
//!
//! tar writes a member's size before its bytes, and a collection's size is only known
//! once its cursor is exhausted, so each collection is spooled first: in memory up to
//! a limit, then in an anonymous temporary file in the spool directory (deleted by the
//! OS when dropped, even on a crash). The digests are computed in the same pass.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use tempfile::SpooledTempFile;

use crate::digest::{DigestSummary, NamespaceDigest};

/// A collection's `.bson` bytes while its cursor is being read.
pub struct BsonSpool {
    data: SpooledTempFile,
    digest: NamespaceDigest,
}

/// A finished spool, rewound and ready to be copied into the archive.
pub struct SpooledBson {
    /// The bytes, positioned at the start.
    pub data: SpooledTempFile,
    /// Count, size and hashes of the bytes.
    pub summary: DigestSummary,
}

impl BsonSpool {
    /// A spool that keeps up to `memory_limit` bytes in memory before moving to a
    /// temporary file in `dir`.
    pub fn new(dir: &Path, memory_limit: usize) -> Self {
        Self { data: tempfile::spooled_tempfile_in(memory_limit, dir), digest: NamespaceDigest::default() }
    }

    /// Appends one raw BSON document.
    ///
    /// # Errors
    /// The temporary file could not be written (for example, the disk is full).
    pub fn push(&mut self, raw_document: &[u8]) -> io::Result<()> {
        self.data.write_all(raw_document)?;
        self.digest.add_document(raw_document);
        Ok(())
    }

    /// Finishes the spool and rewinds it for reading.
    ///
    /// # Errors
    /// The temporary file could not be flushed or rewound.
    pub fn finish(mut self) -> io::Result<SpooledBson> {
        self.data.flush()?;
        self.data.seek(SeekFrom::Start(0))?;
        Ok(SpooledBson { data: self.data, summary: self.digest.finish() })
    }
}
