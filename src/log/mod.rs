//! The raw record log: an ordered set of segments, one writer, offsets, replay, and recovery
//! on open. It stores byte payloads and never looks inside them.

mod clock;
mod open;
mod pager;
mod recovery;
mod replay;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use replay::Snapshot;
pub use replay::{Payload, Record, RecordRef, Replay};

use crate::atomic_file::write_atomically;
use crate::error::{Result, StorageError};
use crate::format::{
    encode_frame_fields, encode_frame_header, frame_stride, header_crc, unsynced_field,
    DurableRecord, SegmentHeader, DURABLE_FILE_NAME, FLAG_BATCH_CONTINUES, FORMAT_VERSION,
    FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_BYTES_MAX, SEGMENT_HEADER_LEN,
};
use crate::segment::{NewFile, Segment, SegmentWriter, WRITE_THROUGH_FILE_MIN};
use clock::{now_ms, RecordClock};
use pager::{Pager, FILL_AHEAD_BYTES, FILL_MIN_UNSYNCED, WRITE_BEHIND_BYTES};
use recovery::examine_after_chain;

/// Smallest accepted [`Options::segment_bytes`].
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Default [`Options::segment_bytes`]: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// How far past the end a sync writes zeros when the zeroed region runs low (see
/// [`Writer::zero_ahead`]): one extra MiB written per MiB of log that is synced piecemeal.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// Default [`Options::record_bytes_max`]: 16 MiB.
pub const RECORD_BYTES_MAX_DEFAULT: u64 = 16 << 20;

/// Suffix given to segment files that a repair set aside; they are kept for inspection and
/// ignored by `open`.
pub const DROPPED_SUFFIX: &str = ".dropped";

/// What `open` does when it finds damage that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, with an error naming the segment and offset. Nothing is changed.
    #[default]
    Strict,
    /// Truncate the log at the first bad frame: zero the rest of that segment, set later
    /// segments aside (renamed with [`DROPPED_SUFFIX`]), and report what was dropped in
    /// [`OpenReport::repair`]. Verifies every frame of every segment, so it reads the whole
    /// log, and deletes the durable record first (it trusts none). Only for writers.
    Repair,
}

/// How a log is opened. Every field has a default (see [`Options::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Size of each new segment file, header included. Default 64 MiB
    /// ([`SEGMENT_BYTES_DEFAULT`]); at least 4 KiB ([`SEGMENT_BYTES_MIN`]), at most 4 GiB,
    /// a multiple of 8. Existing segments keep the size they were created with.
    pub segment_bytes: u64,
    /// Largest payload one record may have. Default 16 MiB ([`RECORD_BYTES_MAX_DEFAULT`]);
    /// at least 1, and a record of this size must fit in an empty segment
    /// (`segment_bytes - 64 - 32` or less).
    pub record_bytes_max: u64,
    /// What to do about damage found on open. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// Start writing appended records to the disk in the background, a few MiB at a time, as
    /// soon as the writer has passed them, so a later sync waits only for the last few MiB.
    /// Default `true`: here 1M appends of 128 bytes plus a sync took about 58 % of the time
    /// without it (86–87 against 150–151 ms), and 10,000 appends of 64 KiB plus a sync about
    /// half. It changes what reaches the disk before a sync, never what a sync promises:
    /// nothing is acknowledged until a sync returns. Its price is CPU and disk work while
    /// appending: the same 1M appends without the sync took about 5 % longer with it
    /// (69–70 against 65–66 ms).
    /// Turn it off for logs that are rarely synced, or whose appends come in bursts that
    /// should not share the CPU with write-out.
    pub write_behind: bool,
    /// Make the next segment file in the background once the active segment is half full, so
    /// that the append which fills a segment does not wait for a new file to be created,
    /// preallocated, mapped and its first pages faulted in (a roll took 0.15 ms instead of
    /// 3 ms here; 1M appends of 128 bytes, 68 instead of 87 ms). Default `true`.
    /// It changes no byte of the log and no durability promise; its price is disk space: while
    /// the active segment is past half, one more segment's worth is preallocated, as the file
    /// `next.seg.tmp` (see `FORMAT.md`).
    pub prepare_next_segment: bool,
    /// Write zeros over each new segment file when it is made, and make them durable, so
    /// that syncs into it write into space the filesystem already counts as written.
    /// Default `false`; meant for writers that sync every few records (`append_sync`, small
    /// `append_batch_sync`).
    ///
    /// A sync into preallocated space that was never written must also record that the
    /// space now holds data (durable batches of 100 × 128 bytes were about 30 % slower for it
    /// here). Without this setting the writer avoids most of that by writing zeros 1 MiB past
    /// the end in the sync that comes near the zeroed region's end: about 1 ms, once per MiB
    /// of log. With it, no sync writes zeros. A segment made by an open (a new log) or by a
    /// roll that found no spare is zero-filled by that call, which waits for it (about 55 ms
    /// for 64 MiB here); the others by a helper thread with the spare
    /// ([`Options::prepare_next_segment`]) while the previous segment fills, a MiB at a time
    /// so that a sync meanwhile waits for at most a MiB of zeros. A segment that a reopened
    /// writer continues is zeroed ahead of its syncs as without the setting.
    ///
    /// The same zeros reach the disk either way, so under steady durable load throughput is
    /// the same (about 160 µs per durable batch both ways); what changes is when they are
    /// written. A new log's first segment is ready before its first append (2,000 durable
    /// batches into a new log: about 650 k against 570–600 k records/s here), and a writer
    /// whose load comes in bursts has its zeroing done between them. The price: the wait in
    /// the open of a new log; much slower bursts of buffered appends, whose rolls then wait
    /// for zeroing that competes with their write-out (1M appends of 128 bytes took
    /// 150–410 ms against 60–155 ms here, or 190 against 110 ms with a final sync); and after
    /// a crash the next open scans the zeros past the end of the last segment (about 9 ms for
    /// 64 MiB here), where without it only space that was written or is cached counts. It
    /// changes no byte of the log.
    pub zero_fill_segments: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            recovery: RecoveryMode::Strict,
            write_behind: true,
            prepare_next_segment: true,
            zero_fill_segments: false,
        }
    }
}

impl Options {
    /// Checks the options against each other and the format's limits.
    ///
    /// # Errors
    /// [`StorageError::InvalidOptions`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(StorageError::InvalidOptions { reason });
        if self.segment_bytes < SEGMENT_BYTES_MIN || self.segment_bytes > SEGMENT_BYTES_MAX {
            return invalid(format!(
                "segment_bytes {} is outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if !self.segment_bytes.is_multiple_of(FRAME_ALIGN as u64) {
            return invalid(format!(
                "segment_bytes {} is not a multiple of {FRAME_ALIGN}",
                self.segment_bytes
            ));
        }
        let fits = self.segment_bytes - (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64;
        if self.record_bytes_max == 0 || self.record_bytes_max > fits {
            return invalid(format!(
                "record_bytes_max {} must be between 1 and {fits} (what fits in an empty \
                 segment of {} bytes)",
                self.record_bytes_max, self.segment_bytes
            ));
        }
        Ok(())
    }
}

/// What recovery found and did when a log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segment files in the log after opening.
    pub segments: usize,
    /// Whether the directory held no log and a new one was started.
    pub created: bool,
    /// Frames whose checksums recovery verified.
    pub records_scanned: u64,
    /// Data bytes recovery read (frames verified plus the tail examined for stray data).
    pub bytes_scanned: u64,
    /// The offset the next append gets.
    pub end_offset: u64,
    /// Leftover temporary files of an interrupted segment creation that were removed.
    pub temp_files_removed: usize,
    /// A torn tail that was cut off (zeroed in place by a writer; only skipped by a reader).
    pub torn_tail: Option<TornTail>,
    /// What an explicit [`RecoveryMode::Repair`] dropped.
    pub repair: Option<RepairReport>,
    /// The log had been closed cleanly and not written since (its durable record says so,
    /// and the chain of frames ends where the record says), so recovery did not examine the
    /// rest of the last segment: the open cost no reading of data at all.
    pub clean_close: bool,
}

/// Unacknowledged bytes at the end of the log left by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the log now ends.
    pub offset: u64,
    /// Bytes after that point that held data and were cut.
    pub bytes: u64,
    /// Intact frames among them that were dropped: members of an unfinished batch, or
    /// frames written after a lost one.
    pub frames_dropped: u64,
    /// Later segments that held only unacknowledged data, set aside (renamed with
    /// [`DROPPED_SUFFIX`]) by a writer; a read-only open just ignores them.
    pub segments_dropped: Vec<PathBuf>,
}

