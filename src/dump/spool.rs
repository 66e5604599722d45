//! Turns a cursor's documents into one `.bson` tar member.
//!
//! tar writes a member's size before its bytes, and a collection's size is only known
//! once its cursor is exhausted, so each collection is spooled first: in memory up to
//! a limit, then in an anonymous temporary file in the spool directory (deleted by the
//! OS when dropped, even on a crash). The digests are computed in the same pass.
//!
//! A backup's spools are compressed as they are filled, in the archive's codec and on
//! the archive's worker pool ([`BsonSpool::compressed`]): the collection is compressed
//! while the server is still sending it, the archive only copies the finished blocks,
//! and the temporary disk holds compressed bytes. Restore spools the oplog raw
//! ([`BsonSpool::new`]), to replay it.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tempfile::SpooledTempFile;

use crate::archive::block_encoder::{BlockEncoder, Codec, CompressorPool};
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

/// A spool's storage: memory, then a temporary file, charging the gauge for what it
/// holds on disk.
struct SpoolFile {
    data: SpooledTempFile,
    written: u64,
    charge: DiskCharge,
}

impl Write for SpoolFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.data.write(buf)?;
        self.written += n as u64;
        if self.data.is_rolled() {
            self.charge.gauge.add(self.written - self.charge.bytes);
            self.charge.bytes = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()
    }
}

/// What a spool writes through: the raw bytes, or a compressor.
enum SpoolWriter {
    Raw(SpoolFile),
    Compressed(BlockEncoder<SpoolFile>),
}

/// A collection's `.bson` bytes while its cursor is being read.
pub struct BsonSpool {
    writer: SpoolWriter,
    digest: NamespaceDigest,
}

/// A finished spool, rewound and ready to be copied into the archive.
pub struct SpooledBson {
    /// The stored bytes, positioned at the start: raw BSON, or blocks in `codec`.
    pub data: SpooledTempFile,
    /// The codec of `data`'s blocks; `None` when `data` is the raw BSON.
    pub codec: Option<Codec>,
    /// The bytes `data` holds (compressed, or equal to the BSON size when raw).
    pub stored_bytes: u64,
    /// Count, size and hashes of the raw BSON.
    pub summary: DigestSummary,
    /// The disk the bytes occupy, released when this is dropped.
    pub charge: DiskCharge,
}

/// Opens the spools of one backup: all in one directory, with one memory limit, one
/// disk gauge, and the archive's codec and worker pool.
#[derive(Clone)]
pub struct Spooler {
    /// The directory of the temporary files.
    pub dir: std::path::PathBuf,
    /// Compressed bytes of one spool kept in memory before moving to a file.
    pub memory_limit: usize,
    /// The disk all spools hold.
    pub gauge: SpoolGauge,
    /// The archive's codec.
    pub codec: Codec,
    /// The archive's worker pool.
    pub pool: CompressorPool,
}

impl Spooler {
    /// A new compressed spool ([`BsonSpool::compressed`]).
    pub fn spool(&self) -> BsonSpool {
        BsonSpool::compressed(&self.dir, self.memory_limit, &self.gauge, self.codec, self.pool.clone())
    }
}

impl BsonSpool {
    /// A spool of raw BSON that keeps up to `memory_limit` bytes in memory before
    /// moving to a temporary file in `dir`, accounting its disk use in `gauge`.
    pub fn new(dir: &Path, memory_limit: usize, gauge: &SpoolGauge) -> Self {
        Self { writer: SpoolWriter::Raw(Self::file(dir, memory_limit, gauge)), digest: NamespaceDigest::default() }
    }

    /// As [`Self::new`], but the BSON is compressed into `codec` blocks by `pool` on
    /// its way in, and `memory_limit` counts compressed bytes. The digests still cover
    /// the raw BSON.
    pub fn compressed(dir: &Path, memory_limit: usize, gauge: &SpoolGauge, codec: Codec, pool: CompressorPool) -> Self {
        let encoder = BlockEncoder::new(Self::file(dir, memory_limit, gauge), codec, pool);
        Self { writer: SpoolWriter::Compressed(encoder), digest: NamespaceDigest::default() }
    }

