//! Whole-file replacement for small metadata files (the durable record, index checkpoints).
//!
//! A crash at any point leaves either the old file or the new one, never a torn mixture: the
//! bytes go to a temporary file (the name plus [`TEMP_FILE_SUFFIX`]) that is synced, then
//! renamed over the old name, and the directory is synced so the rename itself is durable.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::format::TEMP_FILE_SUFFIX;
use crate::segment::sync_dir;

/// Replaces the file at `path` with `bytes`, atomically and durably.
///
/// # Errors
/// [`StorageError::Io`] naming the step that failed; the temporary file is removed, and the
/// old file, if any, is untouched.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(TEMP_FILE_SUFFIX);
    let temp = Path::new(&temp);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|e| StorageError::io("write temporary file", temp, e));
    if let Err(err) = written {
        // Best effort: a leftover temporary file is harmless and replaced next time.
        let _ = fs::remove_file(temp);
        return Err(err);
    }
    fs::rename(temp, path).map_err(|e| StorageError::io("rename temporary file", temp, e))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir)
}
