//! One Merkle tree over the whole log, hashed and shaped exactly as RFC 6962
//! §2.1 (RFC 9162 §2.1) defines it, so that any Certificate Transparency
//! tool can check what Tasklog proves. Pure: no I/O.
//!
//! - leaf hash `SHA-256(0x00 || data)`, node hash `SHA-256(0x01 || left || right)`;
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two below `n`.
//!
//! Storage keeps the hash of every *complete, aligned* subtree ([`Node`]): any
//! subtree of the RFC's shape is a few of them folded right to left, so a
//! proof is the hashes of O(log n) nodes, fetched at once, and no tree is
//! ever held in memory. The proofs are planned as leaf ranges
//! ([`inclusion_ranges`], [`consistency_ranges`]), the ranges mapped to nodes
//! ([`range_nodes`]), and the proof assembled from their hashes ([`assemble`]).

use std::collections::HashMap;
use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete, aligned subtree: the leaves `index·2^level .. (index+1)·2^level`.
/// Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub level: u8,
    pub index: u64,
}

impl Node {
    /// The leaves it covers.
    pub fn leaves(self) -> Range<u64> {
        let start = self.index << self.level;
        start..start + (1u64 << self.level)
    }
}

/// The largest power of two smaller than `n` (`n >= 2`): RFC 6962's split.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete nodes whose hashes make up the hash of `range`, left to
/// right (largest first). `range` must be a subtree of the RFC's shape:
/// its start aligned to a power of two at least its length, as every
/// subtree of the recursion is, and as `0..n` is.
pub fn range_nodes(range: Range<u64>) -> Vec<Node> {
    let (mut start, end) = (range.start, range.end);
    let mut nodes = Vec::new();
    while start < end {
        let level = 63 - (end - start).leading_zeros();
        debug_assert_eq!(start % (1u64 << level), 0, "unaligned subtree");
        nodes.push(Node {
            level: level as u8,
            index: start >> level,
        });
        start += 1u64 << level;
    }
    nodes
}

/// The hash of a subtree from its [`range_nodes`]' hashes, folded right to
/// left as the RFC's recursion hashes them; the empty root for none.
pub fn fold(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)),
    }
}

/// RFC 6962 §2.1.1 `PATH(m, D[n])`: the subtrees whose hashes prove leaf
/// `m` in a tree of `n` leaves, from the leaf's sibling up to the root's
/// child. Empty when `m >= n`.
pub fn inclusion_ranges(m: u64, n: u64) -> Vec<Range<u64>> {
    fn path(m: u64, start: u64, end: u64, out: &mut Vec<Range<u64>>) {
        if end - start <= 1 {
            return;
        }
        let k = split(end - start);
        if m < start + k {
            path(m, start, start + k, out);
            out.push(start + k..end);
        } else {
            path(m, start + k, end, out);
            out.push(start..start + k);
        }
    }
    let mut out = Vec::new();
    if m < n {
        path(m, 0, n, &mut out);
    }
    out
}

/// RFC 6962 §2.1.2 `PROOF(m, D[n])`: the subtrees whose hashes prove that the
/// tree of `m` leaves is a prefix of the tree of `n`. Empty when `m == 0` or
/// `m >= n` (nothing to prove).
pub fn consistency_ranges(m: u64, n: u64) -> Vec<Range<u64>> {
    fn subproof(m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Range<u64>>) {
        if m == end {
            if !whole {
                out.push(start..end);
            }
            return;
        }
        let k = split(end - start);
        if m <= start + k {
            subproof(m, start, start + k, whole, out);
            out.push(start + k..end);
        } else {
            subproof(m, start + k, end, false, out);
            out.push(start..start + k);
        }
    }
    let mut out = Vec::new();
    if 0 < m && m < n {
        subproof(m, 0, n, true, &mut out);
    }
    out
}

