//! The Merkle rollup: an RFC 9162 tree over every record of a log, its heads, and inclusion and
//! consistency proofs that anyone can verify with the free functions here, or with any RFC 9162
//! verifier, without the log.
//!
//! Entry `i` is the `i`-th record of the log; gaps a repair left are not entries. Its leaf data
//! is `offset (u64 LE) ‖ write_timestamp_ms (u64 LE) ‖ payload` (`FORMAT.md`, "Merkle tree").
//!
//! Heads and proofs are computed from the log when asked: the records up to the requested size
//! are read and hashed, so each call costs a replay of that part of the log. Stored pages that
//! make them logarithmic are not built yet.

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

/// The entries of a log's tree, read from the log: each record's offset, time and leaf hash.
struct Entries {
    leaves: Vec<Hash>,
    offsets: Vec<u64>,
    ends: Vec<u64>,
    times: Vec<u64>,
}

impl Entries {
    /// Reads and hashes the log's records, up to `limit` of them.
    fn read(log: &Log, limit: u64) -> Result<Entries> {
        let mut entries = Entries {
            leaves: Vec::new(),
            offsets: Vec::new(),
            ends: Vec::new(),
            times: Vec::new(),
        };
        let mut replay = log.replay(log.start_offset());
        while (entries.leaves.len() as u64) < limit {
            let Some(record) = replay.next_ref() else { break };
            let record = match record {
                Ok(record) => record,
                Err(StorageError::Gap { .. }) => continue,
                Err(err) => return Err(err),
            };
            entries.leaves.push(leaf_hash(
                record.offset,
                record.write_timestamp_ms,
                record.payload,
            ));
            entries.offsets.push(record.offset);
            entries.times.push(record.write_timestamp_ms);
            entries.ends.push(replay.position());
        }
        Ok(entries)
    }

    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn head(&self, log: &Log, size: u64) -> TreeHead {
        let last = usize::try_from(size).ok().and_then(|s| s.checked_sub(1));
        TreeHead {
            tree_size: size,
            root: tree::root(self.leaves.as_slice(), size),
            end_offset: last
                .and_then(|i| self.ends.get(i).copied())
                .unwrap_or_else(|| log.start_offset()),
            last_write_timestamp_ms: last.and_then(|i| self.times.get(i).copied()).unwrap_or(0),
        }
    }
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

/// The head of `log`'s tree over all its records, or over the first `tree_size` of them.
///
/// # Errors
/// [`StorageError::Proof`] for a size larger than the log; a replay error
/// ([`StorageError::Corruption`]) if a record cannot be read.
pub fn tree_head(log: &Log, tree_size: Option<u64>) -> Result<TreeHead> {
    let entries = Entries::read(log, tree_size.unwrap_or(u64::MAX))?;
    let size = tree_size.unwrap_or(entries.size());
    check_size(size, entries.size())?;
    Ok(entries.head(log, size))
}

/// The head of the largest tree whose last entry was written at or before `at_ms` (the empty
/// tree if none was).
///
/// # Errors
/// As [`tree_head`].
pub fn tree_head_at(log: &Log, at_ms: u64) -> Result<TreeHead> {
    let entries = Entries::read(log, u64::MAX)?;
    // Write times never decrease, so the entries written by then are a prefix.
    let size = entries.times.partition_point(|&t| t <= at_ms) as u64;
    Ok(entries.head(log, size))
}

/// A proof that the record at `offset` is in the tree over the first `tree_size` records (all
/// of them by default).
///
/// # Errors
/// [`StorageError::InvalidOffset`] if no record starts at `offset` (or it lies outside that
/// tree); [`StorageError::Proof`] for a tree size larger than the log; a replay error.
pub fn inclusion_proof(log: &Log, offset: u64, tree_size: Option<u64>) -> Result<InclusionProof> {
    let record = log.read_at(offset)?;
    let entries = Entries::read(log, tree_size.unwrap_or(u64::MAX))?;
    let size = tree_size.unwrap_or(entries.size());
    check_size(size, entries.size())?;
    let index = entries.offsets.binary_search(&offset).map_err(|_| StorageError::InvalidOffset {
        offset,
        reason: format!("not among the first {size} entries of the tree"),
    })? as u64;
    let leaves = entries.leaves.as_slice();
    let leaf = leaves.get(usize::try_from(index).unwrap_or(usize::MAX)).copied();
    Ok(InclusionProof {
        leaf_index: index,
        tree_size: size,
        offset,
        write_timestamp_ms: record.write_timestamp_ms,
        payload_hex: record.payload.to_vec(),
        leaf_hash: leaf.unwrap_or_else(empty_root),
        audit_path: tree::inclusion_path(leaves, index, 0, size),
        root: tree::root(leaves, size),
    })
}

/// A proof that the tree of `old_size` records is a prefix of the tree of `new_size` records
/// (all of them by default).
///
/// # Errors
/// [`StorageError::Proof`] unless `0 < old_size <= new_size <=` the log's records; a replay
/// error.
pub fn consistency_proof(
    log: &Log,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyProof> {
    let entries = Entries::read(log, new_size.unwrap_or(u64::MAX))?;
    let new_size = new_size.unwrap_or(entries.size());
    check_size(new_size, entries.size())?;
    if old_size == 0 || old_size > new_size {
        return Err(StorageError::Proof {
            reason: format!(
                "a consistency proof needs 0 < old size <= new size, not {old_size} and {new_size}"
            ),
        });
    }
    let leaves = entries.leaves.as_slice();
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
