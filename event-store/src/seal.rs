//! Seals: signed heads of the log's Merkle tree ([`crate::merkle`]), the
//! proof documents auditors get, and their offline checks with the public
//! key only. Pure: no I/O. The bytes are documented in docs/audit.md ("Seals").
//!
//! - **Leaf data** of an event: its stored chain `hash` (32 bytes), which
//!   commits to its content, its stream version and, through `prev_hash`, to
//!   every event before it in its stream. Leaves are in log order.
//! - **Signed bytes** of a head ([`TreeHead::signed_bytes`]), 85 bytes:
//!   `"tasklog-tree-head-v1\n"`, the tree size, the root hash, the last leaf's
//!   log position (commit, event) and the time in microseconds since the
//!   Unix epoch, each integer 8 bytes big-endian; signed with Ed25519 (RFC 8032).

use std::fmt;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::merkle::{self, Hash, ProofError};
use crate::LogPosition;

/// The format of a signed tree head, and the prefix of its signed bytes.
pub const HEAD_FORMAT: &str = "tasklog-tree-head-v1";
/// The format of an inclusion proof document.
pub const INCLUSION_FORMAT: &str = "tasklog-inclusion-proof-v1";
/// The format of a consistency proof document.
pub const CONSISTENCY_FORMAT: &str = "tasklog-consistency-proof-v1";

/// The leaf hash of an event: `SHA-256(0x00 || hash)`, its stored chain hash.
pub fn event_leaf(event_hash: &[u8]) -> Hash {
    merkle::leaf_hash(event_hash)
}

/// Bytes written as lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex<const N: usize>(pub [u8; N]);

/// A 32-byte hash, as 64 hex digits.
pub type HexHash = Hex<32>;
/// An Ed25519 signature, as 128 hex digits.
pub type HexSignature = Hex<64>;

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex::<N>(&text)
            .map(Hex)
            .ok_or_else(|| serde::de::Error::custom(format!("expected {} hex digits", 2 * N)))
    }
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// A key that is not 64 hex digits (32 bytes).
#[derive(Debug, thiserror::Error)]
#[error("an Ed25519 key is 64 hex digits (32 bytes)")]
pub struct BadKey;

/// The signing key from its 32-byte seed in hex (`TASKLOG_SEAL_SIGNING_KEY`).
pub fn signing_key_from_hex(seed: &str) -> Result<SigningKey, BadKey> {
    parse_hex::<32>(seed)
        .map(|s| SigningKey::from_bytes(&s))
        .ok_or(BadKey)
}

/// The public key from its 32 bytes in hex (what `tasklog audit public-key` prints).
pub fn verifying_key_from_hex(key: &str) -> Result<VerifyingKey, BadKey> {
    parse_hex::<32>(key)
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or(BadKey)
}

/// What a head states: the tree over the first `tree_size` events of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub tree_size: u64,
    pub root_hash: HexHash,
    /// The log position of the last leaf (`0.0` for the empty tree).
    pub last_position: LogPosition,
    /// When it was signed, to the microsecond.
    #[serde(with = "crate::export::micros")]
    pub sealed_at: DateTime<Utc>,
}

impl TreeHead {
    /// The exact bytes signed (see the module's documentation).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(85);
        b.extend_from_slice(HEAD_FORMAT.as_bytes());
        b.push(b'\n');
        b.extend_from_slice(&self.tree_size.to_be_bytes());
        b.extend_from_slice(&self.root_hash.0);
        b.extend_from_slice(&self.last_position.commit.to_be_bytes());
        b.extend_from_slice(&self.last_position.event.to_be_bytes());
        b.extend_from_slice(&self.sealed_at.timestamp_micros().to_be_bytes());
        b
    }

    /// Signs the head.
    pub fn sign(self, key: &SigningKey) -> SignedTreeHead {
        let signature = key.sign(&self.signed_bytes()).to_bytes();
        SignedTreeHead {
            format: HEAD_FORMAT.to_owned(),
            head: self,
            signature: Hex(signature),
        }
    }
}

