//! Streaming replay over a snapshot of the segment set.
//!
//! A [`Replay`] holds the segments it reads (so retention or a concurrent writer cannot pull a
//! mapping away) and reads frames straight from the maps: memory stays flat whatever the
//! log's size, and payloads are not copied until the caller asks for an owned value. So does
//! the resident size: the pages of segments left far enough behind are released from the
//! process's page tables ([`RESIDENT_WINDOW_BYTES`]).
//!
//! The loop reads each frame through a [`SegmentData`], a view of the current segment's bytes
//! that holds the segment itself: a reference into the snapshot cannot be kept beside the
//! snapshot in the same `Replay`, and looking the bytes up per record is measurably slower
//! (both argued where the type is defined, in `segment::mapping`). This module has no `unsafe`
//! code.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::format::{
    decode_frame, stored_frame_len, stored_offset, FormatError, Frame, FrameHeader, FrameRead,
    FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{prefetch_ahead, Segment, SegmentData};

/// How far ahead of the frame being decoded replay asks the CPU to start loading the map's
/// bytes: one page, so the next page's translation and first cache line are on their way
/// before the frames reach it (the hardware's own prefetching stops at page boundaries).
/// Replaying 1M records of 128 bytes with `next_ref` took 21.9–22.1 ms with it against
/// 34.1–34.6 ms without (two builds, alternated); 1, 2 and 8 KiB ahead gave 23.5, 24.1 and
/// 22.4 ms. 64 KiB records are unaffected.
const PREFETCH_DISTANCE: usize = 4096;

/// How much of the log behind its position a replay keeps mapped: a sealed segment that ends
/// this far before the start of the segment being read has its pages released from the
/// process's page tables ([`Segment::release_pages`]; they stay in the page cache). Without
/// it, every page a replay touched stayed in the process's resident memory until the replay
/// was dropped: 10 GiB for a full replay of a 10 GiB log, though none of it was allocated
/// memory. With it the resident size stays under about this window plus two segments (a
/// probe over 10 GiB in 64 MiB segments: at most 396 MB against 10.6 GB). Logs smaller than
/// the window are never released, so replaying them again maps nothing anew; a second full
/// pass over a larger log takes minor faults instead (in that probe, `verify` after a replay
/// took 1.2–1.3 s against 0.9 s).
const RESIDENT_WINDOW_BYTES: u64 = 256 << 20;

/// How much of a segment a replay with read checks reads into the page tables at a time
/// (more for a larger record).
const READ_CHECK_WINDOW_BYTES: u64 = 1 << 20;

/// An immutable view of the log's segments and its published end, taken at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub segments: Arc<[Arc<Segment>]>,
    pub end: u64,
    /// Read each window of a segment into the page tables before touching it
    /// ([`Snapshot::populate_frame`]).
    pub read_checks: bool,
}

impl Snapshot {
    /// The first offset still in the log.
    pub(crate) fn start(&self) -> u64 {
        self.segments.first().map_or(self.end, |s| s.base_offset())
    }

    /// Index of the segment holding logical offset `offset` (the last one whose base is at or
    /// below it), or `None` before the first segment.
    fn segment_index(&self, offset: u64) -> Option<usize> {
        let after = self.segments.partition_point(|s| s.base_offset() <= offset);
        after.checked_sub(1)
    }

    /// Where segment `index`'s data ends: the next segment's base for a sealed segment, the
    /// published end for the last.
    fn data_end(&self, index: usize) -> u64 {
        match self.segments.get(index + 1) {
            Some(next) => next.base_offset(),
            None => self.end,
        }
    }

