//! The Merkle rollup: an RFC 9162 tree over every record of a log, its heads, and inclusion and
//! consistency proofs that anyone can verify with the free functions here, or with any RFC 9162
//! verifier, without the log.
//!
//! Entry `i` is the `i`-th record of the log; gaps a repair left are not entries. Its leaf data
//! is `offset (u64 LE) ‖ write_timestamp_ms (u64 LE) ‖ payload` (`FORMAT.md`, "Merkle tree").
//!
//! Heads and proofs are computed from the log when asked: the records up to the requested size
//! are read and hashed, so each call costs a replay of that part of the log (heads in flat
//! memory; proofs hold 32 bytes per entry while they work). Stored pages that make them
//! logarithmic are not built yet.

mod hash;
pub(crate) mod tree;

use serde::{Deserialize, Serialize};

pub use hash::Hash;
pub use tree::{
    empty_root, hash_leaf_data, leaf_data, leaf_hash, node_hash, verify_consistency_path,
    verify_inclusion_path,
};

use crate::error::{Result, StorageError};
use crate::log::Log;

/// The head of the tree over the first `tree_size` entries of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Entries in the tree.
    pub tree_size: u64,
    /// The tree's root hash (RFC 9162 `MTH`).
    pub root: Hash,
    /// The offset just after the tree's last entry (the log's start for an empty tree).
    pub end_offset: u64,
    /// When the tree's last entry was written; 0 for an empty tree.
    pub last_write_timestamp_ms: u64,
}

/// A proof that one record is entry `leaf_index` of the tree of `tree_size` entries with root
/// `root`. It carries the record (offset, time, payload), so it can be checked alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "inclusion")]
pub struct InclusionProof {
    /// The entry's index in the log's tree.
    pub leaf_index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The record's offset.
    pub offset: u64,
    /// The record's write time.
    pub write_timestamp_ms: u64,
    /// The record's payload.
    #[serde(with = "hash::hex_bytes")]
    pub payload_hex: Vec<u8>,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The RFC 9162 inclusion path, from the leaf up.
    pub audit_path: Vec<Hash>,
    /// The root of the tree of `tree_size` entries.
    pub root: Hash,
}

/// A proof that the tree of `old_size` entries is a prefix of the tree of `new_size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "consistency")]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub old_size: u64,
    /// The newer tree's size.
    pub new_size: u64,
    /// The older tree's root.
    pub old_root: Hash,
    /// The newer tree's root.
    pub new_root: Hash,
    /// The RFC 9162 consistency proof.
    pub proof: Vec<Hash>,
}

impl InclusionProof {
    /// Checks the proof alone: the leaf hash is that of the offset, time and payload it
    /// carries, and the audit path leads from it to `root` (RFC 9162 §2.1.3.2). Pass a root
    /// you trust (a published head) as `expected_root` to check against it too.
    ///
    /// # Errors
    /// [`StorageError::Proof`] saying what did not match.
    pub fn verify(&self, expected_root: Option<&Hash>) -> Result<()> {
        let leaf = leaf_hash(self.offset, self.write_timestamp_ms, &self.payload_hex);
        if leaf != self.leaf_hash {
            return Err(proof_error(
                "the leaf hash is not that of the record's offset, time and payload",
            ));
        }
        if expected_root.is_some_and(|root| *root != self.root) {
            return Err(proof_error("the proof is for another root than the one expected"));
        }
        if !verify_inclusion_path(
            self.leaf_index,
            self.tree_size,
            &leaf,
            &self.audit_path,
            &self.root,
        ) {
            return Err(proof_error("the audit path does not lead from the leaf to the root"));
        }
        Ok(())
    }
}

