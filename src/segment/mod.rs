//! One segment file: create, open and validate, memory map, append bytes, flush a range.
//!
//! A segment is a preallocated file: a [`SegmentHeader`] followed by a data region of fixed
//! capacity that starts zero-filled. Frames are copied into the data region through a shared
//! memory map, so a buffered append of a small record costs two `memcpy`s and no system call
//! (records from [`WRITE_THROUGH_FILE_MIN`] bytes are written with `pwritev` into the same
//! page cache), and replay reads payloads straight from the map.
//!
//! This module holds every `unsafe` block of the crate that touches segment files (and the
//! cache prefetch hint replay uses on their bytes, [`prefetch_ahead`]), all of them in its
//! `mapping` submodule, the only one of its files allowed `unsafe` code. That submodule also
//! holds [`SegmentData`], the view of a segment's published bytes that a replay keeps as a
//! pointer (beside an `Arc` of the segment, which keeps it valid), and maps the index file for
//! `index::map` (read-only, under the rule that index files are only ever replaced by rename).
//! The crate's only other `unsafe` code is in `crate::cpu` (CPU instructions: the time-stamp
//! counter, and the carry-less multiplication that folds frame checksums). The invariants the
//! blocks in `mapping` rely on:
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
//!    ([`PagerHandle::fill_ahead`]); a [`FillFence`](writer::FillFence) keeps them past
//!    every byte the writer has reserved, and the writer reserves each range before it writes
//!    it. Those bytes read as zeros already, so the helper changes no byte that anyone reads.
//!
//! A read-only open in another process than the writer maps the same pages, which that writer
//! may be changing while recovery scans them. Those bytes are treated like any bytes from disk:
//! nothing is trusted before its checksum, the scan never writes, and views handed out stop at
//! the end recovery found.

mod create;
#[allow(unsafe_code)]
mod mapping;
mod open;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

pub(crate) use create::SpareSegment;
pub(crate) use mapping::{map_read_only, prefetch_ahead, SegmentData};
pub(crate) use writer::{PagerHandle, SegmentWriter, WRITE_THROUGH_FILE_MIN};

use crate::error::{Result, StorageError};
use crate::format::{SegmentHeader, FRAME_ALIGN, SEGMENT_HEADER_LEN};

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

    /// For a read-only segment whose file another process writes: lets views cover the
    /// first `len` data bytes (it never shrinks what is viewable), so that a follower can
    /// look for frames past the end it knows. Readers still bound what they decode by the
    /// log's published end, which moves only over complete frames (`log/tail.rs`); bytes
    /// past it may change under the view, as they may for any read-only handle of a live
    /// log. A writable segment is left as it is: its own writer publishes it.
    pub(crate) fn extend_published_read_only(&self, len: u64) {
        if !self.writable {
            self.published.fetch_max(len.min(self.capacity), Ordering::AcqRel);
        }
    }

    /// Sets the published length during recovery, before the segment is shared.
    pub(crate) fn set_published_exclusive(&mut self, len: u64) {
        self.publish(len);
    }

    /// Writes `bytes` at data position `pos` through the file and makes them durable
    /// (`fdatasync`): a repair's gap frame. The map shares the page cache, so it sees them.
    /// Exclusive access means no view or writer can observe the change.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`] for a read-only segment, [`StorageError::InvalidOffset`] for a
    /// range outside the data region, [`StorageError::Io`] if the write or sync fails.
    pub(crate) fn write_exclusive(&mut self, pos: u64, bytes: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        if pos.checked_add(bytes.len() as u64).is_none_or(|end| end > self.capacity) {
            return Err(StorageError::InvalidOffset {
                offset: self.base_offset().saturating_add(pos),
                reason: "a repair write would run past the segment's data region".to_string(),
            });
        }
        self.write_and_sync(SEGMENT_HEADER_LEN as u64 + pos, bytes, "write repaired frame")
    }

    /// Replaces the segment's header on disk, durably, and in memory: a repair that writes a
    /// gap raises the version, and one whose gap ends the previous segment renames its last
    /// frame.
    ///
    /// # Errors
    /// As for [`Segment::write_exclusive`].
    pub(crate) fn rewrite_header_exclusive(&mut self, header: SegmentHeader) -> Result<()> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        self.write_and_sync(0, &header.encode(), "rewrite segment header")?;
        self.header = header;
        Ok(())
    }

    fn write_and_sync(&self, at: u64, bytes: &[u8], op: &'static str) -> Result<()> {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| StorageError::io(op, &self.path, e))?;
        file.write_all_at(bytes, at)
            .and_then(|()| file.sync_data())
            .map_err(|e| StorageError::io(op, &self.path, e))
    }
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
