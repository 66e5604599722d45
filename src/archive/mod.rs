//! The archive stage: a tar stream, compressed with gzip or zstd, hashed and counted
//! as it is written to a sink. It runs on a blocking thread fed by a bounded channel
//! (see [`crate::backup`]); it knows nothing about MongoDB or stores. [`reader`] reads
//! an archive back for `verify` and `restore`.

pub mod block_encoder;
pub mod reader;

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use self::block_encoder::{BlockEncoder, Codec, CompressorPool};
use crate::crypto::stream::SealWriter;
use crate::crypto::Recipients;
use crate::error::{Error, Result};

/// How the tar stream is compressed. Either way the stream is a series of
/// independently compressed 1 MiB blocks ([`block_encoder`]), compressed by `threads`
/// workers shared by the whole backup, or on the calling thread with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at a level from 0 (none) to 9 (smallest); the original ingest backup scripts' `.tar.gz`, one gzip
    /// member per block.
    Gzip {
        /// Compression level.
        level: u32,
        /// Worker threads (0: in-line).
        threads: u32,
    },
    /// zstd at a level from 1 to 19, one zstd frame per block.
    Zstd {
        /// Compression level.
        level: i32,
        /// Worker threads (0: in-line).
        threads: u32,
    },
}

impl Compression {
    /// The archive file extension: `tar.gz` or `tar.zst`.
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "tar.gz",
            Compression::Zstd { .. } => "tar.zst",
        }
    }

    /// The short name recorded in the manifest: `gzip` or `zstd`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Zstd { .. } => "zstd",
        }
    }

    /// Builds a compression choice from the CLI's name and optional level, compressing
    /// in-line (see [`Self::with_threads`]).
    ///
    /// # Errors
    /// A usage error for an unknown name or a level out of range.
    pub fn from_name(name: &str, level: Option<i32>) -> Result<Self> {
        match name {
            "gzip" => {
                let level = level.unwrap_or(6);
                if !(0..=9).contains(&level) {
                    return Err(Error::usage(format!("gzip level {level} is out of range: use 0 (fastest) to 9 (smallest)")));
                }
                Ok(Compression::Gzip { level: level as u32, threads: 0 })
            }
            "zstd" => {
                let level = level.unwrap_or(3);
                if !(1..=19).contains(&level) {
                    return Err(Error::usage(format!("zstd level {level} is out of range: use 1 (fastest) to 19 (smallest)")));
                }
                Ok(Compression::Zstd { level, threads: 0 })
            }
            other => Err(Error::usage(format!("unknown compression {other:?}: use gzip or zstd"))),
        }
    }

    /// The same compression with `threads` workers (0: in-line, on each writer's own thread).
    pub fn with_threads(self, threads: u32) -> Self {
        match self {
            Compression::Gzip { level, .. } => Compression::Gzip { level, threads },
            Compression::Zstd { level, .. } => Compression::Zstd { level, threads },
        }
    }

    /// The format and level of each block.
    pub fn codec(&self) -> Codec {
        match *self {
            Compression::Gzip { level, .. } => Codec::Gzip(level),
            Compression::Zstd { level, .. } => Codec::Zstd(level),
        }
    }

    /// The worker threads (0: in-line).
    pub fn threads(&self) -> u32 {
        match *self {
            Compression::Gzip { threads, .. } | Compression::Zstd { threads, .. } => threads,
        }
    }

    /// Starts the workers this compression asks for, to be shared by the archive and
    /// every spool of one backup.
    ///
    /// # Errors
    /// The system refused a worker thread.
    pub fn pool(&self) -> io::Result<CompressorPool> {
        CompressorPool::new(self.threads() as usize)
    }

    /// The default worker count: the CPUs this process may use (which honours a
    /// container's CPU quota), at most 4, since past that the server is the bound.
    pub fn default_threads() -> u32 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
    }
}

/// Size and SHA-256 of the archive bytes as uploaded (compressed, and encrypted when
/// the backup is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveDigest {
    /// Compressed size in bytes.
    pub size: u64,
    /// SHA-256 of the compressed bytes, lowercase hex.
    pub sha256: String,
}

/// Counts and hashes every byte on its way to the sink.
struct HashingWriter<W> {
    inner: W,
    sha256: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the bytes read through it, so a short source cannot pass for a whole member.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Writes tar members into a compressed, hashed stream: tar -> blocks of gzip or zstd
/// -> age encryption when the backup has recipients -> SHA-256 and size -> sink.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<BlockEncoder<SealWriter<HashingWriter<W>>>>,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `sink`; every member gets `mtime` (seconds since the epoch).
    ///
    /// # Errors
    /// The compressor could not be set up.
    pub fn new(sink: W, compression: Compression, mtime: u64) -> io::Result<Self> {
        Ok(Self::with_pool(sink, compression.codec(), compression.pool()?, mtime))
    }

