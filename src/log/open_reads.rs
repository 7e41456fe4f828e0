//! What opening a log reads from its segment files besides their headers: the few frames its
//! checks need, with `pread` (so that an open maps no page), and, with read checks, what
//! recovery will scan through the maps, read into memory first.

use std::collections::HashMap;
use std::fs::File;

use crate::error::{Result, StorageError};
use crate::format::{
    DurableRecord, SegmentHeader, FRAME_HEADER_LEN, NO_PREVIOUS_FRAME, SEGMENT_HEADER_LEN,
};
use crate::segment::Segment;

use super::recovery::{self, SegmentView};

/// The checks read a frame from the file at open only up to this size (a frame of a few
/// records' worth); a longer one is read through the map.
const READ_AT_OPEN_MAX: u64 = 1 << 20;

/// Reads, with one `pread` on `file` (the file of `prev`), the bytes of `prev`'s data region
/// from the frame `next` names as `prev`'s last to `next`'s base: what the chain check reads
/// there. `None` where [`read_data`] gives none; the check then reads the map.
///
/// # Errors
/// As [`read_data`].
pub(super) fn read_link_tail(
    prev: &Segment,
    file: &File,
    next: &SegmentHeader,
) -> Result<Option<ReadBytes>> {
    let base = prev.base_offset();
    let (Some(data_end), Some(pos)) =
        (next.base_offset.checked_sub(base), next.prev_last_frame_offset.checked_sub(base))
    else {
        return Ok(None);
    };
    read_data(prev, file, pos, data_end)
}

/// Reads, with one `pread` on `file` (the file of `last`, the log's last segment), what a
/// clean open checks there: the frame `record` names as the log's last and the length field
/// after it (a frame header's worth, clipped to the segment). `None` if the frame is not in
/// `last`, or where [`read_data`] gives none; the checks then read the map.
///
/// # Errors
/// As [`read_data`].
pub(super) fn read_recorded_frame(
    last: &Segment,
    file: &File,
    record: &DurableRecord,
) -> Result<Option<ReadBytes>> {
    let base = last.base_offset();
    let (Some(pos), Some(end_pos)) =
        (record.last_frame_offset.checked_sub(base), record.durable_end.checked_sub(base))
    else {
        return Ok(None);
    };
    if record.last_frame_offset == NO_PREVIOUS_FRAME || pos >= end_pos || end_pos > last.capacity()
    {
        return Ok(None);
    }
    read_data(last, file, pos, (end_pos + FRAME_HEADER_LEN as u64).min(last.capacity()))
}