/// What a repair dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log now ends: the offset of the first bad frame.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// Data bytes dropped, including whole segments set aside.
    pub bytes_dropped: u64,
    /// Segment files renamed with [`DROPPED_SUFFIX`].
    pub segments_dropped: Vec<PathBuf>,
}

/// What [`Log::verify`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Records whose checksums were verified.
    pub records: u64,
    /// Payload bytes those records hold.
    pub payload_bytes: u64,
}

/// State shared between the writer and every reader handle.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    segments: RwLock<Arc<[Arc<Segment>]>>,
    /// The published end offset; the writer stores it (release) after the segment set and
    /// the frames it covers are in place, and readers load it (acquire) first.
    end: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        let end = self.end.load(Ordering::Acquire);
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner).clone();
        Snapshot { segments, end }
    }
}

/// A cheap, cloneable, `Send + Sync` handle that reads a log while its writer appends.
///
/// Each replay sees the records published when it started.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    /// Replays records from offset `from` to the current end. See [`Log::replay`].
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.replay_until(from, u64::MAX)
    }

    /// Replays records whose offset is in `[from, until)`. See [`Log::replay_until`].
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        Replay::new(self.shared.snapshot(), from, until)
    }

    /// Reads the one record that starts at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact record starts there.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        let snapshot = self.shared.snapshot();
        let (index, frame) = snapshot.frame_at(offset)?;
        Ok(snapshot.record(index, &frame.header))
    }

    /// The offset the next append will get: the end of the published records.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset of the first record still in the log (0 unless segments were removed).
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.snapshot().start()
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// The single writer's state.
#[derive(Debug)]
struct Writer {
    active: SegmentWriter,
    /// Data position of the next frame in the active segment.
    pos: u64,
    /// Data position up to which the active segment is known durable.
    synced_pos: u64,
    /// Data position up to which the active segment holds data or zeros written by
    /// [`Writer::zero_ahead`] (rather than preallocated, unwritten space).
    zeroed_pos: u64,
    /// Offset up to which the whole log is known durable.
    synced_end: u64,
    /// Ranges `[from, to)` of sealed segments written since the last sync: a roll does not
    /// wait for the disk, so [`Writer::sync`] syncs them.
    unsynced_sealed: Vec<(Arc<Segment>, u64, u64)>,
    /// Segments created since the last sync, whose files (header, size, allocation) and
    /// directory entries are not yet durable.
    unsynced_created: Vec<Arc<Segment>>,
    /// Offset and checksum of the last complete frame, for the next segment's header.
    last_frame: (u64, u32),
    /// Timestamps for new records; never below the last record's.
    clock: RecordClock,
    poisoned: Option<String>,
    shared: Arc<Shared>,
    segment_bytes: u64,
    record_bytes_max: u64,
    /// The log's identifier, written into every segment header.
    log_id: u64,
    /// Fills pages ahead of `pos`, starts the write-out of the pages behind it and makes
    /// the next segment, on helper threads; `None` until the first append starts it (a writer
    /// opened to read or query never does: opening stays cheap), or if it could not start.
    pager: Option<Pager>,
    /// Whether starting the pager was tried.
    pager_tried: bool,
    /// Data position up to which filling of the active segment has been requested.
    fill_requested: u64,
    /// Data position up to which write-behind of the active segment has been requested.
    write_behind_requested: u64,
    /// Whether a spare segment for the next roll has been asked of the pager since the last
    /// roll (see [`SpareSegment`](crate::segment::SpareSegment)).
    spare_requested: bool,
    /// [`Options::write_behind`].
    write_behind: bool,
    /// [`Options::prepare_next_segment`].
    prepare_next_segment: bool,
    /// [`Options::zero_fill_segments`].
    zero_fill_segments: bool,
    /// What the durable record file holds, as far as this writer knows (`None`: no record of
    /// this log). One with a clean end is rewritten without it before anything is written.
    durable_on_disk: Option<DurableRecord>,
    /// Bytes past the end may not be zero: a failed append may have left part of its frames
    /// there. `close` then records no clean end, so the next open examines them.
    dirty_past_end: bool,
    /// Holds the directory's exclusive lock for as long as the writer lives.
    _lock: File,
    /// Test failpoint: the next data sync fails as if the disk had reported an error.
    #[cfg(test)]
    fail_next_sync: bool,
    /// Test failpoint: the next zeroing ahead fails as if the disk had reported an error.
    #[cfg(test)]
    fail_next_zero_ahead: bool,
    /// Test failpoint: the frame write after this many more fails as if the disk had
    /// reported an error.
    #[cfg(test)]
    fail_frame_after: Option<u32>,
}

/// A sync that writes out at least this much of one segment first drops the range's
/// page-table entries ([`Writer::unmap_unsynced`]).
const UNMAP_BEFORE_SYNC_MIN: u64 = 1 << 20;

impl Writer {
    fn base(&self) -> u64 {
        self.active.segment().base_offset()
    }

    fn end(&self) -> u64 {
        self.base() + self.pos
    }

    fn capacity(&self) -> u64 {
        self.active.segment().capacity()
    }

    /// How this writer makes new segment files.
    fn new_file(&self) -> NewFile {
        NewFile { bytes: self.segment_bytes, zero_fill: self.zero_fill_segments }
    }

