//! The persisted index file: layout, encoder, validating decoder, and atomic save.
//!
//! The layout is specified in `FORMAT.md` ("Index file"). In short: a 64-byte header (magic
//! `CHIX`, version, flags, the covered log end, the offset and frame checksum of the last
//! indexed record, the record count, the body's length and CRC-32, and a CRC-32 of the header
//! itself), then a little-endian body of four sections: event types, namespaces, aggregates,
//! and the time index. An offset list is stored as its first offset and fixed-width `u32` gaps
//! (in units of the 8-byte frame alignment), so the file is about 12 bytes per event, a list
//! is checked with one branch-free pass over its gaps (no varint decoding), and a loaded list
//! can stay in this form until it is used (see `list.rs`).
//!
//! The decoder accepts any bytes without panicking and allocates no more than the input's
//! length justifies; beyond the checksums it checks every structural invariant the index
//! relies on (lists strictly increasing, aligned, inside the covered range; counts agreeing),
//! so a file that passes is one this code could have written.

// Decoders see bytes from disk and from fuzzers, so they must not panic on any input.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use std::sync::Arc;

use super::aggregates::{Aggregates, List};
use super::hash::FxHashMap;
use super::list::Frozen;
use super::map::FileBytes;
use super::{AggregateIndex, Interned, NameList};
use crate::error::{Result, StorageError};
use crate::format::{crc32, FormatError, FRAME_ALIGN, NO_PREVIOUS_FRAME};

/// Magic bytes at the start of an index file.
pub const INDEX_MAGIC: [u8; 4] = *b"CHIX";

/// The index file format version this build writes and reads.
pub const INDEX_VERSION: u16 = 1;

/// Name of the index file in the log directory.
pub const INDEX_FILE_NAME: &str = "index.chx";

/// Length of the index file header.
pub(crate) const INDEX_HEADER_LEN: usize = 64;

/// Header flag: some timestamp was lower than the one before it (see
/// [`AggregateIndex::times_monotonic`]).
const FLAG_TIMES_NOT_MONOTONIC: u16 = 1;

/// Top bit of an offset list's count: the list is in the wide form (see [`put_list`]).
const LIST_WIDE: u64 = 1 << 63;

/// Header flags this version defines.
const FLAGS_KNOWN: u16 = FLAG_TIMES_NOT_MONOTONIC;

// Header field positions, each derived from the one before.
const IH_MAGIC: usize = 0;
const IH_VERSION: usize = IH_MAGIC + 4;
const IH_FLAGS: usize = IH_VERSION + 2;
const IH_COVERED_END: usize = IH_FLAGS + 2;
const IH_LAST_OFFSET: usize = IH_COVERED_END + 8;
const IH_LAST_CRC: usize = IH_LAST_OFFSET + 8;
const IH_RESERVED_A: usize = IH_LAST_CRC + 4;
const IH_RECORDS: usize = IH_RESERVED_A + 4;
const IH_TIMES_END: usize = IH_RECORDS + 8;
const IH_BODY_LEN: usize = IH_TIMES_END + 8;
const IH_BODY_CRC: usize = IH_BODY_LEN + 8;
const IH_HEADER_CRC: usize = INDEX_HEADER_LEN - 4;

const _: () = assert!(IH_BODY_CRC + 4 <= IH_HEADER_CRC);
const _: () = assert!(
    IH_COVERED_END.is_multiple_of(8)
        && IH_RECORDS.is_multiple_of(8)
        && IH_BODY_LEN.is_multiple_of(8)
);
const _: () = assert!(INDEX_HEADER_LEN.is_multiple_of(8));

/// Why an index file was refused, before the caller adds the path.
#[derive(Debug)]
enum Refusal {
    Format(FormatError),
    Version(u16),
}

fn other(msg: impl Into<String>) -> Refusal {
    Refusal::Format(FormatError::Other(msg.into()))
}