/// A signed tree head, as published (one JSON line each) and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    /// `tasklog-tree-head-v1`.
    pub format: String,
    #[serde(flatten)]
    pub head: TreeHead,
    pub signature: HexSignature,
}

impl SignedTreeHead {
    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SealError> {
        if self.format != HEAD_FORMAT {
            return Err(SealError::UnknownFormat(self.format.clone()));
        }
        key.verify(
            &self.head.signed_bytes(),
            &Signature::from_bytes(&self.signature.0),
        )
        .map_err(|_| SealError::BadSignature {
            tree_size: self.head.tree_size,
        })
    }
}

/// Proves that an event is leaf `leaf_index` of the tree a signed head names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// `tasklog-inclusion-proof-v1`.
    pub format: String,
    pub head: SignedTreeHead,
    pub leaf_index: u64,
    pub event_id: Uuid,
    pub position: LogPosition,
    /// The leaf data: the event's stored chain hash (`hash` in an export).
    pub event_hash: HexHash,
    /// RFC 6962 `PATH`, from the leaf's sibling up.
    pub path: Vec<HexHash>,
}

impl InclusionProof {
    /// Checks the head's signature with `key`, then the path from
    /// `SHA-256(0x00 || event_hash)` to the head's root.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SealError> {
        if self.format != INCLUSION_FORMAT {
            return Err(SealError::UnknownFormat(self.format.clone()));
        }
        self.head.verify(key)?;
        let path: Vec<Hash> = self.path.iter().map(|h| h.0).collect();
        merkle::verify_inclusion(
            self.leaf_index,
            self.head.head.tree_size,
            &event_leaf(&self.event_hash.0),
            &path,
            &self.head.head.root_hash.0,
        )
        .map_err(SealError::Proof)
    }
}

/// Proves that the tree of an older signed head is a prefix of a newer one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// `tasklog-consistency-proof-v1`.
    pub format: String,
    pub from: SignedTreeHead,
    pub to: SignedTreeHead,
    /// RFC 6962 `PROOF(from, D[to])`.
    pub path: Vec<HexHash>,
}

impl ConsistencyProof {
    /// Checks both heads' signatures with `key`, then the proof.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SealError> {
        if self.format != CONSISTENCY_FORMAT {
            return Err(SealError::UnknownFormat(self.format.clone()));
        }
        self.from.verify(key)?;
        self.to.verify(key)?;
        let path: Vec<Hash> = self.path.iter().map(|h| h.0).collect();
        merkle::verify_consistency(
            self.from.head.tree_size,
            self.to.head.tree_size,
            &self.from.head.root_hash.0,
            &self.to.head.root_hash.0,
            &path,
        )
        .map_err(SealError::Proof)
    }
}

/// Checks a sequence of published heads (a heads file, in the order
/// written): every signature, and that no two heads of one size name
/// different roots (a log that showed two histories). Calls `on_finding`
/// with each failure; returns how many heads were read.
pub fn verify_heads<'a>(
    heads: impl IntoIterator<Item = &'a SignedTreeHead>,
    key: &VerifyingKey,
    mut on_finding: impl FnMut(SealError),
) -> usize {
    let mut roots = std::collections::HashMap::new();
    let mut count = 0;
    for head in heads {
        count += 1;
        if let Err(e) = head.verify(key) {
            on_finding(e);
            continue;
        }
        let h = &head.head;
        if let Some(other) = roots.insert(h.tree_size, h.root_hash) {
            if other != h.root_hash {
                on_finding(SealError::HeadsDisagree {
                    tree_size: h.tree_size,
                });
            }
        }
    }
    count
}

/// Why a seal does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A document of another format or version: it could not be checked.
    #[error("unknown format {0:?}")]
    UnknownFormat(String),
    /// The head was not signed by this key, or was changed after signing.
    #[error("the signature of the head of size {tree_size} does not verify with this key")]
    BadSignature { tree_size: u64 },
    /// Two signed heads of one size with different roots.
    #[error("two signed heads of size {tree_size} name different roots")]
    HeadsDisagree { tree_size: u64 },
    #[error("proof fails: {0}")]
    Proof(ProofError),
}