    fn timestamp(&mut self) -> u64 {
        self.clock.now_ms()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Makes everything written so far durable: the unsynced ranges of sealed segments,
    /// then the active segment. Poisons the writer on failure.
    fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        self.unmap_unsynced();
        let created = std::mem::take(&mut self.unsynced_created);
        for segment in &created {
            if let Err(err) = segment.sync_file() {
                self.poisoned = Some(err.to_string());
                return Err(StorageError::io("sync new segment", segment.path(), err));
            }
        }
        if !created.is_empty() {
            if let Err(err) = crate::segment::sync_dir(&self.shared.dir) {
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
        }
        for (segment, from, to) in std::mem::take(&mut self.unsynced_sealed) {
            if let Err(err) = segment.sync_range(from, to) {
                self.poisoned = Some(err.to_string());
                return Err(StorageError::io("sync segment", segment.path(), err));
            }
        }
        if self.pos > self.synced_pos {
            self.zero_ahead()?;
            #[cfg(test)]
            let injected = std::mem::take(&mut self.fail_next_sync)
                .then(|| std::io::Error::other("injected sync failure"));
            #[cfg(not(test))]
            let injected: Option<std::io::Error> = None;
            let synced = match injected {
                Some(err) => Err(err),
                None => self.active.segment().sync_range(self.synced_pos, self.pos),
            };
            if let Err(err) = synced {
                self.poisoned = Some(err.to_string());
                return Err(StorageError::io("sync segment", self.active.segment().path(), err));
            }
            self.synced_pos = self.pos;
        }
        self.synced_end = self.end();
        Ok(())
    }

    /// Before a sync that writes out at least [`UNMAP_BEFORE_SYNC_MIN`] of one segment, drops
    /// the page-table entries of that range (see [`Segment::unmap_pages`]), so the write-out
    /// does not write-protect each page with its own TLB-flush interrupt. Smaller syncs skip
    /// it: for them the extra system call cost more than it saved. Advice only: a refusal
    /// changes nothing but speed.
    fn unmap_unsynced(&self) {
        for (segment, from, to) in &self.unsynced_sealed {
            if to - from >= UNMAP_BEFORE_SYNC_MIN {
                let _ = segment.unmap_pages(*from, *to);
            }
        }
        if self.pos - self.synced_pos >= UNMAP_BEFORE_SYNC_MIN {
            let _ = self.active.segment().unmap_pages(self.synced_pos, self.pos);
        }
    }

    /// Before a sync of the active segment, keeps the region just after the end written with
    /// zeros (see [`SegmentWriter::zero_ahead`]), so that the syncs of the next records find
    /// written extents. Once per [`ZERO_AHEAD_BYTES`] of log, not per sync.
    ///
    /// # Errors
    /// A failure poisons the writer, as a failed sync does: waiting for the zeros' write-out
    /// also reports any earlier write-back error of the segment's file, and the kernel reports
    /// such an error once per open file, so the sync that follows would not see it again and
    /// would acknowledge records whose pages never reached the disk.
    fn zero_ahead(&mut self) -> Result<()> {
        // Zeroed far enough past the end, or to the segment's end (a zero-filled segment).
        if self.zeroed_pos >= (self.pos + ZERO_AHEAD_BYTES / 4).min(self.capacity()) {
            return Ok(());
        }
        let from = self.zeroed_pos.max(self.pos);
        #[cfg(test)]
        let injected = std::mem::take(&mut self.fail_next_zero_ahead)
            .then(|| std::io::Error::other("injected write-back error"));
        #[cfg(not(test))]
        let injected: Option<std::io::Error> = None;
        let zeroed = match injected {
            Some(err) => Err(err),
            None => self.active.zero_ahead(from, from + ZERO_AHEAD_BYTES),
        };
        match zeroed {
            Ok(reached) => {
                self.zeroed_pos = reached.max(self.pos);
                Ok(())
            }
            Err(err) => {
                self.poisoned = Some(err.to_string());
                Err(StorageError::io("write zeros ahead", self.active.segment().path(), err))
            }
        }
    }

    /// Appends one record. With `through_file` (for a record about to be synced) it is
    /// written with `pwritev` whatever its size; see [`Writer::write_frames_through_file`].
    fn append(&mut self, payload: &[u8], through_file: bool) -> Result<u64> {
        self.check_usable()?;
        let max = self.record_bytes_max;
        if payload.len() as u64 > max {
            return Err(StorageError::RecordTooLarge { len: payload.len() as u64, max });
        }
        self.prepare_to_write()?;
        if self.pos + frame_stride(payload.len()) > self.capacity() {
            self.roll()?;
        }
        let timestamp = self.timestamp();
        let through_map = !through_file && payload.len() < WRITE_THROUGH_FILE_MIN;
        let written = if through_file {
            self.write_frames_through_file(&[payload], timestamp)
                .map(|offsets| offsets.first().copied().unwrap_or_default())
        } else {
            self.write_frame(payload, timestamp, 0)
        };
        let offset = written.inspect_err(|_| self.dirty_past_end = true)?;
        self.publish_appended(through_map);
        Ok(offset)
    }

    /// Appends records as one batch. With `through_file` (for a batch about to be synced) all
    /// frames are written with `pwritev`; see [`Writer::write_frames_through_file`].
    fn append_batch<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
        through_file: bool,
    ) -> Result<Vec<u64>> {
        self.check_usable()?;
        let max = self.record_bytes_max;
        let mut total = 0u64;
        // Whether any record goes through the map (see `publish_appended`).
        let mut through_map = false;
        for payload in payloads {
            let len = payload.as_ref().len();
            if len as u64 > max {
                return Err(StorageError::RecordTooLarge { len: len as u64, max });
            }
            total += frame_stride(len);
            through_map |= !through_file && len < WRITE_THROUGH_FILE_MIN;
        }
        let Some(last) = payloads.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        let fresh_capacity = self.segment_bytes - SEGMENT_HEADER_LEN as u64;
        if total > fresh_capacity {
            return Err(StorageError::RecordTooLarge { len: total, max: fresh_capacity });
        }
        self.prepare_to_write()?;
        if self.pos + total > self.capacity() {
            self.roll()?;
        }
        let timestamp = self.timestamp();
        if through_file {
            let written = self.write_frames_through_file(payloads, timestamp);
            let offsets = written.inspect_err(|_| self.dirty_past_end = true)?;
            self.publish_appended(false);
            return Ok(offsets);
        }
        let mut offsets = Vec::with_capacity(payloads.len());
        let (start, last_frame) = (self.pos, self.last_frame);
        for (i, payload) in payloads.iter().enumerate() {
            let flags = if i == last { 0 } else { FLAG_BATCH_CONTINUES };
            match self.write_frame(payload.as_ref(), timestamp, flags) {
                Ok(offset) => offsets.push(offset),
                Err(err) => {
                    // Forget the unpublished part of the batch, so that no later frame can
                    // complete it; its bytes are overwritten or, after a crash, cut as torn.
                    (self.pos, self.last_frame) = (start, last_frame);
                    self.dirty_past_end = true;
                    return Err(err);
                }
            }
        }
        self.publish_appended(through_map);
        Ok(offsets)
    }

    /// Makes the frames written so far visible to readers.
    fn publish(&mut self) {
        self.active.publish(self.pos);
        self.shared.end.store(self.end(), Ordering::Release);
    }

    /// Publishes what an append wrote, then hands the pager its work: starting the write-out
    /// of the pages behind every [`WRITE_BEHIND_BYTES`], and filling pages ahead if the append
    /// wrote through the map (`through_map`; pages of large records are written with
    /// `pwritev` and need none). (Opening a log only publishes: the pager's threads start with
    /// the first append, so a log opened to be read or queried neither spawns them nor
    /// fills pages it may never write.)
    fn publish_appended(&mut self, through_map: bool) {
        self.publish();
        if !self.pager_tried {
            self.pager_tried = true;
            self.pager = Pager::start();
        }
        let Some(pager) = &self.pager else {
            return;
        };
        if self.write_behind && self.pos >= self.write_behind_requested + WRITE_BEHIND_BYTES {
            let from = self.write_behind_requested.max(self.synced_pos);
            pager.write_behind(self.active.pager_handle(), from, self.pos);
            self.write_behind_requested = self.pos;
        }
        // Half way through a segment, the next one is made in the background, so the roll
        // need not wait for a new file and its first page faults. Its first pages are filled
        // only for a writer that would fill the active segment's (see below).
        if !self.spare_requested && self.prepare_next_segment && self.pos >= self.capacity() / 2 {
            let buffering = self.end() - self.synced_end >= FILL_MIN_UNSYNCED;
            let fill_bytes = if buffering { FILL_AHEAD_BYTES } else { 0 };
            pager.request_spare(self.shared.dir.clone(), self.new_file(), fill_bytes);
            self.spare_requested = true;
        }
        if !through_map {
            return;
        }
        // Only for a writer that appends a lot between syncs: with frequent syncs, pages made
        // ready ahead (measured when the kernel prefaulted them) made each sync slower the
        // further the segment filled (durable batches of 16 KB went from 150 µs to 600 µs past
        // the 30 MiB mark), and such a writer takes few faults anyway. One request per half
        // window of data: a lock and a wake-up every 4 MiB, not per record.
        if self.end() - self.synced_end >= FILL_MIN_UNSYNCED
            && self.pos + FILL_AHEAD_BYTES / 2 > self.fill_requested
        {
            self.fill_requested = self.pos + FILL_AHEAD_BYTES;
            pager.fill_ahead(self.active.pager_handle(), self.fill_requested);
        }
    }

