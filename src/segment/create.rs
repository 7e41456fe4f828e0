//! Making segment files: a new segment under a temporary name, renamed into place once it is
//! complete, and the spare segment a writer prepares ahead of its next roll.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use fs4::fs_std::FileExt as _;
use memmap2::MmapRaw;

use super::mapping::map_file;
use super::{data_capacity, sync_dir, to_index, NewFile, Segment, SegmentWriter};
use crate::error::{Result, StorageError};
use crate::format::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN, TEMP_FILE_SUFFIX};

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
pub(super) fn write_zeros(file: &File, start: u64, end: u64) -> std::io::Result<()> {
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
    /// [`PagerHandle::fill_ahead`](super::PagerHandle::fill_ahead) does for the active segment
    /// (no fence is needed: nothing writes a spare's data before it becomes a segment). The
    /// bytes stay zero.
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
