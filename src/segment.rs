//! One segment file: create, open and validate, memory map, append bytes, flush a range.
//!
//! A segment is a preallocated file: a [`SegmentHeader`] followed by a data region of fixed
//! capacity that starts zero-filled. Frames are copied into the data region through a shared
//! memory map, so a buffered append of a small record costs two `memcpy`s and no system call
//! (records from [`WRITE_THROUGH_FILE_MIN`] bytes are written with `pwritev` into the same
//! page cache), and replay reads payloads straight from the map.
//!
//! This module holds every `unsafe` block of the crate that touches segment files (and the
//! cache prefetch hint replay uses on their bytes, [`prefetch_ahead`]); the only others map
//! the index file (`index::map`, read-only, under the rule that index files are only ever
//! replaced by rename) and read the CPU's time-stamp counter (`log::clock`). The invariants
//! the blocks here rely on:
//!
//! 1. **The file never shrinks while mapped.** Chronicle never truncates a segment file; the
//!    data region is preallocated at creation, torn bytes are zeroed in place, and whole
//!    segments are only ever unlinked, which leaves existing mappings valid. (A file truncated
//!    by another program would fault the process, as with any memory-mapped store.)
//! 2. **Readers and the writer never touch the same bytes.** Shared views ([`Segment::data`])
//!    cover only the published prefix of the data region. The one [`SegmentWriter`] of a
//!    segment writes only at or after that prefix and publishes with a release store after
//!    the bytes are in place. Bytes below the published length are never written again while
//!    the segment is shared; recovery's zeroing happens through `&mut Segment`, before any
//!    reader exists.
//! 3. **Zeros written ahead never land on the writer's bytes.** A helper thread writes zeros
//!    (through the file) into the unpublished region ahead of the writer
//!    ([`PagerHandle::fill_ahead`]); a [`FillFence`] keeps them past every byte the writer
//!    has reserved, and the writer reserves each range before it writes it. Those bytes read
//!    as zeros already, so the helper changes no byte that anyone reads.
//!
//! A read-only open in another process than the writer maps the same pages, which that writer
//! may be changing while recovery scans them. Those bytes are treated like any bytes from disk:
//! nothing is trusted before its checksum, the scan never writes, and views handed out stop at
//! the end recovery found.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};

use fs4::fs_std::FileExt as _;
use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::error::{Result, StorageError};
use crate::format::{
    frame_crc, seal_frame_header, segment_file_name, store_frame_crc, FormatError, SegmentHeader,
    FORMAT_VERSION, FRAME_ALIGN, FRAME_HEADER_LEN, OFFSET_LIMIT, SEGMENT_BYTES_MAX,
    SEGMENT_HEADER_LEN, TEMP_FILE_SUFFIX,
};

/// Data region bytes as a `usize` index; segments are at most 4 GiB, so this never truncates
/// on the 64-bit targets Chronicle supports.
fn to_index(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The data capacity of a segment file of `file_bytes` bytes: what follows the header,
/// rounded down to whole frame alignment units.
fn data_capacity(file_bytes: u64) -> u64 {
    file_bytes.saturating_sub(SEGMENT_HEADER_LEN as u64) & !(FRAME_ALIGN as u64 - 1)
}

/// How a new segment file is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewFile {
    /// The file's size, header included.
    pub(crate) bytes: u64,
    /// Write zeros over the whole file, and wait until they are on disk, when it is made
    /// ([`Options::zero_fill_segments`](crate::Options::zero_fill_segments)).
    pub(crate) zero_fill: bool,
}

/// Creates the file at `path` (emptying any old one) and preallocates `new.bytes` bytes for
/// it, so that a full disk fails here rather than as a fault while writing through the map;
/// with `new.zero_fill`, also writes zeros over it and waits until they are on disk. `ops`
/// name the first two steps in errors (creating, preallocating); the caller removes the file
/// if this fails.
fn create_preallocated(
    path: &Path,
    new: NewFile,
    ops: (&'static str, &'static str),
) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| StorageError::io(ops.0, path, e))?;
    file.allocate(new.bytes).map_err(|e| StorageError::io(ops.1, path, e))?;
    if new.zero_fill {
        zero_fill(&file, new.bytes).map_err(|e| StorageError::io("zero-fill segment", path, e))?;
    }
    Ok(file)
}

/// Bytes of zeros [`zero_fill`] writes between two syncs.
const ZERO_FILL_STEP: u64 = 1 << 20;