    /// Records in the durable record (see `FORMAT.md`) that the log is durable up to the last
    /// sync, so the next open need not examine the data before it for torn writes, and refuses
    /// (rather than truncates) if it is later found damaged.
    fn write_durable_record(&mut self, clean_end: bool) -> Result<()> {
        self.store_durable_record(self.durable_record(clean_end))
    }

    /// Writes `record` as the durable record file (whole: temporary file, sync, rename,
    /// directory sync) and remembers it as what the file holds. Rare (an open, the first
    /// write after a clean one, a close), hence out of the append path's way.
    #[cold]
    fn store_durable_record(&mut self, record: DurableRecord) -> Result<()> {
        write_atomically(&self.shared.dir.join(DURABLE_FILE_NAME), &record.encode())?;
        self.durable_on_disk = Some(record);
        Ok(())
    }

    /// The durable record for the log as it stands (see [`Writer::write_durable_record`]).
    fn durable_record(&self, clean_end: bool) -> DurableRecord {
        DurableRecord {
            log_id: self.log_id,
            durable_end: self.synced_end,
            last_frame_offset: self.last_frame.0,
            last_frame_crc: self.last_frame.1,
            clean_end,
        }
    }

    /// Before the first write after an open: a durable record that says the log was closed
    /// cleanly is rewritten without that (durably, and otherwise unchanged: its durable end
    /// still holds), since from now on bytes may appear after its end that the next open must
    /// examine. See [`Writer::leave_clean_end`].
    #[inline]
    fn prepare_to_write(&mut self) -> Result<()> {
        match self.durable_on_disk {
            Some(on_disk) if on_disk.clean_end => self.leave_clean_end(on_disk),
            _ => Ok(()),
        }
    }

    /// [`Writer::prepare_to_write`] for a log whose durable record holds a clean end.
    ///
    /// The clean end also says that only zeros follow the end, and an open that trusted it did
    /// not read there. Damage can make that untrue (a frame left there would then follow the
    /// frames this writer appends, and the next open, which examines what follows the chain,
    /// could take it for proof that durable data was lost and refuse the log). So the active
    /// segment's bytes after the end are examined now, as recovery would have, and any
    /// non-zero ones are zeroed durably before the record loses its clean end.
    ///
    /// # Errors
    /// [`StorageError::Io`] if zeroing or its sync fails (the writer is then poisoned), or
    /// if the record cannot be rewritten.
    #[cold]
    fn leave_clean_end(&mut self, on_disk: DurableRecord) -> Result<()> {
        let (base, pos) = (self.base(), self.pos);
        let segment = Arc::clone(self.active.segment());
        let extents = segment.data_extents();
        // As in recovery: without read-ahead, so the scan brings in no zero pages that later
        // opens would count as data.
        segment.advise_scan(true);
        let dirty_end =
            examine_after_chain(self.active.data_region(), base, pos, &extents).dirty_end;
        segment.advise_scan(false);
        if dirty_end > pos {
            if let Err(err) = self.active.zero_unpublished(pos, dirty_end) {
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
        }
        self.store_durable_record(DurableRecord { clean_end: false, ..on_disk })
    }

    /// What `close` does after its sync: records that the log ends here, cleanly unless a
    /// failed append may have left bytes past the end. Skipped if the record already says
    /// exactly that (a writer that wrote nothing since it opened a cleanly closed log).
    fn record_close(&mut self) -> Result<()> {
        let record = self.durable_record(!self.dirty_past_end);
        if self.durable_on_disk == Some(record) {
            return Ok(());
        }
        self.write_durable_record(record.clean_end)
    }

    /// Seals the active segment and starts a new one at the current end. The sealed
    /// segment's unsynced range is remembered for the next sync rather than synced now, so a
    /// buffered append never waits for the disk; the new header records how far the log is
    /// durable, which bounds what recovery must examine.
    fn roll(&mut self) -> Result<()> {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: now_ms(),
            base_offset: self.end(),
            prev_last_frame_offset: self.last_frame.0,
            prev_last_frame_crc: self.last_frame.1,
            durable_offset: self.synced_end,
            log_id: self.log_id,
        };
        // Not synced now: a buffered append never waits for the disk. The next sync makes the
        // file and its directory entry durable before any record in it is acknowledged.
        let spare = self.pager.as_ref().and_then(Pager::take_spare);
        // The spare was asked for with this writer's `new_file()`, which never changes: it is
        // made as a segment made here would be.
        let (active, filled) = match spare {
            Some(spare) => {
                let filled = spare.filled();
                (Segment::create_from_spare(&self.shared.dir, spare, header)?, filled)
            }
            None => (Segment::create(&self.shared.dir, self.new_file(), header, false)?, 0),
        };
        if let (Some(pager), true) = (&self.pager, filled > 0) {
            pager.adopt(active.pager_handle(), filled);
        }
        self.unsynced_created.push(Arc::clone(active.segment()));
        {
            let mut segments = self.shared.segments.write().unwrap_or_else(PoisonError::into_inner);
            let mut next: Vec<Arc<Segment>> = segments.iter().cloned().collect();
            // An empty active segment too small for the record (its file was shortened by
            // someone else) is replaced: the new file took its name, and a base offset must
            // name one segment.
            if self.pos == 0 {
                next.pop();
            }
            next.push(Arc::clone(active.segment()));
            *segments = next.into();
        }
        let sealed = std::mem::replace(&mut self.active, active);
        if self.pos > self.synced_pos {
            self.unsynced_sealed.push((Arc::clone(sealed.segment()), self.synced_pos, self.pos));
        }
        self.pos = 0;
        self.synced_pos = 0;
        // A zero-filled segment needs no zeroing ahead of its syncs.
        self.zeroed_pos = if self.zero_fill_segments { self.capacity() } else { 0 };
        self.fill_requested = filled;
        self.write_behind_requested = 0;
        self.spare_requested = false;
        Ok(())
    }

    /// Writes one frame at the current position without publishing it.
    fn write_frame(&mut self, payload: &[u8], timestamp_ms: u64, flags: u32) -> Result<u64> {
        #[cfg(test)]
        if let Some(left) = self.fail_frame_after.take() {
            if left == 0 {
                let err = std::io::Error::other("injected write failure");
                return Err(StorageError::io("write frame", self.active.segment().path(), err));
            }
            self.fail_frame_after = Some(left - 1);
        }
        let offset = self.end();
        let unsynced = unsynced_field(offset, self.synced_end);
        let header = encode_frame_fields(offset, timestamp_ms, unsynced, flags, payload);
        let crc = self.active.write_frame(self.pos, &header, payload)?;
        self.advance(offset, crc, payload.len(), flags);
        Ok(offset)
    }