/// Data bytes `[pos, end)` of `segment`, read from `file` (its file) with one `pread`, with
/// `pos`. `None` for an empty range or one not inside the segment's data region; for a range
/// longer than [`READ_AT_OPEN_MAX`] (and a header), which the checks then read through the
/// map, once it is read into memory there (`MADV_POPULATE_READ`); and for a read that falls
/// short (the checks then read the map, which ends where the file does).
///
/// # Errors
/// [`StorageError::Io`] for a read that fails: reading the same bytes through the map would
/// raise `SIGBUS`.
fn read_data(segment: &Segment, file: &File, pos: u64, end: u64) -> Result<Option<ReadBytes>> {
    use std::os::unix::fs::FileExt as _;
    if pos >= end || end > segment.capacity() {
        return Ok(None);
    }
    if end - pos > READ_AT_OPEN_MAX + FRAME_HEADER_LEN as u64 {
        populate_runs(segment, &[(pos, end)], 0, "the open's checks")?;
        return Ok(None);
    }
    let Ok(len) = usize::try_from(end - pos) else { return Ok(None) };
    let mut bytes = vec![0u8; len];
    match file.read_exact_at(&mut bytes, SEGMENT_HEADER_LEN as u64 + pos) {
        Ok(()) => Ok(Some((pos, bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(StorageError::io("read segment", segment.path(), e)),
    }
}

/// Bytes read from a segment's file at open, with the data position they start at.
pub(super) type ReadBytes = (u64, Vec<u8>);

/// How recovery reads the segments: the bytes read at open, and whether read checks are on.
pub(super) struct Reading<'a> {
    pub read_at_open: &'a HashMap<u64, ReadBytes>,
    pub checks: bool,
}

/// With read checks, before recovery scans the log past its durable point through the maps:
/// reads what it will scan into memory (`MADV_POPULATE_READ`), so that a disk read error is
/// an `Io` error here rather than a `SIGBUS` there. As `recovery::plan` reads: the last
/// segment's written extents from the frame the durable record names if that lies inside it
/// (else from its start), and every sealed segment from the one holding the durable point the
/// record and the last header prove (recovery walks those whole; the point it finds from the
/// frames can only lie later, so it may read less, never more).
pub(super) fn populate_for_scan(
    segments: &mut [Segment],
    recorded: Option<&DurableRecord>,
) -> Result<()> {
    let Some(last) = segments.last() else { return Ok(()) };
    let recorded_durable = recorded.map_or(0, |r| r.durable_end);
    let durable = recorded_durable.max(last.header().durable_offset);
    let first_walked = segments.partition_point(|s| s.base_offset() <= durable).saturating_sub(1);
    let last_index = segments.len() - 1;
    for (index, segment) in segments.iter_mut().enumerate().skip(first_walked) {
        if index < last_index {
            let capacity = segment.capacity();
            populate_runs(segment, &[(0, capacity)], 0, "recovery")?;
        } else {
            // From the frame the record names, which recovery checks first.
            let walk_from = recorded.map_or(0, |r| match r.last_frame_offset {
                NO_PREVIOUS_FRAME => r.durable_end,
                last_frame => last_frame.min(r.durable_end),
            });
            let from = walk_from.saturating_sub(segment.base_offset());
            let runs = segment.data_extents();
            populate_runs(segment, &runs, from, "recovery")?;
        }
    }
    Ok(())
}

/// Populates `runs` (data positions) of `segment`, each from `from` on, for `why`.
///
/// # Errors
/// [`StorageError::Io`] naming the segment and the log bytes that could not be read.
pub(super) fn populate_runs(
    segment: &Segment,
    runs: &[(u64, u64)],
    from: u64,
    why: &str,
) -> Result<()> {
    let runs: Vec<(u64, u64)> = runs.iter().map(|&(start, end)| (start.max(from), end)).collect();
    segment
        .populate_runs(&runs, why)
        .map_err(|e| StorageError::io("read a segment", segment.path(), e))
}

/// With read checks, whether the clean end `recorded` claims holds for the last of
/// `segments` ([`recovery::clean_end_holds`]), with the bytes that decide it read into memory
/// first where the open did not read them with `pread`. Recovery trusts a clean end without
/// reading the tail; should it not hold, the tail is examined, and must be read into memory
/// first too ([`populate_for_scan`]).
///
/// # Errors
/// [`StorageError::Io`] if those bytes cannot be read.
pub(super) fn clean_end_holds(
    segments: &mut [Segment],
    recorded: &DurableRecord,
    reading: &Reading<'_>,
) -> Result<bool> {
    let Some(last) = segments.last_mut() else { return Ok(false) };
    let base = last.base_offset();
    let read = reading.read_at_open.get(&base).map(|(pos, bytes)| (*pos, bytes.as_slice()));
    if read.is_none() {
        let end = recorded.durable_end.saturating_sub(base);
        let frame = match recorded.last_frame_offset {
            NO_PREVIOUS_FRAME => None,
            offset => offset.checked_sub(base),
        };
        let from = frame.map_or(end, |pos| pos.min(end));
        let to = end.saturating_add(FRAME_HEADER_LEN as u64);
        populate_runs(last, &[(from, to)], 0, "the open's checks")?;
    }
    let view = SegmentView {
        header: *last.header(),
        data: last.data_exclusive(),
        extents: Vec::new(),
        read_at_open: read,
    };
    Ok(recovery::clean_end_holds(&view, recorded))
}