impl ConsistencyProof {
    /// Checks the proof alone (RFC 9162 §2.1.4.2). Pass roots you trust as `expected_roots`
    /// (old, new) to check against them too.
    ///
    /// # Errors
    /// [`StorageError::Proof`] saying what did not match.
    pub fn verify(&self, expected_roots: Option<(&Hash, &Hash)>) -> Result<()> {
        if expected_roots.is_some_and(|(old, new)| *old != self.old_root || *new != self.new_root) {
            return Err(proof_error("the proof is for other roots than the ones expected"));
        }
        if !verify_consistency_path(
            self.old_size,
            self.new_size,
            &self.old_root,
            &self.new_root,
            &self.proof,
        ) {
            return Err(proof_error("the proof does not show the old tree is a prefix of the new"));
        }
        Ok(())
    }
}

fn proof_error(reason: &str) -> StorageError {
    StorageError::Proof { reason: reason.to_string() }
}

/// Replays `log`'s records (gaps are not entries) and hands each to `visit` with its leaf hash
/// and the offset after it, until `visit` returns `false` or the log ends.
fn each_entry(log: &Log, mut visit: impl FnMut(Entry) -> bool) -> Result<()> {
    let mut replay = log.replay(log.start_offset());
    while let Some(record) = replay.next_ref() {
        let record = match record {
            Ok(record) => record,
            Err(StorageError::Gap { .. }) => continue,
            Err(err) => return Err(err),
        };
        let entry = Entry {
            start: record.offset,
            write_timestamp_ms: record.write_timestamp_ms,
            leaf: leaf_hash(record.offset, record.write_timestamp_ms, record.payload),
            end: replay.position(),
        };
        if !visit(entry) {
            break;
        }
    }
    Ok(())
}

/// One entry as [`each_entry`] sees it.
#[derive(Clone, Copy)]
struct Entry {
    /// The record's offset.
    start: u64,
    write_timestamp_ms: u64,
    leaf: Hash,
    /// Where the next frame starts.
    end: u64,
}

/// The head of the first entries of `log` that `take` accepts (entries are offered in order,
/// and the first refused ends the tree), folded as a compact range: memory stays at one hash
/// per level whatever the log's size.
fn fold_head(log: &Log, mut take: impl FnMut(u64, u64) -> bool) -> Result<TreeHead> {
    // Roots of perfect subtrees, largest first, with their sizes: the binary form of the size.
    let mut stack: Vec<(u64, Hash)> = Vec::new();
    let mut head = TreeHead {
        tree_size: 0,
        root: empty_root(),
        end_offset: log.start_offset(),
        last_write_timestamp_ms: 0,
    };
    each_entry(log, |entry| {
        if !take(head.tree_size, entry.write_timestamp_ms) {
            return false;
        }
        let mut node = (1, entry.leaf);
        while let Some(&(size, left)) = stack.last().filter(|(size, _)| *size == node.0) {
            stack.pop();
            node = (size * 2, node_hash(&left, &node.1));
        }
        stack.push(node);
        head.tree_size += 1;
        head.end_offset = entry.end;
        head.last_write_timestamp_ms = entry.write_timestamp_ms;
        true
    })?;
    // MTH splits at the largest power of two below the size: the right fold of the stack.
    if let Some((&(_, last), rest)) = stack.split_last() {
        head.root = rest.iter().rev().fold(last, |right, (_, left)| node_hash(left, &right));
    }
    Ok(head)
}

/// The leaf hashes of the first `limit` entries of `log`, and the entry index of the record at
/// `offset` if one of them is.
fn leaves(log: &Log, limit: u64, offset: Option<u64>) -> Result<(Vec<Hash>, Option<u64>)> {
    let (mut leaves, mut index) = (Vec::new(), None);
    each_entry(log, |entry| {
        if leaves.len() as u64 >= limit {
            return false;
        }
        if Some(entry.start) == offset {
            index = Some(leaves.len() as u64);
        }
        leaves.push(entry.leaf);
        true
    })?;
    Ok((leaves, index))
}

/// Checks that `size` entries exist, given the log holds `available`.
fn check_size(size: u64, available: u64) -> Result<()> {
    if size > available {
        return Err(StorageError::Proof {
            reason: format!("tree size {size} is larger than the log's {available} entries"),
        });
    }
    Ok(())
}