    /// With read checks on: reads the frame at `offset` of segment `index` into the page
    /// tables (its header, then as far as its length field says, within the segment's data),
    /// and up to `window` bytes from `offset` but not past `limit`, so that decoding it takes
    /// no fault that could fail. If a page of the window cannot be read, reads what can be of
    /// it, page by page, so that the frames before that page are still decoded and the error
    /// comes at the first frame that reaches it. Returns the offset up to which the bytes are
    /// in; `u64::MAX` if read checks are off or the kernel cannot do them (nothing is then
    /// checked).
    ///
    /// # Errors
    /// [`StorageError::Io`] naming the segment and the frame's bytes, if they cannot be read
    /// (reading them through the map would have raised `SIGBUS`).
    #[cold]
    #[inline(never)]
    fn populate_frame(&self, index: usize, offset: u64, window: u64, limit: u64) -> Result<u64> {
        match self.segments.get(index).filter(|_| self.read_checks) {
            Some(segment) => populate_frame(segment, self.data_end(index), offset, window, limit),
            None => Ok(u64::MAX),
        }
    }

    /// Decodes the frame at `offset` in segment `index`, bounded by that segment's data end;
    /// `Ok(None)` for a zero length field.
    fn decode(&self, index: usize, offset: u64) -> Result<Option<Frame<'_>>> {
        let Some(segment) = self.segments.get(index) else {
            return Ok(None);
        };
        if self.read_checks {
            self.populate_frame(index, offset, 0, 0)?;
        }
        let base = segment.base_offset();
        let bytes = segment.data(offset - base, self.data_end(index) - base);
        match decode_frame(bytes, offset) {
            Ok(FrameRead::Frame(frame)) => Ok(Some(frame)),
            Ok(FrameRead::End) => Ok(None),
            Err(kind) => Err(corruption(segment, offset, kind)),
        }
    }

    /// Decodes the frame at `offset`, which must be a record boundary inside the log.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact frame for `offset` starts there (not a
    /// boundary, before the start, at or past the end); [`StorageError::Corruption`] for a
    /// damaged frame at a boundary: a segment's first position (a zero length too), a frame
    /// whose stored offset names the position, or one the segment's frames lead to;
    /// [`StorageError::Io`] if read checks find the bytes unreadable.
    pub(crate) fn frame_at(&self, offset: u64) -> Result<(usize, Frame<'_>)> {
        let invalid = |reason: &str| StorageError::InvalidOffset { offset, reason: reason.into() };
        if offset >= self.end {
            return Err(invalid("at or past the end of the log"));
        }
        if !offset.is_multiple_of(FRAME_ALIGN as u64) {
            return Err(invalid("not aligned to a frame boundary"));
        }
        let index = self
            .segment_index(offset)
            .ok_or_else(|| invalid("before the first segment of the log"))?;
        let error = match self.decode(index, offset) {
            Ok(Some(frame)) => return Ok((index, frame)),
            // A damaged frame at a segment's start, or one whose stored offset still names this
            // position, is a damaged record rather than a caller's offset inside one.
            Err(err @ StorageError::Corruption { .. }) if self.is_damaged_record(index, offset) => {
                return Err(err);
            }
            // A zero length at a segment's start, always a boundary, inside the log: its data
            // ends early, as a replay that reached it from an earlier segment reports.
            Ok(None) if self.segments.get(index).is_some_and(|s| s.base_offset() == offset) => {
                let expected_end = self.data_end(index);
                return Err(corruption(
                    &self.segments[index],
                    offset,
                    FormatError::UnexpectedEnd { expected_end },
                ));
            }
            // Read checks found bytes that cannot be read: not the caller's offset's fault.
            Err(err @ StorageError::Io { .. }) => return Err(err),
            Ok(None) => None,
            Err(err) => Some(err),
        };
        let (reason, damaged_here) = self.nearest_boundaries(index, offset);
        match error {
            // The walk from the segment's start reached this offset as a boundary: a damaged
            // record (its offset field too), not a position inside one.
            Some(err @ StorageError::Corruption { .. }) if damaged_here => Err(err),
            _ => Err(StorageError::InvalidOffset { offset, reason }),
        }
    }

    /// Says which record boundaries of segment `index` lie nearest `offset`, which is not an
    /// intact frame's: the segment's frames are walked from its start (this is the error path
    /// only). Also says whether the walk met damage at `offset` itself, a boundary.
    #[cold]
    fn nearest_boundaries(&self, index: usize, offset: u64) -> (String, bool) {
        let Some(segment) = self.segments.get(index) else {
            return ("no segment holds this offset".to_string(), false);
        };
        let (base, end) = (segment.base_offset(), self.data_end(index));
        let mut before = base;
        let mut at = base;
        let mut populated_to = 0;
        while at <= offset && at < end {
            let bytes = segment.data(at - base, end - base);
            if self.read_checks && reaches_past(at, bytes, populated_to) {
                match self.populate_frame(
                    index,
                    at,
                    READ_CHECK_WINDOW_BYTES,
                    offset.saturating_add(1),
                ) {
                    Ok(to) => populated_to = to,
                    Err(err) => return (format!("the log cannot be read there: {err}"), false),
                }
            }
            match decode_frame(bytes, at) {
                Ok(FrameRead::Frame(frame)) => {
                    before = at;
                    at += frame.header.stride();
                }
                _ => {
                    let reason = format!(
                        "not a record boundary; the nearest boundary before it is {before}, and \
                         the frames after it are damaged (offset {at})"
                    );
                    return (reason, at == offset);
                }
            }
        }
        let reason = format!(
            "not a record boundary: it lies inside the record at {before}; the nearest \
             boundaries are {before} and {at}"
        );
        (reason, false)
    }

    fn is_damaged_record(&self, index: usize, offset: u64) -> bool {
        let Some(segment) = self.segments.get(index) else { return false };
        let base = segment.base_offset();
        base == offset
            || stored_offset(segment.data(offset - base, self.data_end(index) - base))
                == Some(offset)
    }

    /// The error that reports the gap frame `header` of segment `index`.
    #[cold]
    #[inline(never)]
    pub(crate) fn gap_error(&self, index: usize, header: &FrameHeader) -> StorageError {
        let segment = self.segments.get(index).map(|s| s.path().to_path_buf());
        StorageError::Gap {
            segment: segment.unwrap_or_default(),
            start: header.offset,
            end: header.offset + header.stride(),
        }
    }

    /// An owned handle on a decoded frame's payload.
    pub(crate) fn record(&self, index: usize, header: &FrameHeader) -> Record {
        let (segment, start) = match self.segments.get(index) {
            Some(segment) => (
                Some(Arc::clone(segment)),
                header.offset - segment.base_offset() + FRAME_HEADER_LEN as u64,
            ),
            None => (None, 0),
        };
        Record {
            offset: header.offset,
            write_timestamp_ms: header.write_timestamp_ms,
            crc: header.crc,
            payload: Payload { segment, start, len: header.payload_len() as u64 },
        }
    }
}