    /// Starts an archive on `sink` whose blocks are compressed by `pool`, the pool the
    /// backup's spools share; every member gets `mtime`.
    pub fn with_pool(sink: W, codec: Codec, pool: CompressorPool, mtime: u64) -> Self {
        let hashing = HashingWriter { inner: sink, sha256: Sha256::new(), size: 0 };
        Self::on(SealWriter::Plain(hashing), codec, pool, mtime)
    }

    /// [`Self::with_pool`], the compressed stream encrypted to `recipients` when
    /// given (the age header is written at once); the digest is then the ciphertext's.
    ///
    /// # Errors
    /// The sink failed.
    pub fn sealed(sink: W, codec: Codec, pool: CompressorPool, mtime: u64, recipients: Option<&Recipients>) -> io::Result<Self> {
        let hashing = HashingWriter { inner: sink, sha256: Sha256::new(), size: 0 };
        Ok(Self::on(SealWriter::new(hashing, recipients)?, codec, pool, mtime))
    }

    fn on(seal: SealWriter<HashingWriter<W>>, codec: Codec, pool: CompressorPool, mtime: u64) -> Self {
        let mut tar = tar::Builder::new(BlockEncoder::new(seal, codec, pool));
        tar.mode(tar::HeaderMode::Deterministic);
        Self { tar, mtime }
    }

    /// The codec the archive's blocks (and any spliced-in spool) use.
    pub fn codec(&mut self) -> Codec {
        self.tar.get_mut().codec()
    }