/// Every node a list of ranges needs, each once.
pub fn nodes_of(ranges: &[Range<u64>]) -> Vec<Node> {
    let mut nodes: Vec<Node> = ranges.iter().flat_map(|r| range_nodes(r.clone())).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// A node the storage did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no hash stored for the subtree at level {} index {}", .0.level, .0.index)]
pub struct MissingNode(pub Node);

/// The proof's hashes: each range's hash from its nodes' `hashes`.
pub fn assemble(
    ranges: &[Range<u64>],
    hashes: &HashMap<Node, Hash>,
) -> Result<Vec<Hash>, MissingNode> {
    ranges
        .iter()
        .map(|r| {
            let nodes = range_nodes(r.clone())
                .into_iter()
                .map(|n| hashes.get(&n).copied().ok_or(MissingNode(n)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(fold(&nodes))
        })
        .collect()
}

/// The right edge of a tree being built leaf by leaf: the hashes of
/// [`range_nodes`]`(0..size)`. Enough to append the next leaf and to give
/// the root, in O(log n) memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// Largest subtree first.
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves from the hashes of
    /// `range_nodes(0..size)`, in that order.
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf's hash; calls `completed` with every subtree of level
    /// one or more this completes (the nodes storage keeps).
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(Node, Hash)) {
        let mut hash = leaf;
        let mut level = 0u8;
        // Each trailing one bit of the old size is a left sibling to merge.
        while (self.size >> level) & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            hash = node_hash(&left, &hash);
            level += 1;
            completed(
                Node {
                    level,
                    index: self.size >> level,
                },
                hash,
            );
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        fold(&self.hashes)
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {from} leaves cannot be a prefix of one of {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("the proof has {got} hashes where its sizes need {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the root hash")]
    RootMismatch,
}

/// The root an inclusion proof leads to, RFC 9162 §2.1.3.2.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_ranges(index, size).len();
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::RootMismatch);
    }
    Ok(r)
}