/// Whether the frame at logical offset `at`, whose bytes from its start are `bytes`, reaches
/// past `populated_to` (what read checks have read into memory): its header, or, once the
/// header is in, the length the header states. Reads the length field only in the second case.
pub(super) fn reaches_past(at: u64, bytes: &[u8], populated_to: u64) -> bool {
    at.saturating_add(FRAME_HEADER_LEN as u64) > populated_to
        || at.saturating_add(stored_frame_len(bytes).map_or(0, u64::from)) > populated_to
}

/// [`Snapshot::populate_frame`] for the frame at `offset` of `segment`, whose data ends at
/// logical offset `data_end`.
#[cold]
#[inline(never)]
pub(super) fn populate_frame(
    segment: &Segment,
    data_end: u64,
    offset: u64,
    window: u64,
    limit: u64,
) -> Result<u64> {
    let base = segment.base_offset();
    let unreadable = |from: u64, to: u64, err: std::io::Error| {
        let what = format!(
            "log bytes {from}..{to} could not be read into memory (a disk read error, or the \
             file was cut short): {err}"
        );
        StorageError::io("read a segment", segment.path(), std::io::Error::other(what))
    };
    let header_end = offset.saturating_add(FRAME_HEADER_LEN as u64).min(data_end);
    let ahead = offset.saturating_add(window).min(limit).max(header_end).min(data_end);
    let mut to = match segment.populate(offset - base, ahead - base) {
        Ok(false) => return Ok(u64::MAX),
        Ok(true) => ahead,
        Err(err) => {
            let readable = readable_prefix(segment, offset, ahead);
            if readable < header_end {
                return Err(unreadable(offset, header_end, err));
            }
            readable
        }
    };
    let bytes = segment.data(offset - base, data_end - base);
    let frame_end = offset.saturating_add(stored_frame_len(bytes).map_or(0, u64::from));
    // A length past the segment's data is refused before any of the frame is read.
    if frame_end > to && frame_end <= data_end {
        segment
            .populate(to - base, frame_end - base)
            .map_err(|e| unreadable(offset, frame_end, e))?;
        to = frame_end;
    }
    Ok(to)
}