/// The head of `log`'s tree over all its records, or over the first `tree_size` of them. Reads
/// and hashes those records; memory stays flat.
///
/// # Errors
/// [`StorageError::Proof`] for a size larger than the log; a replay error
/// ([`StorageError::Corruption`]) if a record cannot be read.
pub fn tree_head(log: &Log, tree_size: Option<u64>) -> Result<TreeHead> {
    let limit = tree_size.unwrap_or(u64::MAX);
    let head = fold_head(log, |size, _| size < limit)?;
    check_size(tree_size.unwrap_or(head.tree_size), head.tree_size)?;
    Ok(head)
}

/// The head of the largest tree whose last entry was written at or before `at_ms` (the empty
/// tree if none was). Write times never decrease, so those entries are a prefix of the log.
///
/// # Errors
/// As [`tree_head`].
pub fn tree_head_at(log: &Log, at_ms: u64) -> Result<TreeHead> {
    fold_head(log, |_, written| written <= at_ms)
}

/// A proof that the record at `offset` is in the tree over the first `tree_size` records (all
/// of them by default). Reads and hashes those records, and holds their leaf hashes (32 bytes
/// each) while it works.
///
/// # Errors
/// [`StorageError::InvalidOffset`] if no record starts at `offset` (or it lies outside that
/// tree); [`StorageError::Proof`] for a tree size larger than the log; a replay error.
pub fn inclusion_proof(log: &Log, offset: u64, tree_size: Option<u64>) -> Result<InclusionProof> {
    let record = log.read_at(offset)?;
    let (leaves, index) = leaves(log, tree_size.unwrap_or(u64::MAX), Some(offset))?;
    let size = tree_size.unwrap_or(leaves.len() as u64);
    check_size(size, leaves.len() as u64)?;
    let index = index.ok_or_else(|| StorageError::InvalidOffset {
        offset,
        reason: format!("not among the first {size} entries of the tree"),
    })?;
    let leaves = leaves.as_slice();
    let leaf = leaves.get(usize::try_from(index).unwrap_or(usize::MAX)).copied();
    let leaf = leaf.unwrap_or_else(empty_root);
    let audit_path = tree::inclusion_path(leaves, index, 0, size);
    // The path already holds every subtree the root is made of: fold it rather than hash the
    // whole tree a second time.
    let root = tree::root_from_inclusion_path(index, size, &leaf, &audit_path)
        .unwrap_or_else(|| tree::root(leaves, size));
    Ok(InclusionProof {
        leaf_index: index,
        tree_size: size,
        offset,
        write_timestamp_ms: record.write_timestamp_ms,
        payload_hex: record.payload.to_vec(),
        leaf_hash: leaf,
        audit_path,
        root,
    })
}

/// A proof that the tree of `old_size` records is a prefix of the tree of `new_size` records
/// (all of them by default). Reads and hashes those records, and holds their leaf hashes while
/// it works.
///
/// # Errors
/// [`StorageError::Proof`] unless `0 < old_size <= new_size <=` the log's records; a replay
/// error.
pub fn consistency_proof(
    log: &Log,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyProof> {
    let (leaves, _) = leaves(log, new_size.unwrap_or(u64::MAX), None)?;
    let new_size = new_size.unwrap_or(leaves.len() as u64);
    check_size(new_size, leaves.len() as u64)?;
    if old_size == 0 || old_size > new_size {
        return Err(StorageError::Proof {
            reason: format!(
                "a consistency proof needs 0 < old size <= new size, not {old_size} and {new_size}"
            ),
        });
    }
    let leaves = leaves.as_slice();
    let proof = if old_size == new_size {
        Vec::new()
    } else {
        tree::consistency_path(leaves, old_size, new_size)
    };
    Ok(ConsistencyProof {
        old_size,
        new_size,
        old_root: tree::root(leaves, old_size),
        new_root: tree::root(leaves, new_size),
        proof,
    })
}

#[cfg(test)]
mod tests;
