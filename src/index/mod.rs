//! Indexes over an event log: the aggregate index (aggregate id → offsets of its events) and
//! the secondary indexes by event type, by namespace and by write time; the persisted index
//! file; and the staleness check and incremental catch-up that make opening a large log cost
//! what was appended since the last checkpoint, not the log's size.
//!
//! Every index stores offsets only, in increasing order; the events themselves are read from
//! the log when a query asks for them. Offsets are the source of truth: a query answered from
//! the index returns exactly the events, in exactly the order, that a full scan filtered by
//! hand returns.

mod aggregates;
mod file;
pub(crate) mod hash;
mod list;
mod map;
mod open;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::sync::{Arc, OnceLock};

// The fuzz bodies (`internals`) decode and encode index files from bytes.
#[cfg(feature = "internals")]
pub(crate) use file::decode_index;
#[cfg(any(test, feature = "internals"))]
pub(crate) use file::encode_index;
pub use file::{load_index, save_index, INDEX_FILE_NAME, INDEX_MAGIC, INDEX_VERSION};
pub(crate) use open::{catch_up, catch_up_times, open_index};

use crate::event::Event;
use aggregates::Aggregates;
use hash::FxHashMap;
use list::Frozen;
use map::FileBytes;

/// Default [`IndexOptions::checkpoint_bytes`]: 64 MiB of new log data.
pub const CHECKPOINT_BYTES_DEFAULT: u64 = 64 << 20;

/// How the event log keeps its index. Every field has a default (see
/// [`IndexOptions::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// Save the index automatically once this many bytes of new log data have been appended
    /// since the last save. Default 64 MiB ([`CHECKPOINT_BYTES_DEFAULT`]); `0` turns
    /// automatic checkpoints off (the index is then saved only by
    /// [`EventLog::checkpoint`](crate::EventLog::checkpoint) and
    /// [`EventLog::close`](crate::EventLog::close)). A smaller value makes reopening after a
    /// crash cheaper and costs one index save (a write of the whole index file and two
    /// fsyncs) per interval. The save is written in the background; a failed one is reported
    /// by [`EventLog::checkpoint_error`](crate::EventLog::checkpoint_error), not by the append
    /// that crossed the threshold.
    // The append that crosses it only takes a snapshot of the index in memory; the file is
    // encoded and written on another thread.
    pub checkpoint_bytes: u64,
    /// Rebuild a missing or unusable index file from the log even after retention removed
    /// records from it. The file was then the only record of the aggregates whose events were
    /// all removed: a rebuild forgets them, and their next events start again at version 0.
    /// Default `false`: such an open fails with
    /// [`StorageError::IndexLost`](crate::StorageError::IndexLost), so that no
    /// expected-version append is checked against versions that were silently lost.
    pub rebuild_after_retention: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { checkpoint_bytes: CHECKPOINT_BYTES_DEFAULT, rebuild_after_retention: false }
    }
}

/// What opening an event log did with its index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Whether a stored index file was loaded and used.
    pub loaded: bool,
    /// The log offset up to which the index was known when the open started: the stored
    /// index's covered end if it was used, otherwise the log's start (a full rebuild).
    pub covered_offset: u64,
    /// Records read from the log to bring the index up to date: those at or after
    /// `covered_offset`.
    pub records_replayed: u64,
    /// Why no stored index was used and the index was rebuilt from the whole log: the file
    /// is missing, damaged, of another version, or does not match the log. `None` when a
    /// stored index was used.
    pub rebuilt_because: Option<String>,
    /// Records read while catching up that are not events (written through the raw
    /// [`Log`](crate::Log) into the event log's directory). They are not indexed; replaying
    /// them yields [`StorageError::Decode`](crate::StorageError::Decode).
    pub records_not_events: u64,
    /// After retention: the offset up to which the stored index covered the log, past the
    /// log's end (a power cut took the log's unsynced tail), when it was cut back to the log
    /// instead of rebuilt. A writer's open then saves the index again at once.
    pub cut_back_from: Option<u64>,
}

