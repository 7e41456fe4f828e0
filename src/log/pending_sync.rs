//! A sync split in three, so that the disk wait runs without the writer's state: the writer
//! takes what is unsynced ([`Writer::begin_sync`]), anyone then writes it out
//! ([`PendingSync::perform`], which needs no `&mut` access and holds no lock), and the writer
//! records the outcome ([`Writer::finish_sync`]). [`Log::sync`](super::Log::sync) runs the
//! three in a row; [`SharedLog`](super::SharedLog) releases its lock during the second, so
//! other threads keep appending while the disk works, and their records go in the next sync
//! (group commit, `log/group_commit.rs`).
//!
//! At most one sync may be pending per writer: the next `begin_sync` starts where this one
//! ended, and [`Writer::finish_sync`] raises the durable end to this one's end, which would be
//! wrong if an earlier range were still being written out. [`SharedLog`](super::SharedLog)'s
//! group commit admits one leader at a time for this reason.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::writer::Writer;
use crate::error::{Result, StorageError};
use crate::segment::Segment;

/// The writes of one sync, taken from the writer by [`Writer::begin_sync`].
#[derive(Debug)]
#[must_use = "a pending sync must be performed and finished"]
pub(crate) struct PendingSync {
    /// Segment files created since the last sync, and their directory.
    created: Vec<Arc<Segment>>,
    dir: PathBuf,
    /// Data ranges `[from, to)` of segments to write out: sealed ones, then the active one.
    ranges: Vec<(Arc<Segment>, u64, u64)>,
    /// The log offset this sync makes durable once it succeeds.
    end: u64,
    /// Test failpoint: fail as if the disk had reported an error.
    #[cfg(test)]
    fail: bool,
    /// Test failpoint: panic while performing it.
    #[cfg(test)]
    panic: bool,
}

impl PendingSync {
    /// The offset up to which the log is durable once this sync succeeds.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The log's directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether performing it makes any system call.
    pub(crate) fn writes_anything(&self) -> bool {
        !self.created.is_empty() || !self.ranges.is_empty()
    }

    /// Writes the pending data to stable storage: new segment files, then their directory,
    /// then every range, in log order. Needs no access to the writer.
    ///
    /// # Errors
    /// [`StorageError::Io`] naming the file; the caller hands it to
    /// [`Writer::finish_sync`], which poisons the writer.
    pub(crate) fn perform(&self) -> Result<()> {
        for segment in &self.created {
            segment
                .sync_file()
                .map_err(|e| StorageError::io("sync new segment", segment.path(), e))?;
        }
        if !self.created.is_empty() {
            crate::segment::sync_dir(&self.dir)?;
        }
        #[cfg(test)]
        assert!(!self.panic, "injected panic in a sync");
        #[cfg(test)]
        if self.fail {
            let err = std::io::Error::other("injected sync failure");
            let path = self.ranges.last().map(|(segment, ..)| segment.path().to_path_buf());
            return Err(StorageError::io("sync segment", path.unwrap_or_default(), err));
        }
        for (segment, from, to) in &self.ranges {
            segment
                .sync_range(*from, *to)
                .map_err(|e| StorageError::io("sync segment", segment.path(), e))?;
        }
        Ok(())
    }
}

impl Writer {
    /// Takes everything written since the last sync into a [`PendingSync`], leaving the writer
    /// free to append while it is performed. The durable end does not move until
    /// [`Writer::finish_sync`]: frames written meanwhile still say they are unsynced.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`]; [`StorageError::Io`] from writing zeros ahead (see
    /// `Writer::zero_ahead`), which poisons the writer.
    pub(super) fn begin_sync(&mut self) -> Result<PendingSync> {
        self.check_usable()?;
        if self.sync_in_flight {
            // Only a shared writer's group commit leaves a sync in flight, and it admits one
            // leader at a time; this guards the invariant against any other caller.
            let err = std::io::Error::other("another sync of this log is in flight");
            return Err(StorageError::io("begin a sync", &self.shared.dir, err));
        }
        self.unmap_unsynced();
        let mut ranges = std::mem::take(&mut self.unsynced_sealed);
        if self.pos > self.synced_pos {
            self.zero_ahead()?;
            ranges.push((Arc::clone(self.active.segment()), self.synced_pos, self.pos));
            // Requested, not yet durable: the next sync starts here. A failure poisons the
            // writer, so no later sync relies on this range having been written.
            self.synced_pos = self.pos;
        }
        self.sync_in_flight = true;
        Ok(PendingSync {
            created: std::mem::take(&mut self.unsynced_created),
            dir: self.shared.dir.clone(),
            ranges,
            end: self.end(),
            #[cfg(test)]
            fail: std::mem::take(&mut self.fail_next_sync),
            #[cfg(test)]
            panic: std::mem::take(&mut self.panic_next_sync),
        })
    }

    /// Records the outcome of `pending`: on success the log is durable up to its end, and
    /// followers of the durable end are woken; on failure the writer is poisoned.
    ///
    /// # Errors
    /// The failure, as it was given.
    pub(super) fn finish_sync(&mut self, pending: &PendingSync, outcome: Result<()>) -> Result<()> {
        self.sync_in_flight = false;
        if let Err(err) = outcome {
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        if pending.end > self.synced_end {
            self.synced_end = pending.end;
            self.shared.durable_end.store(self.synced_end, Ordering::Release);
            self.shared.wake_waiters();
        }
        Ok(())
    }

    /// Makes everything written so far durable: begin, perform and finish in a row.
    pub(super) fn sync(&mut self) -> Result<()> {
        let pending = self.begin_sync()?;
        let outcome = pending.perform();
        self.finish_sync(&pending, outcome)
    }
}
