//! How a log is opened: [`Options`], [`RecoveryMode`] and the limits they are checked against.

use crate::error::{Result, StorageError};
use crate::format::{FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_BYTES_MAX, SEGMENT_HEADER_LEN};

/// Smallest accepted [`Options::segment_bytes`].
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Default [`Options::segment_bytes`]: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Default [`Options::record_bytes_max`]: 16 MiB.
pub const RECORD_BYTES_MAX_DEFAULT: u64 = 16 << 20;

/// Suffix given to segment files that a repair set aside; they are kept for inspection and
/// ignored by `open`.
pub const DROPPED_SUFFIX: &str = ".dropped";

/// What `open` does when it finds damage that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, with an error naming the segment and offset. Nothing is changed.
    #[default]
    Strict,
    /// Keep every intact record: each damaged span becomes a gap of the same length (replay
    /// yields [`StorageError::Gap`](crate::StorageError::Gap) for it), so every record after it
    /// keeps its offset. The damaged bytes are copied beside the log first (`*.damaged-*`).
    /// Checks every frame of every segment, so it reads the whole log. Writers only; see
    /// [`OpenReport::repair`](super::OpenReport::repair) and `FORMAT.md` 6.5.
    Salvage,
    /// Cut the log at the first damage: every record after it is dropped (the bytes are kept
    /// beside the log, `*.cut-*`, and later segments renamed with [`DROPPED_SUFFIX`]). Only
    /// when losing those records is what you want. Writers only.
    Truncate,
}

impl RecoveryMode {
    /// Whether this mode repairs (salvages or truncates) rather than refuses.
    #[must_use]
    pub fn repairs(self) -> bool {
        self != RecoveryMode::Strict
    }
}

