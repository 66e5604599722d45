//! The archive stream sealed with age: [`SealWriter`] encrypts what the compressor
//! writes, on its way to the hashing and the store (so the sidecar's size and SHA-256
//! are those of the stored ciphertext); [`OpenReader`] decrypts what is read back.
//! Both pass bytes through unchanged for an unencrypted backup. age authenticates
//! each 64 KiB chunk, so damage is caught at the chunk it is in, and a truncation
//! at the end.

use std::io::{self, Read, Write};

use super::{describe, Identities, Recipients};

/// The compressed stream on its way to the store, encrypted or not.
pub enum SealWriter<W: Write> {
    /// No recipients: the bytes as they are.
    Plain(W),
    /// age, to the backup's recipients.
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> SealWriter<W> {
    /// Starts a stream on `sink`, encrypted to `recipients` when there are any (the
    /// age header is written at once).
    ///
    /// # Errors
    /// The sink failed.
    pub fn new(sink: W, recipients: Option<&Recipients>) -> io::Result<Self> {
        match recipients {
            None => Ok(SealWriter::Plain(sink)),
            Some(recipients) => {
                let encryptor = age::Encryptor::with_recipients(recipients.as_dyn()).map_err(|e| io::Error::other(format!("age: {e}")))?;
                Ok(SealWriter::Age(encryptor.wrap_output(sink)?))
            }
        }
    }

    /// Ends the stream (age's last chunk) and returns the sink.
    ///
    /// # Errors
    /// The sink failed.
    pub fn finish(self) -> io::Result<W> {
        match self {
            SealWriter::Plain(sink) => Ok(sink),
            SealWriter::Age(writer) => writer.finish(),
        }
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SealWriter::Plain(sink) => sink.write(buf),
            SealWriter::Age(writer) => writer.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            SealWriter::Plain(sink) => sink.write_all(buf),
            SealWriter::Age(writer) => writer.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SealWriter::Plain(sink) => sink.flush(),
            SealWriter::Age(writer) => writer.flush(),
        }
    }
}

/// The stored stream read back, decrypted when it is encrypted.
pub enum OpenReader<R: Read> {
    /// An unencrypted object.
    Plain(R),
    /// An age file whose header and first chunk authenticated.
    Age {
        /// The decrypting reader.
        reader: age::stream::StreamReader<R>,
        /// The first plaintext byte, read when the stream was opened.
        first: Option<u8>,
        /// Plaintext bytes handed out so far (to say where damage is).
        offset: u64,
    },
}

impl<R: Read> OpenReader<R> {
    /// Opens `source`: with `encrypted`, reads the age header, unwraps the file key with
    /// `identities` and decrypts the first chunk, so that a wrong key or an altered
    /// start is known before the caller does anything with the content.
    ///
    /// # Errors
    /// No identity was given for an encrypted stream, the identity is not a recipient,
    /// or the header or first chunk does not authenticate; each error says which.
    pub fn new(source: R, encrypted: bool, identities: Option<&Identities>) -> io::Result<Self> {
        if !encrypted {
            return Ok(OpenReader::Plain(source));
        }
        let Some(identities) = identities else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "it is encrypted and no identity was given: give --identity FILE (or AGE_IDENTITY_FILE, or AGE_IDENTITY)",
            ));
        };
        let decryptor = age::Decryptor::new(source).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, describe(&e)))?;
        let mut reader = decryptor.decrypt(identities.as_dyn()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, describe(&e)))?;
        let mut byte = [0u8; 1];
        let first = match reader.read(&mut byte) {
            Ok(0) => None,
            Ok(_) => Some(byte[0]),
            Err(error) => return Err(unauthentic(0, &error)),
        };
        Ok(OpenReader::Age { reader, first, offset: 0 })
    }
}

/// An authentication failure of the payload at plaintext `offset`.
fn unauthentic(offset: u64, error: &io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the encrypted stream does not authenticate after {offset} decrypted bytes ({error}): it was truncated or altered after the backup; \
             do not trust it, restore an older backup"
        ),
    )
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            OpenReader::Plain(source) => source.read(buf),
            OpenReader::Age { reader, first, offset } => {
                if buf.is_empty() {
                    return Ok(0);
                }
                if let Some(byte) = first.take() {
                    buf[0] = byte;
                    *offset += 1;
                    return Ok(1);
                }
                match reader.read(buf) {
                    Ok(n) => {
                        *offset += n as u64;
                        Ok(n)
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
                    Err(error) => Err(unauthentic(*offset, &error)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Recipients, Identities) {
        let key = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&[key.to_public().to_string()], None, None).unwrap().unwrap();
        (recipients, Identities(vec![key]))
    }

    fn sealed(recipients: &Recipients, body: &[u8]) -> Vec<u8> {
        let mut writer = SealWriter::new(Vec::new(), Some(recipients)).unwrap();
        writer.write_all(body).unwrap();
        writer.finish().unwrap()
    }

    fn open_all(bytes: &[u8], identities: &Identities) -> io::Result<Vec<u8>> {
        let mut reader = OpenReader::new(bytes, true, Some(identities))?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn sealed_streams_open_with_the_identity_only() {
        let (recipients, identities) = keys();
        let body: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
        let bytes = sealed(&recipients, &body);
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(open_all(&bytes, &identities).unwrap(), body);
        let (_, other) = keys();
        let error = OpenReader::new(&bytes[..], true, Some(&other)).err().unwrap();
        assert!(error.to_string().contains("not one of the recipients"), "{error}");
        let error = OpenReader::new(&bytes[..], true, None).err().unwrap();
        assert!(error.to_string().contains("no identity"), "{error}");
    }

    #[test]
    fn altered_and_truncated_streams_fail_naming_the_cause() {
        let (recipients, identities) = keys();
        let body: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        let bytes = sealed(&recipients, &body);
        let mut altered = bytes.clone();
        let last = altered.len() - 100;
        altered[last] ^= 1;
        let error = open_all(&altered, &identities).unwrap_err();
        assert!(error.to_string().contains("does not authenticate"), "{error}");
        for cut in [bytes.len() - 1, bytes.len() - 16 - 65_536] {
            let error = open_all(&bytes[..cut], &identities).unwrap_err();
            assert!(error.to_string().contains("truncated or altered"), "{cut}: {error}");
        }
        let mut header = bytes.clone();
        header[40] ^= 1;
        assert!(OpenReader::new(&header[..], true, Some(&identities)).is_err());
    }
}