    /// Writes `payloads` as one batch of frames at the current position (a single record if
    /// there is one) with `pwritev`, without publishing them, and returns their offsets.
    ///
    /// Used for records that are synced right away: their pages then never enter the
    /// writer's page tables, so the sync need not write-protect them, which cost more than
    /// the system call (single `append_sync`s of 128 bytes took about 10 % less time).
    fn write_frames_through_file<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
        timestamp_ms: u64,
    ) -> Result<Vec<u64>> {
        /// Zeros for the padding after a frame (the region is zero already; `pwritev` needs
        /// the bytes to keep the frames back to back).
        const PADDING: [u8; FRAME_ALIGN] = [0; FRAME_ALIGN];
        let (start, last_frame) = (self.pos, self.last_frame);
        let last = payloads.len().saturating_sub(1);
        let mut headers = Vec::with_capacity(payloads.len());
        let mut offsets = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let payload = payload.as_ref();
            let flags = if i == last { 0 } else { FLAG_BATCH_CONTINUES };
            let offset = self.end();
            let header = self.frame_header(payload, timestamp_ms, flags);
            self.advance(offset, header_crc(&header), payload.len(), flags);
            headers.push(header);
            offsets.push(offset);
        }
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(payloads.len() * 3);
        for (header, payload) in headers.iter().zip(payloads) {
            let payload = payload.as_ref();
            bufs.push(header);
            bufs.push(payload);
            let padding = frame_stride(payload.len()) as usize - FRAME_HEADER_LEN - payload.len();
            if let Some(zeros) = PADDING.get(..padding).filter(|z| !z.is_empty()) {
                bufs.push(zeros);
            }
        }
        if let Err(err) = self.active.write_through_file(start, &bufs) {
            // As in `append_batch`: nothing of it was published; forget it.
            (self.pos, self.last_frame) = (start, last_frame);
            return Err(err);
        }
        Ok(offsets)
    }

    /// The header of a frame for `payload` at the current end.
    fn frame_header(
        &self,
        payload: &[u8],
        timestamp_ms: u64,
        flags: u32,
    ) -> [u8; FRAME_HEADER_LEN] {
        let offset = self.end();
        encode_frame_header(
            offset,
            timestamp_ms,
            unsynced_field(offset, self.synced_end),
            flags,
            payload,
        )
    }

    /// Moves the write position past a frame just written (or about to be) at `offset`, whose
    /// checksum is `crc`.
    fn advance(&mut self, offset: u64, crc: u32, payload_len: usize, flags: u32) {
        self.pos += frame_stride(payload_len);
        if flags & FLAG_BATCH_CONTINUES == 0 {
            self.last_frame = (offset, crc);
        }
    }
}

/// An append-only log of byte records in a directory of segment files.
///
/// One `Log` per directory may write (an exclusive lock enforces it); any number of
/// read-only opens and [`LogReader`] handles may read. See the crate docs for the durability
/// contract; each method states its own.
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    writer: Option<Writer>,
    options: Options,
    report: OpenReport,
}

