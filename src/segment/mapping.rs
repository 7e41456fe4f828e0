//! The crate's memory maps. A segment's: the views readers and recovery take of its data
//! region, the writer's copies into it, zeroing through it, and advice to the kernel about its
//! pages; with `sync_file_range` and the CPU's prefetch hints, every `unsafe` block of the
//! segment module, each relying on the invariants listed in the segment module's docs (the
//! "module invariants" the `SAFETY` comments cite). And an index file's read-only map
//! ([`map_read_only`]), which relies on its own invariant, stated there. And [`SegmentData`],
//! the pointer view of a segment's published bytes that replay reads frames from.
//!
//! This module and `crate::cpu` are the only modules with `unsafe` code: memory maps here, CPU
//! instructions there (`#[allow(unsafe_code)]` is on their declarations; the crate denies it
//! everywhere else).

use std::fs::File;
#[cfg(test)]
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::writer::WRITE_PREFETCH_DISTANCE;
use super::{data_capacity, to_index, Segment, SegmentWriter, WRITE_THROUGH_FILE_MIN};
use crate::error::{Result, StorageError};
use crate::format::{
    frame_crc, seal_frame_header, store_frame_crc, SegmentHeader, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};

/// Maps the header and the data region of a segment file of `file_bytes` bytes.
pub(super) fn map_file(
    path: &Path,
    file: &File,
    file_bytes: u64,
    writable: bool,
) -> Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.len(to_index(SEGMENT_HEADER_LEN as u64 + data_capacity(file_bytes)));
    if writable { options.map_raw(file) } else { options.map_raw_read_only(file) }
        .map_err(|e| StorageError::io("map segment", path, e))
}

impl Segment {
    pub(super) fn map(
        path: PathBuf,
        file: &File,
        header: SegmentHeader,
        file_bytes: u64,
        writable: bool,
    ) -> Result<Segment> {
        let map = map_file(&path, file, file_bytes, writable)?;
        Ok(Self::from_map(path, header, map, file_bytes, writable))
    }

    /// Wraps a map made by [`map_file`] for the same `file_bytes`.
    pub(super) fn from_map(
        path: PathBuf,
        header: SegmentHeader,
        map: MmapRaw,
        file_bytes: u64,
        writable: bool,
    ) -> Segment {
        // A read-only segment has no writer in this process, so all of it may be viewed.
        let capacity = data_capacity(file_bytes);
        let published = if writable { 0 } else { capacity };
        Segment { path, header, map, capacity, published: AtomicU64::new(published), writable }
    }

    /// Reads data bytes `[start, end)` (clipped to what is published) into this process's
    /// page tables with `MADV_POPULATE_READ`, so that touching them takes no fault that could
    /// fail: a disk read error (or a file cut short under the map) is returned here, where
    /// reading the bytes through the map would raise `SIGBUS`. `Ok(false)` where the kernel
    /// has no such advice (Linux before 5.14, other systems): nothing was read or checked.
    pub(crate) fn populate(&self, start: u64, end: u64) -> std::io::Result<bool> {
        self.populate_within(start, end.min(self.published_len()))
    }

    /// [`Segment::populate`] over data runs `runs` (`[start, end)` data positions, published
    /// or not), for `why` (what reads them next through the map): what an open or a repair
    /// reads before the log is shared. Populating only reads: no byte changes, so it is safe
    /// beside a writer too.
    ///
    /// # Errors
    /// The error of the first run that cannot be read, saying which log bytes and `why`.
    pub(crate) fn populate_runs(&self, runs: &[(u64, u64)], why: &str) -> std::io::Result<()> {
        for &(start, end) in runs {
            if let Err(err) = self.populate_within(start, end) {
                let base = self.header.base_offset;
                let what = format!(
                    "log bytes {}..{} could not be read into memory for {why}: {err}",
                    base + start,
                    base + end
                );
                return Err(std::io::Error::new(err.kind(), what));
            }
        }
        Ok(())
    }

    fn populate_within(&self, start: u64, end: u64) -> std::io::Result<bool> {
        let end = end.min(self.capacity);
        let start = start.min(end);
        if start == end {
            return Ok(true);
        }
        #[cfg(target_os = "linux")]
        {
            let offset = SEGMENT_HEADER_LEN + to_index(start);
            let advice = memmap2::Advice::PopulateRead;
            match self.map.advise_range(advice, offset, to_index(end - start)) {
                Ok(()) => Ok(true),
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => Ok(false),
                Err(err) => Err(err),
            }
        }
        #[cfg(not(target_os = "linux"))]
        Ok(false)
    }