impl SealError {
    /// A finding about the seals (exit 1), not a document that could not
    /// be read (exit 2).
    pub fn is_finding(&self) -> bool {
        !matches!(self, SealError::UnknownFormat(_))
    }
}

/// How the stored log differs from what was sealed, at the first leaf that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafDifference {
    pub index: u64,
    /// What the sealer recorded there (position and leaf hash), if anything.
    pub sealed: Option<(LogPosition, Hash)>,
    /// The event in that place of the log now, if any.
    pub now: Option<(Uuid, LogPosition, Hash)>,
}

impl fmt::Display for LeafDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "first differing leaf {}: sealed ", self.index)?;
        match self.sealed {
            Some((position, hash)) => {
                write!(f, "position {position} (leaf {})", hex::encode(hash))?
            }
            None => f.write_str("nothing")?,
        }
        f.write_str(", now ")?;
        match self.now {
            Some((event, position, hash)) => write!(
                f,
                "event {event} at position {position} (leaf {})",
                hex::encode(hash)
            ),
            None => f.write_str("no event"),
        }
    }
}

/// What `tasklog audit verify` finds about the recorded heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadFinding {
    /// The head's signature does not verify with the key given.
    Signature(SealError),
    /// The stored events give another root at the head's size.
    RootDiffers {
        head: TreeHead,
        now: Hash,
        first: Option<LeafDifference>,
    },
    /// The log holds fewer events than the head's size.
    BeyondLog {
        head: TreeHead,
        log_size: u64,
        first: Option<LeafDifference>,
    },
}