/// How far from `from` (below `to`) the bytes of `segment` can be read into memory, a page of
/// the file at a time: the start of the first page that cannot be.
#[cold]
fn readable_prefix(segment: &Segment, from: u64, to: u64) -> u64 {
    const PAGE: u64 = 4096;
    let base = segment.base_offset();
    let header = SEGMENT_HEADER_LEN as u64;
    let mut at = from;
    while at < to {
        let page_end = ((header + at - base) / PAGE + 1) * PAGE - header + base;
        let next = page_end.min(to);
        if !matches!(segment.populate(at - base, next - base), Ok(true)) {
            break;
        }
        at = next;
    }
    at
}

fn corruption(segment: &Segment, offset: u64, kind: FormatError) -> StorageError {
    StorageError::Corruption { segment: segment.path().to_path_buf(), offset, kind }
}

/// A record read from the log, with its payload still in the memory map.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset: pass it to `replay` to start there.
    pub offset: u64,
    /// When the log accepted the record (milliseconds since the Unix epoch, never decreasing).
    pub write_timestamp_ms: u64,
    /// The frame's stored checksum, which identifies this exact record: a different record
    /// at the same offset (after a repair, or in another log) almost surely has another.
    pub crc: u32,
    /// The record's bytes.
    pub payload: Payload,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("write_timestamp_ms", &self.write_timestamp_ms)
            .field("crc", &self.crc)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// A record's payload, borrowed from the segment's memory map. Cloning it is cheap (a
/// reference count); `to_vec()` (through `Deref<Target = [u8]>`) makes an owned copy.
#[derive(Clone)]
pub struct Payload {
    segment: Option<Arc<Segment>>,
    start: u64,
    len: u64,
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.segment {
            Some(segment) => segment.data(self.start, self.start + self.len),
            None => &[],
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len)
    }
}

/// A record whose payload borrows from the [`Replay`] that produced it; the cheapest way to
/// read, with no reference counting per record. See [`Replay::next_ref`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's offset.
    pub offset: u64,
    /// When the log accepted the record.
    pub write_timestamp_ms: u64,
    /// The frame's stored checksum (see [`Record::crc`]).
    pub crc: u32,
    /// The record's bytes, straight from the memory map.
    pub payload: &'a [u8],
}

/// The data of segment `index` of `snapshot`, up to logical offset `end` (and its published
/// length); empty past the last segment.
fn segment_data(snapshot: &Snapshot, index: usize, end: u64) -> SegmentData {
    snapshot
        .segments
        .get(index)
        .map_or(SegmentData::EMPTY, |segment| SegmentData::new(segment, end))
}

/// Where a replay is: the segment it reads, the next offset, and its bounds.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    index: usize,
    next: u64,
    until: u64,
    /// Logical end of the current segment's data, cached so the hot loop skips the lookup.
    segment_end: u64,
    done: bool,
    /// The first segment this replay read whose pages it has not released.
    unreleased: usize,
    /// [`RESIDENT_WINDOW_BYTES`], smaller in tests.
    resident_window: u64,
    /// With read checks on, the offset up to which the current segment's bytes are in the
    /// page tables ([`Snapshot::populate_frame`]); `u64::MAX` once they cannot be checked.
    populated_to: u64,
}

