//! Reading an archive back, as `verify` and `restore` do: the stored bytes are counted
//! and hashed on their way in (to compare with the sidecar's size and SHA-256), then
//! decompressed according to the file name, then walked as tar members. Nothing is
//! held whole in memory.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::ArchiveDigest;
use crate::crypto::stream::OpenReader;
use crate::crypto::{is_encrypted, Identities, AGE_SUFFIX};

/// The compression of an archive, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.tar.gz` (also `.tgz`).
    Gzip,
    /// `.tar.zst`.
    Zstd,
}

impl ArchiveFormat {
    /// The format a file name announces, if any.
    pub fn of_file(file_name: &str) -> Option<Self> {
        let file_name = file_name.strip_suffix(AGE_SUFFIX).unwrap_or(file_name);
        if file_name.ends_with(".tar.gz") || file_name.ends_with(".tgz") {
            Some(ArchiveFormat::Gzip)
        } else if file_name.ends_with(".tar.zst") {
            Some(ArchiveFormat::Zstd)
        } else {
            None
        }
    }
}

/// Counts and hashes every byte read through it. The tally is shared, so it can be
/// read after the decryptor (which cannot give its source back) is done.
pub struct HashingReader<R> {
    inner: R,
    tally: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> HashingReader<R> {
    /// Starts counting and hashing what is read from `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, tally: Arc::new(Mutex::new((Sha256::new(), 0))) }
    }

    /// Size and SHA-256 of the bytes read so far.
    pub fn digest(&self) -> ArchiveDigest {
        let tally = self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ArchiveDigest { size: tally.1, sha256: hex::encode(tally.0.clone().finalize()) }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut tally = self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tally.0.update(&buf[..n]);
        tally.1 += n as u64;
        Ok(n)
    }
}

/// The decompressor in front of the hashed stored bytes (one per archive, so the
/// size difference between the variants costs nothing worth boxing).
#[allow(clippy::large_enum_variant)]
pub enum Decoder<R: Read> {
    /// gzip; several concatenated members are read as one stream, as `gzip -d` does.
    Gzip(flate2::read::MultiGzDecoder<R>),
    /// zstd.
    Zstd(zstd::stream::read::Decoder<'static, io::BufReader<R>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(decoder) => decoder.read(buf),
            Decoder::Zstd(decoder) => decoder.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    fn into_inner(self) -> R {
        match self {
            Decoder::Gzip(decoder) => decoder.into_inner(),
            Decoder::Zstd(decoder) => decoder.finish().into_inner(),
        }
    }
}

/// A tar archive being read from a store.
pub struct ArchiveReader<R: Read> {
    archive: tar::Archive<Decoder<OpenReader<HashingReader<R>>>>,
    tally: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> ArchiveReader<R> {
    /// Starts reading `source`, compressed as `format` and not encrypted.
    ///
    /// # Errors
    /// The decompressor could not be set up.
    pub fn new(source: R, format: ArchiveFormat) -> io::Result<Self> {
        Self::open(source, "", format, None)
    }

    /// Starts reading `source`, the object `file_name` compressed as `format`; an
    /// encrypted one (`.age`) is decrypted with `identities`, and its header and first
    /// chunk are authenticated before this returns.
    ///
    /// # Errors
    /// The decompressor could not be set up; an encrypted archive without identity, with
    /// a wrong one, or whose start does not authenticate (the error says which).
    pub fn open(source: R, file_name: &str, format: ArchiveFormat, identities: Option<&Identities>) -> io::Result<Self> {
        let tally = Arc::new(Mutex::new((Sha256::new(), 0)));
        let hashing = HashingReader { inner: source, tally: tally.clone() };
        let hashing = OpenReader::new(hashing, is_encrypted(file_name), identities)?;
        let decoder = match format {
            ArchiveFormat::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(hashing)),
            ArchiveFormat::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(hashing)?),
        };
        Ok(Self { archive: tar::Archive::new(decoder), tally })
    }