impl fmt::Display for HeadFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first =
            |d: &Option<LeafDifference>| d.as_ref().map_or(String::new(), |d| format!("; {d}"));
        match self {
            Self::Signature(e) => write!(f, "seal: {e}"),
            Self::RootDiffers { head, now, first: d } => write!(
                f,
                "seal broken: head of size {} (sealed at {}, through position {}) has root {}, the stored log gives {}{}",
                head.tree_size,
                head.sealed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                head.last_position,
                head.root_hash,
                hex::encode(now),
                first(d)
            ),
            Self::BeyondLog { head, log_size, first: d } => write!(
                f,
                "seal broken: head of size {} (sealed at {}, through position {}) but the log holds {log_size} events{}",
                head.tree_size,
                head.sealed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                head.last_position,
                first(d)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{assemble, consistency_ranges, inclusion_ranges, Frontier, Node};
    use std::collections::HashMap;

    fn key() -> SigningKey {
        signing_key_from_hex(&"07".repeat(32)).unwrap()
    }

    fn head(size: u64, root: Hash) -> TreeHead {
        TreeHead {
            tree_size: size,
            root_hash: Hex(root),
            last_position: LogPosition {
                commit: 812,
                event: 4051,
            },
            sealed_at: DateTime::from_timestamp_micros(1_796_040_000_123_456).unwrap(),
        }
    }

    #[test]
    fn the_signed_bytes_are_the_prefix_then_five_big_endian_fields() {
        let h = head(5, [0xab; 32]);
        let b = h.signed_bytes();
        assert_eq!(b.len(), 85);
        assert_eq!(&b[..21], b"tasklog-tree-head-v1\n");
        assert_eq!(&b[21..29], &5u64.to_be_bytes());
        assert_eq!(&b[29..61], &[0xab; 32]);
        assert_eq!(&b[61..69], &812u64.to_be_bytes());
        assert_eq!(&b[69..77], &4051u64.to_be_bytes());
        assert_eq!(&b[77..], &1_796_040_000_123_456i64.to_be_bytes());
    }

    #[test]
    fn a_signed_head_verifies_through_json_and_fails_with_any_field_changed() {
        let signed = head(5, [0xab; 32]).sign(&key());
        let json = serde_json::to_string(&signed).unwrap();
        assert!(
            json.starts_with(r#"{"format":"tasklog-tree-head-v1","tree_size":5,"#),
            "{json}"
        );
        let back: SignedTreeHead = serde_json::from_str(&json).unwrap();
        back.verify(&key().verifying_key()).unwrap();
        let other = signing_key_from_hex(&"08".repeat(32)).unwrap();
        assert!(back.verify(&other.verifying_key()).is_err());
        let mut changed = back.clone();
        changed.head.tree_size = 4;
        assert!(changed.verify(&key().verifying_key()).is_err());
        let mut changed = back.clone();
        changed.head.sealed_at += chrono::Duration::microseconds(1);
        assert!(changed.verify(&key().verifying_key()).is_err());
        let mut changed = back.clone();
        changed.head.last_position.event += 1;
        assert!(changed.verify(&key().verifying_key()).is_err());
        let mut changed = back;
        changed.signature.0[63] ^= 1;
        assert!(changed.verify(&key().verifying_key()).is_err());
    }

    fn tree(n: u64) -> (Vec<Hash>, HashMap<Node, Hash>, Vec<Hash>) {
        let data: Vec<Hash> = (0..n)
            .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
            .collect();
        let mut nodes = HashMap::new();
        let mut roots = vec![merkle::empty_root()];
        let mut f = Frontier::default();
        for (i, d) in data.iter().enumerate() {
            let leaf = event_leaf(d);
            nodes.insert(
                Node {
                    level: 0,
                    index: i as u64,
                },
                leaf,
            );
            f.push(leaf, |node, h| {
                nodes.insert(node, h);
            });
            roots.push(f.root());
        }
        (data, nodes, roots)
    }

    #[test]
    fn proof_documents_verify_with_the_public_key_only_and_fail_with_a_byte_changed() {
        let (data, nodes, roots) = tree(13);
        let k = key();
        let pk = k.verifying_key();
        let h13 = head(13, roots[13]).sign(&k);
        let h6 = head(6, roots[6]).sign(&k);
        let proof = InclusionProof {
            format: INCLUSION_FORMAT.into(),
            head: h13.clone(),
            leaf_index: 9,
            event_id: Uuid::nil(),
            position: LogPosition {
                commit: 1,
                event: 10,
            },
            event_hash: Hex(data[9]),
            path: assemble(&inclusion_ranges(9, 13), &nodes)
                .unwrap()
                .into_iter()
                .map(Hex)
                .collect(),
        };
        proof.verify(&pk).unwrap();
        let mut bad = proof.clone();
        bad.event_hash.0[0] ^= 1;
        assert!(matches!(bad.verify(&pk), Err(SealError::Proof(_))));
        let mut bad = proof.clone();
        bad.path[2].0[31] ^= 0x10;
        assert!(bad.verify(&pk).is_err());
        let mut bad = proof.clone();
        bad.head.head.root_hash.0[3] ^= 1;
        assert!(matches!(
            bad.verify(&pk),
            Err(SealError::BadSignature { .. })
        ));

        let consistency = ConsistencyProof {
            format: CONSISTENCY_FORMAT.into(),
            from: h6,
            to: h13,
            path: assemble(&consistency_ranges(6, 13), &nodes)
                .unwrap()
                .into_iter()
                .map(Hex)
                .collect(),
        };
        consistency.verify(&pk).unwrap();
        let mut bad = consistency.clone();
        bad.path[0].0[7] ^= 2;
        assert!(bad.verify(&pk).is_err());
        let mut bad = consistency;
        bad.to.signature.0[0] ^= 1;
        assert!(bad.verify(&pk).is_err());
    }

    #[test]
    fn heads_of_one_size_with_different_roots_are_a_finding() {
        let k = key();
        let heads = [
            head(3, [1; 32]).sign(&k),
            head(3, [2; 32]).sign(&k),
            head(4, [3; 32]).sign(&k),
        ];
        let mut found = Vec::new();
        let n = verify_heads(&heads, &k.verifying_key(), |e| found.push(e));
        assert_eq!(n, 3);
        assert_eq!(found, [SealError::HeadsDisagree { tree_size: 3 }]);
    }
}
