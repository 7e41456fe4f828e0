//! Writing into a segment: the one [`SegmentWriter`] of the active segment, the fence that keeps
//! a helper's zeros off its bytes, and the [`PagerHandle`] those helpers work through.

use std::fs::{File, OpenOptions};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::create::write_zeros;
use super::mapping::sync_file_range;
use super::Segment;
use crate::error::{Result, StorageError};
use crate::format::SEGMENT_HEADER_LEN;

/// Payloads at least this large are written with `pwritev` rather than copied through the
/// map. The kernel copies them into the same page cache pages, so readers of the map see
/// them as usual, but the pages never enter the writer's page tables: a later sync then
/// writes them without write-protecting each page and flushing the other CPUs' TLBs, which
/// costs more per 4 KiB page than the system call saves. Small records keep the map, where
/// no system call is made at all.
pub(crate) const WRITE_THROUGH_FILE_MIN: usize = 16 << 10;

/// How far past the frame it has just copied the writer asks the CPU to start loading the
/// map for writing: one page, so the next page's translation and first cache line are ready
/// when the copies reach it (the hardware's prefetching stops at page boundaries). The
/// writer's CPU time for 1M appends of 128 bytes: 72–75 ms with it, 77–80 ms without (the
/// best three of five runs, three times, two builds alternated).
pub(super) const WRITE_PREFETCH_DISTANCE: u64 = 4096;

/// Writes all of `bufs`, back to back, at file offset `at`. (rustix passes at most `IOV_MAX`
/// buffers to one call; a partial write is continued like any other.)
fn write_all_at(file: &File, bufs: &[&[u8]], mut at: u64) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut slices = slices.as_mut_slice();
    while !slices.is_empty() {
        let written = rustix::io::pwritev(file, slices, at)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at += written as u64;
        std::io::IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// The one handle that may write into a segment's data region.
///
/// There is at most one per segment: it is only made by [`Segment::create`],
/// [`Segment::create_from_spare`] and [`SegmentWriter::new`], each of which consumes the
/// exclusively owned segment.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    pub(super) segment: Arc<Segment>,
    /// The segment's file, open for writing (for `pwritev`, zeroing ahead and write-out), and
    /// the fence between this writer and a helper filling pages ahead of it. Only the active
    /// segment's writer (and helper work still queued for it) holds one, so a log of any
    /// number of segments keeps a bounded number of files open.
    io: Arc<SegmentFile>,
    /// Data position below which this writer may write without asking the fence again.
    reserved: u64,
}

/// A writable segment's file, shared by its writer and the pager's helper threads.
#[derive(Debug)]
struct SegmentFile {
    file: File,
    fence: Mutex<FillFence>,
    /// Signalled when a helper finishes filling a range.
    filled: Condvar,
}

/// Keeps a helper's zeros ([`PagerHandle::fill_ahead`]) off every byte the writer writes: the
/// writer reserves the range it is about to write before it writes it, a helper fills only
/// past the writer's reservation, and the writer waits for a fill under way in the range it
/// reserves. Both happen under one lock, so one of the two always sees the other.
#[derive(Debug, Default)]
pub(super) struct FillFence {
    /// Data position below which the writer may write: no fill starts below it.
    writer_reserved: u64,
    /// Data position from which a helper is writing zeros now (to past the writer's
    /// reservation): the writer reserves nothing at or past it until that fill is done.
    filling_from: Option<u64>,
}

/// The writer reserves in steps of this many bytes, so it takes the fence's lock once per
/// step, not per record.
const RESERVE_STEP: u64 = 256 << 10;

impl SegmentFile {
    fn new(file: File) -> SegmentFile {
        SegmentFile { file, fence: Mutex::new(FillFence::default()), filled: Condvar::new() }
    }

    fn fence(&self) -> MutexGuard<'_, FillFence> {
        self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves data positions up to at least `end` for the writer, waiting for a fill under
    /// way there, and returns the position now reserved.
    fn reserve(&self, end: u64) -> u64 {
        let mut fence = self.fence();
        fence.writer_reserved = fence.writer_reserved.max(end.next_multiple_of(RESERVE_STEP));
        while fence.filling_from.is_some_and(|from| from < fence.writer_reserved) {
            fence = self.filled.wait(fence).unwrap_or_else(PoisonError::into_inner);
        }
        fence.writer_reserved
    }
}

