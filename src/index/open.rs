//! Loading the stored index on open, deciding whether it still describes the log, and
//! catching it up by replaying only the records after the offset it covers.

use std::io;
use std::path::Path;

use super::{load_index, AggregateIndex, IndexReport};
use crate::error::{Result, StorageError};
use crate::event::decode_event;
use crate::format::frame_stride;
use crate::log::Log;

/// Loads the index stored at `path` if it is usable for `log`, otherwise starts an empty
/// one, and catches it up with the log. A problem with the index file becomes
/// `rebuilt_because`, unless retention removed records from the log: the file was then the
/// only record of them, and without `rebuild_after_retention` the open fails
/// ([`StorageError::IndexLost`]). Otherwise fails only if the log itself cannot be read.
pub(crate) fn open_index(
    log: &Log,
    path: &Path,
    rebuild_after_retention: bool,
) -> Result<(AggregateIndex, IndexReport)> {
    let start = log.start_offset();
    let mut cut_back_from = None;
    let stored = match load_index(path) {
        Ok(index) => match check_against(log, &index) {
            Ok(()) => Ok(index),
            Err(_) if index.covered_end() > log.end_offset() && log.reader().start_entry() > 0 => {
                cut_back_from = Some(index.covered_end());
                Ok(cut_back(index, log))
            }
            Err(reason) => Err(reason),
        },
        Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Err(format!("no index file at `{}`", path.display()))
        }
        Err(err) => Err(format!("stored index is unusable: {err}")),
    };
    let (mut index, loaded, rebuilt_because) = match stored {
        Ok(index) => (index, true, None),
        Err(reason) if log.reader().start_entry() > 0 && !rebuild_after_retention => {
            return Err(StorageError::IndexLost { path: path.to_path_buf(), reason });
        }
        Err(reason) => (AggregateIndex::starting_at(start), false, Some(reason)),
    };
    let covered_offset = index.covered_end();
    let (records_replayed, records_not_events) = catch_up(&mut index, log)?;
    let report = IndexReport {
        loaded,
        covered_offset,
        records_replayed,
        rebuilt_because,
        records_not_events,
        cut_back_from,
    };
    Ok((index, report))
}

/// A stored index that covers records the log no longer holds, after retention: a power cut
/// took the log's unsynced tail, which the index (saved without syncing the log) had covered.
/// It is cut back to the log rather than rebuilt, which would forget the aggregates whose
/// events retention removed: below the log's end it describes the same records, since a log
/// after a cut is a prefix of what was written. It keeps its entries up to its last listed
/// record before the log's end, which the catch-up then reads again with everything after it.
/// The file must then be replaced before anything is appended (`EventLog` saves at once): new
/// records at those offsets would differ from what it describes. (An index file of another
/// log that reaches further would be cut back too: the file holds no log id to tell them
/// apart, and its last record, past the end, cannot be checked.)
fn cut_back(mut index: AggregateIndex, log: &Log) -> AggregateIndex {
    index.truncate(log.end_offset());
    let from = index.last_record_offset().map_or(log.start_offset(), |o| o.max(log.start_offset()));
    index.truncate(from);
    index
}