    /// A view of the published data region, from `start` to at most `end`.
    pub(crate) fn data(&self, start: u64, end: u64) -> &[u8] {
        let published = self.published_len();
        let end = end.min(published);
        let start = start.min(end);
        // SAFETY: `[start, end)` lies inside the published prefix of the data region, which
        // lies inside the mapping (`capacity` was computed from the mapped length). The file
        // never shrinks while mapped and nothing writes published bytes while the segment is
        // shared (module invariants 1 and 2), so the bytes stay valid and unchanged for the
        // lifetime of `&self`, which also keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(SEGMENT_HEADER_LEN + to_index(start)),
                to_index(end - start),
            )
        }
    }

    /// The whole data region, as [`Segment::data_exclusive`], and a [`Populator`] of it, for a
    /// scan that reads the region into memory as it reaches it.
    pub(crate) fn data_exclusive_populator(&mut self) -> (&[u8], Populator<'_>) {
        let this: &Segment = self;
        // SAFETY: `&mut self` proves no other reference to this segment exists; for as long as
        // it is borrowed, the only others are the returned view and the `Populator`, which
        // only reads (`MADV_POPULATE_READ`), so no writer is active while the view lives.
        (unsafe { this.whole_data() }, Populator(this))
    }

    /// The whole data region, published or not, for recovery's scan.
    pub(crate) fn data_exclusive(&mut self) -> &[u8] {
        // SAFETY: `&mut self` proves no other reference to this segment exists, so no writer
        // is active while the view lives.
        unsafe { self.whole_data() }
    }

    /// The whole data region, published or not.
    ///
    /// # Safety
    /// Nothing may write the region's unpublished part while the view lives: the caller holds
    /// the segment exclusively, or its one [`SegmentWriter`] borrowed mutably. (The published
    /// prefix is never written while shared, module invariant 2.)
    unsafe fn whole_data(&self) -> &[u8] {
        // SAFETY: the range is the mapped data region, valid while `self` lives (module
        // invariant 1); the caller rules out writes to it for the borrow.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(SEGMENT_HEADER_LEN),
                to_index(self.capacity),
            )
        }
    }

    /// Zero-fills data bytes `[start, end)` (clipped to the data region) through the writable
    /// map, then makes the zeros durable (`msync`).
    ///
    /// # Safety
    /// No view may cover the range and nothing else may write it while this runs: the caller
    /// holds the segment exclusively, or its one [`SegmentWriter`] borrowed mutably with the
    /// range at or after the published length. The map must be writable.
    unsafe fn zero_and_sync(&self, start: u64, end: u64) -> Result<()> {
        let end = end.min(self.capacity);
        let start = start.min(end);
        // SAFETY: the range lies in the mapping's data region (clipped above; module
        // invariant 1 keeps it mapped); the caller guarantees it is writable and unshared.
        unsafe {
            std::ptr::write_bytes(
                self.map.as_mut_ptr().add(SEGMENT_HEADER_LEN + to_index(start)),
                0,
                to_index(end - start),
            );
        }
        self.sync_range(start, end).map_err(|e| StorageError::io("sync zeroed tail", &self.path, e))
    }

    /// Zero-fills data bytes `[start, end)` and makes the zeros durable: the in-place truncation
    /// of a torn tail. Exclusive access means no view or writer can observe the change.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`] for a read-only mapping, [`StorageError::Io`] if the sync
    /// fails.
    pub(crate) fn zero_exclusive(&mut self, start: u64, end: u64) -> Result<()> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        // SAFETY: `&mut self` gives exclusive access (no views, no writer); the map is
        // writable (checked above).
        unsafe { self.zero_and_sync(start, end) }
    }

    /// Tells the kernel how the data region will be read: `random` while recovery scans it
    /// (so a fault brings in only the touched page, not a readahead window of zero pages that
    /// `SEEK_DATA` would then count as data at every later open), normal afterwards.
    /// Advice only: failure changes nothing but speed, so it is ignored.
    pub(crate) fn advise_scan(&self, random: bool) {
        let advice = if random { Advice::Random } else { Advice::Normal };
        let _ = self.map.advise_range(advice, SEGMENT_HEADER_LEN, to_index(self.capacity));
    }

    /// Drops this process's page-table entries for the whole map (`MADV_DONTNEED`), so that
    /// pages read through it stop counting in the process's resident memory once a reader
    /// has moved past them. Nothing else changes: the pages stay in the page cache (dirty
    /// ones stay dirty), and the next access to any byte maps the same page again, at the
    /// cost of a minor fault. Meant for sealed segments: on the writer's active segment it
    /// would make the writer fault in again the pages filled ahead of it.
    ///
    /// Best effort: an error from the kernel (for example on `mlock`ed memory) changes
    /// nothing and is ignored.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the map is a shared mapping of a file (never private, never anonymous), so
        // `MADV_DONTNEED` only removes this process's page-table entries: no byte changes, and
        // readers holding views into the map see the same bytes when they next touch them
        // (the range is the map itself).
        let _ = unsafe {
            self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, self.map.len())
        };
    }

    /// How many pages of the map are in this process's page tables (the "present" bit of
    /// `/proc/self/pagemap`, which unprivileged processes may read).
    #[cfg(test)]
    pub(crate) fn mapped_pages(&self) -> usize {
        const PAGE: usize = 4096;
        let first = self.map.as_ptr() as usize / PAGE;
        let pages = self.map.len().div_ceil(PAGE);
        let mut entries = vec![0u8; pages * 8];
        let pagemap = File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
        pagemap.read_exact_at(&mut entries, (first * 8) as u64).expect("read /proc/self/pagemap");
        entries
            .chunks_exact(8)
            .filter(|e| u64::from_le_bytes((*e).try_into().expect("8 bytes")) >> 63 == 1)
            .count()
    }

    /// Drops this process's page-table entries for the whole pages inside data bytes
    /// `[start, end)` (`MADV_DONTNEED`) and returns their file offsets. Writing out a page that
    /// is mapped writable costs a write-protect and a TLB-flush interrupt to every CPU running
    /// this process, per page; after this, writing out the range costs one flush in all. The
    /// bytes are unchanged and the pages stay dirty in the page cache; the next access to them
    /// maps them again. A no-op (returning an empty range) for read-only maps.
    ///
    /// # Errors
    /// The kernel's error (for example on `mlock`ed memory); nothing changed then.
    pub(crate) fn unmap_pages(&self, start: u64, end: u64) -> std::io::Result<(u64, u64)> {
        let (file_start, file_end) = self.whole_pages(start, end);
        if !self.writable || file_end <= file_start {
            return Ok((file_start, file_start));
        }
        // SAFETY: the map is a shared mapping of a file (never private, never anonymous), so
        // `MADV_DONTNEED` only removes this process's page-table entries for the range: the
        // pages stay in the page cache with their contents (a dirty entry marks its page
        // dirty as it is removed), and the next access to any byte maps the same page again.
        // No byte changes, so readers holding views into the range see the same bytes, and
        // the range lies inside the map (`whole_pages` clips it to the data region).
        unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                to_index(file_start),
                to_index(file_end - file_start),
            )?;
        }
        Ok((file_start, file_end))
    }

    /// The file offsets of the whole pages inside data bytes `[start, end)` (clipped to the
    /// data region); an empty range if there are none.
    pub(super) fn whole_pages(&self, start: u64, end: u64) -> (u64, u64) {
        const PAGE: u64 = 4096;
        let header = SEGMENT_HEADER_LEN as u64;
        let file_start = (header + start).next_multiple_of(PAGE);
        let file_end = (header + end.min(self.capacity)) / PAGE * PAGE;
        (file_start, file_end.max(file_start))
    }

    /// Writes data bytes `[start, end)` to stable storage (`msync(MS_SYNC)` of those pages,
    /// which on Linux is an `fdatasync` of the range).
    ///
    /// # Errors
    /// The operating system's error; the writer must then be poisoned.
    pub(crate) fn sync_range(&self, start: u64, end: u64) -> std::io::Result<()> {
        if end <= start {
            return Ok(());
        }
        self.map.flush_range(SEGMENT_HEADER_LEN + to_index(start), to_index(end - start))
    }
}