/// Up to this many distinct names, a lookup compares the name with each instead of hashing.
const LINEAR_SCAN_NAMES_MAX: usize = 16;

/// Marks "no interned id" in the lookup cache.
const NO_ID: u32 = u32::MAX;

/// Slots of [`Interned::cache`] (a power of two).
const NAME_CACHE_SLOTS: usize = 32;

/// Names up to this long are identified by their [`NameKey`] alone.
const NAME_KEY_EXACT_MAX: usize = 16;

/// A name's length with its first and last eight bytes, compared before the name itself.
/// A name of at most [`NAME_KEY_EXACT_MAX`] bytes is determined by its key (the bytes are
/// packed without overlap), so the common short names need no string comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameKey {
    head: u64,
    tail: u64,
    len: usize,
}

impl NameKey {
    /// The key of `name`, built from at most four loads and no copy.
    #[inline]
    fn of(name: &str) -> NameKey {
        let b = name.as_bytes();
        let len = b.len();
        let (head, tail) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
            (Some(first), Some(last)) => {
                // Bytes 0..8, then bytes 8..len: the last eight (which overlap the first eight
                // when the name is shorter than 16 bytes) shifted past the overlap.
                let overlap = 8 * (16 - len.min(16)) as u32;
                let tail = u64::from_le_bytes(*last).checked_shr(overlap).unwrap_or(0);
                (u64::from_le_bytes(*first), tail)
            }
            _ => (short_name_word(b), 0),
        };
        NameKey { head, tail, len }
    }

    /// The slot of the key in [`Interned::cache`].
    #[inline]
    fn slot(self) -> usize {
        let mixed = (self.head ^ self.tail.rotate_left(23) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - NAME_CACHE_SLOTS.trailing_zeros())) as usize
    }
}

/// The bytes of a name shorter than 8 bytes, packed into a word in order (little-endian, the
/// bytes past the name zero): the word `u64::from_le_bytes` gives for the name padded to 8.
#[cold]
fn short_name_word(b: &[u8]) -> u64 {
    let len = b.len();
    let u32_at = |at: usize| {
        b.get(at..).and_then(<[u8]>::first_chunk::<4>).map_or(0, |c| u32::from_le_bytes(*c))
    };
    let byte_at = |at: usize| u64::from(b.get(at).copied().unwrap_or(0));
    match len {
        0 => 0,
        // The first, middle and last byte are all the bytes, each at its place.
        1..=3 => {
            byte_at(0) | byte_at(len / 2) << (8 * (len / 2)) | byte_at(len - 1) << (8 * (len - 1))
        }
        // Bytes 0..4, then bytes 4..len from the (overlapping) last four, shifted past the
        // `8 - len` bytes they share with the first four. The shift is done in `u64`: for a
        // 4-byte name every byte is shared and the shift is 32, the whole width of a `u32`
        // (issue 18: a debug build panicked, a release build packed the name twice).
        4..=7 => u64::from(u32_at(0)) | (u64::from(u32_at(len - 4)) >> (8 * (8 - len))) << 32,
        // Not called for longer names (their key reads the first eight bytes directly).
        _ => b.first_chunk::<8>().map_or(0, |c| u64::from_le_bytes(*c)),
    }
}

/// An offset list of a name: owned, or still frozen in the loaded file.
#[derive(Debug, Clone, Default)]
struct NameList {
    /// The offsets, once owned. Empty while the list is frozen.
    owned: Vec<u64>,
    /// The list as loaded, until an append needs it owned.
    frozen: Option<Frozen>,
    /// The frozen list decoded, once a query asked for it.
    decoded: OnceLock<Box<[u64]>>,
}

