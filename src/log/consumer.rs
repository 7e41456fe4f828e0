//! Durable consumer positions: for each named consumer, the offset up to which it has
//! processed the log, in a small file beside the segments (`FORMAT.md` section 13).

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use super::follow::Follow;
use super::reader::Shared;
use crate::atomic_file::write_atomically;
use crate::error::{Result, StorageError};

/// The prefix of a consumer position file's name.
pub(super) const CONSUMER_FILE_PREFIX: &str = "consumer-";
/// The suffix of a consumer position file's name.
pub(super) const CONSUMER_FILE_SUFFIX: &str = ".pos";
/// The magic bytes of a consumer position file: ASCII `CHCP`.
const MAGIC: [u8; 4] = *b"CHCP";
/// The version of the consumer position file.
const VERSION: u16 = 1;
/// The size of a consumer position file.
const FILE_LEN: usize = 28;
/// The longest consumer name accepted, in bytes.
pub const CONSUMER_NAME_MAX: usize = 128;

/// Whether `name` is a consumer position file's name (or its temporary file's).
pub(super) fn is_consumer_file_name(name: &str) -> bool {
    name.strip_prefix(CONSUMER_FILE_PREFIX)
        .and_then(|rest| rest.strip_suffix(CONSUMER_FILE_SUFFIX))
        .is_some_and(|n| check_name(n).is_ok())
}