/// Encodes `index` as an index file whose last record's frame checksum is `last_crc`.
fn encode(index: &AggregateIndex, last_crc: u32) -> Vec<u8> {
    let file: &[u8] = &index.file;
    // A list still frozen is copied from the loaded file's bytes, which hold it in exactly the
    // form `put_list` would write (the narrow form, chosen because every gap fits).
    let name_list_len = |list: &NameList| match &list.frozen {
        Some(frozen) => frozen.encoded_len(),
        None => list_len(&list.owned),
    };
    let interned_len = |i: &Interned| -> usize {
        4 + i.entries().map(|(name, list)| 4 + name.len() + name_list_len(list)).sum::<usize>()
    };
    let body_len = interned_len(&index.types)
        + interned_len(&index.namespaces)
        + 8
        + index.aggregates.encoded_len_estimate()
        + 8
        + 16 * index.times.len();
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + body_len);
    out.resize(INDEX_HEADER_LEN, 0);
    for interned in [&index.types, &index.namespaces] {
        put_u32(&mut out, len_u32(interned.names.len()));
        for (name, list) in interned.entries() {
            put_u32(&mut out, len_u32(name.len()));
            out.extend_from_slice(name.as_bytes());
            match &list.frozen {
                Some(frozen) => frozen.put(&mut out, file),
                None => put_list(&mut out, &list.owned),
            }
        }
    }
    // Sorted by id, so the same index always encodes to the same bytes. The count is
    // written once the lists are.
    let count_at = out.len();
    put_u64(&mut out, 0);
    let mut count = 0u64;
    index.aggregates.for_each_sorted(file, |id, list| {
        put_u64(&mut out, id);
        match list {
            List::Frozen(frozen) => frozen.put(&mut out, file),
            List::Full(offsets) => put_list(&mut out, offsets),
        }
        count += 1;
    });
    if let Some(slot) = out.get_mut(count_at..count_at + 8) {
        slot.copy_from_slice(&count.to_le_bytes());
    }
    put_u64(&mut out, index.times.len() as u64);
    for &(ts, offset) in &index.times {
        put_u64(&mut out, ts);
        put_u64(&mut out, offset);
    }

    let body = out.get(INDEX_HEADER_LEN..).unwrap_or_default();
    let body_crc = crc32(&[body]);
    let body_len = body.len() as u64;
    let flags = if index.times_monotonic { 0 } else { FLAG_TIMES_NOT_MONOTONIC };
    let mut h = [0u8; INDEX_HEADER_LEN];
    put_at(&mut h, IH_MAGIC, &INDEX_MAGIC);
    put_at(&mut h, IH_VERSION, &INDEX_VERSION.to_le_bytes());
    put_at(&mut h, IH_FLAGS, &flags.to_le_bytes());
    put_at(&mut h, IH_COVERED_END, &index.end.to_le_bytes());
    let last = index.last.map_or(NO_PREVIOUS_FRAME, |(o, _)| o);
    put_at(&mut h, IH_LAST_OFFSET, &last.to_le_bytes());
    put_at(&mut h, IH_LAST_CRC, &last_crc.to_le_bytes());
    put_at(&mut h, IH_RECORDS, &index.records.to_le_bytes());
    put_at(&mut h, IH_TIMES_END, &index.times_end.to_le_bytes());
    put_at(&mut h, IH_BODY_LEN, &body_len.to_le_bytes());
    put_at(&mut h, IH_BODY_CRC, &body_crc.to_le_bytes());
    let header_crc = crc32(&[h.get(..IH_HEADER_CRC).unwrap_or_default()]);
    put_at(&mut h, IH_HEADER_CRC, &header_crc.to_le_bytes());
    if let Some(head) = out.get_mut(..INDEX_HEADER_LEN) {
        head.copy_from_slice(&h);
    }
    out
}