impl SegmentWriter {
    /// Copies a frame header and payload to data position `pos`, which must be at or after
    /// the published length, with the whole frame inside the data region, then computes the
    /// frame's checksum over the bytes in place, stores it in the header's checksum field and
    /// returns it (`header` comes from [`encode_frame_fields`](crate::format::encode_frame_fields),
    /// its checksum field zero). Not yet visible to readers: call [`SegmentWriter::publish`]
    /// after the last frame of a record or batch.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if the frame would start before the published length or
    /// end past the data region: a bug in the caller, refused rather than allowed to overwrite
    /// published bytes or run off the map.
    pub(crate) fn write_frame(
        &mut self,
        pos: u64,
        header: &[u8; FRAME_HEADER_LEN],
        payload: &[u8],
    ) -> Result<u32> {
        if payload.len() >= WRITE_THROUGH_FILE_MIN {
            let mut sealed = *header;
            let crc = seal_frame_header(&mut sealed, payload);
            self.write_through_file(pos, &[&sealed, payload])?;
            return Ok(crc);
        }
        let len = (FRAME_HEADER_LEN + payload.len()) as u64;
        self.check_unpublished(pos, len)?;
        self.reserve(pos + len);
        let seg = &self.segment;
        // SAFETY: the range `[pos, pos + len)` is inside the writable mapping's data region
        // (checked above; invariant 1 keeps it mapped) and at or after the published length,
        // so no shared view covers it (invariant 2). This `SegmentWriter` is the only one for
        // the segment and `&mut self` serialises its writes, and the range is reserved
        // (above), so no helper's zeros land on it (invariant 3): the slice made of the copied
        // bytes is the only reference to them while it lives. Source and destination cannot
        // overlap: the sources are caller memory, not this unpublished region.
        let crc = unsafe {
            let dst = seg.map.as_mut_ptr().add(SEGMENT_HEADER_LEN + to_index(pos));
            std::ptr::copy_nonoverlapping(header.as_ptr(), dst, FRAME_HEADER_LEN);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                dst.add(FRAME_HEADER_LEN),
                payload.len(),
            );
            let frame = std::slice::from_raw_parts_mut(dst, to_index(len));
            let crc = frame_crc(frame);
            store_frame_crc(frame, crc);
            crc
        };
        #[cfg(target_arch = "x86_64")]
        if pos + len + WRITE_PREFETCH_DISTANCE <= seg.capacity {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
            // SAFETY: the address lies inside the mapping's data region (just checked), so the
            // pointer arithmetic stays in bounds; a prefetch never faults (a page not yet
            // mapped in is ignored) and changes no memory.
            unsafe {
                let ahead = seg.map.as_ptr().add(SEGMENT_HEADER_LEN + to_index(pos + len));
                _mm_prefetch::<_MM_HINT_ET0>(ahead.add(to_index(WRITE_PREFETCH_DISTANCE)).cast());
            }
        }
        Ok(crc)
    }

    /// The whole data region, published or not, for the writer's own reading of its
    /// unpublished tail.
    pub(crate) fn data_region(&mut self) -> &[u8] {
        // SAFETY: the region's unpublished part is written only through this writer, which
        // `&mut self` keeps from writing while the view lives.
        unsafe { self.segment.whole_data() }
    }

    /// Zeroes data bytes `[start, end)`, at or after the published length, through the map
    /// and makes the zeros durable (`msync`).
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] for a range before the published length or past the
    /// data region; [`StorageError::Io`] if the sync fails (the writer must then be poisoned).
    pub(crate) fn zero_unpublished(&mut self, start: u64, end: u64) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        self.check_unpublished(start, end - start)?;
        self.reserve(end);
        // SAFETY: the range is at or after the published length (checked above), so no view
        // covers it, `&mut self` makes this the only write to it, and a writer's map is
        // writable (`SegmentWriter::new` refuses any other).
        unsafe { self.segment.zero_and_sync(start, end) }
    }
}

