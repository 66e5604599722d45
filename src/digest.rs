//! Per-namespace digests: document count, byte count, the SHA-256 of the `.bson`
//! bytes in file order, and an order-independent content hash.
//!
//! The content hash is the sum, modulo 2^256, of the SHA-256 of every document's raw
//! BSON bytes (each digest read as a little-endian 256-bit integer). Addition is
//! commutative, so the hash does not depend on the order a cursor returns documents,
//! and unlike XOR a duplicated document does not cancel itself out. It can therefore
//! be recomputed from a live collection and compared with the manifest.

use sha2::{Digest, Sha256};

/// An order-independent multiset hash of BSON documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentHash([u64; 4]);

impl ContentHash {
    /// Adds one document (its raw BSON bytes).
    pub fn add_document(&mut self, raw: &[u8]) {
        self.add_digest(&Sha256::digest(raw).into());
    }

    /// Adds a document whose SHA-256 is already known.
    pub fn add_digest(&mut self, digest: &[u8; 32]) {
        let mut carry = 0u64;
        for (limb, chunk) in self.0.iter_mut().zip(digest.chunks_exact(8)) {
            let addend = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
            let (sum, overflow_a) = limb.overflowing_add(addend);
            let (sum, overflow_b) = sum.overflowing_add(carry);
            *limb = sum;
            carry = u64::from(overflow_a) + u64::from(overflow_b);
        }
    }

    /// Merges another hash into this one (the hash of the union of both multisets).
    pub fn merge(&mut self, other: &ContentHash) {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(other.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        self.add_digest(&bytes);
    }

    /// Lowercase hex, most significant byte first, as written in the manifest.
    pub fn to_hex(&self) -> String {
        self.0.iter().rev().map(|limb| format!("{limb:016x}")).collect()
    }
}

/// Accumulates the digests of one namespace's `.bson` stream, one document at a time.
#[derive(Debug, Clone, Default)]
pub struct NamespaceDigest {
    documents: u64,
    bytes: u64,
    file_sha256: Sha256,
    content: ContentHash,
}

/// The finished digests of one namespace, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSummary {
    /// Number of documents.
    pub documents: u64,
    /// Number of bytes of the `.bson` file.
    pub bytes: u64,
    /// SHA-256 of the `.bson` file, lowercase hex.
    pub sha256: String,
    /// Order-independent content hash, lowercase hex.
    pub content_hash: String,
}

impl NamespaceDigest {
    /// Adds one document's raw bytes, in file order.
    pub fn add_document(&mut self, raw: &[u8]) {
        self.documents += 1;
        self.bytes += raw.len() as u64;
        self.file_sha256.update(raw);
        self.content.add_document(raw);
    }

    /// Appends the next `_id` range of the same collection: `range` counted and
    /// content-hashed its documents, and `bytes` replays them in file order for the
    /// file SHA-256, which cannot be combined from parts.
    ///
    /// # Errors
    /// `bytes` failed, or held a different number of bytes than `range` counted.
    pub fn append_range(&mut self, range: &NamespaceDigest, mut bytes: impl std::io::Read) -> std::io::Result<()> {
        let copied = std::io::copy(&mut bytes, &mut self.file_sha256)?;
        if copied != range.bytes {
            return Err(std::io::Error::other(format!("a spooled range replayed {copied} bytes where {} were read", range.bytes)));
        }
        self.documents += range.documents;
        self.bytes += range.bytes;
        self.content.merge(&range.content);
        Ok(())
    }

    /// The summary of everything added so far.
    pub fn finish(self) -> DigestSummary {
        DigestSummary {
            documents: self.documents,
            bytes: self.bytes,
            sha256: hex::encode(self.file_sha256.finalize()),
            content_hash: self.content.to_hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_ignores_order_but_not_multiplicity() {
        let docs: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
        let mut forward = ContentHash::default();
        docs.iter().for_each(|d| forward.add_document(d));
        let mut backward = ContentHash::default();
        docs.iter().rev().for_each(|d| backward.add_document(d));
        assert_eq!(forward, backward);

        let mut doubled = forward;
        doubled.add_document(b"beta");
        assert_ne!(forward, doubled);
        let mut twice = ContentHash::default();
        twice.add_document(b"x");
        twice.add_document(b"x");
        assert_ne!(twice, ContentHash::default());
    }

    #[test]
    fn merge_equals_adding_everything_to_one_hash() {
        let mut a = ContentHash::default();
        a.add_document(b"one");
        let mut b = ContentHash::default();
        b.add_document(b"two");
        a.merge(&b);
        let mut both = ContentHash::default();
        both.add_document(b"two");
        both.add_document(b"one");
        assert_eq!(a, both);
    }

    #[test]
    fn carry_propagates_across_limbs() {
        let mut h = ContentHash::default();
        h.add_digest(&[0xff; 32]);
        h.add_digest(&{
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        });
        assert_eq!(h, ContentHash::default(), "2^256 - 1 + 1 wraps to zero");
    }

    #[test]
    fn namespace_digest_counts_and_hashes_the_file_bytes() {
        let mut d = NamespaceDigest::default();
        d.add_document(b"abc");
        d.add_document(b"de");
        let s = d.finish();
        assert_eq!(s.documents, 2);
        assert_eq!(s.bytes, 5);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(b"abcde")));
    }

    #[test]
    fn ranges_appended_in_order_equal_one_pass_over_all_documents() {
        let documents: [&[u8]; 5] = [b"one", b"two", b"three", b"four", b"five"];
        let mut whole = NamespaceDigest::default();
        documents.iter().for_each(|d| whole.add_document(d));
        let (mut first, mut second) = (NamespaceDigest::default(), NamespaceDigest::default());
        documents[..2].iter().for_each(|d| first.add_document(d));
        documents[2..].iter().for_each(|d| second.add_document(d));
        first.append_range(&second, &documents[2..].concat()[..]).unwrap();
        assert_eq!(first.finish(), whole.finish());
        let mut short = NamespaceDigest::default();
        assert!(short.append_range(&second, &b"three"[..]).is_err(), "a replay shorter than the range is an error");
    }
}