impl SegmentWriter {
    /// Makes `segment` (exclusively owned, writable, recovered) shared and returns its writer,
    /// which writes through `file`, the segment's file open for writing.
    pub(crate) fn new(segment: Segment, file: File) -> Result<SegmentWriter> {
        if !segment.writable {
            return Err(StorageError::ReadOnly);
        }
        let io = Arc::new(SegmentFile::new(file));
        Ok(SegmentWriter { segment: Arc::new(segment), io, reserved: 0 })
    }

    /// [`SegmentWriter::new`] for a segment whose file was not kept: opens it again.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file cannot be opened for writing.
    pub(crate) fn reopen(segment: Segment) -> Result<SegmentWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment.path)
            .map_err(|e| StorageError::io("open segment", &segment.path, e))?;
        SegmentWriter::new(segment, file)
    }

    /// The shared segment this writer writes into.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// A handle for the pager's helper threads, which fill this segment's pages ahead of the
    /// writer and start the write-out of those behind it.
    pub(crate) fn pager_handle(&self) -> PagerHandle {
        PagerHandle { segment: Arc::clone(&self.segment), io: Arc::clone(&self.io) }
    }

    /// Reserves data positions up to `end` for this writer's next write (see [`FillFence`]):
    /// a lock once per [`RESERVE_STEP`], a comparison otherwise.
    #[inline]
    pub(super) fn reserve(&mut self, end: u64) {
        if end > self.reserved {
            self.reserved = self.io.reserve(end);
        }
    }

    /// Writes `bufs` back to back from data position `pos` with `pwritev` (more than one call
    /// for more than 1024 buffers), into the same page cache the map shows,
    /// without touching the map's page tables. The same rules as for
    /// [`SegmentWriter::write_frame`] apply: at or after the published length, inside the data
    /// region, not yet visible to readers.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] as for [`SegmentWriter::write_frame`], or
    /// [`StorageError::Io`] from the write (part of the range may have been written; it is
    /// unpublished, so readers never see it, and it is overwritten or cut as torn).
    pub(crate) fn write_through_file(&mut self, pos: u64, bufs: &[&[u8]]) -> Result<()> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.check_unpublished(pos, len)?;
        self.reserve(pos + len);
        write_all_at(&self.io.file, bufs, SEGMENT_HEADER_LEN as u64 + pos)
            .map_err(|e| StorageError::io("write frame", self.segment.path(), e))
    }

    /// Refuses a write of `len` bytes at data position `pos` unless it lies after the
    /// published length and inside the data region.
    pub(super) fn check_unpublished(&self, pos: u64, len: u64) -> Result<()> {
        let seg = &self.segment;
        if pos < seg.published_len() || pos.saturating_add(len) > seg.capacity {
            return Err(StorageError::InvalidOffset {
                offset: seg.base_offset() + pos,
                reason: "write outside the unpublished data region".to_string(),
            });
        }
        Ok(())
    }

    /// Writes zeros over data bytes `[start, end)`, rounded inwards to whole pages, through
    /// the file (not the map) and waits until they are on the disk
    /// (`sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`). Returns the data position the
    /// zeros now reach, or `start` if the range holds no whole page.
    ///
    /// This turns the preallocated but unwritten extents there into written ones, so that the
    /// syncs of the records later appended there rewrite data in place instead of also
    /// updating the file's extent map: on ext4 that makes each small `fdatasync` about a
    /// third cheaper. The bytes read as zeros before and after, so this is invisible to
    /// readers and to recovery. Nothing below the published length is touched; the caller
    /// (the one writer) must hold no record at or after `start` (bytes of an abandoned,
    /// unpublished batch there are fine to overwrite).
    ///
    /// # Errors
    /// The operating system's error. Waiting for the write-out also reports (once per open
    /// file) any earlier write-back error of the file, so the caller must treat an error as a
    /// failed sync.
    pub(crate) fn zero_ahead(&mut self, start: u64, end: u64) -> std::io::Result<u64> {
        let seg = &self.segment;
        let (file_start, file_end) = seg.whole_pages(start.max(seg.published_len()), end);
        if file_end <= file_start {
            return Ok(start);
        }
        self.reserve(file_end - SEGMENT_HEADER_LEN as u64);
        write_zeros(&self.io.file, file_start, file_end)?;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        sync_file_range(&self.io.file, file_start, file_end, flags)?;
        Ok(file_end - SEGMENT_HEADER_LEN as u64)
    }

    /// Makes the first `len` data bytes visible to readers.
    pub(crate) fn publish(&mut self, len: u64) {
        self.segment.publish(len);
    }
}

