//! What opening, repairing and verifying a log report.

use std::path::PathBuf;

/// What recovery found and did when a log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segment files in the log after opening.
    pub segments: usize,
    /// Whether the directory held no log and a new one was started.
    pub created: bool,
    /// Frames whose checksums recovery verified.
    pub records_scanned: u64,
    /// Data bytes recovery read (frames verified plus the tail examined for stray data).
    pub bytes_scanned: u64,
    /// The offset the next append gets.
    pub end_offset: u64,
    /// Leftover temporary files of an interrupted segment creation that were removed.
    pub temp_files_removed: usize,
    /// A torn tail that was cut off (zeroed in place by a writer; only skipped by a reader).
    pub torn_tail: Option<TornTail>,
    /// What an explicit [`RecoveryMode::Repair`](super::RecoveryMode::Repair) dropped.
    pub repair: Option<RepairReport>,
    /// The log had been closed cleanly and not written since (its durable record says so,
    /// and the chain of frames ends where the record says), so recovery did not examine the
    /// rest of the last segment: the open cost no reading of data at all.
    pub clean_close: bool,
}

/// Unacknowledged bytes at the end of the log left by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the log now ends.
    pub offset: u64,
    /// Bytes after that point that held data and were cut.
    pub bytes: u64,
    /// Intact frames among them that were dropped: members of an unfinished batch, or
    /// frames written after a lost one.
    pub frames_dropped: u64,
    /// Later segments that held only unacknowledged data, set aside (renamed with
    /// [`DROPPED_SUFFIX`](super::DROPPED_SUFFIX)) by a writer; a read-only open just ignores them.
    pub segments_dropped: Vec<PathBuf>,
}

/// What a repair dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log now ends: the offset of the first bad frame.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// Data bytes dropped, including whole segments set aside.
    pub bytes_dropped: u64,
    /// Segment files renamed with [`DROPPED_SUFFIX`](super::DROPPED_SUFFIX).
    pub segments_dropped: Vec<PathBuf>,
}

/// What [`Log::verify`](super::Log::verify) checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Records whose checksums were verified.
    pub records: u64,
    /// Payload bytes those records hold.
    pub payload_bytes: u64,
}