/// The published data of one segment, from its base offset to an end fixed when it is made,
/// kept as a pointer and a length so that a replay's loop takes each frame straight from it,
/// with the segment itself held beside them. Looking the bytes up per record instead (the
/// segment in the snapshot, its published length, the bounds) cost about a tenth of a replay
/// of small records: 1M × 128 B took 21.2–21.8 ms that way against 19.3–19.6 ms with this (a
/// probe, three alternations).
///
/// A `&[u8]` cannot be kept instead: a replay would keep it beside the `Snapshot` it reads,
/// and it would borrow from that snapshot, which the same `Replay` owns. The pointer stands in
/// for that reference; what makes it valid is the reference count this value holds on the
/// segment, so [`SegmentData::bytes_from`] is sound whoever calls it, and the bytes it returns
/// live as long as the borrow of `self`.
#[derive(Debug)]
pub(crate) struct SegmentData {
    /// The segment whose map `start` points into, held (never read) so that the map outlives
    /// the pointer; `None` only for [`SegmentData::EMPTY`].
    _segment: Option<Arc<Segment>>,
    /// Logical offset of the first byte.
    base: u64,
    start: *const u8,
    len: usize,
}

// SAFETY: `SegmentData` is a shared view of immutable bytes (the published data of a segment,
// which no one writes while it is shared, module invariant 2), like the `&[u8]` it stands for,
// which is `Send` and `Sync`, together with an `Arc<Segment>`, which is `Send` and `Sync`.
unsafe impl Send for SegmentData {}
// SAFETY: as for `Send`.
unsafe impl Sync for SegmentData {}