/// Refuses a name that is empty, longer than [`CONSUMER_NAME_MAX`], starts with a dot, or
/// holds anything but ASCII letters, digits, `-`, `_` and `.` (so no path separator).
fn check_name(name: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(StorageError::Consumer { name: name.to_string(), reason: reason.to_string() })
    };
    if name.is_empty() {
        return refuse("the name is empty");
    }
    if name.len() > CONSUMER_NAME_MAX {
        return refuse(&format!("the name is longer than {CONSUMER_NAME_MAX} bytes"));
    }
    if name.starts_with('.') {
        return refuse("the name starts with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return refuse("the name may hold only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Encodes a position file (`FORMAT.md` 13).
fn encode(log_id: u64, position: u64) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    bytes[0..4].copy_from_slice(&MAGIC);
    bytes[4..6].copy_from_slice(&VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&log_id.to_le_bytes());
    bytes[16..24].copy_from_slice(&position.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a position file: `(log_id, position)`, or why it is refused.
fn decode(bytes: &[u8]) -> std::result::Result<(u64, u64), String> {
    let bytes: &[u8; FILE_LEN] = bytes
        .try_into()
        .map_err(|_| format!("the position file is {} bytes, not {FILE_LEN}", bytes.len()))?;
    let u64_at = |at: usize| {
        let mut field = [0u8; 8];
        field.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(field)
    };
    if bytes[0..4] != MAGIC {
        return Err("the position file does not start with `CHCP`".to_string());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!("the position file has version {version}; this build reads {VERSION}"));
    }
    let stored = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    if crc32fast::hash(&bytes[..24]) != stored {
        return Err("the position file's checksum does not match".to_string());
    }
    Ok((u64_at(8), u64_at(16)))
}

/// A named, durable position in a log: how far one consumer has processed it.
///
/// Made by [`Log::consumer`](super::Log::consumer) (or
/// [`EventLog::consumer`](crate::EventLog::consumer)); the position is stored in the file
/// `consumer-{name}.pos` in the log's directory and survives restarts and crashes.
///
/// **Delivery: at least once.** The usual loop is: [`Consumer::follow`], process each record,
/// then [`Consumer::commit`] the follow's [`Follow::next_offset`]. A crash between processing a
/// record and committing means that record is delivered again after the restart. For
/// **exactly once**, store the position *with your own state*, in the same transaction (for
/// example in the same database row or file as the effects of the records), and resume with
/// [`Log::follow`](super::Log::follow) from the position your state holds: the consumer file
/// is then not needed, or kept only for monitoring.
///
/// **Durability.** [`Consumer::commit`] returns once the position is on stable storage,
/// written whole (a temporary file, `fsync`, rename, directory `fsync`): after a crash the file
/// holds either the previous committed position or the new one, never a mixture.
///
/// **Read-only handles.** A consumer of a read-only log may commit: its position file is the
/// one file such a handle writes, and it is not part of the log. Use one committer per name:
/// two handles committing the same name at once may leave either's position.
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    name: String,
    path: PathBuf,
    position: Option<u64>,
}

impl Consumer {
    /// Opens the consumer `name` of the log behind `shared`, reading its stored position if
    /// there is one.
    pub(super) fn open(shared: Arc<Shared>, name: &str) -> Result<Consumer> {
        check_name(name)?;
        let path = shared.dir.join(format!("{CONSUMER_FILE_PREFIX}{name}{CONSUMER_FILE_SUFFIX}"));
        let refuse = |reason: String| StorageError::Consumer { name: name.to_string(), reason };
        let position = match fs::read(&path) {
            Ok(bytes) => {
                let (log_id, position) = decode(&bytes).map_err(refuse)?;
                if log_id != shared.log_id {
                    return Err(refuse(format!(
                        "the position file belongs to another log (log id {log_id:#x}, this \
                         log's is {:#x})",
                        shared.log_id
                    )));
                }
                Some(position)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(StorageError::io("read consumer position", &path, err)),
        };
        Ok(Consumer { shared, name: name.to_string(), path, position })
    }

    /// The consumer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last committed position (read when the consumer was opened, or committed since
    /// through this handle); `None` if it never committed one.
    #[must_use]
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// Stores `position` durably as this consumer's position: the offset of the next record
    /// it has not processed (a [`Follow::next_offset`]), a record boundary of the log or its end.
    ///
    /// **Durability:** on return the position is on stable storage; a crash leaves the old
    /// position or this one.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if `position` is not a record boundary or the end of
    /// the log (nothing is written); [`StorageError::Io`] if writing fails (the stored
    /// position is then the previous one or this one).
    pub fn commit(&mut self, position: u64) -> Result<()> {
        check_position(&self.shared, position)?;
        write_atomically(&self.path, &encode(self.shared.log_id, position))?;
        self.position = Some(position);
        Ok(())
    }

    /// Checks the stored position against the log: it must be a record boundary or the end.
    ///
    /// # Errors
    /// [`StorageError::Consumer`] saying what is wrong with it; [`StorageError::Io`] if read
    /// checks found the log unreadable there.
    fn resume_position(&self) -> Result<u64> {
        let Some(position) = self.position else {
            return Ok(self.shared.snapshot().start());
        };
        check_position(&self.shared, position).map_err(|err| match err {
            // The log cannot be read there (read checks): nothing wrong with the position.
            err @ StorageError::Io { .. } => err,
            StorageError::InvalidOffset { reason, .. } => StorageError::Consumer {
                name: self.name.clone(),
                reason: format!(
                    "the stored position {position} cannot be resumed from: {reason} (was the \
                     log repaired or cut back since it was committed?)"
                ),
            },
            other => StorageError::Consumer { name: self.name.clone(), reason: other.to_string() },
        })?;
        Ok(position)
    }

    /// Follows the log from the stored position (from the log's start if none was ever
    /// committed). See [`Follow`].
    ///
    /// # Errors
    /// [`StorageError::Consumer`] if the stored position is past the end of the log or not a
    /// record boundary; [`StorageError::Io`] if read checks find the log unreadable there.
    pub fn follow(&self) -> Result<Follow> {
        Ok(Follow::new(Arc::clone(&self.shared), self.resume_position()?, false))
    }

    /// As [`Consumer::follow`], delivering only records on stable storage (see
    /// [`LogReader::follow_durable`](super::LogReader::follow_durable)).
    ///
    /// # Errors
    /// As [`Consumer::follow`].
    pub fn follow_durable(&self) -> Result<Follow> {
        Ok(Follow::new(Arc::clone(&self.shared), self.resume_position()?, true))
    }
}

/// Whether `position` is a record boundary of the published log or its end.
fn check_position(shared: &Shared, position: u64) -> Result<()> {
    let snapshot = shared.snapshot();
    if position == snapshot.end && position >= snapshot.start() {
        return Ok(());
    }
    snapshot.frame_at(position).map(|_| ())
}

/// The names of the consumers with a position file in `shared`'s directory, sorted.
pub(super) fn list(shared: &Shared) -> Result<Vec<String>> {
    let failed = |e| StorageError::io("list consumers", &shared.dir, e);
    let mut names = Vec::new();
    for entry in fs::read_dir(&shared.dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_consumer_file_name(n)) {
            let stem = &name[CONSUMER_FILE_PREFIX.len()..name.len() - CONSUMER_FILE_SUFFIX.len()];
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes consumer `name`'s position file durably; `false` if it had none.
pub(super) fn remove(shared: &Shared, name: &str) -> Result<bool> {
    check_name(name)?;
    let path = shared.dir.join(format!("{CONSUMER_FILE_PREFIX}{name}{CONSUMER_FILE_SUFFIX}"));
    match fs::remove_file(&path) {
        Ok(()) => {
            crate::segment::sync_dir(&shared.dir)?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(StorageError::io("remove consumer position", &path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", ".hidden", "a/b", "a\\b", "..", "a b", "é", &"x".repeat(129)] {
            assert!(matches!(check_name(bad), Err(StorageError::Consumer { .. })), "{bad:?}");
        }
        for good in ["a", "billing-v2", "x.y_z", &"x".repeat(128)] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let bytes = encode(0xfeed, 4096);
        assert_eq!(decode(&bytes), Ok((0xfeed, 4096)));
        for i in 0..FILE_LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(decode(&damaged).is_err(), "byte {i}");
        }
        assert!(decode(&bytes[..27]).is_err());
        assert!(decode(&[]).is_err());
    }
}