impl Log {
    /// Opens the log in `dir` for writing with default [`Options`], creating the directory
    /// and an empty log if needed. See [`Log::open_with`].
    ///
    /// # Errors
    /// As [`Log::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the log in `dir` for writing, creating the directory and an empty log if needed.
    ///
    /// Takes the directory's exclusive lock, removes leftovers of an interrupted segment
    /// creation, checks every segment header and the chain between segments, and walks the
    /// frames written since the last known durable point (see `FORMAT.md`, "Recovery rules"):
    /// a torn tail (bytes a crash left unfinished, which no sync acknowledged) is zeroed in
    /// place, synced, and reported in [`Log::open_report`]. The surviving records are synced
    /// before the first append. Cost: one header per segment and the durable record, plus,
    /// after a crash, the frames written since the last sync and the unused part of the last
    /// segment the filesystem reports as written. After a clean close nothing more is read;
    /// the first append then checks that unused part (see [`Log::append`]).
    ///
    /// # Errors
    /// [`StorageError::Locked`] if another writer holds the directory;
    /// [`StorageError::NotALog`] or [`StorageError::UnsupportedVersion`] for a foreign or
    /// newer file; [`StorageError::Corruption`] or [`StorageError::BrokenChain`] for damage a
    /// crash cannot explain (unless [`RecoveryMode::Repair`]); [`StorageError::InvalidOptions`];
    /// [`StorageError::Io`].
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        open::open_log(dir.as_ref(), options, false)
    }

    /// Opens the log in `dir` for reading only. Takes no lock and changes nothing on disk; a
    /// torn tail is skipped, not zeroed. Sees the records that were complete when it opened.
    ///
    /// # Errors
    /// As [`Log::open_with`] (except `Locked`); [`StorageError::Io`] if `dir` does not exist.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        open::open_log(dir.as_ref(), Options::default(), true)
    }

    /// The writer, or `ReadOnly`. Each writer operation checks for poisoning itself.
    fn writer(&mut self) -> Result<&mut Writer> {
        // Not `ok_or`: that builds the error on every call and drops it again (the drop glue
        // of `StorageError` is an out-of-line call on the append path).
        match self.writer.as_mut() {
            Some(writer) => Ok(writer),
            None => Err(StorageError::ReadOnly),
        }
    }

    /// Appends one record and returns its offset.
    ///
    /// **Durability:** on return the record is in the operating system's page cache (it was
    /// copied into the segment's shared memory map, or, from 16 KiB, written into the file
    /// with one `pwritev`): it survives this process crashing, but not the machine losing
    /// power until a later [`Log::sync`] or `append_sync`. A record under 16 KiB costs no
    /// system call, except when a segment fills up: then the next one is taken over (made in
    /// the background, see [`Options::prepare_next_segment`], or created now; either way
    /// without waiting for the disk: the next sync makes it durable). See
    /// [`Options::write_behind`] for when records start on their way to the disk. The first
    /// write after opening a log that was closed cleanly first checks that the bytes after the
    /// end are zero, as the clean end says (zeroing any that are not, durably), and rewrites
    /// the durable record without the clean end (`DURABLE`, synced): about 2 ms here, once.
    ///
    /// # Errors
    /// [`StorageError::RecordTooLarge`] (nothing written), [`StorageError::ReadOnly`],
    /// [`StorageError::Poisoned`], or [`StorageError::Io`] from rewriting the durable record
    /// or creating a new segment (the record was not written; the log stays usable), or from
    /// zeroing bytes after a clean end (the writer is then poisoned, as after a failed sync).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.writer()?.append(payload, false)
    }

    /// Appends one record and makes it durable before returning its offset.
    ///
    /// **Durability:** on return this record and every record appended before it are on
    /// stable storage (`msync(MS_SYNC)` of the written range, an `fdatasync` of it on Linux;
    /// new segment files and their directory entries were synced when created). The record
    /// is written with one `pwritev` rather than through the map whatever its size: a page
    /// the writer has mapped costs a write-protect and a TLB flush when it is synced, which is
    /// dearer than the system call.
    ///
    /// # Errors
    /// As [`Log::append`]; if the sync fails the record may or may not be durable, the error
    /// is returned, and the writer is poisoned: every later write returns
    /// [`StorageError::Poisoned`] until the log is reopened.
    pub fn append_sync(&mut self, payload: &[u8]) -> Result<u64> {
        let offset = self.append_for_sync(payload)?;
        self.sync()?;
        Ok(offset)
    }

    /// Appends a record that the caller syncs next, as [`Log::append_sync`] does: written with
    /// `pwritev` whatever its size, so that its page is not in the writer's page tables when
    /// the sync writes it. Durability and errors as [`Log::append`].
    pub(crate) fn append_for_sync(&mut self, payload: &[u8]) -> Result<u64> {
        self.writer()?.append(payload, true)
    }

    /// Appends several records as one batch and returns their offsets, in order.
    ///
    /// **Atomicity:** after a crash either every record of the batch is in the log or none
    /// is; readers never see part of a batch. All frames but the last carry a "batch
    /// continues" flag, and recovery drops a batch whose last frame is missing. A batch never
    /// spans two segments, so it must fit in one (`segment_bytes - 64` bytes of frames).
    ///
    /// **Durability:** as [`Log::append`]; call [`Log::sync`] (or use
    /// [`Log::append_batch_sync`]) to make it durable. An empty batch writes nothing.
    ///
    /// # Errors
    /// [`StorageError::RecordTooLarge`] if any payload exceeds the record limit or the batch
    /// does not fit in a segment (nothing written); otherwise as [`Log::append`].
    pub fn append_batch<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        self.writer()?.append_batch(payloads, false)
    }

    /// Appends a batch (see [`Log::append_batch`]) and makes it, and everything before it,
    /// durable before returning, with one sync for the whole batch. The frames are written
    /// with `pwritev` (a call per 1024 buffers), as in [`Log::append_sync`].
    ///
    /// # Errors
    /// As [`Log::append_batch`] and [`Log::append_sync`].
    pub fn append_batch_sync<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        let offsets = self.writer()?.append_batch(payloads, true)?;
        self.sync()?;
        Ok(offsets)
    }

    /// Makes every record appended so far durable: on return they are on stable storage.
    ///
    /// Writes the ranges appended since the last sync with `msync(MS_SYNC)` (which waits for
    /// any write-out already started, see [`Options::write_behind`]), and first syncs segment
    /// files created since then, with their directory. When the zeroed space past the end runs
    /// low it also writes the next MiB there with zeros and waits for them, once per MiB of
    /// log, so that later syncs overwrite blocks instead of converting preallocated extents;
    /// those zeros acknowledge nothing. A sync with nothing new to write makes no system call.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`], [`StorageError::Poisoned`], or [`StorageError::Io`] if the
    /// sync fails, which poisons the writer. A failure to write or wait for the zeros is such
    /// a failure too: waiting for them also reports any earlier write-back error of the
    /// segment's file, which the kernel reports only once, so the sync could not be trusted.
    pub fn sync(&mut self) -> Result<()> {
        self.writer()?.sync()
    }

    /// Replays the records from offset `from` to the end published when this is called.
    ///
    /// `from` must be the offset of a record (as returned by an append or a replay), or the
    /// end offset (which yields nothing). Otherwise the first item is
    /// [`StorageError::InvalidOffset`]. Memory use is flat; payloads stay in the map.
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.reader().replay(from)
    }

    /// Replays the records whose offset is in `[from, until)`. `until` need not be a record
    /// boundary; `from` must be, as for [`Log::replay`].
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        self.reader().replay_until(from, until)
    }

    /// Reads the one record at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact record starts at `offset`.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        self.reader().read_at(offset)
    }

    /// The offset the next append gets.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset of the first record in the log.
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.snapshot().start()
    }

    /// The write timestamp of the last record in the log as this writer knows it (the last
    /// one appended, or the last one recovered on open); `None` for a read-only handle or an
    /// empty log.
    #[must_use]
    pub fn last_write_timestamp_ms(&self) -> Option<u64> {
        let writer = self.writer.as_ref()?;
        (writer.last_frame.0 != crate::format::NO_PREVIOUS_FRAME).then_some(writer.clock.last_ms())
    }

    /// The stored checksum of the last complete frame in the log as this writer knows it (it
    /// identifies that exact record, see [`Record::crc`]); `None` for a read-only handle or an
    /// empty log.
    #[must_use]
    pub fn last_record_crc(&self) -> Option<u32> {
        let writer = self.writer.as_ref()?;
        (writer.last_frame.0 != crate::format::NO_PREVIOUS_FRAME).then_some(writer.last_frame.1)
    }

    /// What recovery found and did when this log was opened.
    #[must_use]
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The options the log was opened with.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether this handle may append.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A reader handle that can replay from other threads while this log appends.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        LogReader { shared: Arc::clone(&self.shared) }
    }

    /// Reads every record of every segment and checks its checksum, its offset and the chain.
    ///
    /// # Errors
    /// The first [`StorageError::Corruption`] found, naming the segment and offset.
    pub fn verify(&self) -> Result<VerifyReport> {
        let snapshot = self.shared.snapshot();
        let mut report =
            VerifyReport { segments: snapshot.segments.len(), ..VerifyReport::default() };
        let mut replay = Replay::new(snapshot.clone(), snapshot.start(), snapshot.end);
        while let Some(record) = replay.next_ref() {
            let record = record?;
            report.records += 1;
            report.payload_bytes += record.payload.len() as u64;
        }
        Ok(report)
    }

    /// Makes everything durable, records that in the durable record (`DURABLE`, with a clean
    /// end: the next open reads no data but each segment's header and last frame, see
    /// `FORMAT.md` 6.2; skipped if the record already says exactly that), and releases the
    /// directory's lock. After an append failed part-way (an I/O error), the record gets no
    /// clean end, so the next open examines the log's tail and clears what that append left.
    ///
    /// **Durability:** on return every appended record is on stable storage.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the final sync fails (the lock is released all the same), or
    /// [`StorageError::Poisoned`].
    pub fn close(mut self) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        writer.sync()?;
        writer.record_close()
    }
}

#[cfg(test)]
mod poison_tests {
    use super::*;

    /// After a failed sync the kernel may have dropped the dirty pages it could not write, so
    /// a retried sync could report success for lost data: the writer must refuse everything
    /// until the log is reopened, and a reopen must recover exactly what is on disk.
    #[test]
    fn a_failed_sync_poisons_the_writer_until_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        let kept = log.append_sync(b"durable").unwrap();
        log.writer.as_mut().unwrap().fail_next_sync = true;
        let err = log.append_sync(b"unlucky").unwrap_err();
        assert!(matches!(err, StorageError::Io { op: "sync segment", .. }), "{err}");
        for attempt in [log.append(b"more"), log.append_sync(b"more")] {
            let err = attempt.unwrap_err();
            assert!(
                matches!(err, StorageError::Poisoned { ref cause } if cause.contains("injected")),
                "{err}"
            );
        }
        assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
        assert!(matches!(log.append_batch(&[b"x"]), Err(StorageError::Poisoned { .. })));
        // Reads still work, and see what was appended (it is in the page cache).
        let seen: Vec<Vec<u8>> = log.replay(0).map(|r| r.unwrap().payload.to_vec()).collect();
        assert_eq!(seen, vec![b"durable".to_vec(), b"unlucky".to_vec()]);
        assert!(matches!(log.close(), Err(StorageError::Poisoned { .. })));