impl SegmentData {
    /// Nothing: the data of no segment.
    pub(crate) const EMPTY: SegmentData =
        SegmentData { _segment: None, base: 0, start: std::ptr::null(), len: 0 };

    /// The published data of `segment` up to logical offset `end` (clipped to what is
    /// published now).
    pub(crate) fn new(segment: &Arc<Segment>, end: u64) -> SegmentData {
        let base = segment.base_offset();
        let bytes = segment.data(0, end.saturating_sub(base));
        let (start, len) = (bytes.as_ptr(), bytes.len());
        SegmentData { _segment: Some(Arc::clone(segment)), base, start, len }
    }

    /// The bytes from logical offset `offset` to the end (empty outside them).
    #[inline(always)]
    pub(crate) fn bytes_from(&self, offset: u64) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `start..start + len` is a slice `Segment::data` returned for `self._segment`
        // (only `new` makes a non-empty `SegmentData`, and the fields are private). That
        // segment lives while `self` holds its `Arc`, and with it the mapping (module
        // invariant 1 keeps the file's bytes behind it); the bytes are published, so nothing
        // writes them while the segment is shared (module invariant 2). They stay valid and
        // unchanged for the borrow of `self`.
        let all: &[u8] = unsafe { std::slice::from_raw_parts(self.start, self.len) };
        let at = usize::try_from(offset.wrapping_sub(self.base)).unwrap_or(usize::MAX);
        all.get(at..).unwrap_or_default()
    }
}

/// Maps the whole of `file`, read-only and shared: the bytes of an index file
/// (`index::map`), which are not a segment's but share this module's rules for `unsafe` code.
///
/// The caller must keep one invariant, which this function cannot check: **the file is never
/// modified or shrunk in place while the map lives.** Index files keep it because Chronicle
/// only ever replaces them by rename, which leaves a mapped inode as it is. (Another program
/// that truncates the file makes a later read of the lost range raise `SIGBUS`, as for
/// segments; one that rewrites it makes the bytes change under their readers.)
///
/// # Errors
/// The error of `mmap` (an empty file cannot be mapped).
pub(crate) fn map_read_only(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and shared, and the caller keeps the file from being
    // written or truncated in place for the map's lifetime (this function's contract), so the
    // mapped bytes stay valid and unchanged while the `Mmap` lives; `Mmap` dereferences only
    // to its own length.
    unsafe { memmap2::Mmap::map(file) }
}

/// `sync_file_range` over file offsets `[start, end)` of `file`.
pub(super) fn sync_file_range(
    file: &File,
    start: u64,
    end: u64,
    flags: libc::c_uint,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (Ok(from), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: `sync_file_range` reads no memory of ours; it is given a descriptor that `file`
    // keeps open for the call, and plain integers.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks the CPU to start loading the cache line `distance` bytes into `bytes`, if `bytes` is
/// that long. A hint only: it changes no result, and where it is not available it does
/// nothing.
#[inline]
pub(crate) fn prefetch_ahead(bytes: &[u8], distance: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(ahead) = bytes.get(distance..) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and reads nothing into the program (an address that
        // is not mapped is ignored); this one lies inside `bytes`, a live slice, anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, distance);
}

/// Reads data bytes of a segment held exclusively into memory, beside a view of them
/// ([`Segment::data_exclusive_populator`]): all it can do is read.
pub(crate) struct Populator<'a>(&'a Segment);

impl Populator<'_> {
    /// [`Segment::populate_runs`].
    pub(crate) fn populate_runs(&self, runs: &[(u64, u64)], why: &str) -> std::io::Result<()> {
        self.0.populate_runs(runs, why)
    }
}
