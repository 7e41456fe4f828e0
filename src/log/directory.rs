//! The log directory: which names are Chronicle's, listing segments and leftovers, and taking
//! the writer's lock (creating the directory for a new log).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::repair::{CUT_SUFFIX, DAMAGED_SUFFIX};
use super::start_record::{read_start_record, StartRecord, START_FILE_NAME};
use super::DROPPED_SUFFIX;
use crate::error::{Result, StorageError};
use crate::format::{
    parse_segment_file_name, DURABLE_FILE_NAME, LOCK_FILE_NAME, SEGMENT_FILE_SUFFIX,
    TEMP_FILE_SUFFIX,
};

/// Segment files and leftover temporary files found in a log directory.
pub(super) struct Listing {
    /// Base offsets of the log's segment files, from its start on.
    pub(super) bases: Vec<u64>,
    /// The start record, if retention removed segments from the log's front.
    pub(super) start: Option<StartRecord>,
    /// Segment files below the start record's offset: left by a removal a crash interrupted,
    /// and no longer part of the log.
    pub(super) below_start: Vec<u64>,
    pub(super) temps: Vec<PathBuf>,
    /// Names that no part of Chronicle writes, up to a few (for an error message), and how
    /// many there were.
    foreign: (Vec<String>, usize),
}

/// Names Chronicle itself may leave in a log directory besides segment files.
fn is_chronicle_name(name: &str) -> bool {
    // The log layer knows only its own files: a directory that holds an event log's index but
    // no segment is not a log either.
    const FIXED: [&str; 4] = [LOCK_FILE_NAME, DURABLE_FILE_NAME, "DURABLE.tmp", START_FILE_NAME];
    FIXED.contains(&name)
        || crate::rollup::is_page_file_name(name)
        || super::consumer::is_consumer_file_name(name)
        || name.ends_with(TEMP_FILE_SUFFIX)
        || name.ends_with(DROPPED_SUFFIX)
        || name.split_once(SEGMENT_FILE_SUFFIX).is_some_and(|(_, rest)| {
            rest.starts_with(DAMAGED_SUFFIX) || rest.starts_with(CUT_SUFFIX)
        })
}

/// Lists `dir` with `getdents64` on a descriptor of its own (rustix's `Dir`): `fs::read_dir`
/// (glibc's `opendir`) also makes an `fstat`, one of the dozen or so system calls of a
/// clean open.
pub(super) fn list_dir(dir: &Path) -> Result<Listing> {
    use rustix::fs::{Dir, Mode, OFlags};
    let failed = |e: rustix::io::Errno| StorageError::io("list log directory", dir, e.into());
    let mut listing = Listing {
        bases: Vec::new(),
        start: None,
        below_start: Vec::new(),
        temps: Vec::new(),
        foreign: (Vec::new(), 0),
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir, flags, Mode::empty()).map_err(failed)?;
    let entries = Dir::new(fd).map_err(failed)?;
    let temp_suffix = format!("{SEGMENT_FILE_SUFFIX}{TEMP_FILE_SUFFIX}");
    for entry in entries {
        let entry = entry.map_err(failed)?;
        let Ok(name) = entry.file_name().to_str() else {
            listing.foreign.1 += 1;
            continue;
        };
        if let Some(base) = parse_segment_file_name(name) {
            listing.bases.push(base);
        } else if name.ends_with(&temp_suffix) {
            listing.temps.push(dir.join(name));
        } else if name != "." && name != ".." && !is_chronicle_name(name) {
            if listing.foreign.0.len() < 3 {
                listing.foreign.0.push(name.to_string());
            }
            listing.foreign.1 += 1;
        }
    }
    listing.bases.sort_unstable();
    listing.start = read_start_record(dir)?;
    if let Some(start) = listing.start {
        let kept = listing.bases.partition_point(|&base| base < start.start_offset);
        listing.below_start = listing.bases.drain(..kept).collect();
        if listing.bases.is_empty() {
            return Err(StorageError::BrokenChain {
                segment: dir.join(START_FILE_NAME),
                reason: format!(
                    "the log begins at offset {} by its start record, but no segment file from \
                     there on exists",
                    start.start_offset
                ),
            });
        }
    }
    Ok(listing)
}

/// Locks `dir` for the one writer. A log's directory holds its lock file, so most opens find
/// it at once. Without one, the directory is made a log only if it does not exist yet (its
/// parent must) or holds nothing but Chronicle's own files, unless `among_other_files`.
pub(super) fn lock_or_create_dir(dir: &Path, among_other_files: bool) -> Result<DirLock> {
    match lock_dir(dir, false) {
        Err(StorageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        locked => return locked,
    }
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not `create_dir_all`: a mistyped path should fail, not grow a tree of folders.
            fs::create_dir(dir).map_err(|e| {
                let op = if e.kind() == std::io::ErrorKind::NotFound {
                    "create log directory (its parent directory does not exist)"
                } else {
                    "create log directory"
                };
                StorageError::io(op, dir, e)
            })?;
        }
        Err(e) => return Err(StorageError::io("open log directory", dir, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(StorageError::NotALogDirectory {
                path: dir.to_path_buf(),
                found: "a file, not a directory".to_string(),
            })
        }
        Ok(_) => {
            let listing = list_dir(dir)?;
            if listing.bases.is_empty() && listing.foreign.1 > 0 && !among_other_files {
                return Err(not_a_log(dir, &listing, true));
            }
        }
    }
    lock_dir(dir, true)
}

/// The error for a directory with no segment file, saying what it holds instead.
pub(super) fn not_a_log(dir: &Path, listing: &Listing, writer: bool) -> StorageError {
    let (names, count) = &listing.foreign;
    let mut found = if *count == 0 {
        "no segment files (an empty directory)".to_string()
    } else {
        let more = count.saturating_sub(names.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        format!("no segment files, but {count} other entries ({}{more})", names.join(", "))
    };
    if writer {
        found.push_str(
            "; a new log is created only in a directory that does not exist or is empty (see \
             Options::create_among_other_files)",
        );
    }
    StorageError::NotALogDirectory { path: dir.to_path_buf(), found }
}

/// The directory that holds `dir` (`.` for a relative path of one component).
pub(super) fn parent_dir(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The writer's lock on a log directory, released when dropped.
#[derive(Debug)]
pub(super) struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // Unlocked explicitly, not only by closing the descriptor: a child process forked by
        // another thread of this process holds a copy of it until it calls `exec`, and the
        // lock belongs to the open file description they share, so closing alone would leave
        // the directory locked for that moment (a reopen right after `close` saw `Locked`).
        let _ = self.0.unlock();
    }
}

fn lock_dir(dir: &Path, create: bool) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io("open lock file", &path, e))?;
    // `flock`-style: held by the open file description, so no other close in this process
    // releases it (unlike a POSIX record lock).
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(StorageError::io("lock log directory", &path, e)),
    }
}
