//! For a read-only handle: finding the records another process appends after it opened.
//!
//! A read-only handle sees the records that were complete when it opened. Its followers call
//! [`Tail::poll`] (about every millisecond, `follow::POLL_INTERVAL`) to look past that end:
//!
//! - **New frames** in the last segment are decoded as replay decodes them (length, checksum,
//!   stored offset) and published up to the last complete one that ends a batch, so no
//!   follower sees part of a batch. A zero length, or a frame that fails its checks, at the
//!   live end is a frame being written: it is "not yet", never reported as corruption (a
//!   live writer completes it; a writer that crashed leaves it for the next writer's
//!   recovery to cut, `FORMAT.md` 6).
//! - **A roll:** when the last segment has nothing new and a segment file named for the
//!   current end exists, the last segment is read once more (frames may have landed between
//!   the two looks), and then the new segment is opened, checked against the last frame
//!   published (`prev_last_frame_offset` and `prev_last_frame_crc`), and added.
//! - **A replaced writer:** a new writer's recovery may set the last segment aside (a segment
//!   that held only a torn tail) and make a new file of the same name: when the file's inode
//!   changes, it is opened again. It may also cut records: only incomplete frames are cut,
//!   which this handle never published, unless the records were never synced and the storage
//!   lost them. If the last frame this handle published is gone or changed, the follow ends
//!   with [`StorageError::CutBehind`].
//!
//! - **Retention:** when the writer's retention writes a new start record (`START`, `FORMAT.md`
//!   6.6), the handle drops the segments below the new start from its list (replays already
//!   running keep theirs), so their files' space is freed, and takes the new start entry. It
//!   keeps its last segment, from which the next roll goes on. If retention removed records
//!   this handle had not published yet, no roll can reach them: the follow ends with
//!   [`StorageError::InvalidOffset`], as a replay from before the start would.
//!
//! The durable end of a read-only handle moves with the frames it reads: each frame records
//! how far the log was durable when it was written (`FrameHeader::durable_end`).

use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::reader::Shared;
use super::replay::{populate_frame, reaches_past};
use super::start_record::{read_start_record, START_FILE_NAME};
use crate::error::{Result, StorageError};
use crate::format::{decode_frame, segment_file_name, FrameRead, FLAG_BATCH_CONTINUES};
use crate::segment::Segment;

/// How much past the published end a read-only handle with read checks reads into memory at
/// a time, while looking for new frames: less than a replay's window, since most of it is
/// usually space the writer has not reached yet. Each poll reads its window in again: pages
/// read in at an earlier poll may have been written back and dropped since.
const TAIL_READ_CHECK_WINDOW_BYTES: u64 = 64 << 10;

/// What a read-only handle's followers know of the files past its published end.
#[derive(Debug)]
pub(super) struct Tail {
    /// Offset and checksum of the last complete frame published (`None`: none yet).
    last: Option<(u64, u32)>,
    /// The base offset and inode of the last segment's file, as this handle mapped it.
    inode: Option<(u64, u64)>,
    /// The inode of the start record last read, and the start offset it gave.
    start: Option<(u64, u64)>,
}

impl Tail {
    /// A tail for a handle whose last published frame is `last`.
    pub(super) fn new(last: Option<(u64, u32)>) -> Tail {
        Tail { last, inode: None, start: None }
    }

    /// Looks for complete frames past the published end and publishes them, or for the next
    /// segment once the last one has nothing new.
    ///
    /// # Errors
    /// [`StorageError::CutBehind`] if the last frame published is no longer in the log;
    /// errors opening a new segment ([`StorageError::BrokenChain`] if it does not follow
    /// the last frame published).
    pub(super) fn poll(&mut self, shared: &Shared, _next: u64) -> Result<()> {
        if self.publish_new_frames(shared)? {
            return Ok(());
        }
        self.check_last_frame(shared)?;
        self.follow_start(shared)?;
        let snapshot = shared.snapshot();
        let Some(last_segment) = snapshot.segments.last() else { return Ok(()) };
        let base = last_segment.base_offset();
        let last_path = last_segment.path().to_path_buf();
        // A segment replaced under the same name (a new writer's recovery set it aside).
        if let Ok(meta) = std::fs::metadata(&last_path) {
            match self.inode {
                Some((b, ino)) if b == base && ino != meta.ino() => {
                    let (segment, _file) = Segment::open(last_path, base, false)?;
                    self.replace_last(shared, segment);
                    self.inode = Some((base, meta.ino()));
                    return Ok(());
                }
                Some((b, _)) if b == base => {}
                _ => self.inode = Some((base, meta.ino())),
            }
        }
        let end = snapshot.end;
        let next_path = shared.dir.join(segment_file_name(end));
        if end == base || !next_path.exists() {
            return match self.start {
                Some((_, start)) if start > end => Err(StorageError::InvalidOffset {
                    offset: end,
                    reason: format!(
                        "retention removed the records from offset {end} to {start} before \
                         this reader read them; the log now begins at offset {start}"
                    ),
                }),
                _ => Ok(()),
            };
        }
        // Frames may have been completed between the first look and the roll.
        if self.publish_new_frames(shared)? {
            return Ok(());
        }
        let (segment, _file) = Segment::open(next_path.clone(), end, false)?;
        let header = segment.header();
        if let Some((offset, crc)) = self.last {
            if (header.prev_last_frame_offset, header.prev_last_frame_crc) != (offset, crc) {
                return Err(StorageError::BrokenChain {
                    segment: next_path,
                    reason: format!(
                        "the new segment does not follow the last record this reader saw \
                         (offset {offset}, crc {crc:#010x})"
                    ),
                });
            }
        }
        let ino = std::fs::metadata(&next_path).map(|m| m.ino()).unwrap_or_default();
        self.inode = Some((end, ino));
        let mut segments = shared.segments.write().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Arc<Segment>> = segments.iter().cloned().collect();
        list.push(Arc::new(segment));
        *segments = list.into();
        Ok(())
    }

