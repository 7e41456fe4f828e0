//! The single writer: appends, batches, syncs, rolls to new segments, and the durable record.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::clock::{now_ms, RecordClock};
use super::open_reads::populate_runs;
use super::pager::{Pager, FILL_AHEAD_BYTES, FILL_MIN_UNSYNCED, WRITE_BEHIND_BYTES};
use super::reader::Shared;
use super::recovery::examine_after_chain;
use crate::atomic_file::write_atomically;
use crate::error::{Result, StorageError};
use crate::format::{
    encode_frame_fields, encode_frame_header, frame_stride, header_crc, unsynced_field,
    DurableRecord, SegmentHeader, DURABLE_FILE_NAME, FLAG_BATCH_CONTINUES, FORMAT_VERSION,
    FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{NewFile, Segment, SegmentWriter, WRITE_THROUGH_FILE_MIN};

/// How far past the end a sync writes zeros when the zeroed region runs low (see
/// [`Writer::zero_ahead`]): one extra MiB written per MiB of log that is synced piecemeal.
pub(super) const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// The single writer's state.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) active: SegmentWriter,
    /// Data position of the next frame in the active segment.
    pub(super) pos: u64,
    /// Data position up to which the active segment is known durable.
    pub(super) synced_pos: u64,
    /// Data position up to which the active segment holds data or zeros written by
    /// [`Writer::zero_ahead`] (rather than preallocated, unwritten space).
    pub(super) zeroed_pos: u64,
    /// Offset up to which the whole log is known durable.
    pub(super) synced_end: u64,
    /// Ranges `[from, to)` of sealed segments written since the last sync: a roll does not
    /// wait for the disk, so [`Writer::sync`] syncs them.
    pub(super) unsynced_sealed: Vec<(Arc<Segment>, u64, u64)>,
    /// Segments created since the last sync, whose files (header, size, allocation) and
    /// directory entries are not yet durable.
    pub(super) unsynced_created: Vec<Arc<Segment>>,
    /// Offset and checksum of the last complete frame, for the next segment's header.
    pub(super) last_frame: (u64, u32),
    /// Timestamps for new records; never below the last record's.
    pub(super) clock: RecordClock,
    pub(super) poisoned: Option<String>,
    pub(super) shared: Arc<Shared>,
    pub(super) segment_bytes: u64,
    pub(super) record_bytes_max: u64,
    /// The log's identifier, written into every segment header.
    pub(super) log_id: u64,
    /// Fills pages ahead of `pos`, starts the write-out of the pages behind it and makes
    /// the next segment, on helper threads; `None` until the first append starts it (a writer
    /// opened to read or query never does: opening stays cheap), or if it could not start.
    pub(super) pager: Option<Pager>,
    /// Whether starting the pager was tried.
    pub(super) pager_tried: bool,
    /// Data position up to which filling of the active segment has been requested.
    pub(super) fill_requested: u64,
    /// Data position up to which write-behind of the active segment has been requested.
    pub(super) write_behind_requested: u64,
    /// Whether a spare segment for the next roll has been asked of the pager since the last
    /// roll (see [`SpareSegment`](crate::segment::SpareSegment)).
    pub(super) spare_requested: bool,
    /// [`Options::write_behind`](super::Options::write_behind).
    pub(super) write_behind: bool,
    /// [`Options::prepare_next_segment`](super::Options::prepare_next_segment).
    pub(super) prepare_next_segment: bool,
    /// [`Options::zero_fill_segments`](super::Options::zero_fill_segments).
    pub(super) zero_fill_segments: bool,
    /// What the durable record file holds, as far as this writer knows (`None`: no record of
    /// this log). One with a clean end is rewritten without it before anything is written.
    pub(super) durable_on_disk: Option<DurableRecord>,
    /// Bytes past the end may not be zero: a failed append may have left part of its frames
    /// there. `close` then records no clean end, so the next open examines them.
    pub(super) dirty_past_end: bool,
    /// Segments this writer has rolled to (retention policies run after a roll).
    pub(super) rolls: u64,
    /// Whether a [`PendingSync`](super::pending_sync::PendingSync) taken from this writer is
    /// being performed: another may not begin until it is finished.
    pub(super) sync_in_flight: bool,
    /// Holds the directory's exclusive lock for as long as the writer lives.
    pub(super) _lock: super::directory::DirLock,
    /// Test failpoint: the next data sync fails as if the disk had reported an error.
    #[cfg(test)]
    pub(super) fail_next_sync: bool,
    /// Test failpoint: performing the next sync panics.
    #[cfg(test)]
    pub(super) panic_next_sync: bool,
    /// Test failpoint: the next zeroing ahead fails as if the disk had reported an error.
    #[cfg(test)]
    pub(super) fail_next_zero_ahead: bool,
    /// Test failpoint: the frame write after this many more fails as if the disk had
    /// reported an error.
    #[cfg(test)]
    pub(super) fail_frame_after: Option<u32>,
}

/// A sync that writes out at least this much of one segment first drops the range's
/// page-table entries ([`Writer::unmap_unsynced`]).
const UNMAP_BEFORE_SYNC_MIN: u64 = 1 << 20;

