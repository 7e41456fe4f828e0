//! [`SharedWriter`]: what a shared handle ([`SharedLog`](super::SharedLog),
//! [`SharedEventLog`](crate::SharedEventLog)) holds: the writer behind a lock, its group
//! commit, and a reader that needs neither.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use super::group_commit::{lock, GroupCommit, HoldsLog};
use super::LogReader;
use crate::error::Result;

/// What a writer left locked by a panicking thread is poisoned with.
const PANICKED: &str = "a thread panicked while it held the writer";

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
        let guard = lock(&self.writer)?;
        // `read` has only `&T`, so its panic left nothing half done: it must not poison the
        // lock, which would refuse every later write. The panic goes on once the lock is free.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| read(&guard)));
        drop(guard);
        Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    }

    /// Makes everything durable and, if `this` is the last handle, closes the writer; otherwise
    /// it stays open for the other handles.
    ///
    /// # Errors
    /// As [`SharedWriter::sync`], then as the writer's own `close`.
    pub(crate) fn close(this: Arc<Self>) -> Result<()> {
        this.sync()?;
        // Not `Arc::try_unwrap`: of two last handles closing at once, both could fail and the
        // log would close with neither. Exactly one of them gets it here.
        match Arc::into_inner(this) {
            Some(shared) => shared.into_inner().close(),
            None => Ok(()),
        }
    }

    /// The writer itself, once no other handle shares it. A writer a thread panicked while
    /// holding comes back poisoned: it refuses every write, and closing it fails.
    pub(crate) fn into_inner(self) -> T {
        match self.writer.into_inner() {
            Ok(writer) => writer,
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                writer.log_mut().poison(PANICKED);
                writer
            }
        }
    }

    /// Runs `f` with the writer locked for writing, for test failpoints.
    #[cfg(test)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut *lock(&self.writer).expect("writer lock"))
    }
}