fn len_u32(len: usize) -> u32 {
    // Names come from events, whose encoder refuses strings of 4 GiB or more, and there are
    // fewer distinct names than records.
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_at(h: &mut [u8; INDEX_HEADER_LEN], at: usize, bytes: &[u8]) {
    if let Some(dst) = h.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Whether a list's gaps all fit the narrow form: each a multiple of 8 below 2^35.
fn narrow(offsets: &[u64]) -> bool {
    offsets.windows(2).all(|pair| match pair {
        [a, b] => b > a && (b - a) % 8 == 0 && (b - a) / 8 <= u64::from(u32::MAX),
        _ => true,
    })
}

/// Encoded bytes of an offset list (see [`put_list`]).
fn list_len(offsets: &[u64]) -> usize {
    match offsets.len() {
        0 => 8,
        n if narrow(offsets) => 8 + 8 + 4 * (n - 1),
        n => 8 + 8 * n,
    }
}

/// Writes an offset list: a `u64` whose low 63 bits are the count and whose top bit marks the
/// wide form; then, in the narrow form, the first offset (`u64`) and each following offset as
/// its distance from the previous one in units of 8 bytes (`u32`); in the wide form, every
/// offset as a `u64`.
fn put_list(out: &mut Vec<u8>, offsets: &[u64]) {
    let count = offsets.len() as u64;
    if narrow(offsets) {
        put_u64(out, count);
        let mut prev = None;
        for &o in offsets {
            match prev {
                None => put_u64(out, o),
                // `narrow` checked that the gap fits.
                Some(p) => put_u32(out, u32::try_from((o - p) / 8).unwrap_or(u32::MAX)),
            }
            prev = Some(o);
        }
    } else {
        put_u64(out, count | LIST_WIDE);
        for &o in offsets {
            put_u64(out, o);
        }
    }
}

/// A bounds-checked little-endian cursor over the body.
struct Cursor<'a> {
    rest: &'a [u8],
    /// Bytes taken so far.
    consumed: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8], Refusal> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let (taken, rest) = self.rest.split_at_checked(len).ok_or_else(|| {
            other(format!(
                "index body ends inside {what}: {len} bytes needed, {} left",
                self.rest.len()
            ))
        })?;
        self.rest = rest;
        self.consumed += taken.len();
        Ok(taken)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Refusal> {
        let bytes = self.take(4, what)?;
        Ok(bytes.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b)))
    }

    fn u64(&mut self, what: &str) -> Result<u64, Refusal> {
        let bytes = self.take(8, what)?;
        Ok(le_u64(bytes))
    }

    /// Reads an offset list (see [`put_list`]) and checks it: strictly increasing, aligned,
    /// below `end`. A non-empty list in the narrow form is checked but left frozen;
    /// `body_at` is where the cursor's bytes start in the file.
    fn list(&mut self, end: u64, body_at: usize, what: &str) -> Result<NameList, Refusal> {
        let head = self.u64(what)?;
        let count = head & !LIST_WIDE;
        let refuse = || {
            other(format!(
                "{what}: offsets are not strictly increasing, aligned record offsets below the \
                 covered end {end}"
            ))
        };
        if head & LIST_WIDE == 0 && count > 0 {
            let first = self.u64(what)?;
            let at = body_at + self.consumed;
            let gaps = self.take((count - 1).saturating_mul(4), what)?;
            let count = usize::try_from(count).map_err(|_| refuse())?;
            let frozen = Frozen::check(at, count, first, gaps, end).ok_or_else(refuse)?;
            return Ok(NameList { frozen: Some(frozen), ..NameList::default() });
        }
        let list: Vec<u64> = if head & LIST_WIDE != 0 {
            let bytes = self.take(count.saturating_mul(8), what)?;
            // Copy first, check after: both loops are branch-free and vectorize.
            let list: Vec<u64> = bytes.chunks_exact(8).map(le_u64).collect();
            let increasing = list.windows(2).fold(true, |ok, pair| match pair {
                [a, b] => ok & (a < b),
                _ => ok,
            });
            let misaligned = list.iter().fold(0, |bits, o| bits | o) % FRAME_ALIGN as u64 != 0;
            if !increasing || misaligned {
                return Err(refuse());
            }
            list
        } else {
            Vec::new()
        };
        if list.last().is_some_and(|&last| last >= end) {
            return Err(refuse());
        }
        Ok(NameList { owned: list, ..NameList::default() })
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b))
}