/// Checks that `proof` proves leaf `index` (whose hash is `leaf`) in the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(index, size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that `proof` proves the tree of `from` leaves (root `from_root`)
/// a prefix of the tree of `to` leaves (root `to_root`), RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    let want = consistency_ranges(from, to).len();
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    if from == to {
        return if from_root == to_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if from == 0 {
        // Every tree extends the empty one; its root must still be the empty root.
        return if *from_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // A power-of-two `from` is a node of the new tree: the RFC leaves it out
    // of the proof, the verifier starts from it.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && fr == *from_root && sr == *to_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 `MTH`, straight from its definition: the reference the
    /// node-based code is checked against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// Every complete aligned subtree's hash, as storage keeps them.
    fn all_nodes(leaves: &[Hash]) -> HashMap<Node, Hash> {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::default();
        for (i, leaf) in leaves.iter().enumerate() {
            nodes.insert(
                Node {
                    level: 0,
                    index: i as u64,
                },
                *leaf,
            );
            frontier.push(*leaf, |n, h| {
                nodes.insert(n, h);
            });
        }
        nodes
    }

    fn unhex(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The Certificate Transparency reference leaves.
    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
    }

    const REFERENCE_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn proof_of(ranges: &[Range<u64>], leaves: &[Hash]) -> Vec<Hash> {
        assemble(ranges, &all_nodes(leaves)).unwrap()
    }

    #[test]
    fn the_roots_are_the_certificate_transparency_reference_roots() {
        let leaves = reference_leaves();
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut frontier = Frontier::default();
        for (n, want) in REFERENCE_ROOTS.iter().enumerate() {
            frontier.push(leaves[n], |_, _| {});
            assert_eq!(hex::encode(frontier.root()), *want, "size {}", n + 1);
            let nodes = all_nodes(&leaves[..=n]);
            let stored: Vec<Hash> = range_nodes(0..n as u64 + 1)
                .iter()
                .map(|node| nodes[node])
                .collect();
            assert_eq!(
                hex::encode(fold(&stored)),
                *want,
                "size {} from nodes",
                n + 1
            );
        }
    }

    /// (leaf, size, path) of the reference suite (leaf numbers there are 1-based).
    #[test]
    fn inclusion_proofs_are_the_reference_proofs() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (leaf, size, want) in cases {
            let proof = proof_of(&inclusion_ranges(leaf, size), &leaves[..size as usize]);
            let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
            assert_eq!(proof, want, "leaf {leaf} of {size}");
            let root = unhex(REFERENCE_ROOTS[size as usize - 1]);
            verify_inclusion(leaf, size, &leaves[leaf as usize], &proof, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_are_the_reference_proofs() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (from, to, want) in cases {
            let proof = proof_of(&consistency_ranges(from, to), &leaves[..to as usize]);
            let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
            assert_eq!(proof, want, "{from} → {to}");
            let (r1, r2) = (
                unhex(REFERENCE_ROOTS[from as usize - 1]),
                unhex(REFERENCE_ROOTS[to as usize - 1]),
            );
            verify_consistency(from, to, &r1, &r2, &proof).unwrap();
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn flipped(proof: &[Hash], i: usize, bit: u8) -> Vec<Hash> {
        let mut p = proof.to_vec();
        p[i][(bit / 8) as usize % 32] ^= 1 << (bit % 8);
        p
    }

    #[test]
    fn every_leaf_of_every_tree_up_to_64_proves_and_any_flipped_bit_fails() {
        let all = leaves(64);
        for n in 1..=64u64 {
            let tree = &all[..n as usize];
            let root = mth(tree);
            let nodes = all_nodes(tree);
            for m in 0..n {
                let proof = assemble(&inclusion_ranges(m, n), &nodes).unwrap();
                verify_inclusion(m, n, &tree[m as usize], &proof, &root)
                    .unwrap_or_else(|e| panic!("leaf {m} of {n}: {e}"));
                for i in 0..proof.len() {
                    for bit in [0u8, 77, 255] {
                        assert!(
                            verify_inclusion(
                                m,
                                n,
                                &tree[m as usize],
                                &flipped(&proof, i, bit),
                                &root
                            )
                            .is_err(),
                            "leaf {m} of {n}: hash {i} bit {bit} flipped still verifies"
                        );
                    }
                }
                let mut other = tree[m as usize];
                other[31] ^= 1;
                assert!(verify_inclusion(m, n, &other, &proof, &root).is_err());
                let mut wrong_root = root;
                wrong_root[0] ^= 0x80;
                assert!(verify_inclusion(m, n, &tree[m as usize], &proof, &wrong_root).is_err());
                for (i, s) in [(m + 1, n), (m, n + 1), (m ^ 1, n), (m, n - 1)] {
                    if (i, s) != (m, n) && i < s && s <= n {
                        let root_s = mth(&all[..s as usize]);
                        assert!(
                            verify_inclusion(i, s, &tree[m as usize], &proof, &root_s).is_err(),
                            "leaf {m} of {n} passes as leaf {i} of {s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_pair_of_sizes_up_to_64_proves_consistent_and_any_flipped_bit_fails() {
        let all = leaves(64);
        let roots: Vec<Hash> = (0..=64).map(|n| mth(&all[..n])).collect();
        let nodes = all_nodes(&all);
        for to in 0..=64u64 {
            for from in 0..=to {
                let proof = assemble(&consistency_ranges(from, to), &nodes).unwrap();
                let (r1, r2) = (roots[from as usize], roots[to as usize]);
                verify_consistency(from, to, &r1, &r2, &proof)
                    .unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
                for i in 0..proof.len() {
                    assert!(
                        verify_consistency(from, to, &r1, &r2, &flipped(&proof, i, 130)).is_err(),
                        "{from} → {to}: hash {i} flipped still verifies"
                    );
                }
                if from > 0 && from < to {
                    assert!(verify_consistency(from, to, &r2, &r1, &proof).is_err());
                    let mut other = r1;
                    other[5] ^= 4;
                    assert!(verify_consistency(from, to, &other, &r2, &proof).is_err());
                    assert!(verify_consistency(from, to, &r1, &r2, &proof[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn a_frontier_completes_exactly_the_aligned_subtrees_and_gives_the_rfc_root() {
        let all = leaves(100);
        let mut frontier = Frontier::default();
        let mut completed = Vec::new();
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf, |n, h| completed.push((n, h)));
            assert_eq!(frontier.root(), mth(&all[..=i]), "size {}", i + 1);
        }
        for (node, hash) in completed {
            let r = node.leaves();
            assert_eq!(
                hash,
                mth(&all[r.start as usize..r.end as usize]),
                "{node:?}"
            );
        }
        // From stored hashes, the same frontier.
        let nodes = all_nodes(&all);
        let hashes = range_nodes(0..100).iter().map(|n| nodes[n]).collect();
        assert_eq!(Frontier::from_hashes(100, hashes), Some(frontier));
    }

    #[test]
    fn a_proof_at_ten_million_leaves_needs_few_nodes() {
        let n = 10_000_000u64;
        let inclusion = nodes_of(&inclusion_ranges(4_321_987, n));
        let consistency = nodes_of(&consistency_ranges(7_654_321, n));
        assert!(inclusion.len() <= 2 * 64 && consistency.len() <= 2 * 64);
        assert!(range_nodes(0..n).len() == n.count_ones() as usize);
    }
}