impl Writer {
    pub(super) fn base(&self) -> u64 {
        self.active.segment().base_offset()
    }

    pub(super) fn end(&self) -> u64 {
        self.base() + self.pos
    }

    pub(super) fn capacity(&self) -> u64 {
        self.active.segment().capacity()
    }

    /// How this writer makes new segment files.
    fn new_file(&self) -> NewFile {
        NewFile { bytes: self.segment_bytes, zero_fill: self.zero_fill_segments }
    }

    fn timestamp(&mut self) -> u64 {
        self.clock.now_ms()
    }

    pub(super) fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Before a sync that writes out at least [`UNMAP_BEFORE_SYNC_MIN`] of one segment, drops
    /// the page-table entries of that range (see [`Segment::unmap_pages`]), so the write-out
    /// does not write-protect each page with its own TLB-flush interrupt. Smaller syncs skip
    /// it: for them the extra system call cost more than it saved. Advice only: a refusal
    /// changes nothing but speed.
    pub(super) fn unmap_unsynced(&self) {
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
    pub(super) fn zero_ahead(&mut self) -> Result<()> {
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
    pub(super) fn append(&mut self, payload: &[u8], through_file: bool) -> Result<u64> {
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
    pub(super) fn append_batch<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
        through_file: bool,
    ) -> Result<Vec<u64>> {
        self.check_usable()?;
        // The caller's `as_ref` runs once per payload, here, before anything changes: one that
        // panics (or answers differently the second time) can then leave no half-written
        // batch behind for a later record to complete.
        let payloads: Vec<&[u8]> = payloads.iter().map(AsRef::as_ref).collect();
        let max = self.record_bytes_max;
        let mut total = 0u64;
        // Whether any record goes through the map (see `publish_appended`).
        let mut through_map = false;
        for payload in &payloads {
            let len = payload.len();
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
            let written = self.write_frames_through_file(&payloads, timestamp);
            let offsets = written.inspect_err(|_| self.dirty_past_end = true)?;
            self.publish_appended(false);
            return Ok(offsets);
        }
        let mut offsets = Vec::with_capacity(payloads.len());
        let (start, last_frame) = (self.pos, self.last_frame);
        for (i, payload) in payloads.iter().enumerate() {
            let flags = if i == last { 0 } else { FLAG_BATCH_CONTINUES };
            match self.write_frame(payload, timestamp, flags) {
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
    pub(super) fn publish(&mut self) {
        self.active.publish(self.pos);
        self.shared.end.store(self.end(), Ordering::Release);
        self.shared.wake_waiters();
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
            self.pager = match super::background::threads_allowed() {
                true => Pager::start(),
                false => Some(Pager::without_threads()),
            };
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
    pub(super) fn write_durable_record(&mut self, clean_end: bool) -> Result<()> {
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
    /// non-zero ones are zeroed durably before the record loses its clean end. With read
    /// checks on, those bytes are read into memory first, so that a read error there is an
    /// error rather than a `SIGBUS`.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the bytes cannot be read (with read checks; nothing changed,
    /// the next write tries again), if zeroing or its sync fails (the writer is then
    /// poisoned), or if the record cannot be rewritten.
    #[cold]
    fn leave_clean_end(&mut self, on_disk: DurableRecord) -> Result<()> {
        let (base, pos) = (self.base(), self.pos);
        let segment = Arc::clone(self.active.segment());
        let extents = segment.data_extents();
        // As in recovery: without read-ahead, so the scan brings in no zero pages that later
        // opens would count as data.
        segment.advise_scan(true);
        let populated = if self.shared.read_checks.load(Ordering::Relaxed) {
            populate_runs(&segment, &extents, pos, "the first write after a clean close")
        } else {
            Ok(())
        };
        let dirty_end = populated.map(|()| {
            examine_after_chain(self.active.data_region(), base, pos, &extents).dirty_end
        });
        segment.advise_scan(false);
        let dirty_end = dirty_end?;
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
    pub(super) fn record_close(&mut self) -> Result<()> {
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
        self.rolls += 1;
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
    fn write_frames_through_file(
        &mut self,
        payloads: &[&[u8]],
        timestamp_ms: u64,
    ) -> Result<Vec<u64>> {
        /// Zeros for the padding after a frame (the region is zero already; `pwritev` needs
        /// the bytes to keep the frames back to back).
        const PADDING: [u8; FRAME_ALIGN] = [0; FRAME_ALIGN];
        let (start, last_frame) = (self.pos, self.last_frame);
        let last = payloads.len().saturating_sub(1);
        let mut headers = Vec::with_capacity(payloads.len());
        let mut offsets = Vec::with_capacity(payloads.len());
        for (i, &payload) in payloads.iter().enumerate() {
            let flags = if i == last { 0 } else { FLAG_BATCH_CONTINUES };
            let offset = self.end();
            let header = self.frame_header(payload, timestamp_ms, flags);
            self.advance(offset, header_crc(&header), payload.len(), flags);
            headers.push(header);
            offsets.push(offset);
        }
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(payloads.len() * 3);
        for (header, &payload) in headers.iter().zip(payloads) {
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