        let mut log = Log::open(dir.path()).unwrap();
        assert_eq!(log.read_at(kept).unwrap().payload.to_vec(), b"durable".to_vec());
        let next = log.append_sync(b"after reopen").unwrap();
        assert_eq!(log.read_at(next).unwrap().payload.to_vec(), b"after reopen".to_vec());
    }

    /// Waiting for the zeros written ahead of the end also reports a write-back error of the
    /// segment's earlier pages, and the kernel reports it to an open file only once: the sync
    /// after it would succeed. So a failed zeroing must fail the sync and poison the writer,
    /// like a failed sync.
    #[test]
    fn a_failed_zeroing_ahead_fails_the_sync_and_poisons_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        let kept = log.append_sync(b"durable").unwrap();
        // The first sync zeroed 1 MiB ahead; the next zeroing comes once the end is within a
        // quarter of that of the zeroed region's end.
        let record = vec![7u8; 4000];
        for _ in 0..200 {
            log.append(&record).unwrap();
        }
        log.writer.as_mut().unwrap().fail_next_zero_ahead = true;
        let err = log.append_sync(b"unlucky").unwrap_err();
        assert!(matches!(err, StorageError::Io { op: "write zeros ahead", .. }), "{err}");
        let err = log.append(b"more").unwrap_err();
        assert!(
            matches!(err, StorageError::Poisoned { ref cause } if cause.contains("write-back")),
            "{err}"
        );
        assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
        drop(log);
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(log.read_at(kept).unwrap().payload.to_vec(), b"durable".to_vec());
    }

    /// A batch that fails part-way leaves its first frames past the end. The close after it
    /// must not record a clean end, or the next open would not look there, and those frames
    /// (intact, with offsets a later chain could reach) would never be cleared.
    #[test]
    fn a_failed_batch_keeps_close_from_recording_a_clean_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        let kept = log.append(b"kept").unwrap();
        log.writer.as_mut().unwrap().fail_frame_after = Some(2);
        let batch: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        let err = log.append_batch(&batch).unwrap_err();
        assert!(matches!(err, StorageError::Io { op: "write frame", .. }), "{err}");
        let end = log.end_offset();
        log.close().unwrap();
        let durable = std::fs::read(dir.path().join(DURABLE_FILE_NAME)).unwrap();
        assert_eq!(DurableRecord::decode(&durable).map(|r| r.clean_end), Ok(false));

        let log = Log::open(dir.path()).unwrap();
        let report = log.open_report();
        assert!(!report.clean_close, "{report:?}");
        let torn = report.torn_tail.as_ref().expect("the batch's frames are found and cut");
        assert_eq!((torn.offset, torn.frames_dropped), (end, 2), "{report:?}");
        let seen: Vec<(u64, Vec<u8>)> =
            log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.payload.to_vec())).collect();
        assert_eq!(seen, vec![(kept, b"kept".to_vec())]);
    }
}

#[cfg(test)]
mod zero_ahead_tests {
    use super::*;

    /// Zeroing ahead writes through the file, beside the writer's map: it must start at a page
    /// boundary at or after the end, never touch a record, and stop at the segment's end.
    #[test]
    fn zero_ahead_keeps_every_record_and_zeroes_only_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of 2 MiB, so the 1 MiB zeroed region is extended several times per
        // segment and clipped at its end; bursts of buffered appends of about 1 MiB between
        // syncs, so the end often passes the zeroed region before the next sync.
        let options =
            Options { segment_bytes: 2 << 20, record_bytes_max: 4096, ..Options::default() };
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        let mut expected = Vec::new();
        for i in 0..4000u32 {
            let payload = vec![u8::try_from(i % 251).unwrap() | 1; 1 + (i as usize * 37) % 3000];
            let offset = if i % 700 == 0 || (i / 700) % 2 == 1 && i % 7 == 0 {
                log.append_sync(&payload).unwrap()
            } else {
                log.append(&payload).unwrap()
            };
            expected.push((offset, payload));
            let writer = log.writer.as_ref().unwrap();
            assert!(writer.zeroed_pos <= writer.capacity());
            if writer.synced_pos == writer.pos {
                // Just synced: the zeroed region reaches past the end, by at least the low
                // mark (a page short, for rounding), or to the segment's end.
                assert!(writer.zeroed_pos >= writer.pos, "{} < {}", writer.zeroed_pos, writer.pos);
                let low_mark = (writer.pos + ZERO_AHEAD_BYTES / 4).min(writer.capacity());
                assert!(
                    writer.zeroed_pos + 4096 >= low_mark,
                    "zeroed to {}, end {}",
                    writer.zeroed_pos,
                    writer.pos
                );
            }
        }
        let writer = log.writer.as_ref().unwrap();
        let (segment, pos) = (Arc::clone(writer.active.segment()), writer.pos);
        let file = std::fs::read(segment.path()).unwrap();
        let data_end = SEGMENT_HEADER_LEN + usize::try_from(pos).unwrap();
        assert!(file[data_end..].iter().all(|&b| b == 0), "bytes past the end are not zero");
        log.close().unwrap();
        assert_reopens_with(dir.path(), options, &expected);
    }

    /// Reopens the log in `dir` and checks that it has no torn tail and holds exactly
    /// `expected` (offset, payload) records.
    fn assert_reopens_with(dir: &Path, options: Options, expected: &[(u64, Vec<u8>)]) {
        let log = Log::open_with(dir, options).unwrap();
        assert!(log.open_report().torn_tail.is_none());
        let seen: Vec<(u64, Vec<u8>)> =
            log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect();
        assert_eq!(seen, expected);
    }

    /// With `zero_fill_segments`, the segment an open creates and every segment a roll makes
    /// (from a spare or by itself) count as zeroed to their end, so no sync zeroes ahead: a
    /// failure injected into the next zeroing never fires (without the setting, the first
    /// sync would hit it and poison the writer). Every record reads back after a reopen.
    #[test]
    fn zero_filled_segments_are_never_zeroed_ahead() {
        for prepare_next_segment in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let options = Options {
                segment_bytes: 256 << 10,
                record_bytes_max: 4096,
                prepare_next_segment,
                zero_fill_segments: true,
                ..Options::default()
            };
            let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
            let mut expected = Vec::new();
            let mut bases = std::collections::BTreeSet::new();
            for i in 0..1200u32 {
                log.writer.as_mut().unwrap().fail_next_zero_ahead = true;
                let payload =
                    vec![u8::try_from(i % 251).unwrap() | 1; 200 + (i as usize * 37) % 1500];
                let offsets = match i % 3 {
                    0 => vec![log.append_sync(&payload).unwrap()],
                    1 => log.append_batch_sync(&[&payload[..], &payload[1..]]).unwrap(),
                    _ => vec![log.append(&payload).unwrap()],
                };
                for (k, offset) in offsets.into_iter().enumerate() {
                    expected.push((offset, payload[k..].to_vec()));
                }
                let writer = log.writer.as_ref().unwrap();
                assert_eq!(writer.zeroed_pos, writer.capacity(), "record {i}");
                bases.insert(writer.base());
            }
            assert!(bases.len() >= 4, "only {} segments", bases.len());
            log.close().unwrap();
            assert_reopens_with(dir.path(), options, &expected);
        }
    }

    #[test]
    fn zero_ahead_rounds_inwards_to_whole_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        log.append_sync(b"first").unwrap();
        let writer = log.writer.as_mut().unwrap();
        let header = SEGMENT_HEADER_LEN as u64;
        // Data positions [100, 100 + 1 MiB) are file offsets [164, 1 MiB + 164): the zeros
        // cover the whole pages [4096, 1 MiB), which end at data position 1 MiB - 64.
        assert_eq!(writer.active.zero_ahead(100, 100 + (1 << 20)).unwrap(), (1 << 20) - header);
        // A range without a whole page reaches nothing.
        assert_eq!(writer.active.zero_ahead(5000, 6000).unwrap(), 5000);
        assert_eq!(log.read_at(0).unwrap().payload.to_vec(), b"first".to_vec());
    }
}

