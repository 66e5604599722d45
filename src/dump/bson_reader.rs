//! Reading a `.bson` file (a concatenation of BSON documents, as mongodump writes
//! them) one document at a time, checking that each is well formed: a plausible
//! length, the bytes all there, a terminating zero, and every element (nested
//! documents and arrays included) readable.

use std::io::{self, Read};

use bson::{RawBsonRef, RawDocument};

/// The largest document a `.bson` file may hold: MongoDB's 16 MiB limit plus the
/// 16 KiB of internal headroom the server allows oplog entries.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024 + 16 * 1024;

/// Why a `.bson` stream is not a sequence of well-formed documents.
#[derive(Debug, thiserror::Error)]
pub enum BsonStreamError {
    /// Reading the underlying stream failed.
    #[error("reading failed at byte {offset}: {source}")]
    Io {
        /// Byte offset of the document being read.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The stream ends inside a document.
    #[error("truncated: the document at byte {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Byte offset of the document.
        offset: u64,
        /// Its declared length.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A document is malformed.
    #[error("malformed document at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the document.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Reads documents from a `.bson` stream.
pub struct BsonReader<R> {
    inner: R,
    buffer: Vec<u8>,
    offset: u64,
}

impl<R: Read> BsonReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, buffer: Vec::with_capacity(64 * 1024), offset: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next document, validated, or `None` at a clean end of the stream.
    ///
    /// # Errors
    /// The stream is truncated, a document is malformed, or reading failed.
    pub fn next_document(&mut self) -> Result<Option<&RawDocument>, BsonStreamError> {
        let offset = self.offset;
        let mut length_bytes = [0u8; 4];
        let got = read_up_to(&mut self.inner, &mut length_bytes).map_err(|source| BsonStreamError::Io { offset, source })?;
        if got == 0 {
            return Ok(None);
        }
        if got < 4 {
            return Err(BsonStreamError::Truncated { offset, needed: 4, available: got });
        }
        let declared = i32::from_le_bytes(length_bytes);
        let length = usize::try_from(declared).unwrap_or(0);
        if !(5..=MAX_DOCUMENT_BYTES).contains(&length) {
            return Err(BsonStreamError::Malformed { offset, reason: format!("invalid document length {declared}") });
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&length_bytes);
        self.buffer.resize(length, 0);
        let got = read_up_to(&mut self.inner, &mut self.buffer[4..]).map_err(|source| BsonStreamError::Io { offset, source })?;
        if got < length - 4 {
            return Err(BsonStreamError::Truncated { offset, needed: length, available: got + 4 });
        }
        self.offset += length as u64;
        let document = RawDocument::from_bytes(&self.buffer).map_err(|e| BsonStreamError::Malformed { offset, reason: e.to_string() })?;
        walk(document).map_err(|reason| BsonStreamError::Malformed { offset, reason })?;
        Ok(Some(document))
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads every element of a document, descending into documents and arrays.
fn walk(document: &RawDocument) -> Result<(), String> {
    for element in document {
        let (key, value) = element.map_err(|e| e.to_string())?;
        walk_value(value).map_err(|e| format!("in field {key:?}: {e}"))?;
    }
    Ok(())
}

fn walk_value(value: RawBsonRef<'_>) -> Result<(), String> {
    match value {
        RawBsonRef::Document(inner) => walk(inner),
        RawBsonRef::Array(inner) => {
            for item in inner {
                walk_value(item.map_err(|e| e.to_string())?)?;
            }
            Ok(())
        }
        RawBsonRef::JavaScriptCodeWithScope(code) => walk(code.scope),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    fn stream(documents: &[bson::Document]) -> Vec<u8> {
        documents.iter().flat_map(|d| RawDocumentBuf::from_document(d).unwrap().into_bytes()).collect()
    }

    #[test]
    fn reads_documents_in_order_and_ends_cleanly() {
        let bytes = stream(&[doc! { "_id": 1, "a": { "b": [1, 2, { "c": "d" }] } }, doc! { "_id": 2 }]);
        let mut reader = BsonReader::new(&bytes[..]);
        assert_eq!(reader.next_document().unwrap().unwrap().get_i32("_id").unwrap(), 1);
        assert_eq!(reader.next_document().unwrap().unwrap().get_i32("_id").unwrap(), 2);
        assert!(reader.next_document().unwrap().is_none());
        assert_eq!(reader.offset(), bytes.len() as u64);
    }

    #[test]
    fn truncation_and_corruption_are_named_with_their_offset() {
        let bytes = stream(&[doc! { "_id": 1 }, doc! { "_id": 2, "s": "text" }]);
        let first = RawDocumentBuf::from_document(&doc! { "_id": 1 }).unwrap().into_bytes().len();
        let mut reader = BsonReader::new(&bytes[..bytes.len() - 3]);
        reader.next_document().unwrap();
        let error = reader.next_document().unwrap_err();
        assert!(matches!(error, BsonStreamError::Truncated { offset, .. } if offset == first as u64), "{error}");

        let mut corrupt = bytes.clone();
        corrupt[first + 4] = 0x7f; // an unknown element type in the second document
        let mut reader = BsonReader::new(&corrupt[..]);
        reader.next_document().unwrap();
        assert!(matches!(reader.next_document().unwrap_err(), BsonStreamError::Malformed { .. }));

        let mut bad_length = bytes;
        bad_length[0..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(BsonReader::new(&bad_length[..]).next_document().unwrap_err(), BsonStreamError::Malformed { .. }));
    }
}