/// How a log is opened. Every field has a default (see [`Options::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Size of each new segment file, header included. Default 64 MiB
    /// ([`SEGMENT_BYTES_DEFAULT`]); at least 4 KiB ([`SEGMENT_BYTES_MIN`]), at most 4 GiB,
    /// a multiple of 8. Existing segments keep the size they were created with.
    pub segment_bytes: u64,
    /// Largest payload one record may have. Default `None`: 16 MiB
    /// ([`RECORD_BYTES_MAX_DEFAULT`]) or what fits in an empty segment, whichever is smaller
    /// ([`Options::effective_record_bytes_max`]). A value set explicitly must be at least 1 and
    /// fit in an empty segment (`segment_bytes - 64 - 32` or less).
    pub record_bytes_max: Option<u64>,
    /// What to do about damage found on open. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// Start writing appended records to the disk in the background, a few MiB at a time, as
    /// soon as the writer has passed them, so that a later sync waits only for the last few
    /// MiB. Default `true`. It changes what reaches the disk before a sync, never what a sync
    /// promises: nothing is acknowledged until a sync returns. Its price is CPU and disk work
    /// while appending; turn it off for logs that are rarely synced. Figures:
    /// `BENCHMARKS.md`, "Choosing settings".
    pub write_behind: bool,
    /// Make the next segment file in the background once the active segment is half full, so
    /// that the append which fills a segment does not wait for a new file to be created and
    /// preallocated. Default `true`. It changes no byte of the log and no durability promise;
    /// its price is disk space: one more segment's worth, as `next.seg.tmp` (`FORMAT.md`).
    pub prepare_next_segment: bool,
    /// Write zeros over each new segment file when it is made, and make them durable, so
    /// that syncs into it write into space the filesystem already counts as written. Default
    /// `false`; meant for writers that sync every few records (`append_sync`, small
    /// `append_batch_sync`). The open of a new log, and a roll that finds no segment prepared
    /// ahead, wait for the zeros; bursts of buffered appends get slower. It changes no byte of
    /// the log and no durability promise. Figures: `BENCHMARKS.md`, "Choosing settings".
    pub zero_fill_segments: bool,
    /// Let a writer create a new log in a directory that already holds files other than
    /// Chronicle's own. Default `false`: such a directory is refused with
    /// [`StorageError::NotALogDirectory`], so that a mistyped path never scatters a log among
    /// unrelated files. (A new log is always created in a directory that does not exist yet,
    /// whose parent must, or that is empty.)
    pub create_among_other_files: bool,
    /// Keep the Merkle tree over the log as stored pages (`rollup-*.pages` beside the
    /// segments), hashed by a background thread so that `append` never waits for SHA-256;
    /// heads and proofs then read a few pages. Default `true`. When `false`, no page is written
    /// and every head or proof hashes the log from its start (pages an earlier open stored
    /// are still cut where a crash or a repair changed the records under them, and checked
    /// before a forced truncation, for a later open that keeps pages). Changes no byte of the
    /// log and no durability promise: pages are rebuilt from the log whenever they are missing
    /// or damaged.
    pub merkle_rollup: bool,
    /// Retention by size: each time a segment fills, whole segments are removed from the
    /// front while the rest would still hold at least this many bytes of log, as
    /// [`Log::truncate_before`](super::Log::truncate_before) removes them (never past a
    /// consumer's position, only records the Merkle pages cover; in an event log, only what
    /// its last completed index save covers, so also keep
    /// [`IndexOptions::checkpoint_bytes`](crate::IndexOptions::checkpoint_bytes) in mind).
    /// Default `None`: keep all.
    pub retention_max_bytes: Option<u64>,
    /// Retention by age: each time a segment fills, whole segments whose newest record is
    /// older than this are removed, as for [`Options::retention_max_bytes`]. Default `None`.
    pub retention_max_age: Option<std::time::Duration>,
    /// Read checks from the open on, as [`Log::set_read_checks`](super::Log::set_read_checks)
    /// turns them on later: each replay reads a segment's pages into memory before it touches
    /// them, so that a disk read error is [`StorageError::Io`], not a `SIGBUS`. Set here, they
    /// also cover what runs during the open and right after it: recovery's scan of what was
    /// written since the last sync after a crash (or after a clean close whose recorded end
    /// proves wrong), an event log's index catch-up and the Merkle pages' catch-up. Default
    /// `false`; its price is replay speed (`BENCHMARKS.md`, "Choosing settings").
    /// `RELIABILITY.md` lists what they do not cover.
    pub read_checks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: None,
            recovery: RecoveryMode::Strict,
            write_behind: true,
            prepare_next_segment: true,
            zero_fill_segments: false,
            create_among_other_files: false,
            merkle_rollup: true,
            retention_max_bytes: None,
            retention_max_age: None,
            read_checks: false,
        }
    }
}

impl Options {
    /// Checks the options against each other and the format's limits.
    ///
    /// # Errors
    /// [`StorageError::InvalidOptions`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(StorageError::InvalidOptions { reason });
        if self.segment_bytes < SEGMENT_BYTES_MIN || self.segment_bytes > SEGMENT_BYTES_MAX {
            return invalid(format!(
                "segment_bytes {} is outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if !self.segment_bytes.is_multiple_of(FRAME_ALIGN as u64) {
            return invalid(format!(
                "segment_bytes {} is not a multiple of {FRAME_ALIGN}",
                self.segment_bytes
            ));
        }
        let fits = self.record_bytes_fit();
        match self.record_bytes_max {
            Some(max) if max == 0 || max > fits => invalid(format!(
                "record_bytes_max {max} must be between 1 and {fits} (what fits in an empty \
                 segment of {} bytes)",
                self.segment_bytes
            )),
            _ => Ok(()),
        }
    }

    /// The largest payload a record may have with these options: [`Options::record_bytes_max`]
    /// if set, else the smaller of [`RECORD_BYTES_MAX_DEFAULT`] and what fits in an empty
    /// segment.
    #[must_use]
    pub fn effective_record_bytes_max(&self) -> u64 {
        self.record_bytes_max
            .unwrap_or_else(|| RECORD_BYTES_MAX_DEFAULT.min(self.record_bytes_fit()))
    }

    /// The payload of a record that fills an empty segment.
    fn record_bytes_fit(&self) -> u64 {
        self.segment_bytes.saturating_sub((SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64)
    }
}