/// A helper thread's handle on the active segment: fills its pages ahead of the writer and
/// starts the write-out of those behind it. It shares the segment and its file with the
/// segment's writer for as long as the work is queued.
#[derive(Debug, Clone)]
pub(crate) struct PagerHandle {
    segment: Arc<Segment>,
    io: Arc<SegmentFile>,
}

impl PagerHandle {
    /// Whether both handles are on the same segment.
    pub(crate) fn same_segment(&self, other: &PagerHandle) -> bool {
        Arc::ptr_eq(&self.segment, &other.segment)
    }

    /// Writes zeros over data bytes from `start` (or from the writer's reservation, if that
    /// is further, rounded up to a whole page) to `end` (rounded up to a whole page, clipped
    /// to the data region), through the file, and returns the data position up to which
    /// nothing is left to fill: where the zeros reach, or, if the writer has reserved past
    /// `end`, its reservation.
    ///
    /// The bytes there are zeros already (preallocated space, never written), so this changes
    /// nothing a reader or recovery can see. What it changes is who pays for the pages: a
    /// page of a fresh file enters the page cache zeroed by the kernel on the first write
    /// through the map (a page fault, read-ahead that zeroes several MiB of large folios, and
    /// on this machine's freshly returned memory, slowly), but `write` fills new pages by
    /// copying without zeroing them first. Done on a helper thread ahead of the writer, the
    /// writer's copies then find pages in the cache and take a cheap fault per 64 KiB or so.
    /// The [`FillFence`] keeps these zeros off every byte the writer has written or is
    /// writing.
    ///
    /// # Errors
    /// The operating system's error; callers treat it as "not available" (nothing is
    /// acknowledged by this, and the writer's own faults fill pages as without it).
    pub(crate) fn fill_ahead(&self, start: u64, end: u64) -> std::io::Result<u64> {
        const PAGE: u64 = 4096;
        let header = SEGMENT_HEADER_LEN as u64;
        let file_limit = header + self.segment.capacity;
        let (file_start, file_end) = {
            let mut fence = self.io.fence();
            let file_start = (header + start.max(fence.writer_reserved)).next_multiple_of(PAGE);
            let file_end = (header + end).next_multiple_of(PAGE).min(file_limit);
            if file_end <= file_start {
                return Ok(end.max(file_start.min(file_limit) - header));
            }
            fence.filling_from = Some(file_start - header);
            (file_start, file_end)
        };
        let written = write_zeros(&self.io.file, file_start, file_end);
        self.io.fence().filling_from = None;
        self.io.filled.notify_all();
        written?;
        Ok(file_end - header)
    }

    /// Starts writing data bytes `[start, end)` back to the disk without waiting
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, rounded inwards to whole pages), after
    /// dropping this process's page-table entries for those pages ([`Segment::unmap_pages`]),
    /// so the write-out need not write-protect them one by one. This acknowledges nothing: it
    /// only means a later [`Segment::sync_range`] finds less left to write. Meant for bytes the
    /// writer has passed and will not write again. Without waiting, it neither sees nor
    /// consumes write-back errors: the sync that later waits for these pages reports them.
    ///
    /// # Errors
    /// The kernel's error; callers treat it as "not available".
    pub(crate) fn start_writeback(&self, start: u64, end: u64) -> std::io::Result<()> {
        let (file_start, file_end) = self.segment.unmap_pages(start, end)?;
        if file_end <= file_start {
            return Ok(());
        }
        sync_file_range(&self.io.file, file_start, file_end, libc::SYNC_FILE_RANGE_WRITE)
    }
}

#[cfg(test)]
mod tests;