/// Writes zeros over the first `len` bytes of `file` and makes them durable, syncing after
/// every [`ZERO_FILL_STEP`]: a device flush writes out everything written before it, so a
/// writer syncing the log meanwhile (the spare is zero-filled in the background) waits for at
/// most one step of zeros, not for the whole file. (One sync at the end made the slowest
/// 0.1 % of durable batches take 3 ms and the slowest 13 ms with 16 MiB segments.)
fn zero_fill(file: &File, len: u64) -> std::io::Result<()> {
    let mut at = 0;
    while at < len {
        let end = (at + ZERO_FILL_STEP).min(len);
        write_zeros(file, at, end)?;
        file.sync_data()?;
        at = end;
    }
    Ok(())
}

/// Bytes of zeros [`write_zeros`] writes per system call. Each call's new pages enter the
/// page cache as large folios, and a writer through the map then takes fewer faults over
/// larger calls' pages: 1M appends of 128 bytes over pages filled 1 MiB at a time took about
/// 4,100 faults, against 6,700 at 256 KiB.
const WRITE_ZEROS_STEP: usize = 1 << 20;

/// Writes zeros over bytes `[start, end)` of `file` (into the page cache; nothing waits for
/// the disk).
fn write_zeros(file: &File, start: u64, end: u64) -> std::io::Result<()> {
    // Allocated zeroed and never written, so every page of it is the kernel's one zero page:
    // the copies read one cache-hot page, and neither memory nor the binary grows by the
    // buffer's size (a `static` array of zeros would be a MiB of read-only data).
    static ZEROS: LazyLock<Box<[u8]>> = LazyLock::new(|| vec![0; WRITE_ZEROS_STEP].into());
    let mut at = start;
    while at < end {
        let len = (end - at).min(WRITE_ZEROS_STEP as u64);
        file.write_all_at(&ZEROS[..to_index(len)], at)?;
        at += len;
    }
    Ok(())
}

/// Maps the header and the data region of a segment file of `file_bytes` bytes.
fn map_file(path: &Path, file: &File, file_bytes: u64, writable: bool) -> Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.len(to_index(SEGMENT_HEADER_LEN as u64 + data_capacity(file_bytes)));
    if writable { options.map_raw(file) } else { options.map_raw_read_only(file) }
        .map_err(|e| StorageError::io("map segment", path, e))
}

/// A mapped segment file, shareable between the writer and any number of readers.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    map: MmapRaw,
    /// Bytes of data region (file length minus header, rounded down to the frame alignment).
    capacity: u64,
    /// Bytes of data region that shared views may cover (invariant 2 of the module docs).
    published: AtomicU64,
    writable: bool,
}

impl Segment {
    /// Creates a new segment file for `header.base_offset` in `dir` and returns its writer.
    ///
    /// The file is built under a temporary name, preallocated to `new.bytes` (so a full disk
    /// fails here, never as a fault while writing through the map; zero-filled too with
    /// `new.zero_fill`), given its header, and renamed into place, so a process crash leaves
    /// it complete or absent. With `durable`, the file and the directory are also synced
    /// before the rename and after it; without, the caller must call [`Segment::sync_file`]
    /// and sync the directory before it acknowledges any record in the segment as durable
    /// (after a power loss such a segment may be missing, shorter, or have a zero header: a
    /// torn creation, see `FORMAT.md`).
    ///
    /// # Errors
    /// [`StorageError::Io`] naming the step that failed; the temporary file is removed.
    pub(crate) fn create(
        dir: &Path,
        new: NewFile,
        header: SegmentHeader,
        durable: bool,
    ) -> Result<SegmentWriter> {
        let name = segment_file_name(header.base_offset);
        let path = dir.join(&name);
        // Removed if anything below fails.
        let mut temp = TempFile::new(dir.join(format!("{name}{TEMP_FILE_SUFFIX}")));
        let file = Self::build_file(temp.path(), new, &header, durable)?;
        fs::rename(temp.path(), &path)
            .map_err(|e| StorageError::io("rename new segment", temp.path(), e))?;
        temp.keep();
        if durable {
            sync_dir(dir)?;
        }
        SegmentWriter::new(Self::map(path, &file, header, new.bytes, true)?, file)
    }