impl Cursor {
    /// Moves to the next frame: returns it, or `None` at the end, or one error and then ends.
    /// A gap frame is returned like any frame; the callers turn it into
    /// [`StorageError::Gap`]. (Checking for it here, where the frame's fields are still being
    /// taken apart, made an iterator replay of 1M × 128 B records a third slower.)
    ///
    /// Always inlined (with [`Replay::next_ref`] inlinable into the caller's loop), so that a
    /// frame goes to the caller in registers rather than through two calls' return slots: 1M ×
    /// 128 B replayed in 19.3–19.6 ms with both against 21.8–22.4 ms without (a probe,
    /// alternated, with [`SegmentData`] in both).
    ///
    /// `data` is the current segment's data, which this replaces when the cursor moves to
    /// another segment: the replay keeps it beside the cursor (not in it), so that the frame
    /// returned borrows it alone and the caller can still read the cursor and the snapshot.
    #[inline(always)]
    fn step<'a>(
        &mut self,
        snapshot: &Snapshot,
        data: &'a mut SegmentData,
    ) -> Option<Result<Frame<'a>>> {
        if self.done {
            return None;
        }
        while self.next >= self.segment_end && self.next < self.until {
            self.index += 1;
            self.segment_end = snapshot.data_end(self.index);
            *data = segment_data(snapshot, self.index, self.segment_end);
            self.release_behind(snapshot);
        }
        if self.next >= self.until {
            self.done = true;
            return None;
        }
        let data: &'a SegmentData = data;
        let bytes = data.bytes_from(self.next);
        if snapshot.read_checks {
            // The segment before ended at or before this one's base, so a window of it never
            // counts here.
            if reaches_past(self.next, bytes, self.populated_to) {
                let window = READ_CHECK_WINDOW_BYTES;
                match snapshot.populate_frame(self.index, self.next, window, self.until) {
                    Ok(to) => self.populated_to = to,
                    Err(err) => {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
            }
        }
        prefetch_ahead(bytes, PREFETCH_DISTANCE);
        match decode_frame(bytes, self.next) {
            Ok(FrameRead::Frame(frame)) => {
                self.next += frame.header.stride();
                Some(Ok(frame))
            }
            Ok(FrameRead::End) => {
                self.done = true;
                let expected_end = self.segment_end;
                Some(Err(self.damaged(snapshot, FormatError::UnexpectedEnd { expected_end })))
            }
            Err(kind) => {
                self.done = true;
                Some(Err(self.damaged(snapshot, kind)))
            }
        }
    }

    /// The error for the frame at the cursor's position, which failed with `kind`.
    #[cold]
    fn damaged(&self, snapshot: &Snapshot, kind: FormatError) -> StorageError {
        match snapshot.segments.get(self.index) {
            Some(segment) => corruption(segment, self.next, kind),
            None => StorageError::InvalidOffset {
                offset: self.next,
                reason: "past the last segment".to_string(),
            },
        }
    }

    /// Releases the pages of the segments read before the current one that end at least
    /// `resident_window` bytes before its start. Runs once per segment boundary, never per
    /// record.
    fn release_behind(&mut self, snapshot: &Snapshot) {
        self.unreleased =
            release_behind(&snapshot.segments, self.unreleased, self.index, self.resident_window);
    }
}

/// Releases the pages ([`Segment::release_pages`]) of `segments[from..current]` that end at
/// least `window` bytes before `segments[current]` starts, and returns the index of the first
/// one kept. Each of them has a successor, so it is sealed and no writer is filling it.
fn release_behind(segments: &[Arc<Segment>], from: usize, current: usize, window: u64) -> usize {
    let Some(current_base) = segments.get(current).map(|s| s.base_offset()) else {
        return from;
    };
    let mut index = from;
    while index < current {
        let end = segments.get(index + 1).map_or(current_base, |next| next.base_offset());
        if end.saturating_add(window) > current_base {
            break;
        }
        if let Some(passed) = segments.get(index) {
            passed.release_pages();
        }
        index += 1;
    }
    index
}

