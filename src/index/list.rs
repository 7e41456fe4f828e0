//! Offset lists as a loaded index file holds them: left in the file's compact form (a first
//! offset and `u32` gaps) until something needs them as `u64`s.
//!
//! Decoding every list of a large index on open would cost more than everything else the open
//! does: a million events make three million offsets, 24 MB of fresh heap. Most of those lists
//! are never read before the index is saved again, so a loaded list stays a [`Frozen`]
//! reference into the file's bytes, checked when the file is loaded (so a query never meets a
//! damaged list) but decoded only when needed. A type or namespace list is decoded when a
//! query reads it (and kept) or an append extends it (it then becomes an ordinary
//! `Vec<u64>`); an aggregate's list is decoded by each query, and appends chain after it (see
//! `aggregates.rs`). Saving writes a list that is still exactly as loaded by copying its
//! bytes. The bytes are the mapped file (see `map.rs`).

// Frozen lists point into bytes from disk and from fuzzers; their accessors must not panic.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use crate::format::FRAME_ALIGN;

/// Gaps summed per block before the block's sum joins the total: the low and the high 16 bits
/// of a block's gaps each sum to less than 2^32, so the inner loop adds `u32`s without
/// overflow checks (and vectorises).
const GAPS_PER_BLOCK: usize = 1 << 16;

/// A non-empty offset list in the narrow form of the index file, not yet decoded: where it
/// is in the file's bytes and what it holds.
///
/// Invariant (checked by [`Frozen::check`] when the file is loaded): the gaps are at
/// `bytes[at..at + 4 * (count - 1)]` of the file the list was loaded from, none is zero, the
/// first offset is aligned, and the offsets end at `last`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frozen {
    /// Where the list's gaps start in the file's bytes.
    at: usize,
    /// The number of offsets (at least 1).
    count: usize,
    first: u64,
    last: u64,
}

impl Frozen {
    /// Checks a narrow list of `count` offsets (at least 1) starting at `first`, whose gaps
    /// are `gaps`, found at `at` in the file: every gap non-zero, `first` aligned, every offset
    /// below `end`. Runs over the gaps without decoding them.
    pub(super) fn check(
        at: usize,
        count: usize,
        first: u64,
        gaps: &[u8],
        end: u64,
    ) -> Option<Self> {
        let gap_count = count.checked_sub(1)?;
        if gaps.len() / 4 != gap_count
            || !gaps.len().is_multiple_of(4)
            || !first.is_multiple_of(FRAME_ALIGN as u64)
        {
            return None;
        }
        let mut sum = 0u64;
        let mut zero = 0u32;
        for block in gaps.chunks(4 * GAPS_PER_BLOCK) {
            // Branch-free over `u32` lanes, so it vectorises: the gaps' low and high halves
            // are summed apart (neither sum can overflow within a block), and any zero gap
            // sets a flag.
            let (mut low, mut high) = (0u32, 0u32);
            for gap in block.chunks_exact(4) {
                let gap = gap.first_chunk::<4>().map_or(0, |g| u32::from_le_bytes(*g));
                low += gap & 0xffff;
                high += gap >> 16;
                zero |= u32::from(gap == 0);
            }
            sum = sum.saturating_add(u64::from(low) + (u64::from(high) << 16));
        }
        let last = first.saturating_add(sum.saturating_mul(8));
        (zero == 0 && last < end).then_some(Frozen { at, count, first, last })
    }

    /// The number of offsets.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// The first offset.
    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// The last offset.
    pub(super) fn last(&self) -> u64 {
        self.last
    }

    /// The gaps' bytes in `file`, the bytes the list was loaded from.
    fn gaps<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        file.get(self.at..self.at + 4 * (self.count - 1)).unwrap_or_default()
    }

    /// Decodes the list from `file` (the bytes it was loaded from) into a vector with room
    /// for `extra` more offsets.
    pub(super) fn decode(&self, file: &[u8], extra: usize) -> Vec<u64> {
        let mut list = Vec::with_capacity(self.count + extra);
        self.decode_into(file, &mut list);
        list
    }

    /// Appends the decoded list to `list`.
    pub(super) fn decode_into(&self, file: &[u8], list: &mut Vec<u64>) {
        let gaps = self.gaps(file);
        list.reserve(self.count);
        list.push(self.first);
        let mut at = self.first;
        // `extend` over an exact-size iterator writes without a capacity check per item.
        // `check` bounded the sum of the gaps; saturating keeps a misuse panic-free.
        list.extend(gaps.chunks_exact(4).map(|gap| {
            at = at.saturating_add(
                u64::from(gap.first_chunk::<4>().map_or(0, |g| u32::from_le_bytes(*g))) * 8,
            );
            at
        }));
    }

    /// Writes the list in the narrow form of the index file: its count, first offset and
    /// gaps, copied from `file`.
    pub(super) fn put(&self, out: &mut Vec<u8>, file: &[u8]) {
        out.extend_from_slice(&(self.count as u64).to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(self.gaps(file));
    }

    /// Bytes [`Frozen::put`] writes.
    pub(super) fn encoded_len(&self) -> usize {
        16 + 4 * (self.count - 1)
    }
}