impl NameList {
    fn get<'a>(&'a self, file: &[u8]) -> &'a [u64] {
        match &self.frozen {
            Some(frozen) => self.decoded.get_or_init(|| frozen.decode(file, 0).into_boxed_slice()),
            None => &self.owned,
        }
    }

    fn len(&self) -> usize {
        self.frozen.as_ref().map_or(self.owned.len(), Frozen::len)
    }

    fn first(&self) -> Option<u64> {
        self.frozen.as_ref().map_or(self.owned.first().copied(), |f| Some(f.first()))
    }

    fn last(&self) -> Option<u64> {
        self.frozen.as_ref().map_or(self.owned.last().copied(), |f| Some(f.last()))
    }

    /// Makes the list owned.
    #[cold]
    fn thaw(&mut self, file: &[u8]) {
        if let Some(frozen) = self.frozen.take() {
            self.owned = match self.decoded.take() {
                Some(decoded) => decoded.into_vec(),
                // Room for some appends, so the next few do not copy the list again.
                None => frozen.decode(file, frozen.len() / 8 + 4),
            };
        }
    }
}

/// A set of strings, each given a small id, with the offsets of the events that carry it.
#[derive(Debug, Clone, Default)]
struct Interned {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    /// [`NameKey`] of each name, scanned before any string is compared.
    keys: Vec<NameKey>,
    lists: Vec<NameList>,
    /// A direct-mapped cache from [`NameKey::slot`] to an id whose key may be that one:
    /// appends use a handful of types and namespaces, and a key comparison is much cheaper
    /// than a string hash.
    cache: [u32; NAME_CACHE_SLOTS],
}

impl Interned {
    fn new() -> Interned {
        Interned {
            ids: FxHashMap::default(),
            names: Vec::new(),
            keys: Vec::new(),
            lists: Vec::new(),
            cache: [NO_ID; NAME_CACHE_SLOTS],
        }
    }

    /// Adds `offset` to the list of `name`; `file` holds the frozen lists.
    #[inline]
    fn push(&mut self, name: &str, offset: u64, file: &[u8]) {
        let key = NameKey::of(name);
        let slot = key.slot();
        let cached = self.cache.get(slot).copied().unwrap_or(NO_ID);
        let id = if self.is(cached, key, name) { cached } else { self.intern(key, name, slot) };
        if let Some(list) = self.lists.get_mut(id as usize) {
            if list.frozen.is_some() {
                list.thaw(file);
            }
            list.owned.push(offset);
        }
    }

    #[inline]
    fn is(&self, id: u32, key: NameKey, name: &str) -> bool {
        self.keys.get(id as usize) == Some(&key)
            && (key.len <= NAME_KEY_EXACT_MAX
                || self.names.get(id as usize).is_some_and(|known| **known == *name))
    }

    /// The id of `name`, whose key is `key`, interning it if it is new; it is also cached in
    /// `slot`.
    #[cold]
    fn intern(&mut self, key: NameKey, name: &str, slot: usize) -> u32 {
        let id = self.lookup(key, name).unwrap_or_else(|| self.add(key, name));
        if let Some(cached) = self.cache.get_mut(slot) {
            *cached = id;
        }
        id
    }

    fn lookup(&self, key: NameKey, name: &str) -> Option<u32> {
        // Logs usually have a handful of types and namespaces: scanning their keys is cheaper
        // than hashing the name.
        if self.names.len() <= LINEAR_SCAN_NAMES_MAX {
            (0..self.names.len())
                .filter_map(|i| u32::try_from(i).ok())
                .find(|&id| self.is(id, key, name))
        } else {
            self.ids.get(name).copied()
        }
    }

    fn add(&mut self, key: NameKey, name: &str) -> u32 {
        // More than four billion distinct names cannot be built from a log whose records each
        // carry one; saturating keeps this panic-free all the same.
        let id = u32::try_from(self.names.len()).unwrap_or(NO_ID - 1);
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        self.keys.push(key);
        self.lists.push(NameList::default());
        id
    }

    /// Adds a name with its list (used by the decoder); `false` if it is already present.
    fn insert_list(&mut self, name: &str, list: NameList) -> bool {
        if self.ids.contains_key(name) {
            return false;
        }
        let Ok(id) = u32::try_from(self.names.len()) else {
            return false;
        };
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        self.keys.push(NameKey::of(name));
        self.lists.push(list);
        true
    }