/// A streaming iterator over the records of a log, in offset order.
///
/// It yields `Ok(record)` for each intact record in `[from, until)`. At a damaged frame it
/// yields one `Err` naming the segment and offset and then ends: it never skips a record and
/// never yields bytes that failed their checksum. At a gap (records a repair found damaged and
/// took out) it yields one [`StorageError::Gap`] naming the lost range and goes on after it.
/// It sees the records that were published when it was created.
#[derive(Debug)]
pub struct Replay {
    snapshot: Snapshot,
    cursor: Cursor,
    /// The data of the segment the cursor is in (see [`Cursor::step`]).
    data: SegmentData,
    /// An error to yield first (a bad start offset), after which the replay ends.
    pending: Option<StorageError>,
}

impl Replay {
    /// Starts a replay of `[from, until)` over `snapshot`; `until` is clamped to the end.
    pub(crate) fn new(snapshot: Snapshot, from: u64, until: u64) -> Replay {
        let until = until.min(snapshot.end);
        let mut cursor = Cursor {
            index: 0,
            next: from,
            until,
            segment_end: 0,
            done: false,
            unreleased: 0,
            resident_window: RESIDENT_WINDOW_BYTES,
            populated_to: 0,
        };
        let mut data = SegmentData::EMPTY;
        let mut pending = None;
        if from == snapshot.end && from >= snapshot.start() {
            // Replaying from the end is valid and yields nothing.
            cursor.done = true;
        } else {
            match snapshot.frame_at(from) {
                Ok((index, _)) => {
                    cursor.index = index;
                    cursor.unreleased = index;
                    cursor.segment_end = snapshot.data_end(index);
                    data = segment_data(&snapshot, index, cursor.segment_end);
                }
                Err(err) => {
                    cursor.done = true;
                    pending = Some(err);
                }
            }
        }
        Replay { snapshot, cursor, data, pending }
    }

    /// This replay with a smaller resident window, so that tests see segments released.
    #[cfg(test)]
    pub(crate) fn with_resident_window(mut self, bytes: u64) -> Replay {
        self.cursor.resident_window = bytes;
        self
    }

    /// The offset of the next record this replay would read.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.cursor.next
    }

    /// Reads the next record without taking a reference on its segment: the payload borrows
    /// from this `Replay`. Use it in tight loops that do not keep payloads.
    ///
    /// # Errors
    /// As for the iterator: one error at the first damaged frame or bad start offset.
    #[inline]
    pub fn next_ref(&mut self) -> Option<Result<RecordRef<'_>>> {
        if self.pending.is_some() {
            return self.pending.take().map(Err);
        }
        let frame = match self.cursor.step(&self.snapshot, &mut self.data)? {
            Ok(frame) => frame,
            Err(err) => return Some(Err(err)),
        };
        if frame.header.is_gap() {
            return Some(Err(self.snapshot.gap_error(self.cursor.index, &frame.header)));
        }
        Some(Ok(RecordRef {
            offset: frame.header.offset,
            write_timestamp_ms: frame.header.write_timestamp_ms,
            crc: frame.header.crc,
            payload: frame.payload,
        }))
    }
}

impl Iterator for Replay {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_some() {
            return self.pending.take().map(Err);
        }
        let index = self.cursor.index;
        let step = self.cursor.step(&self.snapshot, &mut self.data)?;
        let index = self.cursor.index.max(index);
        let frame = match step {
            Ok(frame) => frame,
            Err(err) => return Some(Err(err)),
        };
        if frame.header.is_gap() {
            return Some(Err(self.snapshot.gap_error(index, &frame.header)));
        }
        Some(Ok(self.snapshot.record(index, &frame.header)))
    }
}