#[cfg(test)]
mod pager_request_tests {
    use super::*;

    /// A writer that syncs every few KiB asks for no filling ahead (pages made ready ahead made
    /// such syncs slower the further a segment filled); one that buffers a MiB or more does,
    /// ahead of its end.
    #[test]
    fn only_a_buffering_writer_asks_for_filling_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        let batch = vec![vec![7u8; 128]; 100];
        // Appends through the map, each followed by a sync (`append_sync` and
        // `append_batch_sync` write through the file, which never fills ahead).
        for _ in 0..400 {
            log.append_batch(&batch).unwrap();
            log.sync().unwrap();
        }
        for _ in 0..400 {
            for record in batch.iter().take(10) {
                log.append(record).unwrap();
            }
            log.sync().unwrap();
        }
        let writer = log.writer.as_ref().unwrap();
        assert!(writer.pos > 6 << 20, "the durable writes should cover several MiB");
        assert_eq!(writer.fill_requested, 0, "a durable writer asked for filling ahead");

        for _ in 0..10_000 {
            log.append(&batch[0]).unwrap();
        }
        let writer = log.writer.as_ref().unwrap();
        assert!(writer.end() - writer.synced_end >= FILL_MIN_UNSYNCED);
        assert!(
            writer.fill_requested > writer.pos,
            "a buffering writer should have asked for pages ahead of its end"
        );
    }

    /// Write-behind is asked for every 4 MiB appended, whichever way the records were
    /// written, and never for bytes already synced.
    #[test]
    fn write_behind_follows_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path()).unwrap();
        let payload = vec![1u8; 1000];
        while log.writer.as_ref().unwrap().pos < 9 << 20 {
            log.append(&payload).unwrap();
        }
        let writer = log.writer.as_ref().unwrap();
        assert!(writer.write_behind_requested >= 8 << 20);
        assert!(writer.write_behind_requested <= writer.pos);

        let mut log_off = Log::open_with(
            dir.path().join("off"),
            Options { write_behind: false, ..Options::default() },
        )
        .unwrap();
        for _ in 0..9000 {
            log_off.append(&payload).unwrap();
        }
        assert_eq!(log_off.writer.as_ref().unwrap().write_behind_requested, 0);
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    /// Options for records of a few KiB in small segments.
    fn small_records() -> Options {
        Options { record_bytes_max: 4096, ..Options::default() }
    }

    /// A log of `segments` full segments of 64 KiB (and a last one partly filled), closed.
    fn log_of_segments(dir: &Path, segments: usize) -> Vec<Vec<u8>> {
        let options = Options { segment_bytes: 64 << 10, ..small_records() };
        let mut log = Log::open_with(dir, options).unwrap();
        let mut records = Vec::new();
        let mut i = 0u32;
        while log.shared.snapshot().segments.len() <= segments {
            let record = vec![i as u8; 1000 + (i as usize % 7) * 100];
            log.append(&record).unwrap();
            records.push(record);
            i += 1;
        }
        log.close().unwrap();
        records
    }

    /// A replay releases the pages of the segments it has left more than its window behind,
    /// and only those; what it reads is unchanged.
    #[test]
    fn a_replay_releases_the_segments_it_has_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let records = log_of_segments(dir.path(), 12);
        let log = Log::open_read_only(dir.path()).unwrap();
        let segments = log.shared.snapshot().segments;
        let last = segments.len() - 1;
        let window = 2 * (64 << 10);
        let mut replay = log.replay(0).with_resident_window(window);
        let mut read = Vec::new();
        while let Some(record) = replay.next_ref() {
            read.push(record.unwrap().payload.to_vec());
        }
        assert_eq!(read, records);
        let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
        // Released: each segment that ends at least the window before the last one starts.
        let last_base = segments[last].base_offset();
        assert!(mapped[..last - 3].iter().all(|&p| p == 0), "{mapped:?}");
        for (index, &pages) in mapped.iter().enumerate() {
            let end = segments.get(index + 1).map_or(u64::MAX, |next| next.base_offset());
            if end.saturating_add(window) <= last_base {
                assert_eq!(pages, 0, "segment {index} should be released: {mapped:?}");
            } else {
                assert!(pages > 0, "segment {index} is inside the window: {mapped:?}");
            }
        }
        // Released pages read back the same bytes.
        let again: Vec<Vec<u8>> = log.replay(0).map(|r| r.unwrap().payload.to_vec()).collect();
        assert_eq!(again, records);
    }

    /// Segments before a replay's start are not the replay's to release; with the default
    /// window, a log smaller than it is never released.
    #[test]
    fn a_replay_leaves_alone_what_it_did_not_read_and_small_logs() {
        let dir = tempfile::tempdir().unwrap();
        log_of_segments(dir.path(), 12);
        let log = Log::open_read_only(dir.path()).unwrap();
        let segments = log.shared.snapshot().segments;
        // Map a page of every segment (by reading a byte of it).
        for segment in segments.iter() {
            std::hint::black_box(segment.data(0, 8)[0]);
        }
        let from = segments[6].base_offset();
        let mut replay = log.replay(from).with_resident_window(0);
        while let Some(record) = replay.next_ref() {
            record.unwrap();
        }
        let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
        assert!(mapped[..6].iter().all(|&p| p > 0), "{mapped:?}");
        assert!(mapped[6..mapped.len() - 1].iter().all(|&p| p == 0), "{mapped:?}");

        let mut replay = log.replay(0);
        while let Some(record) = replay.next_ref() {
            record.unwrap();
        }
        let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
        assert!(mapped.iter().all(|&p| p > 0), "the default window covers this log: {mapped:?}");
    }

    /// The chain check reads each sealed segment's last frame from its file, and a clean
    /// open the frame the durable record names, so a clean open maps no page of any segment
    /// (through the map, each check made a 2 MiB folio resident: 257 MB for a 10 GiB log);
    /// damage there is still found.
    #[test]
    fn a_clean_open_maps_no_page_of_any_segment() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { segment_bytes: 1 << 20, ..small_records() };
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        let record = vec![5u8; 3000];
        while log.shared.snapshot().segments.len() < 6 {
            log.append(&record).unwrap();
        }
        log.close().unwrap();
        for read_only in [true, false] {
            let log = if read_only {
                Log::open_read_only(dir.path()).unwrap()
            } else {
                Log::open_with(dir.path(), options.clone()).unwrap()
            };
            let segments = log.shared.snapshot().segments;
            assert!(log.open_report().clean_close);
            let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
            assert!(mapped.iter().all(|&p| p == 0), "read-only {read_only}: {mapped:?}");
            log.close().unwrap();
        }
        // A flipped bit in the last frame of the second segment: the check reads the file.
        let second = Log::open_read_only(dir.path()).unwrap().shared.snapshot().segments[1].clone();
        let third_header =
            *Log::open_read_only(dir.path()).unwrap().shared.snapshot().segments[2].header();
        let pos = third_header.prev_last_frame_offset - second.base_offset();
        let path = second.path().to_path_buf();
        drop(second);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SEGMENT_HEADER_LEN + pos as usize + FRAME_HEADER_LEN + 7] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        match Log::open_read_only(dir.path()) {
            Err(StorageError::Corruption { segment, offset, .. }) => {
                assert_eq!((segment, offset), (path, third_header.prev_last_frame_offset));
            }
            other => panic!("expected the damaged last frame to be refused: {other:?}"),
        }
    }
}
