//! Turns a cursor's documents into one `.bson` tar member.
//!
//! tar writes a member's size before its bytes, and a collection's size is only known
//! once its cursor is exhausted, so each collection is spooled first: in memory up to
//! a limit, then in an anonymous temporary file in the spool directory (deleted by the
//! OS when dropped, even on a crash). The digests are computed in the same pass.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tempfile::SpooledTempFile;

use crate::digest::{DigestSummary, NamespaceDigest};

/// Bytes all spools of a run hold on disk right now, and the most they ever held:
/// the temporary disk a backup needed.
#[derive(Debug, Clone, Default)]
pub struct SpoolGauge {
    current: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
}

impl SpoolGauge {
    fn add(&self, bytes: u64) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// The most bytes held on disk at once so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Gives a spool's disk bytes back to the gauge when the spool is dropped.
#[derive(Debug)]
pub struct DiskCharge {
    gauge: SpoolGauge,
    bytes: u64,
}

impl Drop for DiskCharge {
    fn drop(&mut self) {
        self.gauge.current.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A collection's `.bson` bytes while its cursor is being read.
pub struct BsonSpool {
    data: SpooledTempFile,
    digest: NamespaceDigest,
    written: u64,
    charge: DiskCharge,
}

/// A finished spool, rewound and ready to be copied into the archive.
pub struct SpooledBson {
    /// The bytes, positioned at the start.
    pub data: SpooledTempFile,
    /// Count, size and hashes of the bytes.
    pub summary: DigestSummary,
    /// The disk the bytes occupy, released when this is dropped.
    pub charge: DiskCharge,
}

impl BsonSpool {
    /// A spool that keeps up to `memory_limit` bytes in memory before moving to a
    /// temporary file in `dir`, accounting its disk use in `gauge`.
    pub fn new(dir: &Path, memory_limit: usize, gauge: &SpoolGauge) -> Self {
        Self {
            data: tempfile::spooled_tempfile_in(memory_limit, dir),
            digest: NamespaceDigest::default(),
            written: 0,
            charge: DiskCharge { gauge: gauge.clone(), bytes: 0 },
        }
    }

    /// Appends one raw BSON document.
    ///
    /// # Errors
    /// The temporary file could not be written (for example, the disk is full).
    pub fn push(&mut self, raw_document: &[u8]) -> io::Result<()> {
        self.data.write_all(raw_document)?;
        self.digest.add_document(raw_document);
        self.written += raw_document.len() as u64;
        if self.data.is_rolled() {
            self.charge.gauge.add(self.written - self.charge.bytes);
            self.charge.bytes = self.written;
        }
        Ok(())
    }

    /// Finishes the spool and rewinds it for reading.
    ///
    /// # Errors
    /// The temporary file could not be flushed or rewound.
    pub fn finish(mut self) -> io::Result<SpooledBson> {
        self.data.flush()?;
        self.data.seek(SeekFrom::Start(0))?;
        Ok(SpooledBson { data: self.data, summary: self.digest.finish(), charge: self.charge })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn small_spools_stay_in_memory_and_large_ones_are_counted_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpoolGauge::default();
        let mut small = BsonSpool::new(dir.path(), 1024, &gauge);
        small.push(&[1; 100]).unwrap();
        let mut large = BsonSpool::new(dir.path(), 1024, &gauge);
        for _ in 0..30 {
            large.push(&[2; 100]).unwrap();
        }
        assert_eq!(gauge.peak(), 3000, "only the spool past its memory limit uses disk");
        let mut finished = large.finish().unwrap();
        let mut bytes = Vec::new();
        finished.data.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 3000);
        assert_eq!(finished.summary.documents, 30);
        drop(finished);
        drop(small);
        assert_eq!(gauge.current.load(Ordering::Relaxed), 0);
        assert_eq!(gauge.peak(), 3000);
    }
}
