//! The Merkle tree of RFC 9162 §2.1 over a log's entries: leaf and node hashes, the tree head
//! (`MTH`), and the inclusion (`PATH`) and consistency (`PROOF`) proofs, exactly as the RFC
//! defines them, so that any RFC 9162 (or RFC 6962) verifier accepts them.
//!
//! The proofs are computed from a [`SubtreeRoots`] source, which answers `MTH(D[a:b])` for the
//! ranges the RFC's recursion asks for: over leaf hashes in memory, or over the rollup's pages.

use sha2::{Digest, Sha256};

use super::Hash;

/// RFC 9162 domain separation: the first byte hashed for a leaf.
const LEAF_PREFIX: u8 = 0x00;
/// RFC 9162 domain separation: the first byte hashed for an interior node.
const NODE_PREFIX: u8 = 0x01;

/// The leaf hash of the log entry at `offset`, written at `write_timestamp_ms`, holding
/// `payload`: SHA-256(0x00 ‖ offset (u64 LE) ‖ write_timestamp_ms (u64 LE) ‖ payload).
#[must_use]
pub fn leaf_hash(offset: u64, write_timestamp_ms: u64, payload: &[u8]) -> Hash {
    let digest = Sha256::new()
        .chain_update([LEAF_PREFIX])
        .chain_update(offset.to_le_bytes())
        .chain_update(write_timestamp_ms.to_le_bytes())
        .chain_update(payload)
        .finalize();
    Hash(digest.into())
}

/// The leaf hash of arbitrary leaf data: SHA-256(0x00 ‖ data). [`leaf_hash`] is this over a log
/// entry's leaf data, without building it.
#[must_use]
pub fn hash_leaf_data(data: &[u8]) -> Hash {
    Hash(Sha256::new().chain_update([LEAF_PREFIX]).chain_update(data).finalize().into())
}

/// A log entry's leaf data: offset (u64 LE) ‖ write_timestamp_ms (u64 LE) ‖ payload.
#[must_use]
pub fn leaf_data(offset: u64, write_timestamp_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(16 + payload.len());
    data.extend_from_slice(&offset.to_le_bytes());
    data.extend_from_slice(&write_timestamp_ms.to_le_bytes());
    data.extend_from_slice(payload);
    data
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let digest = Sha256::new()
        .chain_update([NODE_PREFIX])
        .chain_update(left.0)
        .chain_update(right.0)
        .finalize();
    Hash(digest.into())
}

/// The root of the empty tree: SHA-256 of no bytes.
#[must_use]
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The largest power of two strictly below `n` (`n` at least 2): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Answers `MTH(D[start:end])`, the root of the tree over entries `start..end` (at least one),
/// or why it cannot.
pub(crate) trait SubtreeRoots {
    type Error;

    fn subtree_root(&self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Leaf hashes held in memory: every subtree root is computed from them.
impl SubtreeRoots for [Hash] {
    type Error = std::convert::Infallible;

    fn subtree_root(&self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        let n = end - start;
        if n == 1 {
            // Callers ask only for ranges within the leaves; an empty root stands in otherwise.
            let at = usize::try_from(start).unwrap_or(usize::MAX);
            return Ok(self.get(at).copied().unwrap_or_else(empty_root));
        }
        let k = split(n);
        Ok(node_hash(&self.subtree_root(start, start + k)?, &self.subtree_root(start + k, end)?))
    }
}

/// The root of the tree over the first `size` entries (`MTH(D[0:size])`).
pub(crate) fn root<R: SubtreeRoots + ?Sized>(roots: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    roots.subtree_root(0, size)
}

/// [`root`] over leaf hashes in memory.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn mem_root(leaves: &[Hash], size: u64) -> Hash {
    match root(leaves, size) {
        Ok(hash) => hash,
        Err(never) => match never {},
    }
}

/// [`inclusion_path`] over leaf hashes in memory.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn mem_inclusion_path(leaves: &[Hash], index: u64, start: u64, end: u64) -> Vec<Hash> {
    match inclusion_path(leaves, index, start, end) {
        Ok(path) => path,
        Err(never) => match never {},
    }
}

/// [`consistency_path`] over leaf hashes in memory.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn mem_consistency_path(leaves: &[Hash], old_size: u64, new_size: u64) -> Vec<Hash> {
    match consistency_path(leaves, old_size, new_size) {
        Ok(path) => path,
        Err(never) => match never {},
    }
}

/// The audit path of entry `index` in the tree over entries `start..end` (RFC 9162 `PATH`),
/// leaf to root.
pub(crate) fn inclusion_path<R: SubtreeRoots + ?Sized>(
    roots: &R,
    index: u64,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, R::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(Vec::new());
    }
    let k = split(n);
    let (mut path, sibling) = if index - start < k {
        (inclusion_path(roots, index, start, start + k)?, roots.subtree_root(start + k, end)?)
    } else {
        (inclusion_path(roots, index, start + k, end)?, roots.subtree_root(start, start + k)?)
    };
    path.push(sibling);
    Ok(path)
}

/// The consistency proof between the trees of `old_size` and `new_size` entries
/// (RFC 9162 `PROOF`), for `0 < old_size < new_size`.
pub(crate) fn consistency_path<R: SubtreeRoots + ?Sized>(
    roots: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, R::Error> {
    subproof(roots, old_size, 0, new_size, true)
}

/// RFC 9162 `SUBPROOF(m, D[start:end], b)`.
fn subproof<R: SubtreeRoots + ?Sized>(
    roots: &R,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
) -> Result<Vec<Hash>, R::Error> {
    let n = end - start;
    if m == n {
        return Ok(if whole { Vec::new() } else { vec![roots.subtree_root(start, end)?] });
    }
    let k = split(n);
    let (mut proof, sibling) = if m <= k {
        (subproof(roots, m, start, start + k, whole)?, roots.subtree_root(start + k, end)?)
    } else {
        (subproof(roots, m - k, start + k, end, false)?, roots.subtree_root(start, start + k)?)
    };
    proof.push(sibling);
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: whether `path` proves that `leaf` is entry `index` of the tree of
/// `tree_size` entries whose root is `root`.
#[must_use]
pub fn verify_inclusion_path(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> bool {
    root_from_inclusion_path(index, tree_size, leaf, path).is_some_and(|r| r == *root)
}

/// The root that `path` leads to from `leaf` as entry `index` of a tree of `tree_size` entries
/// (RFC 9162 §2.1.3.2 without the final comparison), or `None` if the path does not fit such a
/// tree.
pub(crate) fn root_from_inclusion_path(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    path: &[Hash],
) -> Option<Hash> {
    if index >= tree_size {
        return None;
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// RFC 9162 §2.1.4.2: whether `proof` proves that the tree of `old_size` entries with root
/// `old_root` is a prefix of the tree of `new_size` entries with root `new_root`. Equal sizes
/// need an empty proof and equal roots; an old size of 0 or above the new one never verifies.
#[must_use]
pub fn verify_consistency_path(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // If the old size is a power of two, the old root is the first node of the path.
    let (mut fr, mut sr, rest) = if old_size.is_power_of_two() {
        (*old_root, *old_root, proof)
    } else {
        (*first, *first, rest)
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}
