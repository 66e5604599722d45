//! The archive stage: a tar stream, compressed with gzip or zstd, hashed and counted
//! as it is written to a sink. It runs on a blocking thread fed by a bounded channel
//! (see [`crate::backup`]); it knows nothing about MongoDB or stores. [`reader`] reads
//! an archive back for `verify` and `restore`.

pub mod parallel_gzip;
pub mod reader;

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at a level from 0 (none) to 9 (smallest); the seed's `.tar.gz`. With
    /// `threads` workers it is a multi-member stream ([`parallel_gzip`]); with 0, one
    /// member compressed on the archive thread.
    Gzip {
        /// Compression level.
        level: u32,
        /// Worker threads (0: in-line).
        threads: u32,
    },
    /// zstd at a level from 1 to 19, using `threads` worker threads (0: in-line).
    Zstd {
        /// Compression level.
        level: i32,
        /// Worker threads for zstd's multi-threaded mode.
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

    /// The same compression with `threads` workers (0: in-line on the archive thread).
    pub fn with_threads(self, threads: u32) -> Self {
        match self {
            Compression::Gzip { level, .. } => Compression::Gzip { level, threads },
            Compression::Zstd { level, .. } => Compression::Zstd { level, threads },
        }
    }

    /// The default worker count: the CPUs this process may use (which honours a
    /// container's CPU quota), at most 4, since past that the server is the bound.
    pub fn default_threads() -> u32 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
    }
}

/// Size and SHA-256 of the compressed archive bytes, as uploaded.
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

enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(parallel_gzip::ParallelGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(compression: Compression, sink: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip { level, threads: 0 } => Encoder::Gzip(flate2::write::GzEncoder::new(sink, flate2::Compression::new(level))),
            Compression::Gzip { level, threads } => {
                Encoder::ParallelGzip(parallel_gzip::ParallelGzEncoder::new(sink, flate2::Compression::new(level), threads as usize)?)
            }
            Compression::Zstd { level, threads } => {
                let mut encoder = zstd::stream::write::Encoder::new(sink, level)?;
                if threads > 0 {
                    encoder.multithread(threads)?;
                }
                Encoder::Zstd(encoder)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParallelGzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParallelGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParallelGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
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

/// Writes tar members into a compressed, hashed stream.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Encoder<HashingWriter<W>>>,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `sink`; every member gets `mtime` (seconds since the epoch).
    ///
    /// # Errors
    /// The compressor could not be set up.
    pub fn new(sink: W, compression: Compression, mtime: u64) -> io::Result<Self> {
        let hashing = HashingWriter { inner: sink, sha256: Sha256::new(), size: 0 };
        let mut tar = tar::Builder::new(Encoder::new(compression, hashing)?);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Self { tar, mtime })
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
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes but the source held {}", counted.count),
            ));
        }
        Ok(())
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
        let mut hashing = encoder.finish()?;
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
    fn parallel_gzip_archive_reads_back() {
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
