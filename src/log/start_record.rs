//! The start record (`START`, `FORMAT.md` 6.6): where a log begins after retention removed
//! segments from its front, and how many records came before that point.
//!
//! Written whole (temporary file, sync, rename, directory sync) before any segment file is
//! removed, so that a crash part-way through a removal leaves a record that names the new
//! start: the next writer's open removes what is left below it, and a reader skips it. Without
//! the record, a log must begin with its very first segment, so a missing first segment is
//! reported rather than read as a shorter log.

#![deny(clippy::indexing_slicing)]

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::format::{crc32, FRAME_HEADER_LEN};

/// The file's name in the log directory.
pub const START_FILE_NAME: &str = "START";

/// The record's first four bytes.
const START_MAGIC: [u8; 4] = *b"CHST";

/// The layout version this code writes and reads.
const START_VERSION: u16 = 1;

/// Bytes of the record.
pub(super) const START_RECORD_LEN: usize = 36;

/// What the start record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartRecord {
    /// The log's identifier, as in every segment header.
    pub log_id: u64,
    /// The base offset of the log's first segment: every record before it was removed.
    pub start_offset: u64,
    /// How many records the log had before `start_offset` (the Merkle tree's entry number of
    /// the first remaining record).
    pub start_entry: u64,
}

impl StartRecord {
    /// The record's bytes, checksum included.
    pub(super) fn encode(&self) -> [u8; START_RECORD_LEN] {
        let mut out = [0u8; START_RECORD_LEN];
        let fields: [&[u8]; 6] = [
            &START_MAGIC,
            &START_VERSION.to_le_bytes(),
            &[0, 0],
            &self.log_id.to_le_bytes(),
            &self.start_offset.to_le_bytes(),
            &self.start_entry.to_le_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(slot) = out.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
            at += field.len();
        }
        let crc = crc32(&[out.get(..32).unwrap_or_default()]);
        if let Some(slot) = out.get_mut(32..) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Decodes a record; `bytes` must be exactly one.
    fn decode(bytes: &[u8]) -> std::result::Result<StartRecord, String> {
        let Some(b) =
            bytes.first_chunk::<START_RECORD_LEN>().filter(|_| bytes.len() == START_RECORD_LEN)
        else {
            return Err(format!("{} bytes, not {START_RECORD_LEN}", bytes.len()));
        };
        let u64_at = |at: usize| {
            b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
        };
        if b.get(..4) != Some(&START_MAGIC[..]) {
            return Err("wrong magic bytes".to_string());
        }
        let stored = b.get(32..).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes);
        if stored != crc32(&[b.get(..32).unwrap_or_default()]) {
            return Err("checksum mismatch".to_string());
        }
        let version = b.get(4..6).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes);
        if version != START_VERSION {
            return Err(format!("version {version}, this build reads {START_VERSION}"));
        }
        if b.get(6..8) != Some(&[0, 0][..]) {
            return Err("reserved bytes are not zero".to_string());
        }
        let record =
            StartRecord { log_id: u64_at(8), start_offset: u64_at(16), start_entry: u64_at(24) };
        // Every record takes at least a frame header, so no more records than that fit before
        // the start (FORMAT.md 6.6); a larger count would overflow the tree's entry numbers.
        let most = record.start_offset / FRAME_HEADER_LEN as u64;
        if record.start_entry > most {
            return Err(format!(
                "it counts {} records before offset {}, where at most {most} fit",
                record.start_entry, record.start_offset
            ));
        }
        Ok(record)
    }
}

/// Writes `record` as the start record of the log in `dir`, durably: a temporary file, synced,
/// renamed over `START`, and the directory synced.
///
/// # Errors
/// [`StorageError::Io`] from any of those steps.
pub(crate) fn write_start_record(dir: &Path, record: &StartRecord) -> Result<()> {
    crate::atomic_file::write_atomically(&dir.join(START_FILE_NAME), &record.encode())
}

/// Reads the start record of the log in `dir`, if it has one.
///
/// # Errors
/// [`StorageError::BrokenChain`] for a record that does not decode (the segments before the
/// log's first one may or may not have been removed on purpose, so nothing is guessed);
/// [`StorageError::Io`] if it cannot be read.
pub(super) fn read_start_record(dir: &Path) -> Result<Option<StartRecord>> {
    let path = dir.join(START_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read start record", path, e)),
    };
    StartRecord::decode(&bytes).map(Some).map_err(|reason| StorageError::BrokenChain {
        segment: path,
        reason: format!("the start record is damaged ({reason}): where the log begins is unknown"),
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_start_record_round_trips_and_every_flipped_bit_is_refused() {
        let record = StartRecord { log_id: 0xfeed, start_offset: 4096, start_entry: 77 };
        let bytes = record.encode();
        assert_eq!(StartRecord::decode(&bytes).unwrap(), record);
        for bit in 0..START_RECORD_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(StartRecord::decode(&damaged).is_err(), "bit {bit}");
        }
        assert!(StartRecord::decode(&bytes[..35]).is_err());
    }
}
