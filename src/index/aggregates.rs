//! The aggregate index in memory: aggregate id → offsets of its events.
//!
//! Appends go to one shared, append-only arena of postings, each the offset of an event and
//! the position of the previous posting of the same aggregate; per aggregate, a small map
//! entry names its last posting. An append therefore writes to the end of one array and
//! updates one 16-byte map entry, whatever the number of aggregates, instead of growing one
//! vector per aggregate (an allocation, a copy at every doubling, and a cache miss on a tail
//! scattered among thousands). A query walks the aggregate's chain back and returns the list
//! in log order; it reads the events themselves from the log anyway, which costs far more.
//!
//! An aggregate's offsets may also have a first part that is not in the arena: as loaded from
//! the index file (left [`Frozen`] until needed), or held in full after a truncation. The
//! chain, if any, follows it: every appended offset is beyond everything indexed before.

use std::ops::Range;

use super::hash::FxHashMap;
use super::list::Frozen;

/// Marks "no previous posting" in a chain.
const NO_POSTING: u32 = u32::MAX;

/// The end of an aggregate's chain in the postings arena.
#[derive(Debug, Clone, Copy)]
struct Chain {
    /// The position of the aggregate's last posting.
    last: u32,
    /// How many postings the chain has.
    count: u32,
}

/// An aggregate's list as [`Aggregates::for_each_sorted`] passes it.
pub(super) enum List<'a> {
    /// Exactly as loaded.
    Frozen(&'a Frozen),
    /// In full.
    Full(&'a [u64]),
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Aggregates {
    /// First parts as loaded from the index file and not decoded.
    frozen: FxHashMap<u64, Frozen>,
    /// First parts held in full: loaded in the wide form, or kept by a truncation. An id is
    /// in `frozen` or `owned`, never both.
    owned: FxHashMap<u64, Vec<u64>>,
    /// The aggregates with postings in the arena.
    chains: FxHashMap<u64, Chain>,
    /// The arena: the offset of each posting.
    offsets: Vec<u64>,
    /// The arena: the position of the previous posting of the same aggregate, or
    /// [`NO_POSTING`].
    previous: Vec<u32>,
}

impl Aggregates {
    /// Aggregates as the decoder found them.
    pub(super) fn loaded(
        frozen: FxHashMap<u64, Frozen>,
        owned: FxHashMap<u64, Vec<u64>>,
    ) -> Aggregates {
        Aggregates { frozen, owned, ..Aggregates::default() }
    }

    /// Adds `offset`, beyond every offset indexed so far, to aggregate `id`.
    #[inline]
    pub(super) fn push(&mut self, id: u64, offset: u64, file: &[u8]) {
        let at = match u32::try_from(self.offsets.len()) {
            Ok(at) if at != NO_POSTING => at,
            _ => {
                // Four billion appends since the index was built or loaded: fold the chains
                // into owned lists and start a new arena.
                self.thaw_all(file);
                0
            }
        };
        let chain = self.chains.entry(id).or_insert(Chain { last: NO_POSTING, count: 0 });
        self.previous.push(chain.last);
        self.offsets.push(offset);
        chain.last = at;
        chain.count += 1;
    }

    /// Whether aggregate `id` has events.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.chains.contains_key(&id)
            || self.frozen.contains_key(&id)
            || self.owned.contains_key(&id)
    }

    /// The offset of aggregate `id`'s last event and how many events it has, in constant time;
    /// `None` if it has none.
    pub(super) fn tail(&self, id: u64) -> Option<(u64, u64)> {
        let first = match (self.frozen.get(&id), self.owned.get(&id)) {
            (Some(frozen), _) => Some((frozen.last(), frozen.len() as u64)),
            (None, Some(owned)) => owned.last().map(|&last| (last, owned.len() as u64)),
            (None, None) => None,
        };
        let Some(chain) = self.chains.get(&id) else {
            return first;
        };
        let last = self.offsets.get(chain.last as usize).copied()?;
        let before = first.map_or(0, |(_, count)| count);
        Some((last, before + u64::from(chain.count)))
    }

    /// Replaces `list` with the offsets of aggregate `id`, in log order.
    pub(super) fn collect_into(&self, id: u64, file: &[u8], list: &mut Vec<u64>) {
        list.clear();
        if let Some(frozen) = self.frozen.get(&id) {
            frozen.decode_into(file, list);
        } else if let Some(owned) = self.owned.get(&id) {
            list.extend_from_slice(owned);
        }
        let Some(chain) = self.chains.get(&id) else {
            return;
        };
        let start = list.len();
        list.resize(start + chain.count as usize, 0);
        let mut at = chain.last;
        for slot in list.get_mut(start..).unwrap_or_default().iter_mut().rev() {
            let i = at as usize;
            *slot = self.offsets.get(i).copied().unwrap_or(0);
            at = self.previous.get(i).copied().unwrap_or(NO_POSTING);
        }
    }

    /// The ids of all aggregates with events, each once, in no particular order.
    pub(super) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        let first_parts = self.frozen.keys().chain(self.owned.keys());
        let chained_only = self
            .chains
            .keys()
            .filter(|id| !self.frozen.contains_key(id) && !self.owned.contains_key(id));
        first_parts.chain(chained_only).copied()
    }

    /// Calls `f` with each aggregate's id and list, in increasing order of id. A list that is
    /// exactly as loaded is passed frozen (the encoder copies its bytes); every other list is
    /// passed in full.
    ///
    /// The chains are resolved together, in one backward pass over the arena that writes each
    /// offset to its place, instead of one pointer chase per posting.
    pub(super) fn for_each_sorted(&self, file: &[u8], mut f: impl FnMut(u64, List<'_>)) {
        let (chained, flat) = self.chained_lists(file);
        let mut ids: Vec<u64> = self.frozen.keys().chain(self.owned.keys()).copied().collect();
        ids.extend(chained.iter().map(|&(id, _)| id));
        ids.sort_unstable();
        ids.dedup();
        let mut chained = chained.into_iter().peekable();
        for id in ids {
            if let Some((_, range)) = chained.next_if(|&(chained_id, _)| chained_id == id) {
                f(id, List::Full(flat.get(range).unwrap_or_default()));
            } else if let Some(frozen) = self.frozen.get(&id) {
                f(id, List::Frozen(frozen));
            } else if let Some(owned) = self.owned.get(&id) {
                f(id, List::Full(owned));
            }
        }
    }

    /// The full lists of the aggregates with postings, sorted by id: each id with its range
    /// in one flat array, and the array.
    fn chained_lists(&self, file: &[u8]) -> (Vec<(u64, Range<usize>)>, Vec<u64>) {
        let mut chains: Vec<(u64, Chain)> = self.chains.iter().map(|(&id, &c)| (id, c)).collect();
        chains.sort_unstable_by_key(|&(id, _)| id);
        let mut ranges = Vec::with_capacity(chains.len());
        let mut flat = Vec::with_capacity(self.offsets.len());
        // Where each posting goes in `flat`: known first for each chain's last posting, then
        // for each posting's predecessor when the backward pass reaches the posting.
        let mut place = vec![0usize; self.offsets.len()];
        for (id, chain) in chains {
            let start = flat.len();
            if let Some(frozen) = self.frozen.get(&id) {
                frozen.decode_into(file, &mut flat);
            } else if let Some(owned) = self.owned.get(&id) {
                flat.extend_from_slice(owned);
            }
            let end = flat.len() + chain.count as usize;
            if let Some(p) = place.get_mut(chain.last as usize) {
                *p = end - 1;
            }
            flat.resize(end, 0);
            ranges.push((id, start..end));
        }
        for (i, &offset) in self.offsets.iter().enumerate().rev() {
            let p = place.get(i).copied().unwrap_or(0);
            if let Some(slot) = flat.get_mut(p) {
                *slot = offset;
            }
            let previous = self.previous.get(i).copied().unwrap_or(NO_POSTING);
            if let Some(q) = place.get_mut(previous as usize) {
                *q = p.saturating_sub(1);
            }
        }
        (ranges, flat)
    }

    /// The frozen list of aggregate `id`, if it has no other offsets.
    #[cfg(test)]
    pub(super) fn only_frozen(&self, id: u64) -> Option<&Frozen> {
        self.frozen.get(&id).filter(|_| !self.chains.contains_key(&id))
    }

    /// An estimate of the bytes the encoder writes for these lists.
    pub(super) fn encoded_len_estimate(&self) -> usize {
        let frozen: usize = self.frozen.values().map(|f| 8 + f.encoded_len()).sum();
        let owned: usize = self.owned.values().map(|l| 24 + 4 * l.len()).sum();
        frozen + owned + 24 * self.chains.len() + 4 * self.offsets.len()
    }

    /// Holds every list in full, in `owned`, and empties the arena.
    pub(super) fn thaw_all(&mut self, file: &[u8]) {
        let mut owned = FxHashMap::default();
        self.for_each_sorted(file, |id, list| {
            let list = match list {
                List::Frozen(frozen) => frozen.decode(file, 0),
                List::Full(list) => list.to_vec(),
            };
            owned.insert(id, list);
        });
        *self = Aggregates { owned, ..Aggregates::default() };
    }

    /// Drops every offset at or after `offset`, and the aggregates left with none.
    pub(super) fn truncate(&mut self, offset: u64, file: &[u8]) {
        self.thaw_all(file);
        self.owned.retain(|_, list| {
            list.truncate(list.partition_point(|&o| o < offset));
            !list.is_empty()
        });
    }
}
