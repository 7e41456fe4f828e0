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
    /// What a repair ([`RecoveryMode::Salvage`](super::RecoveryMode::Salvage) or
    /// [`RecoveryMode::Truncate`](super::RecoveryMode::Truncate)) found and did.
    pub repair: Option<RepairReport>,
    /// The log had been closed cleanly and not written since (its durable record says so,
    /// and the chain of frames ends where the record says), so recovery did not examine the
    /// rest of the last segment: the open cost no reading of data at all.
    pub clean_close: bool,
    /// Level-0 Merkle pages (each the hashes of 256 records) a writer's open cut from the page
    /// files, with the pages above them: they covered records past the end, which a crash
    /// took (the hashing thread hashes records before they are synced), or records a repair
    /// changed. They are hashed again from the log. A read-only open leaves the files alone
    /// and drops such pages from memory when it loads them (`Log::rollup_report`).
    pub merkle_pages_dropped: u64,
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

/// What a repair found and did (or, from [`Log::plan_repair`](super::Log::plan_repair), would
/// do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// [`RecoveryMode::Salvage`](super::RecoveryMode::Salvage) or
    /// [`RecoveryMode::Truncate`](super::RecoveryMode::Truncate).
    pub mode: super::RecoveryMode,
    /// Whether the repair was carried out (`false` for a plan).
    pub applied: bool,
    /// Every damaged span, in offset order: bytes that had been durable and are no longer
    /// intact frames. A salvage turns each into a gap; a truncation cuts at the first.
    pub damaged: Vec<DamagedSpan>,
    /// Intact records the log keeps.
    pub records_kept: u64,
    /// Intact records dropped: after the cut of a truncation, or of an unfinished write a
    /// crash left at the end.
    pub records_dropped: u64,
    /// Where the log was cut, if it was: the first damage for a truncation, or a torn tail.
    pub truncated_at: Option<u64>,
    /// Data bytes cut at the end (zeroed in place), not counting segments set aside.
    pub bytes_cut: u64,
    /// Segment files set aside (renamed with [`DROPPED_SUFFIX`](super::DROPPED_SUFFIX)).
    pub segments_dropped: Vec<PathBuf>,
    /// Files beside the log that keep the exact bytes the repair took out.
    pub saved: Vec<PathBuf>,
}

impl RepairReport {
    /// Whether any damage was found (rather than only a torn tail a crash left).
    #[must_use]
    pub fn damage_found(&self) -> bool {
        !self.damaged.is_empty()
    }
}

/// A span of a log that held durable data and no longer holds intact frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSpan {
    /// The segment file that holds it.
    pub segment: PathBuf,
    /// The offset of the first damaged byte (a record boundary).
    pub start: u64,
    /// The offset of the next intact record, or the end of the segment's data.
    pub end: u64,
    /// What was wrong at `start`.
    pub reason: String,
}

/// What [`Log::verify`](super::Log::verify) checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Records whose checksums were verified.
    pub records: u64,
    /// Payload bytes those records hold.
    pub payload_bytes: u64,
    /// Gaps a repair left, as `[start, end)` offset ranges: records lost to damage.
    pub gaps: Vec<(u64, u64)>,
}