fn header_u64(h: &[u8; INDEX_HEADER_LEN], at: usize) -> u64 {
    h.get(at..).map_or(0, le_u64)
}

fn header_u32(h: &[u8; INDEX_HEADER_LEN], at: usize) -> u32 {
    h.get(at..).and_then(<[u8]>::first_chunk::<4>).map_or(0, |b| u32::from_le_bytes(*b))
}

fn header_u16(h: &[u8; INDEX_HEADER_LEN], at: usize) -> u16 {
    h.get(at..).and_then(<[u8]>::first_chunk::<2>).map_or(0, |b| u16::from_le_bytes(*b))
}

/// Decodes and validates an index file. Returns the index with its last record's checksum.
fn decode(file: FileBytes) -> Result<AggregateIndex, Refusal> {
    let bytes: &[u8] = &file;
    let Some(h) = bytes.first_chunk::<INDEX_HEADER_LEN>() else {
        return Err(Refusal::Format(FormatError::Truncated {
            needed: INDEX_HEADER_LEN as u64,
            available: bytes.len() as u64,
        }));
    };
    let magic = h.first_chunk::<4>().copied().unwrap_or_default();
    if magic != INDEX_MAGIC {
        return Err(Refusal::Format(FormatError::BadMagic { found: magic }));
    }
    let version = header_u16(h, IH_VERSION);
    if version != INDEX_VERSION {
        return Err(Refusal::Version(version));
    }
    let stored = header_u32(h, IH_HEADER_CRC);
    let computed = crc32(&[h.get(..IH_HEADER_CRC).unwrap_or_default()]);
    if stored != computed {
        return Err(Refusal::Format(FormatError::HeaderChecksum { stored, computed }));
    }
    let flags = header_u16(h, IH_FLAGS);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(other(format!("unknown index header flags {flags:#06x}")));
    }
    if header_u32(h, IH_RESERVED_A) != 0
        || h.get(IH_BODY_CRC + 4..IH_HEADER_CRC).is_some_and(|r| r.iter().any(|&b| b != 0))
    {
        return Err(other("reserved index header bytes are not zero"));
    }
    let end = header_u64(h, IH_COVERED_END);
    let last_offset = header_u64(h, IH_LAST_OFFSET);
    let last_crc = header_u32(h, IH_LAST_CRC);
    let records = header_u64(h, IH_RECORDS);
    let times_end = header_u64(h, IH_TIMES_END);
    let body_len = header_u64(h, IH_BODY_LEN);
    let body = bytes.get(INDEX_HEADER_LEN..).unwrap_or_default();
    if body.len() as u64 != body_len {
        return Err(Refusal::Format(FormatError::Truncated {
            needed: body_len,
            available: body.len() as u64,
        }));
    }
    let stored = header_u32(h, IH_BODY_CRC);
    let computed = crc32(&[body]);
    if stored != computed {
        return Err(other(format!(
            "index body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let last = if last_offset == NO_PREVIOUS_FRAME {
        if records != 0 || last_crc != 0 {
            return Err(other("index names no last record but counts records"));
        }
        None
    } else {
        // `records` may be 0 here: a log whose records are all passed over (not events).
        if last_offset >= end || !last_offset.is_multiple_of(FRAME_ALIGN as u64) {
            return Err(other(format!(
                "last indexed record {last_offset} is not an aligned offset below the covered \
                 end {end}"
            )));
        }
        Some((last_offset, Some(last_crc)))
    };
    if !end.is_multiple_of(FRAME_ALIGN as u64)
        || times_end > end
        || !times_end.is_multiple_of(FRAME_ALIGN as u64)
    {
        return Err(other(format!(
            "covered ends {end} (time index {times_end}) are not aligned and ordered"
        )));
    }

    let mut cursor = Cursor { rest: body, consumed: 0 };
    let mut sections = [Interned::new(), Interned::new()];
    for (section, what) in sections.iter_mut().zip(["event type", "namespace"]) {
        let count = cursor.u32(what)?;
        for _ in 0..count {
            let len = cursor.u32(what)?;
            let name = cursor.take(u64::from(len), what)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| other(format!("{what} name is not UTF-8")))?;
            let list = cursor.list(end, INDEX_HEADER_LEN, what)?;
            if !section.insert_list(name, list) {
                return Err(other(format!("{what} {name:?} appears twice")));
            }
        }
        if section.total() != records {
            return Err(other(format!(
                "{what} lists hold {} records, the header counts {records}",
                section.total()
            )));
        }
        // Records that are not events are covered but not listed (FORMAT.md 8.2): the last
        // listed offset may lie before the last indexed record, never after it.
        let max = section.lists.iter().filter_map(NameList::last).max();
        let beyond = match (max, last) {
            (Some(max), Some((last, _))) => max > last,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if beyond {
            return Err(other(format!("{what} lists go past the last indexed record")));
        }
    }
    let [types, namespaces] = sections;

    let count = cursor.u64("aggregate count")?;
    // Each aggregate takes at least 16 bytes, which bounds the map's size by the input's.
    let capacity = usize::try_from(count.min(cursor.rest.len() as u64 / 16)).unwrap_or(0);
    let mut frozen_aggregates = FxHashMap::with_capacity_and_hasher(capacity, Default::default());
    // Only lists in the wide form are decoded; a writer uses it only for gaps of 32 GiB.
    let mut aggregates: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
    let mut aggregated = 0u64;
    for _ in 0..count {
        let id = cursor.u64("aggregate id")?;
        let list = cursor.list(end, INDEX_HEADER_LEN, "aggregate")?;
        let len = list.len();
        if len == 0 {
            return Err(other(format!("aggregate {id} has no events")));
        }
        aggregated += len as u64;
        let twice = match list.frozen {
            Some(frozen) => {
                frozen_aggregates.insert(id, frozen).is_some()
                    || (!aggregates.is_empty() && aggregates.contains_key(&id))
            }
            None => {
                aggregates.insert(id, list.owned).is_some() || frozen_aggregates.contains_key(&id)
            }
        };
        if twice {
            return Err(other(format!("aggregate {id} appears twice")));
        }
    }
    if aggregated > records {
        return Err(other("aggregate lists hold more records than the index"));
    }

    let count = cursor.u64("time index")?;
    let bytes = cursor.take(count.saturating_mul(16), "time index")?;
    let mut times = Vec::with_capacity(bytes.len() / 16);
    let mut monotonic = true;
    for pair in bytes.chunks_exact(16) {
        let ts = le_u64(pair);
        let offset = pair.get(8..).map_or(0, le_u64);
        if let Some(&(prev_ts, prev_offset)) = times.last() {
            if offset <= prev_offset || ts == prev_ts {
                return Err(other("time index entries are not in order"));
            }
            monotonic &= ts > prev_ts;
        }
        if offset >= times_end || offset % FRAME_ALIGN as u64 != 0 {
            return Err(other("time index entry outside the time-covered range"));
        }
        times.push((ts, offset));
    }
    if monotonic != (flags & FLAG_TIMES_NOT_MONOTONIC == 0) {
        return Err(other("time index order disagrees with the header flags"));
    }
    // The time index starts at the first indexed record, if it covers any record at all.
    let first_record = types.lists.iter().filter_map(NameList::first).min();
    let expected_first = first_record.filter(|&f| f < times_end);
    if times.first().map(|&(_, o)| o) != expected_first {
        return Err(other("time index does not start at the first indexed record"));
    }
    if !cursor.rest.is_empty() {
        return Err(other(format!("{} bytes after the time index", cursor.rest.len())));
    }
    Ok(AggregateIndex {
        end,
        last,
        records,
        aggregates: Aggregates::loaded(frozen_aggregates, aggregates),
        file: Arc::new(file),
        types,
        namespaces,
        times,
        times_end,
        times_monotonic: monotonic,
    })
}

/// Decodes an index file from bytes (for fuzzers and tools); `path` only goes into errors.
///
/// # Errors
/// As [`load_index`].
#[cfg(any(test, feature = "internals"))]
pub(crate) fn decode_index(bytes: &[u8], path: &Path) -> Result<AggregateIndex> {
    decode_file(FileBytes::Owned(bytes.to_vec()), path)
}

/// Decodes the bytes of an index file, which the index keeps (see [`Frozen`]).
fn decode_file(file: FileBytes, path: &Path) -> Result<AggregateIndex> {
    decode(file).map_err(|refusal| match refusal {
        Refusal::Format(kind) => {
            StorageError::Corruption { segment: path.to_path_buf(), offset: 0, kind }
        }
        Refusal::Version(found) => StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: INDEX_VERSION,
        },
    })
}

/// Loads an index file written by [`save_index`].
///
/// The whole file is checked: header checksum, body checksum, and every structural invariant
/// of the index. Whether the index matches a particular log is a separate question, which
/// [`crate::EventLog`] answers on open by comparing the covered end and the last record's
/// frame checksum with the log.
///
/// The returned index keeps the file memory-mapped: like a segment, the file must not be
/// truncated or rewritten in place by another program while the index is alive. (Chronicle
/// never does either: [`save_index`] replaces the file by rename.)
///
/// # Errors
/// [`StorageError::Io`] if the file cannot be opened or mapped (`NotFound` if it is missing);
/// [`StorageError::UnsupportedVersion`] for another index format version;
/// [`StorageError::Corruption`] naming the file (offset 0) for anything damaged: wrong magic,
/// a checksum mismatch, a truncated file, or contents that break an invariant.
pub fn load_index(path: impl AsRef<Path>) -> Result<AggregateIndex> {
    // The index keeps the map: its offset lists stay in the file's compact form until a query
    // or an append needs them.
    let path = path.as_ref();
    let file = fs::File::open(path).map_err(|e| StorageError::io("open index file", path, e))?;
    let bytes = FileBytes::map(&file).map_err(|e| StorageError::io("map index file", path, e))?;
    decode_file(bytes, path)
}

/// Saves `index` to `path`, atomically and durably: on return the file is on stable storage,
/// and a crash at any point leaves either the old file or the new one, never a mixture (the
/// new one is written as `path` + `.tmp` first).
///
/// The file records the checksum of the last indexed record's frame, which an index kept up to
/// date by appends does not always know: prefer
/// [`EventLog::checkpoint`](crate::EventLog::checkpoint), which reads it from the log and then
/// calls this.
///
/// # Errors
/// [`StorageError::Encode`] if the index has records but does not know the last one's
/// checksum; [`StorageError::Io`] naming the step that failed.
pub fn save_index(path: impl AsRef<Path>, index: &AggregateIndex) -> Result<()> {
    crate::atomic_file::write_atomically(path.as_ref(), &encode_index(index)?)
}

/// The bytes [`save_index`] writes for `index`.
///
/// # Errors
/// As [`save_index`], without the I/O.
pub(crate) fn encode_index(index: &AggregateIndex) -> Result<Vec<u8>> {
    let last_crc = match index.last {
        None => 0,
        Some((_, Some(crc))) => crc,
        Some((offset, None)) => {
            return Err(StorageError::Encode {
                reason: format!(
                    "the index does not know the frame checksum of its last record (offset \
                     {offset}); save it through EventLog::checkpoint"
                ),
            })
        }
    };
    Ok(encode(index, last_crc))
}