    fn get<'a, Q>(&'a self, name: &Q, file: &[u8]) -> &'a [u64]
    where
        Box<str>: Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.ids.get(name).and_then(|&id| self.lists.get(id as usize)).map_or(&[], |l| l.get(file))
    }

    fn iter<'a>(&'a self, file: &'a [u8]) -> impl Iterator<Item = (&'a str, &'a [u64])> {
        self.names.iter().zip(&self.lists).map(move |(name, list)| (&**name, list.get(file)))
    }

    /// The names with their lists, as stored.
    fn entries(&self) -> impl Iterator<Item = (&str, &NameList)> {
        self.names.iter().map(|name| &**name).zip(&self.lists)
    }

    fn total(&self) -> u64 {
        self.lists.iter().map(|l| l.len() as u64).sum()
    }

    /// Makes every list owned.
    fn thaw(&mut self, file: &[u8]) {
        for list in &mut self.lists {
            list.thaw(file);
        }
    }

    fn truncate(&mut self, offset: u64, file: &[u8]) {
        self.thaw(file);
        for list in &mut self.lists {
            list.owned.truncate(list.owned.partition_point(|&o| o < offset));
        }
    }
}

/// The aggregate index of an event log, together with its secondary indexes.
///
/// - **by aggregate:** aggregate id → offsets of the events that carry that id;
/// - **by event type** and **by namespace:** name → offsets of the events that carry it;
/// - **by write time:** a sparse sorted list of `(write_timestamp_ms, offset)` with one entry
///   wherever the timestamp changes. The log keeps timestamps non-decreasing in offset order,
///   so the first event at or after a time is found by binary search.
///
/// Every list holds offsets in increasing order. The index covers the log's records up to
/// [`AggregateIndex::covered_end`]; [`crate::EventLog`] keeps it up to date on every append
/// and catches it up on open. The time index may lag behind the others by a bounded amount
/// ([`AggregateIndex::time_covered_end`]); time queries read the records after that point from
/// the log, so the lag never changes an answer.
#[derive(Debug, Clone)]
pub struct AggregateIndex {
    /// Records before this offset are indexed by aggregate, type and namespace.
    end: u64,
    /// The offset of the last indexed record, and its frame checksum when known.
    last: Option<(u64, Option<u32>)>,
    records: u64,
    aggregates: Aggregates,
    /// The bytes of the index file the frozen lists were loaded from (empty if none was).
    file: Arc<FileBytes>,
    types: Interned,
    namespaces: Interned,
    /// `(write_timestamp_ms, offset)` at each change of timestamp, in offset order.
    times: Vec<(u64, u64)>,
    /// Records before this offset are in `times`.
    times_end: u64,
    /// Whether every timestamp seen was at least the one before it (the log guarantees it);
    /// time queries fall back to a full scan if not.
    times_monotonic: bool,
}

impl Default for AggregateIndex {
    fn default() -> Self {
        AggregateIndex::starting_at(0)
    }
}

impl PartialEq for AggregateIndex {
    /// Indexes are equal when they cover the same records with the same lists (string ids
    /// and the last record's checksum, which may or may not be known, are not compared).
    fn eq(&self, other: &Self) -> bool {
        fn lists<'a>(i: &'a Interned, file: &'a [u8]) -> Vec<(&'a str, &'a [u64])> {
            let mut v: Vec<_> = i.iter(file).filter(|(_, o)| !o.is_empty()).collect();
            v.sort_unstable();
            v
        }
        fn aggregates(index: &AggregateIndex) -> Vec<(u64, Vec<u64>)> {
            let mut v: Vec<_> = index.aggregate_ids().map(|id| (id, index.aggregate(id))).collect();
            v.sort_unstable();
            v
        }
        self.end == other.end
            && self.last.map(|l| l.0) == other.last.map(|l| l.0)
            && self.records == other.records
            && aggregates(self) == aggregates(other)
            && lists(&self.types, &self.file) == lists(&other.types, &other.file)
            && lists(&self.namespaces, &self.file) == lists(&other.namespaces, &other.file)
            && self.times == other.times
            && self.times_end == other.times_end
            && self.times_monotonic == other.times_monotonic
    }
}

impl Eq for AggregateIndex {}