    fn header(&self, entry_type: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    /// Adds a directory entry (`path` ends with `/`).
    ///
    /// # Errors
    /// The sink failed.
    pub fn append_dir(&mut self, path: &str) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Directory, 0, 0o755);
        self.tar.append_data(&mut header, path, io::empty())
    }

    /// Adds a regular file of exactly `size` bytes read from `data`.
    ///
    /// # Errors
    /// The sink failed, or `data` held fewer than `size` bytes.
    pub fn append_file(&mut self, path: &str, size: u64, data: impl Read) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Regular, size, 0o644);
        let mut counted = CountingReader { inner: data.take(size), count: 0 };
        self.tar.append_data(&mut header, path, &mut counted)?;
        if counted.count != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path}: expected {size} bytes but the source held {}", counted.count)));
        }
        Ok(())
    }

    /// Adds a regular file of `size` bytes given already compressed: `compressed` is
    /// `compressed_len` bytes of whole blocks in this archive's codec (a spool written
    /// by a [`BlockEncoder`] with [`Self::codec`]). Its bytes go into the archive as
    /// they are, between the header and the padding, which are compressed as blocks of
    /// their own, so the archive stays one valid gzip or zstd stream.
    ///
    /// The caller vouches that `compressed` decodes to exactly `size` bytes; the
    /// backup's spool counts them as they go in, and the manifest records their
    /// SHA-256, which `verify` checks. A copy that fails or holds other than
    /// `compressed_len` bytes poisons the archive: `finish` then fails too.
    ///
    /// # Errors
    /// The sink failed, or `compressed` could not be read or had the wrong length.
    pub fn append_compressed(&mut self, path: &str, size: u64, compressed: impl Read, compressed_len: u64) -> io::Result<()> {
        let mut header = self.header(tar::EntryType::Regular, size, 0o644);
        // A header whose size is `size` followed by no data: only the header blocks
        // (with a GNU long-name block first for long paths) are written.
        self.tar.append_data(&mut header, path, io::empty())?;
        self.tar.get_mut().splice(compressed, compressed_len)?;
        let padding = (512 - size % 512) % 512;
        self.tar.get_mut().write_all(&[0; 512][..padding as usize])
    }

    /// Adds a regular file holding `bytes`.
    ///
    /// # Errors
    /// The sink failed.
    pub fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.append_file(path, bytes.len() as u64, bytes)
    }

    /// Writes the tar trailer, finishes the compressor and returns the sink with the
    /// digest of everything written to it.
    ///
    /// # Errors
    /// The sink failed.
    pub fn finish(self) -> io::Result<(W, ArchiveDigest)> {
        let encoder = self.tar.into_inner()?;
        let mut hashing = encoder.finish()?.finish()?;
        hashing.flush()?;
        let digest = ArchiveDigest { size: hashing.size, sha256: hex::encode(hashing.sha256.finalize()) };
        Ok((hashing.inner, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(compression: Compression) {
        let mut writer = ArchiveWriter::new(Vec::new(), compression, 1_522_841_820).unwrap();
        writer.append_dir("data/db/dump/n/").unwrap();
        writer.append_bytes("data/db/dump/n/db/c.bson", b"hello").unwrap();
        let long = format!("data/db/dump/n/db/{}.bson", "x".repeat(240));
        writer.append_bytes(&long, b"long name").unwrap();
        let (bytes, digest) = writer.finish().unwrap();
        assert_eq!(digest.size, bytes.len() as u64);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(&bytes)));

        let decoded: Box<dyn Read> = match compression {
            Compression::Gzip { .. } => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
            Compression::Zstd { .. } => Box::new(zstd::stream::read::Decoder::new(&bytes[..]).unwrap()),
        };
        let mut archive = tar::Archive::new(decoded);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = String::new();
            entry.read_to_string(&mut body).unwrap();
            seen.push((entry.path().unwrap().to_string_lossy().into_owned(), body));
        }
        assert_eq!(seen[0].0, "data/db/dump/n/");
        assert_eq!(seen[1], ("data/db/dump/n/db/c.bson".to_string(), "hello".to_string()));
        assert_eq!(seen[2], (long, "long name".to_string()));
    }

    #[test]
    fn gzip_archive_reads_back() {
        roundtrip(Compression::Gzip { level: 6, threads: 0 });
    }

    #[test]
    fn gzip_archive_with_workers_reads_back() {
        roundtrip(Compression::Gzip { level: 6, threads: 2 });
    }

    #[test]
    fn parallel_zstd_archive_reads_back() {
        roundtrip(Compression::Zstd { level: 3, threads: 2 });
    }

    #[test]
    fn zstd_archive_reads_back() {
        roundtrip(Compression::Zstd { level: 3, threads: 0 });
    }

    /// An archive with a compressed member of `size` bytes spliced between two plain
    /// ones, all on one pool, as a backup writes it.
    fn spliced_archive(compression: Compression, size: usize) -> (Vec<u8>, Vec<u8>) {
        let pool = CompressorPool::new(compression.threads() as usize).unwrap();
        let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let mut spool = BlockEncoder::with_block_size(Vec::new(), compression.codec(), pool.clone(), 4096);
        spool.write_all(&body).unwrap();
        let compressed = spool.finish().unwrap();

        let mut writer = ArchiveWriter::with_pool(Vec::new(), compression.codec(), pool, 0);
        writer.append_bytes("a.metadata.json", b"{}").unwrap();
        let long = format!("{}.bson", "c".repeat(150));
        writer.append_compressed(&long, size as u64, &compressed[..], compressed.len() as u64).unwrap();
        writer.append_bytes("z.metadata.json", b"{\"z\":1}").unwrap();
        (writer.finish().unwrap().0, body)
    }

    #[test]
    fn compressed_members_splice_into_a_stream_tar_and_the_decoders_read() {
        for compression in [Compression::Gzip { level: 1, threads: 2 }, Compression::Zstd { level: 1, threads: 0 }] {
            for size in [0, 511, 512, 10_000, 70_001] {
                let (bytes, body) = spliced_archive(compression, size);
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join(format!("a.{}", compression.extension()));
                std::fs::write(&file, &bytes).unwrap();
                let flag = if compression.name() == "zstd" { "--zstd" } else { "-z" };
                let status = std::process::Command::new("tar").args(["-x", flag, "-f"]).arg(&file).arg("-C").arg(dir.path()).status().unwrap();
                assert!(status.success(), "system tar rejects {compression:?} at {size} bytes");
                let long = format!("{}.bson", "c".repeat(150));
                assert_eq!(std::fs::read(dir.path().join(long)).unwrap(), body, "{compression:?} {size}");
                assert_eq!(std::fs::read(dir.path().join("z.metadata.json")).unwrap(), b"{\"z\":1}", "{compression:?} {size}");
            }
        }
    }

    #[test]
    fn a_short_or_long_spliced_member_poisons_the_archive() {
        let pool = CompressorPool::new(0).unwrap();
        let mut spool = BlockEncoder::new(Vec::new(), Codec::Gzip(1), pool.clone());
        spool.write_all(b"some documents").unwrap();
        let compressed = spool.finish().unwrap();
        for claimed in [compressed.len() as u64 + 1, compressed.len() as u64 - 1] {
            let mut writer = ArchiveWriter::with_pool(Vec::new(), Codec::Gzip(1), pool.clone(), 0);
            let error = writer.append_compressed("c.bson", 14, &compressed[..], claimed).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
            assert!(writer.append_bytes("next", b"x").is_err(), "nothing more may be written");
            assert!(writer.finish().is_err(), "an archive with a bad member must not finish");
        }
    }

    #[test]
    fn a_short_source_is_an_error_not_a_member() {
        let mut writer = ArchiveWriter::new(Vec::new(), Compression::Gzip { level: 1, threads: 0 }, 0).unwrap();
        let error = writer.append_file("x.bson", 10, &b"short"[..]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn levels_are_validated() {
        assert!(Compression::from_name("gzip", Some(10)).is_err());
        assert!(Compression::from_name("zstd", Some(0)).is_err());
        assert_eq!(Compression::from_name("brotli", None).unwrap_err().exit_code(), 2);
        assert_eq!(Compression::from_name("gzip", None).unwrap().extension(), "tar.gz");
    }
}
