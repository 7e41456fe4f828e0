//! The Merkle rollup: an RFC 9162 tree over every record of a log, its heads, and inclusion and
//! consistency proofs that anyone can verify with the free functions here, or with any RFC 9162
//! verifier, without the log.
//!
//! Entry `i` is the `i`-th record of the log; gaps a repair left are not entries. Its leaf data
//! is `offset (u64 LE) ‖ write_timestamp_ms (u64 LE) ‖ payload` (`FORMAT.md`, "Merkle tree").
//!
//! The tree is kept as pages (`FORMAT.md` 12.3): a level-0 page holds the leaf hashes of 256
//! consecutive entries, a level-(L+1) page the roots of 256 level-L pages, and each page the
//! hash of the previous page of its level. Sealed pages are stored beside the segments; the
//! unsealed right edge is held in memory. A head or proof reads a few pages and hashes a few
//! dozen nodes, whatever the log's size. The `Log` methods (`tree_head`, `inclusion_proof`,
//! `consistency_proof`, `verify_pages`, `rollup_report`) are the entry points.

mod edge;
mod hash;
pub(crate) mod page;
pub(crate) mod query;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod tiles;
pub(crate) mod tree;
mod verify;

use serde::{Deserialize, Serialize};

pub use hash::Hash;
pub use tree::{
    empty_root, hash_leaf_data, leaf_data, leaf_hash, node_hash, verify_consistency_path,
    verify_inclusion_path,
};

pub(crate) use store::is_page_file_name;
pub(crate) use verify::verify_pages;
pub use verify::{LevelPages, PageProblem, PagesReport};

use crate::error::{Result, StorageError};

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

/// The rollup's state: what it has hashed, the pages it keeps, and what it found on open.
/// See [`Log::rollup_report`](crate::Log::rollup_report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    /// Whether the log keeps stored pages ([`Options::merkle_rollup`](crate::Options)). Without
    /// them every head and proof is computed from the whole log.
    pub stored_pages: bool,
    /// Entries hashed so far (a query first hashes every record published before it).
    pub entries_hashed: u64,
    /// The offset just after the last entry hashed.
    pub hashed_to_offset: u64,
    /// Per level: pages in the page file, and pages held in memory (a read-only open, or a
    /// page file that could not be written).
    pub pages: Vec<(u64, u64)>,
    /// Bytes of the page files' valid records.
    pub disk_bytes: u64,
    /// Bytes of memory the rollup holds (open pages, pages held in memory).
    pub memory_bytes: u64,
    /// Entries the stored pages covered when the log was opened, after dropping bad ones.
    pub entries_kept_on_open: u64,
    /// Pages dropped on open or while answering (damaged, or not matching the log), and why.
    pub dropped: Option<String>,
    /// Pages dropped while answering because they were damaged, rebuilt from the log.
    pub pages_rebuilt: u64,
    /// The last error writing a page file, or hashing in the background.
    pub error: Option<String>,
}

#[cfg(test)]
mod page_tests;
#[cfg(test)]
mod tests;