impl AggregateIndex {
    /// An empty index of a log whose first record is at `start`.
    #[must_use]
    pub(crate) fn starting_at(start: u64) -> AggregateIndex {
        AggregateIndex {
            end: start,
            last: None,
            records: 0,
            aggregates: Aggregates::default(),
            file: Arc::default(),
            types: Interned::new(),
            namespaces: Interned::new(),
            times: Vec::new(),
            times_end: start,
            times_monotonic: true,
        }
    }

    /// The log offset up to which records are indexed: the end of the last indexed record.
    #[must_use]
    pub fn covered_end(&self) -> u64 {
        self.end
    }

    /// The log offset up to which records are in the time index (at most
    /// [`AggregateIndex::covered_end`]).
    #[must_use]
    pub fn time_covered_end(&self) -> u64 {
        self.times_end
    }

    /// The number of records indexed.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The offset of the last indexed record.
    #[must_use]
    pub fn last_record_offset(&self) -> Option<u64> {
        self.last.map(|(offset, _)| offset)
    }

    /// Offsets of the events of aggregate `id`, in log order (empty if there are none), in a
    /// new vector; use [`AggregateIndex::aggregate_into`] to reuse one.
    // The list is assembled for the call: appends keep the offsets of all aggregates in one
    // shared array, which keeps them cheap whatever the number of aggregates.
    #[must_use]
    pub fn aggregate(&self, id: u64) -> Vec<u64> {
        let mut list = Vec::new();
        self.aggregate_into(id, &mut list);
        list
    }

    /// Replaces the contents of `list` with the offsets of the events of aggregate `id`, in
    /// log order.
    pub fn aggregate_into(&self, id: u64, list: &mut Vec<u64>) {
        self.aggregates.collect_into(id, &self.file, list);
    }

    /// The offset of aggregate `id`'s last event and the number of its events, in constant
    /// time; `None` if it has none.
    #[must_use]
    pub fn aggregate_tail(&self, id: u64) -> Option<(u64, u64)> {
        self.aggregates.tail(id)
    }

    /// Whether aggregate `id` has at least one event.
    #[must_use]
    pub fn has_aggregate(&self, id: u64) -> bool {
        self.aggregates.contains(id)
    }

