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

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
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
    /// The digests before they were finished, for [`join_ranges`].
    pub digest: NamespaceDigest,
    /// The disk the bytes occupy, released when this is dropped.
    pub charge: DiskCharge,
}

/// One `.bson` tar member's spooled bytes: a collection read by one cursor, or its
/// `_id` ranges in range order, whose blocks are stored one after the other (each
/// piece ends on a whole gzip member or zstd frame, so the concatenation is one valid
/// stream).
pub struct SpooledMember {
    /// The spools, in file order.
    pub pieces: Vec<SpooledBson>,
    /// Count, size and hashes of the whole member's raw BSON.
    pub summary: DigestSummary,
}

impl From<SpooledBson> for SpooledMember {
    fn from(bson: SpooledBson) -> Self {
        Self { summary: bson.summary.clone(), pieces: vec![bson] }
    }
}

impl SpooledMember {
    /// The codec of the stored bytes (`None`: raw BSON), the same for every piece.
    pub fn codec(&self) -> Option<Codec> {
        self.pieces.first().and_then(|piece| piece.codec)
    }

    /// The bytes stored in all pieces.
    pub fn stored_bytes(&self) -> u64 {
        self.pieces.iter().map(|piece| piece.stored_bytes).sum()
    }

    /// The stored bytes of every piece in order; each piece's disk is released as soon
    /// as it has been read.
    pub fn into_reader(self) -> impl Read + Send {
        PiecesReader { pieces: self.pieces.into() }
    }
}

/// A reader that fails once `stopped` says so.
struct StoppableReader<'a, R> {
    inner: R,
    stopped: &'a dyn Fn() -> bool,
}

impl<R: Read> Read for StoppableReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.stopped)() {
            // Not ErrorKind::Interrupted, which io::copy retries.
            return Err(io::Error::other("stopped: the backup was cancelled or failed"));
        }
        self.inner.read(buf)
    }
}

/// Reads spools one after the other, dropping each when it is exhausted.
struct PiecesReader {
    pieces: VecDeque<SpooledBson>,
}

impl Read for PiecesReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(piece) = self.pieces.front_mut() {
            let n = piece.data.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.pieces.pop_front();
        }
        Ok(0)
    }
}

/// Joins the spools of one collection's `_id` ranges (in range order) into one member:
/// counts and content hashes add up, and the file SHA-256, which cannot be combined,
/// continues from the first range over the others' bytes, decompressed once here.
///
/// `stopped` is asked before every read: a cancelled run does not wait for the rest
/// of a large collection to be decompressed.
///
/// # Errors
/// A spool could not be read back or decompressed, or held other bytes than it
/// counted, or `stopped` said so.
pub fn join_ranges(pieces: Vec<SpooledBson>, stopped: &dyn Fn() -> bool) -> io::Result<SpooledMember> {
    let mut pieces = pieces.into_iter();
    let Some(first) = pieces.next() else {
        return Ok(SpooledMember { pieces: Vec::new(), summary: NamespaceDigest::default().finish() });
    };
    let mut digest = first.digest.clone();
    let mut joined = vec![first];
    for mut piece in pieces {
        {
            let stored = StoppableReader { inner: io::Read::take(&mut piece.data, piece.stored_bytes), stopped };
            match piece.codec {
                None => digest.append_range(&piece.digest, stored)?,
                Some(Codec::Gzip(_)) => digest.append_range(&piece.digest, flate2::read::MultiGzDecoder::new(stored))?,
                Some(Codec::Zstd(_)) => digest.append_range(&piece.digest, zstd::stream::read::Decoder::new(stored)?)?,
            }
        }
        piece.data.seek(SeekFrom::Start(0))?;
        joined.push(piece);
    }
    Ok(SpooledMember { pieces: joined, summary: digest.finish() })
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
        let summary = self.digest.clone().finish();
        Ok(SpooledBson { data: file.data, codec, stored_bytes: file.written, summary, digest: self.digest, charge: file.charge })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn joined_ranges_read_and_digest_as_one_spool_of_all_documents() {
        let dir = tempfile::tempdir().unwrap();
        let documents: Vec<Vec<u8>> = (0..5000i32).map(|i| bson::rawdoc! { "_id": i, "s": "y".repeat(300) }.into_bytes()).collect();
        for codec in [None, Some(Codec::Gzip(6)), Some(Codec::Zstd(3))] {
            let open = || match codec {
                None => BsonSpool::new(dir.path(), 64 << 10, &SpoolGauge::default()),
                Some(codec) => BsonSpool::compressed(dir.path(), 64 << 10, &SpoolGauge::default(), codec, CompressorPool::new(2).unwrap()),
            };
            let mut whole = open();
            documents.iter().for_each(|d| whole.push(d).unwrap());
            let whole = whole.finish().unwrap();
            let pieces: Vec<SpooledBson> = [&documents[..1200], &documents[1200..1201], &documents[1201..1201], &documents[1201..]]
                .iter()
                .map(|range| {
                    let mut spool = open();
                    range.iter().for_each(|d| spool.push(d).unwrap());
                    spool.finish().unwrap()
                })
                .collect();
            let joined = join_ranges(pieces, &|| false).unwrap();
            assert_eq!(joined.summary, whole.summary, "{codec:?}: the same counts and hashes as one pass");
            assert_eq!(joined.codec(), codec);
            let stored = joined.stored_bytes();
            let mut bytes = Vec::new();
            joined.into_reader().read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, stored);
            let mut decoded = Vec::new();
            match codec {
                None => decoded = bytes,
                Some(Codec::Gzip(_)) => drop(flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut decoded).unwrap()),
                Some(Codec::Zstd(_)) => drop(zstd::stream::read::Decoder::new(&bytes[..]).unwrap().read_to_end(&mut decoded).unwrap()),
            }
            assert_eq!(decoded, documents.concat(), "{codec:?}: the pieces concatenate into one stream");
        }
        let pieces: Vec<SpooledBson> = documents
            .chunks(2500)
            .map(|range| {
                let mut spool = BsonSpool::new(dir.path(), 64 << 10, &SpoolGauge::default());
                range.iter().for_each(|d| spool.push(d).unwrap());
                spool.finish().unwrap()
            })
            .collect();
        assert!(join_ranges(pieces, &|| true).is_err(), "a stopped join returns instead of reading on");
    }
}
