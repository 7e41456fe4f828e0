//! Opening an existing segment file: validating its header against its name and the format's
//! limits, and finding the runs of its data region that recovery must read.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use super::{to_index, Segment};
use crate::error::{Result, StorageError};
use crate::format::{
    FormatError, SegmentHeader, FORMAT_VERSION_MAX, FRAME_ALIGN, OFFSET_LIMIT, SEGMENT_BYTES_MAX,
    SEGMENT_HEADER_LEN,
};

impl Segment {
    /// Opens and validates an existing segment whose file name says `base_offset`, and
    /// returns it with the file it was mapped from (opened for writing if `writable`).
    ///
    /// The segment itself keeps no file descriptor: a log may have more segments than a
    /// process may have open files (commonly 1,024), so the caller keeps the file only if it
    /// will write through it ([`SegmentWriter::new`](super::SegmentWriter::new)), and drops it
    /// otherwise. The map stays valid without it.
    ///
    /// # Errors
    /// [`StorageError::NotALog`], [`StorageError::UnsupportedVersion`], or
    /// [`StorageError::Corruption`] for a damaged header, a file over 4 GiB, or a base offset
    /// that is unaligned, not below [`OFFSET_LIMIT`] or below the header's durable offset;
    /// [`StorageError::BrokenChain`] when the header's base offset disagrees with the file
    /// name; [`StorageError::Io`].
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
                    supported: FORMAT_VERSION_MAX,
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
        // A segment is created at the end of the log, so nothing after its base can have been
        // durable then; a larger value would make every later byte look durable to recovery.
        if header.durable_offset > header.base_offset {
            return Err(corrupt(FormatError::Other(format!(
                "durable offset {} lies past the base offset {}",
                header.durable_offset, header.base_offset
            ))));
        }
        let segment = Self::map(path, &file, header, file_bytes, writable)?;
        Ok((segment, file))
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
}
