//! Whole-file replacement for small metadata files (durable records, index checkpoints).
//!
//! A crash at any point leaves either the old file or the new one, never a torn mixture: the
//! bytes go to a temporary file that is synced, then renamed over the old name, and the
//! directory is synced so the rename itself is durable.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::format::TEMP_FILE_SUFFIX;
use crate::segment::sync_dir;

/// Replaces `dir/name` with `bytes`, atomically and durably.
///
/// # Errors
/// [`StorageError::Io`] naming the step that failed; the temporary file is removed, and the
/// old file, if any, is untouched.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}{TEMP_FILE_SUFFIX}"));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|e| StorageError::io("write temporary file", &temp, e));
    if let Err(err) = written {
        // Best effort: a leftover temporary file is harmless and replaced next time.
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    fs::rename(&temp, &path).map_err(|e| StorageError::io("rename temporary file", &temp, e))?;
    sync_dir(dir)
}