    fn build_file(
        temp: &Path,
        new: NewFile,
        header: &SegmentHeader,
        durable: bool,
    ) -> Result<File> {
        let file = create_preallocated(temp, new, ("create segment", "preallocate segment"))?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| StorageError::io("write segment header", temp, e))?;
        if durable {
            file.sync_all().map_err(|e| StorageError::io("sync new segment", temp, e))?;
        }
        Ok(file)
    }

    /// Opens and validates an existing segment whose file name says `base_offset`, and
    /// returns it with the file it was mapped from (opened for writing if `writable`).
    ///
    /// The segment itself keeps no file descriptor: a log may have more segments than a
    /// process may have open files (commonly 1,024), so the caller keeps the file only if it
    /// will write through it ([`SegmentWriter::new`]), and drops it otherwise. The map stays
    /// valid without it.
    ///
    /// # Errors
    /// [`StorageError::NotALog`], [`StorageError::UnsupportedVersion`], or
    /// [`StorageError::Corruption`] for a damaged header; [`StorageError::BrokenChain`] when
    /// the header's base offset disagrees with the file name; [`StorageError::Io`].
    pub(crate) fn open(path: PathBuf, base_offset: u64, writable: bool) -> Result<(Segment, File)> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| StorageError::io("open segment", &path, e))?;
        let file_bytes =
            file.metadata().map_err(|e| StorageError::io("stat segment", &path, e))?.len();
        let corrupt =
            |kind| StorageError::Corruption { segment: path.clone(), offset: base_offset, kind };
        let mut raw = [0u8; SEGMENT_HEADER_LEN];
        let header_len = to_index(file_bytes.min(SEGMENT_HEADER_LEN as u64));
        file.read_exact_at(&mut raw[..header_len], 0)
            .map_err(|e| StorageError::io("read segment header", &path, e))?;
        let header = match SegmentHeader::decode(&raw[..header_len]) {
            Ok(header) => header,
            Err(FormatError::BadMagic { found }) => {
                return Err(StorageError::NotALog { path, found });
            }
            Err(FormatError::UnsupportedVersion { found }) => {
                return Err(StorageError::UnsupportedVersion {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Err(kind) => return Err(corrupt(kind)),
        };
        if file_bytes > SEGMENT_BYTES_MAX {
            return Err(corrupt(FormatError::Other(format!(
                "segment file is {file_bytes} bytes, more than the maximum {SEGMENT_BYTES_MAX}"
            ))));
        }
        if header.base_offset != base_offset {
            return Err(StorageError::BrokenChain {
                segment: path,
                reason: format!(
                    "file name says base offset {base_offset}, header says {}",
                    header.base_offset
                ),
            });
        }
        if header.base_offset >= OFFSET_LIMIT {
            return Err(corrupt(FormatError::Other(format!(
                "base offset {} is not below the offset limit {OFFSET_LIMIT}",
                header.base_offset
            ))));
        }
        if !header.base_offset.is_multiple_of(FRAME_ALIGN as u64) {
            return Err(corrupt(FormatError::Other(format!(
                "base offset {} is not a multiple of {FRAME_ALIGN}",
                header.base_offset
            ))));
        }
        let segment = Self::map(path, &file, header, file_bytes, writable)?;
        Ok((segment, file))
    }

    fn map(
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
    fn from_map(
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

    /// Turns a [`SpareSegment`] into the segment for `header.base_offset` in `dir` and returns
    /// its writer: writes the header into the spare file, then renames it into place. Like
    /// [`Segment::create`] without `durable`, nothing is synced: the caller must call
    /// [`Segment::sync_file`] and sync the directory before it acknowledges any record in the
    /// segment as durable.
    ///
    /// # Errors
    /// [`StorageError::Io`] naming the step that failed; the spare file is then removed.
    pub(crate) fn create_from_spare(
        dir: &Path,
        spare: SpareSegment,
        header: SegmentHeader,
    ) -> Result<SegmentWriter> {
        let SpareSegment { mut temp, file, map, new, .. } = spare;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| StorageError::io("write segment header", temp.path(), e))?;
        let path = dir.join(segment_file_name(header.base_offset));
        fs::rename(temp.path(), &path)
            .map_err(|e| StorageError::io("rename new segment", temp.path(), e))?;
        temp.keep();
        SegmentWriter::new(Self::from_map(path, header, map, new.bytes, true), file)
    }

    /// The segment's file path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded header.
    pub(crate) fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Logical offset of the first data byte.
    pub(crate) fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// Size of the data region in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of the data region that views may currently cover.
    pub(crate) fn published_len(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Marks the first `len` data bytes as final and viewable. Used by recovery before the
    /// segment is shared, and by the writer after copying frames in.
    fn publish(&self, len: u64) {
        self.published.store(len.min(self.capacity), Ordering::Release);
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

    /// The runs of the data region that may hold non-zero bytes, as `[start, end)` data
    /// positions in order, according to the filesystem's `SEEK_DATA`/`SEEK_HOLE`: never-written
    /// (preallocated) ranges read as zeros and are left out, so recovery need not read them.
    /// Where the filesystem cannot tell (or the file cannot be opened again to ask), the whole
    /// region is one run.
    pub(crate) fn data_extents(&self) -> Vec<(u64, u64)> {
        use rustix::fs::{seek, SeekFrom};
        let header = SEGMENT_HEADER_LEN as u64;
        let whole = vec![(0, self.capacity)];
        let Ok(file) = File::open(&self.path) else { return whole };
        let mut extents = Vec::new();
        let mut pos = 0u64;
        while pos < self.capacity {
            let start = match seek(&file, SeekFrom::Data(header + pos)) {
                Ok(at) => at.saturating_sub(header),
                // ENXIO: no data at or after `pos`.
                Err(rustix::io::Errno::NXIO) => break,
                Err(_) => return whole,
            };
            let Ok(end) = seek(&file, SeekFrom::Hole(header + start)) else { return whole };
            let (start, end) = (start.max(pos), end.saturating_sub(header).min(self.capacity));
            if start >= end {
                // The filesystem's answers do not advance: trust none of them.
                return whole;
            }
            extents.push((start, end));
            pos = end;
        }
        extents
    }

    /// Makes the file's header, size and allocation durable (`fsync`), for a segment created
    /// without syncing. The file is opened again for this, since segments keep no descriptor:
    /// `fsync` acts on the file, whichever descriptor asks, and a write-back error no
    /// descriptor has reported yet is reported to this one.
    ///
    /// # Errors
    /// The operating system's error; the writer must then be poisoned.
    pub(crate) fn sync_file(&self) -> std::io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// Tells the kernel how the data region will be read: `random` while recovery scans it
    /// (so a fault brings in only the touched page, not a readahead window of zero pages that
    /// `SEEK_DATA` would then count as data at every later open), normal afterwards.
    /// Advice only: failure changes nothing but speed, so it is ignored.
    pub(crate) fn advise_scan(&self, random: bool) {
        let advice = if random { Advice::Random } else { Advice::Normal };
        let _ = self.map.advise_range(advice, SEGMENT_HEADER_LEN, to_index(self.capacity));
    }

    /// Sets the published length during recovery, before the segment is shared.
    pub(crate) fn set_published_exclusive(&mut self, len: u64) {
        self.publish(len);
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
    fn whole_pages(&self, start: u64, end: u64) -> (u64, u64) {
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
const WRITE_PREFETCH_DISTANCE: u64 = 4096;

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

/// The name of the spare segment file a writer prepares ahead of its next roll (see
/// [`SpareSegment`]). It ends in `.seg.tmp`, so a writer's open deletes a leftover one and
/// readers ignore it.
pub(crate) const SPARE_FILE_NAME: &str = "next.seg.tmp";

/// A segment file made ahead of need, so that a roll does not wait for a file to be created,
/// preallocated, mapped and its first pages brought into the page cache (together about 2 ms
/// for a 64 MiB segment, mostly the first page fault, which reads ahead several MiB of fresh
/// pages).
///
/// It is [`SPARE_FILE_NAME`] in the log directory: preallocated, mapped writable, all zeros,
/// without a header. [`Segment::create_from_spare`] gives it its header and its name; until
/// then it holds no data, and dropping it deletes the file. Nothing about it is synced but,
/// when it is zero-filled, its zeros: a crash leaves at most a `*.seg.tmp` file, which the
/// next writer's open deletes.
#[derive(Debug)]
pub(crate) struct SpareSegment {
    temp: TempFile,
    file: File,
    map: MmapRaw,
    new: NewFile,
    /// Data bytes from the start of the data region already filled ([`SpareSegment::fill`]).
    filled: u64,
}

impl SpareSegment {
    /// Creates, preallocates (and with `new.zero_fill` zero-fills) and maps a spare segment
    /// file of `new.bytes` bytes in `dir`, replacing any earlier spare file.
    ///
    /// # Errors
    /// [`StorageError::Io`] naming the step that failed (a full disk fails here); the file is
    /// then removed.
    pub(crate) fn create(dir: &Path, new: NewFile) -> Result<SpareSegment> {
        // Removed if anything below fails.
        let temp = TempFile::new(dir.join(SPARE_FILE_NAME));
        let ops = ("create spare segment", "preallocate spare segment");
        let file = create_preallocated(temp.path(), new, ops)?;
        let map = map_file(temp.path(), &file, new.bytes, true)?;
        Ok(SpareSegment { temp, file, map, new, filled: 0 })
    }

    /// Data bytes from the start of the data region filled so far.
    pub(crate) fn filled(&self) -> u64 {
        self.filled
    }

    /// Writes zeros over the header and the data region up to data position `end` into the
    /// page cache, continuing from where the last call stopped, as
    /// [`PagerHandle::fill_ahead`] does for the active segment (no fence is needed: nothing
    /// writes a spare's data before it becomes a segment). The bytes stay zero.
    ///
    /// # Errors
    /// The operating system's error; callers treat it as "not available".
    pub(crate) fn fill(&mut self, end: u64) -> std::io::Result<()> {
        let end = end.min(data_capacity(self.new.bytes));
        if end <= self.filled {
            return Ok(());
        }
        // The first call also covers the header, which shares the first page with the data.
        let header = SEGMENT_HEADER_LEN as u64;
        let start = if self.filled == 0 { 0 } else { header + self.filled };
        write_zeros(&self.file, start, header + end)?;
        self.filled = end;
        Ok(())
    }
}

/// A file under a temporary name, deleted when this is dropped unless [`TempFile::keep`] was
/// called (after the file was renamed away).
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile { path, kept: false }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the drop from deleting the file.
    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            // Best effort: a leftover temporary file is also deleted by the next writer's open.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The one handle that may write into a segment's data region.
///
/// There is at most one per segment: it is only made by [`Segment::create`],
/// [`Segment::create_from_spare`] and [`SegmentWriter::new`], each of which consumes the
/// exclusively owned segment.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    segment: Arc<Segment>,
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
struct FillFence {
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
    fn reserve(&mut self, end: u64) {
        if end > self.reserved {
            self.reserved = self.io.reserve(end);
        }
    }

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
    fn check_unpublished(&self, pos: u64, len: u64) -> Result<()> {
        let seg = &self.segment;
        if pos < seg.published_len() || pos.saturating_add(len) > seg.capacity {
            return Err(StorageError::InvalidOffset {
                offset: seg.base_offset() + pos,
                reason: "write outside the unpublished data region",
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

/// `sync_file_range` over file offsets `[start, end)` of `file`.
fn sync_file_range(file: &File, start: u64, end: u64, flags: libc::c_uint) -> std::io::Result<()> {
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

/// Syncs a directory, making file creations, renames and removals in it durable.
///
/// # Errors
/// [`StorageError::Io`] naming the directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync directory", dir, e))
}

#[cfg(test)]
mod fill_fence_tests {
    use super::*;
    use crate::format::NO_PREVIOUS_FRAME;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    const SEGMENT_BYTES: u64 = 8 << 20;

    fn new_writer(dir: &Path) -> SegmentWriter {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: 0,
            base_offset: 0,
            prev_last_frame_offset: NO_PREVIOUS_FRAME,
            prev_last_frame_crc: 0,
            durable_offset: 0,
            log_id: 1,
        };
        let new = NewFile { bytes: SEGMENT_BYTES, zero_fill: false };
        Segment::create(dir, new, header, false).unwrap()
    }

    /// The byte a test frame at data position `pos` is filled with.
    fn fill_byte(pos: u64) -> u8 {
        (pos / FRAME_ALIGN as u64) as u8 | 1
    }

    /// Writes frames whose payloads are `payload_len` bytes of [`fill_byte`] of their
    /// position, from data position `pos`, publishing each, until `until`; returns their
    /// positions.
    fn write_frames(
        writer: &mut SegmentWriter,
        mut pos: u64,
        until: u64,
        payload_len: usize,
    ) -> Vec<u64> {
        let mut positions = Vec::new();
        let stride = ((FRAME_HEADER_LEN + payload_len) as u64).next_multiple_of(FRAME_ALIGN as u64);
        while pos + stride <= until {
            let payload = vec![fill_byte(pos); payload_len];
            writer.write_frame(pos, &[0; FRAME_HEADER_LEN], &payload).unwrap();
            positions.push(pos);
            pos += stride;
            writer.publish(pos);
        }
        positions
    }

    fn assert_frames_intact(writer: &mut SegmentWriter, positions: &[u64], payload_len: usize) {
        let data = writer.data_region();
        for &pos in positions {
            let start = to_index(pos) + FRAME_HEADER_LEN;
            let payload = &data[start..start + payload_len];
            assert!(
                payload.iter().all(|&b| b == fill_byte(pos)),
                "the frame at data position {pos} was overwritten"
            );
        }
    }

    /// A fill asked for from the start of the data region starts past what the writer has
    /// reserved, leaves every written byte alone and reaches the end it was asked for.
    #[test]
    fn a_fill_starts_past_the_writers_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = new_writer(dir.path());
        let capacity = writer.segment().capacity();
        let positions = write_frames(&mut writer, 0, 1 << 20, 1000);
        let reached = writer.pager_handle().fill_ahead(0, capacity).unwrap();
        assert_eq!(reached, capacity);
        assert_frames_intact(&mut writer, &positions, 1000);
        // The writer's reservation covers its last frame; past it the region still reads zeros.
        let end = positions.last().unwrap() + 1024;
        let reserved = writer.reserved;
        assert!(reserved >= end);
        assert!(writer.data_region()[to_index(reserved)..].iter().all(|&b| b == 0));
        // Asked for a range wholly below the reservation, a fill writes nothing and reports
        // that nothing below the reservation needs filling.
        assert!(writer.pager_handle().fill_ahead(0, 4096).unwrap() >= reserved);
        assert_frames_intact(&mut writer, &positions, 1000);
    }

    /// A writer reserving where a fill is under way waits until the fill is done, and one
    /// reserving below it does not.
    #[test]
    fn a_writer_waits_for_a_fill_under_way_where_it_reserves() {
        let dir = tempfile::tempdir().unwrap();
        let writer = new_writer(dir.path());
        let io = Arc::clone(&writer.io);
        // A fill under way from 1 MiB on, as `PagerHandle::fill_ahead` marks one.
        io.fence().filling_from = Some(1 << 20);
        assert_eq!(io.reserve(4096), RESERVE_STEP, "a reservation below the fill waited");
        let returned = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (io, returned) = (Arc::clone(&io), Arc::clone(&returned));
            std::thread::spawn(move || {
                let reserved = io.reserve((1 << 20) + 100);
                returned.store(true, Ordering::SeqCst);
                reserved
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!returned.load(Ordering::SeqCst), "the writer did not wait for the fill");
        io.fence().filling_from = None;
        io.filled.notify_all();
        assert_eq!(waiter.join().unwrap(), (1 << 20) + RESERVE_STEP);
    }

    /// A helper filling the whole segment again and again while the writer writes through the
    /// map and through the file never overwrites a written byte: the fills start past the
    /// writer's reservation, and the writer waits for a fill under way where it reserves.
    #[test]
    fn fills_racing_the_writer_never_touch_its_bytes() {
        // A race each time, which catches a missing wait only some of the time (the test
        // above checks the wait itself).
        for _ in 0..16 {
            race_fills_against_the_writer();
        }
    }

    fn race_fills_against_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = new_writer(dir.path());
        let capacity = writer.segment().capacity();
        let handle = writer.pager_handle();
        let stop = Arc::new(AtomicBool::new(false));
        let fills = Arc::new(AtomicU32::new(0));
        let filler = {
            let (stop, fills) = (Arc::clone(&stop), Arc::clone(&fills));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    handle.fill_ahead(0, capacity).unwrap();
                    fills.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut small = write_frames(&mut writer, 0, capacity / 4, 200);
        // However the threads are scheduled, some fills come while the writer is part-way:
        // it waits here for two (more than one, so at least one started after it stopped).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen = fills.load(Ordering::Relaxed);
        while fills.load(Ordering::Relaxed) < seen + 2 {
            assert!(std::time::Instant::now() < deadline, "the helper made no fill in 10 s");
            std::thread::yield_now();
        }
        let more_from = small.last().unwrap() + 256;
        small.extend(write_frames(&mut writer, more_from, capacity / 2, 200));
        let large_from = small.last().unwrap() + 256;
        let large = write_frames(&mut writer, large_from, capacity, WRITE_THROUGH_FILE_MIN);
        stop.store(true, Ordering::Relaxed);
        filler.join().unwrap();
        assert_frames_intact(&mut writer, &small, 200);
        assert_frames_intact(&mut writer, &large, WRITE_THROUGH_FILE_MIN);
    }
}