    /// Decodes the complete frames past the published end of the last segment and publishes
    /// them (up to the last one that ends a batch). Returns whether the end moved.
    ///
    /// # Errors
    /// [`StorageError::Io`] if read checks found a frame that cannot be read (the frames
    /// before it are published first).
    fn publish_new_frames(&mut self, shared: &Shared) -> Result<bool> {
        let snapshot = shared.snapshot();
        let Some(segment) = snapshot.segments.last() else { return Ok(false) };
        let (base, capacity) = (segment.base_offset(), segment.capacity());
        let mut durable = shared.durable_end.load(Ordering::Acquire);
        let (mut pos, mut published) = (snapshot.end, snapshot.end);
        let mut last = self.last;
        // Views of the segment cover what was published; look at the rest of it.
        segment.extend_published_read_only(capacity);
        // With read checks, every poll reads its frames into memory again, from the
        // published end: a follower may wait minutes between polls, and pages read in then
        // may have been written back and dropped since.
        let mut populated_to = pos;
        let mut unreadable = None;
        while pos < base + capacity {
            let bytes = segment.data(pos - base, capacity);
            if snapshot.read_checks && reaches_past(pos, bytes, populated_to) {
                let end = base + capacity;
                match populate_frame(segment, end, pos, TAIL_READ_CHECK_WINDOW_BYTES, end) {
                    Ok(to) => populated_to = to,
                    Err(err) => {
                        unreadable = Some(err);
                        break;
                    }
                }
            }
            let Ok(FrameRead::Frame(frame)) = decode_frame(bytes, pos) else { break };
            let header = frame.header;
            pos += header.stride();
            durable = durable.max(header.durable_end());
            if header.flags & FLAG_BATCH_CONTINUES == 0 {
                published = pos;
                last = Some((header.offset, header.crc));
            }
        }
        if published == snapshot.end {
            return unreadable.map_or(Ok(false), Err);
        }
        self.last = last;
        shared.end.store(published, Ordering::Release);
        shared.durable_end.store(durable.min(published), Ordering::Release);
        Ok(true)
    }

    /// Reads the start record if it changed since the last look (a new file each time, so a
    /// new inode), and drops the segments below it from the handle's list, all but the last.
    fn follow_start(&mut self, shared: &Shared) -> Result<()> {
        let Ok(meta) = std::fs::metadata(shared.dir.join(START_FILE_NAME)) else { return Ok(()) };
        if self.start.is_some_and(|(ino, _)| ino == meta.ino()) {
            return Ok(());
        }
        let Some(start) = read_start_record(&shared.dir)? else { return Ok(()) };
        if start.log_id != shared.log_id {
            return Err(StorageError::BrokenChain {
                segment: shared.dir.join(START_FILE_NAME),
                reason: format!(
                    "the start record was written by log {:#018x}, not this log ({:#018x})",
                    start.log_id, shared.log_id
                ),
            });
        }
        self.start = Some((meta.ino(), start.start_offset));
        let mut segments = shared.segments.write().unwrap_or_else(PoisonError::into_inner);
        let last = segments.len().saturating_sub(1);
        let first_kept =
            segments.iter().position(|s| s.base_offset() >= start.start_offset).unwrap_or(last);
        let first_kept = first_kept.min(last);
        if first_kept > 0 {
            *segments = segments.get(first_kept..).unwrap_or_default().to_vec().into();
        }
        if segments.first().is_some_and(|s| s.base_offset() == start.start_offset) {
            shared.start_entry.store(start.start_entry, Ordering::Release);
        }
        Ok(())
    }

    /// Checks that the last frame published still holds the same record.
    fn check_last_frame(&self, shared: &Shared) -> Result<()> {
        let Some((offset, crc)) = self.last else { return Ok(()) };
        let snapshot = shared.snapshot();
        if offset < snapshot.start() {
            // Retention removed its segment (`follow_start`), not a new writer's recovery; the
            // next roll still checks that the new segment follows it.
            return Ok(());
        }
        match snapshot.frame_at(offset) {
            Ok((_, frame)) if frame.header.crc == crc => Ok(()),
            Ok((_, frame)) => Err(StorageError::CutBehind {
                offset,
                reason: format!(
                    "the record at offset {offset} this reader published (crc {crc:#010x}) \
                     was replaced by another (crc {:#010x}): a new writer cut the log back \
                     and wrote over it",
                    frame.header.crc
                ),
            }),
            Err(err @ StorageError::Io { .. }) => Err(err),
            Err(err) => Err(StorageError::CutBehind {
                offset,
                reason: format!(
                    "the record at offset {offset} this reader published is gone ({err}): \
                     a new writer cut the log back"
                ),
            }),
        }
    }

    /// Replaces the last segment with `segment`, a file of the same name opened again.
    fn replace_last(&mut self, shared: &Shared, segment: Segment) {
        let mut segments = shared.segments.write().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Arc<Segment>> = segments.iter().cloned().collect();
        list.pop();
        list.push(Arc::new(segment));
        *segments = list.into();
    }
}
