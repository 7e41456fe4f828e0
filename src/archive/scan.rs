//! Reading segment images: walking their frames with every check of `FORMAT.md` 3, and the
//! compact range of the Merkle tree (`FORMAT.md` 12.1) that lets a backup continue the tree
//! from any entry and compute the head at any cut.

use crate::format::{decode_frame, FrameHeader, FrameRead, FLAG_BATCH_CONTINUES};
use crate::rollup::{empty_root, leaf_hash, node_hash, Hash};

/// A frame found by [`walk_frames`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameInfo<'a> {
    pub offset: u64,
    pub header: FrameHeader,
    pub payload: &'a [u8],
}

impl FrameInfo<'_> {
    /// Whether this frame completes its batch (a frame without `BATCH_CONTINUES`, or a gap).
    pub(crate) fn completes_batch(&self) -> bool {
        self.header.flags & FLAG_BATCH_CONTINUES == 0
    }
}

/// Why a walk stopped before the end of its bytes: the offset and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkError {
    pub offset: u64,
    pub reason: String,
}

/// Walks the frames that tile `bytes`, which start at logical offset `start`, calling `visit`
/// on each in order. Every frame must be valid (`FORMAT.md` 3) and the last must end exactly at
/// the end of `bytes`. Returns the length of the prefix of `bytes` that ends with a frame that
/// completes its batch (0 if none).
///
/// # Errors
/// The offset of the first frame that is invalid, or where the data ends early.
pub(crate) fn walk_frames<'a>(
    bytes: &'a [u8],
    start: u64,
    mut visit: impl FnMut(FrameInfo<'a>),
) -> Result<usize, WalkError> {
    let mut pos = 0usize;
    let mut complete = 0usize;
    while pos < bytes.len() {
        let offset = start + pos as u64;
        let rest = bytes.get(pos..).unwrap_or_default();
        let frame = match decode_frame(rest, offset) {
            Ok(FrameRead::Frame(frame)) => frame,
            Ok(FrameRead::End) => {
                return Err(WalkError { offset, reason: "the data ends early (no frame)".into() })
            }
            Err(err) => return Err(WalkError { offset, reason: err.to_string() }),
        };
        let stride = usize::try_from(frame.header.stride()).unwrap_or(usize::MAX);
        let next = pos.saturating_add(stride);
        if next > bytes.len() {
            // The frame fits but its padding runs past the end: only possible at a cut that is
            // not a frame boundary.
            return Err(WalkError { offset, reason: "the last frame's padding is cut off".into() });
        }
        let info = FrameInfo { offset, header: frame.header, payload: frame.payload };
        if info.completes_batch() {
            complete = next;
        }
        visit(info);
        pos = next;
    }
    Ok(complete)
}

/// The compact range of a Merkle tree (RFC 9162): the roots of the perfect subtrees that cover
/// its entries, largest first. Enough to append entries and to compute the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompactRange {
    size: u64,
    roots: Vec<Hash>,
}

impl CompactRange {
    /// The range of a tree of `size` entries from its subtree roots, largest first; `None`
    /// unless there is one root per bit set in `size`.
    pub(crate) fn from_roots(size: u64, roots: Vec<Hash>) -> Option<CompactRange> {
        (roots.len() == size.count_ones() as usize).then_some(CompactRange { size, roots })
    }

    /// The range of the tree of `index` entries, from the RFC 9162 inclusion path of entry
    /// `index` in the tree of `index + 1` entries (whose siblings are exactly those roots,
    /// smallest first).
    pub(crate) fn from_last_inclusion_path(index: u64, path: &[Hash]) -> Option<CompactRange> {
        let roots = path.iter().rev().copied().collect();
        CompactRange::from_roots(index, roots)
    }

    /// Entries in the tree.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub(crate) fn roots(&self) -> &[Hash] {
        &self.roots
    }

    /// Appends the entry whose leaf hash is `leaf`.
    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.roots.pop() else { break };
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.roots.push(hash);
        self.size += 1;
    }

    /// Appends a record's entry.
    pub(crate) fn push_record(&mut self, frame: &FrameInfo<'_>) {
        self.push(leaf_hash(frame.offset, frame.header.write_timestamp_ms, frame.payload));
    }

    /// The root of the tree (RFC 9162 `MTH`).
    pub(crate) fn root(&self) -> Hash {
        let mut roots = self.roots.iter().rev();
        let Some(last) = roots.next() else { return empty_root() };
        roots.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::verify_inclusion_path;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(i * 8, i, &i.to_le_bytes())).collect()
    }

    /// RFC 9162 MTH, recursively.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1 << (63 - ((n as u64) - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn compact_range_gives_every_root() {
        let all = leaves(70);
        let mut range = CompactRange::default();
        assert_eq!(range.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            range.push(*leaf);
            assert_eq!(range.size(), i as u64 + 1);
            assert_eq!(range.roots().len(), (i + 1).count_ones() as usize);
            assert_eq!(range.root(), mth(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn compact_range_from_the_last_inclusion_path() {
        let all = leaves(40);
        for index in 0..39u64 {
            // The path of entry `index` in the tree of `index + 1`, built from the ranges.
            let mut expected = CompactRange::default();
            all[..index as usize].iter().for_each(|l| expected.push(*l));
            let path: Vec<Hash> = expected.roots().iter().rev().copied().collect();
            let root = mth(&all[..=index as usize]);
            assert!(verify_inclusion_path(index, index + 1, &all[index as usize], &path, &root));
            let got = CompactRange::from_last_inclusion_path(index, &path).unwrap();
            assert_eq!(got, expected);
        }
        assert!(CompactRange::from_roots(3, vec![empty_root()]).is_none());
    }
}