/// Checks that a stored index describes a prefix of `log`: it covers no more than the log
/// holds, and the record it names as its last is in the log at that offset, with the same
/// frame checksum, and ends exactly where the index says its coverage ends.
///
/// The frame checksum covers the record's offset, write timestamp and payload, so a log that
/// was truncated and written again, replaced, or repaired below the covered end fails here
/// (barring a 32-bit checksum collision on a frame at the very same offset).
fn check_against(log: &Log, index: &AggregateIndex) -> Result<(), String> {
    let end = log.end_offset();
    let start = log.start_offset();
    let covered = index.covered_end();
    if covered > end {
        return Err(format!(
            "stored index covers the log up to offset {covered}, but the log ends at {end} \
             (the log lost its tail, or the index belongs to another log)"
        ));
    }
    if covered < start {
        return Err(format!(
            "stored index covers the log up to offset {covered}, before its first record at \
             {start}"
        ));
    }
    let Some(last) = index.last_record_offset() else {
        return if covered == start {
            Ok(())
        } else {
            Err(format!(
                "stored index holds no records but claims to cover the log up to {covered}"
            ))
        };
    };
    // After retention (a start record, `FORMAT.md` 6.6) the index still lists the removed
    // records, which queries skip; without one, a log begins at its first record ever.
    let removed_front = log.reader().start_entry() > 0;
    if !removed_front && index.time_entries().first().is_some_and(|&(_, o)| o < start) {
        return Err(format!("stored index starts before the log's first record at {start}"));
    }
    // The last frame covered may be a gap a repair left: it is read like a record here.
    let frame = log.frame_header_at(last).map_err(|err| {
        format!("the last record the stored index names (offset {last}) is not in the log: {err}")
    })?;
    let stored_crc = index.last_crc();
    if stored_crc != Some(frame.crc) {
        return Err(format!(
            "the record at offset {last} has frame checksum {:#010x}, the stored index expects \
             {:#010x} (the log was rewritten there, or the index belongs to another log)",
            frame.crc,
            stored_crc.unwrap_or(0)
        ));
    }
    let record_end = last + frame.stride();
    if record_end != covered {
        return Err(format!(
            "the stored index's last record ends at offset {record_end}, not at its covered end \
             {covered}"
        ));
    }
    Ok(())
}

/// Indexes every record of `log` from the index's covered end to the log's end, reading each
/// once. Returns how many records were read, and how many of them were not events (passed
/// over, not indexed).
///
/// # Errors
/// A damaged record ([`StorageError::Corruption`]); the index then covers the records
/// before it.
pub(crate) fn catch_up(index: &mut AggregateIndex, log: &Log) -> Result<(u64, u64)> {
    let from = index.covered_end();
    catch_up_times(index, log)?;
    let mut replay = log.replay(from);
    let (mut records, mut not_events) = (0u64, 0u64);
    while let Some(record) = replay.next_ref() {
        let record = match record {
            Ok(record) => record,
            // Records a repair took out: covered, like a record that is not an event.
            Err(StorageError::Gap { start, end, .. }) => {
                let gap = log.frame_header_at(start)?;
                index.pass_over(start, end, gap.write_timestamp_ms, gap.crc);
                continue;
            }
            Err(err) => return Err(err),
        };
        let next = record.offset + frame_stride(record.payload.len());
        match decode_event(record.payload, record.offset) {
            Ok(event) => {
                index.insert_read(
                    record.offset,
                    next,
                    record.write_timestamp_ms,
                    record.crc,
                    &event,
                );
            }
            Err(_) => {
                index.pass_over(record.offset, next, record.write_timestamp_ms, record.crc);
                not_events += 1;
            }
        }
        records += 1;
    }
    Ok((records, not_events))
}

/// Brings the time index up to the covered end by reading the frame headers of the records
/// it lacks (their payloads are not decoded).
///
/// # Errors
/// A damaged record; the time index then stays where it was, which costs time queries a
/// longer scan but never changes their answers.
pub(crate) fn catch_up_times(index: &mut AggregateIndex, log: &Log) -> Result<()> {
    let (from, until) = (index.time_covered_end(), index.covered_end());
    if from >= until {
        return Ok(());
    }
    let mut replay = log.replay_until(from, until);
    while let Some(record) = replay.next_ref() {
        match record {
            Ok(record) => {
                let next = record.offset + frame_stride(record.payload.len());
                index.push_time(record.offset, next, record.write_timestamp_ms);
            }
            Err(StorageError::Gap { start, end, .. }) => {
                index.push_time(start, end, log.frame_header_at(start)?.write_timestamp_ms);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
