//! [`SharedWriter`]: what a shared handle ([`SharedLog`](super::SharedLog),
//! [`SharedEventLog`](crate::SharedEventLog)) holds: the writer behind a lock, its group
//! commit, and a reader that needs neither.

use std::sync::{Mutex, PoisonError};

use super::group_commit::{lock, GroupCommit, HoldsLog};
use super::LogReader;
use crate::error::Result;

/// A writer shared by many threads.
#[derive(Debug)]
pub(crate) struct SharedWriter<T> {
    writer: Mutex<T>,
    commit: GroupCommit,
    reader: LogReader,
}

impl<T: HoldsLog> SharedWriter<T> {
    /// Shares `writer`.
    pub(crate) fn new(mut writer: T) -> SharedWriter<T> {
        let reader = writer.log_mut().reader();
        let commit = GroupCommit::new(reader.durable_offset());
        SharedWriter { writer: Mutex::new(writer), commit, reader }
    }

    /// Runs `write` with the writer locked.
    ///
    /// # Errors
    /// `write`'s error; [`StorageError::Poisoned`](crate::StorageError::Poisoned) if a
    /// thread panicked while holding the lock.
    pub(crate) fn write<R>(&self, write: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        write(&mut *lock(&self.writer)?)
    }

    /// Runs `write` with the writer locked, then returns once everything written so far (by
    /// any thread, up to the end after `write`) is durable, sharing the sync with concurrent
    /// callers (group commit).
    ///
    /// # Errors
    /// `write`'s error (nothing is synced then); the sync's, as
    /// [`GroupCommit::sync_through`] gives it.
    pub(crate) fn write_durably<R>(&self, write: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let _active = self.commit.enter();
        let (written, end) = {
            let mut writer = lock(&self.writer)?;
            let written = write(&mut writer)?;
            (written, writer.log_mut().end_offset())
        };
        self.commit.sync_through(end, &self.writer)?;
        Ok(written)
    }

    /// Makes everything appended before this call durable, joining a sync in flight where it
    /// can.
    ///
    /// # Errors
    /// As [`GroupCommit::sync_through`].
    pub(crate) fn sync(&self) -> Result<()> {
        let _active = self.commit.enter();
        self.commit.sync_through(self.reader.end_offset(), &self.writer)
    }

    /// Syncs that wrote something.
    pub(crate) fn sync_count(&self) -> u64 {
        self.commit.syncs()
    }

    /// The reader, which takes no lock.
    pub(crate) fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Runs `read` with the writer locked, for what only the writer answers.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) if a thread panicked while
    /// holding the lock.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&T) -> R) -> Result<R> {
        Ok(read(&*lock(&self.writer)?))
    }

    /// The writer itself, once no other handle shares it.
    pub(crate) fn into_inner(self) -> T {
        self.writer.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with the writer locked for writing, for test failpoints.
    #[cfg(test)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut *lock(&self.writer).expect("writer lock"))
    }
}