    /// The members, in archive order.
    ///
    /// # Errors
    /// The archive could not be read.
    pub fn entries(&mut self) -> io::Result<tar::Entries<'_, Decoder<OpenReader<HashingReader<R>>>>> {
        self.archive.entries()
    }

    /// Reads what is left of the stream (the tar trailer, the compressor's own
    /// checksum, any trailing bytes) and returns the size and SHA-256 of every stored
    /// byte.
    ///
    /// # Errors
    /// The rest of the stream is corrupt (a gzip CRC mismatch, a truncated frame).
    pub fn finish(self) -> io::Result<ArchiveDigest> {
        let mut decoder = self.archive.into_inner();
        io::copy(&mut decoder, &mut io::sink())?;
        let mut opened = decoder.into_inner();
        io::copy(&mut opened, &mut io::sink())?;
        drop(opened);
        let (sha256, size) = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        Ok(ArchiveDigest { size, sha256: hex::encode(sha256.finalize()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveWriter, Compression};

    /// Every member of `reader`'s archive: path and body, in order.
    fn read_members<R: Read>(reader: &mut ArchiveReader<R>) -> Vec<(String, Vec<u8>)> {
        let mut members = Vec::new();
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            members.push((entry.path().unwrap().display().to_string(), body));
        }
        members
    }

    fn archive(compression: Compression) -> (Vec<u8>, ArchiveDigest) {
        archive_of(compression, 100_000)
    }

    fn archive_of(compression: Compression, len: usize) -> (Vec<u8>, ArchiveDigest) {
        let mut writer = ArchiveWriter::new(Vec::new(), compression, 0).unwrap();
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        writer.append_bytes("data/db/dump/n/db/c.bson", &body).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn reads_back_what_was_written_with_the_same_digest() {
        for (compression, format) in
            [(Compression::Gzip { level: 6, threads: 0 }, ArchiveFormat::Gzip), (Compression::Zstd { level: 3, threads: 0 }, ArchiveFormat::Zstd)]
        {
            let (bytes, written) = archive(compression);
            let mut reader = ArchiveReader::new(&bytes[..], format).unwrap();
            let members: Vec<(String, usize)> = read_members(&mut reader).into_iter().map(|(path, body)| (path, body.len())).collect();
            assert_eq!(members, vec![("data/db/dump/n/db/c.bson".to_string(), 100_000)]);
            assert_eq!(reader.finish().unwrap(), written);
        }
    }

    #[test]
    fn multi_threaded_archives_read_back_across_member_boundaries() {
        let len = 3 * crate::archive::block_encoder::BLOCK_SIZE + 12_345;
        for (compression, format) in
            [(Compression::Gzip { level: 6, threads: 2 }, ArchiveFormat::Gzip), (Compression::Zstd { level: 3, threads: 2 }, ArchiveFormat::Zstd)]
        {
            let (bytes, written) = archive_of(compression, len);
            let mut reader = ArchiveReader::new(&bytes[..], format).unwrap();
            let mut body = Vec::new();
            for entry in reader.entries().unwrap() {
                entry.unwrap().read_to_end(&mut body).unwrap();
            }
            assert_eq!(body.len(), len, "{compression:?}");
            assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "{compression:?}: bytes out of order");
            assert_eq!(reader.finish().unwrap(), written);
        }
    }

    #[test]
    fn spliced_members_read_back_with_the_same_digest() {
        use crate::archive::block_encoder::{BlockEncoder, CompressorPool};
        use std::io::Write;
        for (compression, format) in
            [(Compression::Gzip { level: 1, threads: 2 }, ArchiveFormat::Gzip), (Compression::Zstd { level: 1, threads: 2 }, ArchiveFormat::Zstd)]
        {
            let pool = CompressorPool::new(2).unwrap();
            let mut writer = ArchiveWriter::with_pool(Vec::new(), compression.codec(), pool.clone(), 0);
            let sizes = [0usize, 511, 512, 513, 3 * crate::archive::block_encoder::BLOCK_SIZE + 7];
            let mut expected = Vec::new();
            for (n, size) in sizes.into_iter().enumerate() {
                let body: Vec<u8> = (0..size).map(|i| (i * 31 % 255) as u8).collect();
                let mut spool = BlockEncoder::new(Vec::new(), compression.codec(), pool.clone());
                spool.write_all(&body).unwrap();
                let compressed = spool.finish().unwrap();
                let path = format!("data/db/dump/n/db/{}{n}.bson", "long".repeat(30));
                writer.append_compressed(&path, size as u64, &compressed[..], compressed.len() as u64).unwrap();
                writer.append_bytes(&format!("data/db/dump/n/db/c{n}.metadata.json"), b"{}").unwrap();
                expected.push((path, body));
                expected.push((format!("data/db/dump/n/db/c{n}.metadata.json"), b"{}".to_vec()));
            }
            let (bytes, written) = writer.finish().unwrap();
            let mut reader = ArchiveReader::new(&bytes[..], format).unwrap();
            assert!(read_members(&mut reader) == expected, "{compression:?}: members differ after the splice");
            assert_eq!(reader.finish().unwrap(), written);
        }
    }

    #[test]
    fn trailing_bytes_change_the_digest_and_truncation_is_an_error() {
        let (mut bytes, written) = archive(Compression::Gzip { level: 6, threads: 0 });
        let truncated = &bytes[..bytes.len() - 10];
        let mut reader = ArchiveReader::new(truncated, ArchiveFormat::Gzip).unwrap();
        let walked: io::Result<()> = (|| {
            for entry in reader.entries()? {
                io::copy(&mut entry?, &mut io::sink())?;
            }
            Ok(())
        })();
        assert!(walked.is_err() || reader.finish().is_err(), "a truncated gzip stream must not read cleanly");

        bytes.extend_from_slice(b"junk");
        let mut reader = ArchiveReader::new(&bytes[..], ArchiveFormat::Gzip).unwrap();
        for entry in reader.entries().unwrap() {
            io::copy(&mut entry.unwrap(), &mut io::sink()).unwrap();
        }
        let digest = reader.finish();
        assert!(digest.is_err() || digest.unwrap() != written);
    }

    #[test]
    fn encrypted_archives_read_back_with_the_ciphertext_digest() {
        let key = age::x25519::Identity::generate();
        let recipients = crate::crypto::Recipients::parse(&[key.to_public().to_string()], None, None).unwrap().unwrap();
        let identities = crate::crypto::Identities::parse(age::secrecy::ExposeSecret::expose_secret(&key.to_string()), "test").unwrap();
        let compression = Compression::Gzip { level: 6, threads: 2 };
        let mut writer = ArchiveWriter::sealed(Vec::new(), compression.codec(), compression.pool().unwrap(), 0, Some(&recipients)).unwrap();
        let body: Vec<u8> = (0..500_000).map(|i| (i % 251) as u8).collect();
        writer.append_bytes("data/db/dump/n/db/c.bson", &body).unwrap();
        let (bytes, written) = writer.finish().unwrap();
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)), "the digest is the stored ciphertext's");
        let mut reader = ArchiveReader::open(&bytes[..], "n.tar.gz.age", ArchiveFormat::Gzip, Some(&identities)).unwrap();
        assert_eq!(read_members(&mut reader), vec![("data/db/dump/n/db/c.bson".to_string(), body)]);
        assert_eq!(reader.finish().unwrap(), written);
        assert!(ArchiveReader::open(&bytes[..], "n.tar.gz.age", ArchiveFormat::Gzip, None).is_err());
    }

    #[test]
    fn formats_come_from_the_file_name() {
        assert_eq!(ArchiveFormat::of_file("2018-04-04T11_37.tar.zst.age"), Some(ArchiveFormat::Zstd));
        assert_eq!(ArchiveFormat::of_file("2018-04-04T11_37.tar.gz"), Some(ArchiveFormat::Gzip));
        assert_eq!(ArchiveFormat::of_file("2018-04-04T11_37.tar.zst"), Some(ArchiveFormat::Zstd));
        assert_eq!(ArchiveFormat::of_file("2018-04-04T11_37.zip"), None);
    }
}
