//! The state shared between the writer and its readers, and the [`LogReader`] handle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::replay::{Record, Replay, Snapshot};
use crate::error::Result;
use crate::segment::Segment;

/// State shared between the writer and every reader handle.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) segments: RwLock<Arc<[Arc<Segment>]>>,
    /// The published end offset; the writer stores it (release) after the segment set and
    /// the frames it covers are in place, and readers load it (acquire) first.
    pub(super) end: AtomicU64,
}

impl Shared {
    pub(super) fn snapshot(&self) -> Snapshot {
        let end = self.end.load(Ordering::Acquire);
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner).clone();
        Snapshot { segments, end }
    }
}

/// A cheap, cloneable, `Send + Sync` handle that reads a log while its writer appends.
///
/// Each replay sees the records published when it started.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(super) shared: Arc<Shared>,
}

impl LogReader {
    /// Replays records from offset `from` to the current end. See
    /// [`Log::replay`](super::Log::replay).
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.replay_until(from, u64::MAX)
    }

    /// Replays records whose offset is in `[from, until)`. See
    /// [`Log::replay_until`](super::Log::replay_until).
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        Replay::new(self.shared.snapshot(), from, until)
    }

    /// Reads the one record that starts at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`](crate::StorageError::InvalidOffset) if no intact record
    /// starts there; [`StorageError::Gap`](crate::StorageError::Gap) if a repair replaced the
    /// records there with a gap.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        let snapshot = self.shared.snapshot();
        let (index, frame) = snapshot.frame_at(offset)?;
        if frame.header.is_gap() {
            return Err(snapshot.gap_error(index, &frame.header));
        }
        Ok(snapshot.record(index, &frame.header))
    }

    /// The header of the frame that starts at `offset`, a record's or a gap's: what the index
    /// needs to know of a frame it covers, whether or not it is a record.
    pub(crate) fn frame_header_at(&self, offset: u64) -> Result<crate::format::FrameHeader> {
        let snapshot = self.shared.snapshot();
        Ok(snapshot.frame_at(offset)?.1.header)
    }

    /// The offset the next append will get: the end of the published records.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset of the first record still in the log (0 unless segments were removed).
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.snapshot().start()
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}