    /// The ids of all aggregates with at least one event, each once, in no particular order.
    pub fn aggregate_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.aggregates.ids()
    }

    /// Offsets of the events whose `event_type` is `event_type`, in log order.
    #[must_use]
    pub fn of_type(&self, event_type: &str) -> &[u64] {
        self.types.get(event_type, &self.file)
    }

    /// Offsets of the events whose `namespace` is `namespace`, in log order.
    #[must_use]
    pub fn in_namespace(&self, namespace: &str) -> &[u64] {
        self.namespaces.get(namespace, &self.file)
    }

    /// Every event type seen, with the offsets of its events.
    pub fn event_types(&self) -> impl Iterator<Item = (&str, &[u64])> {
        self.types.iter(&self.file).filter(|(_, offsets)| !offsets.is_empty())
    }

    /// Every namespace seen, with the offsets of its events.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &[u64])> {
        self.namespaces.iter(&self.file).filter(|(_, offsets)| !offsets.is_empty())
    }

    /// The sparse time index: `(write_timestamp_ms, offset)` for the first record of each
    /// distinct timestamp, in offset order, for the records before
    /// [`AggregateIndex::time_covered_end`].
    #[must_use]
    pub fn time_entries(&self) -> &[(u64, u64)] {
        &self.times
    }

    /// Where a scan for the records written at or after `from_ms` may start: the offset of the
    /// first time-indexed record with a timestamp of at least `from_ms`, or
    /// [`AggregateIndex::time_covered_end`] if every time-indexed record is older. Every
    /// record before the returned offset was written before `from_ms` (when timestamps are
    /// monotonic; otherwise the log's start is returned).
    #[must_use]
    pub fn time_scan_start(&self, from_ms: u64) -> u64 {
        if !self.times_monotonic {
            return self.times.first().map_or(self.times_end, |&(_, o)| o);
        }
        let first = self.times.partition_point(|&(ts, _)| ts < from_ms);
        self.times.get(first).map_or(self.times_end, |&(_, o)| o)
    }

    /// Whether every timestamp indexed so far was at least the one before it. The log
    /// guarantees this; if it ever failed, time queries scan the whole log instead of
    /// trusting the order.
    #[must_use]
    pub fn times_monotonic(&self) -> bool {
        self.times_monotonic
    }

    /// Indexes an event appended at `offset` (beyond everything indexed so far), without its
    /// timestamp: the time index catches up later. The caller then sets the covered end.
    #[inline]
    pub(crate) fn insert(&mut self, offset: u64, event: &Event) {
        if let Some(id) = event.aggregate_id {
            self.aggregates.push(id, offset, &self.file);
        }
        self.types.push(&event.event_type, offset, &self.file);
        self.namespaces.push(&event.namespace, offset, &self.file);
        self.records += 1;
        self.last = Some((offset, None));
    }

    /// Makes every list owned, and lets go of the loaded file's bytes.
    fn thaw_all(&mut self) {
        self.aggregates.thaw_all(&self.file);
        self.types.thaw(&self.file);
        self.namespaces.thaw(&self.file);
        self.file = Arc::default();
    }

    /// Indexes a record read from the log, with its timestamp and frame checksum; `next` is
    /// the offset just after it. The time index must have caught up to `offset`.
    pub(crate) fn insert_read(
        &mut self,
        offset: u64,
        next: u64,
        write_timestamp_ms: u64,
        crc: u32,
        event: &Event,
    ) {
        self.insert(offset, event);
        self.last = Some((offset, Some(crc)));
        self.end = next;
        if self.times_end == offset {
            self.push_time(offset, next, write_timestamp_ms);
        }
    }

    /// Passes over a record that is not an event: it is not indexed, but the index covers it
    /// (and may name it as its last record, which is what identifies the log prefix).
    pub(crate) fn pass_over(&mut self, offset: u64, next: u64, write_timestamp_ms: u64, crc: u32) {
        self.last = Some((offset, Some(crc)));
        self.end = next;
        if self.times_end == offset {
            self.push_time(offset, next, write_timestamp_ms);
        }
    }

    /// Adds a record to the time index; `next` is the offset just after it.
    pub(crate) fn push_time(&mut self, offset: u64, next: u64, write_timestamp_ms: u64) {
        match self.times.last() {
            Some(&(last, _)) if last == write_timestamp_ms => {}
            Some(&(last, _)) => {
                if write_timestamp_ms < last {
                    self.times_monotonic = false;
                }
                self.times.push((write_timestamp_ms, offset));
            }
            None => self.times.push((write_timestamp_ms, offset)),
        }
        self.times_end = next;
    }

    /// Sets the covered end directly (tests build indexes without a log).
    #[cfg(test)]
    pub(crate) fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    /// The checksum of the last indexed record's frame, if known.
    pub(crate) fn last_crc(&self) -> Option<u32> {
        self.last.and_then(|(_, crc)| crc)
    }

    /// Records the checksum of the last indexed record's frame.
    pub(crate) fn set_last_crc(&mut self, crc: u32) {
        if let Some((_, known)) = &mut self.last {
            *known = Some(crc);
        }
    }

    /// Drops every entry at or after `offset`, which must be a record boundary at or before
    /// the covered end; the index then covers exactly the records before `offset`.
    pub(crate) fn truncate(&mut self, offset: u64) {
        if offset >= self.end {
            return;
        }
        self.aggregates.truncate(offset, &self.file);
        self.thaw_all();
        self.types.truncate(offset, &self.file);
        self.namespaces.truncate(offset, &self.file);
        self.times.truncate(self.times.partition_point(|&(_, o)| o < offset));
        self.times_end = self.times_end.min(offset);
        // Every record has a type, so the type lists hold every indexed record once.
        self.records = self.types.total();
        self.last = self.types.lists.iter().filter_map(NameList::last).max().map(|o| (o, None));
        self.end = offset;
        self.times_monotonic = self.times.windows(2).all(|w| match w {
            [a, b] => a.0 <= b.0,
            _ => true,
        });
    }
}