    fn file(dir: &Path, memory_limit: usize, gauge: &SpoolGauge) -> SpoolFile {
        SpoolFile { data: tempfile::spooled_tempfile_in(memory_limit, dir), written: 0, charge: DiskCharge { gauge: gauge.clone(), bytes: 0 } }
    }

    /// Whether [`Self::push`] of a document of `len` bytes may wait for the compressor
    /// (or compress a block on this thread); see [`BlockEncoder::write_may_wait`]. A
    /// raw spool only writes to its file and never says so.
    pub fn push_may_wait(&self, len: usize) -> bool {
        match &self.writer {
            SpoolWriter::Raw(_) => false,
            SpoolWriter::Compressed(encoder) => encoder.write_may_wait(len),
        }
    }

    /// Appends one raw BSON document. A compressed spool may wait here for the pool
    /// when compression is slower than the reads ([`Self::push_may_wait`]).
    ///
    /// # Errors
    /// The temporary file could not be written (for example, the disk is full), or a
    /// compression worker failed.
    pub fn push(&mut self, raw_document: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            SpoolWriter::Raw(file) => file.write_all(raw_document)?,
            SpoolWriter::Compressed(encoder) => encoder.write_all(raw_document)?,
        }
        self.digest.add_document(raw_document);
        Ok(())
    }

    /// Finishes the spool (compressing what is left) and rewinds it for reading.
    ///
    /// # Errors
    /// The temporary file could not be written or rewound.
    pub fn finish(self) -> io::Result<SpooledBson> {
        let (mut file, codec) = match self.writer {
            SpoolWriter::Raw(file) => (file, None),
            SpoolWriter::Compressed(encoder) => {
                let codec = encoder.codec();
                (encoder.finish()?, Some(codec))
            }
        };
        file.data.flush()?;
        file.data.seek(SeekFrom::Start(0))?;
        Ok(SpooledBson { data: file.data, codec, stored_bytes: file.written, summary: self.digest.finish(), charge: file.charge })
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

    #[test]
    fn compressed_spools_hold_blocks_that_decode_to_the_documents_and_digest_the_raw_bson() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = SpoolGauge::default();
        let documents: Vec<Vec<u8>> = (0..3000i32).map(|i| bson::rawdoc! { "i": i, "s": "x".repeat(100) }.into_bytes()).collect();
        let mut raw = BsonSpool::new(dir.path(), 0, &SpoolGauge::default());
        let pool = CompressorPool::new(2).unwrap();
        let mut compressed = BsonSpool::compressed(dir.path(), 1024, &gauge, Codec::Zstd(3), pool);
        let mut in_line = BsonSpool::compressed(dir.path(), 1024, &SpoolGauge::default(), Codec::Gzip(6), CompressorPool::new(0).unwrap());
        for document in &documents {
            raw.push(document).unwrap();
            compressed.push(document).unwrap();
            in_line.push(document).unwrap();
        }
        let mut in_line = in_line.finish().unwrap();
        assert_eq!(in_line.codec, Some(Codec::Gzip(6)));
        let mut gzipped = Vec::new();
        in_line.data.read_to_end(&mut gzipped).unwrap();
        assert_eq!(in_line.stored_bytes, gzipped.len() as u64);
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&gzipped[..]).read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, documents.concat(), "without workers the spool compresses on its own thread");
        let (raw, mut compressed) = (raw.finish().unwrap(), compressed.finish().unwrap());
        assert_eq!(compressed.codec, Some(Codec::Zstd(3)));
        assert_eq!(raw.codec, None);
        assert_eq!(compressed.summary, raw.summary, "the digests cover the raw BSON");
        let mut stored = Vec::new();
        compressed.data.read_to_end(&mut stored).unwrap();
        assert_eq!(gauge.peak(), stored.len() as u64, "the disk charged is the compressed bytes");
        assert_eq!(compressed.stored_bytes, stored.len() as u64);
        assert!(stored.len() < documents.concat().len() / 5);
        let mut decoded = Vec::new();
        zstd::stream::read::Decoder::new(&stored[..]).unwrap().read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, documents.concat());
    }
}
