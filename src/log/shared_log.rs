//! [`SharedLog`]: one log's writer shared by many threads, with group commit.

use std::sync::Arc;

use super::shared_writer::SharedWriter;
use super::{Follow, Log, LogReader, Replay};
use crate::error::Result;

/// A log that many threads append to at once: cheap to clone, `Send + Sync`, every method
/// takes `&self`. Made by [`Log::into_shared`].
///
/// Appends take an internal lock for the time it takes to copy the record in (a few hundred
/// nanoseconds for small records); each caller gets its own offset, and offsets are the order
/// in which the appends took the lock. Readers never take it.
///
/// **Group commit.** [`SharedLog::append_sync`], [`SharedLog::append_batch_sync`] and
/// [`SharedLog::sync`] wait for the disk without holding the lock: while one thread's sync is
/// in flight the others keep appending, and the next sync makes all of their records durable
/// at once. Each call still keeps its promise: it returns only when its records and every
/// record before them are on stable storage. A failed sync poisons the writer for every
/// thread: the one that ran it gets the I/O error, all others
/// [`StorageError::Poisoned`](crate::StorageError::Poisoned).
///
/// A single thread that needs no sharing appends faster through [`Log`] itself, which takes
/// no lock.
#[derive(Debug, Clone)]
pub struct SharedLog {
    inner: Arc<SharedWriter<Log>>,
}

impl Log {
    /// Turns this log into a [`SharedLog`] that many threads can append to at once.
    #[must_use]
    pub fn into_shared(self) -> SharedLog {
        SharedLog { inner: Arc::new(SharedWriter::new(self)) }
    }
}

impl SharedLog {
    /// Appends one record and returns its offset. Durability and errors as [`Log::append`].
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.inner.write(|log| log.append(payload))
    }

    /// Appends one record and returns its offset once it and every record before it are on
    /// stable storage, sharing the sync with concurrent callers (group commit).
    ///
    /// # Errors
    /// As [`Log::append_sync`]; a sync that failed in another thread gives
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned).
    pub fn append_sync(&self, payload: &[u8]) -> Result<u64> {
        self.inner.write_durably(|log| log.append_for_sync(payload))
    }

    /// Appends several records as one atomic batch (see [`Log::append_batch`]) and returns
    /// their offsets, in order; no other thread's record lands between them.
    ///
    /// # Errors
    /// As [`Log::append_batch`].
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Vec<u64>> {
        self.inner.write(|log| log.append_batch(payloads))
    }

    /// Appends a batch and returns once it and everything before it are durable, sharing the
    /// sync with concurrent callers.
    ///
    /// # Errors
    /// As [`Log::append_batch_sync`] and [`SharedLog::append_sync`].
    pub fn append_batch_sync<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Vec<u64>> {
        self.inner.write_durably(|log| log.append_batch_for_sync(payloads))
    }

    /// Makes every record appended before this call (by any thread) durable; joins a sync in
    /// flight instead of starting one where it can.
    ///
    /// # Errors
    /// As [`Log::sync`].
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// How many syncs that wrote something this handle's group commit has run: far fewer than
    /// the durable appends when many threads append at once.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        self.inner.sync_count()
    }

    /// The offset the next append gets (another thread may take it first).
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.inner.reader().end_offset()
    }

    /// A reader handle; reading never takes the writer's lock.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        self.inner.reader().clone()
    }

    /// Replays the records from `from` to the end published now. See [`Log::replay`].
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.inner.reader().replay(from)
    }

    /// Follows the log from `from`. See [`LogReader::follow`].
    #[must_use]
    pub fn follow(&self, from: u64) -> Follow {
        self.inner.reader().follow(from)
    }

    /// Runs `f` with the log, holding the writer's lock meanwhile (appends from other threads
    /// wait): for what only [`Log`] offers, such as tree heads and proofs.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) if a thread panicked while
    /// holding the lock.
    pub fn with_log<R>(&self, f: impl FnOnce(&Log) -> R) -> Result<R> {
        self.inner.read(f)
    }

    /// Runs `f` with the log locked for writing (tests set failpoints with it).
    #[cfg(test)]
    pub(super) fn with_log_mut<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        self.inner.with_mut(f)
    }

    /// Makes everything durable and, if this is the last handle, closes the log as
    /// [`Log::close`] does (marking it closed cleanly and releasing the directory's lock);
    /// otherwise the log stays open for the other handles and closes with the last of them
    /// (dropping the last handle without `close` leaves the tail to be examined on the next
    /// open, as dropping a [`Log`] does).
    ///
    /// # Errors
    /// As [`Log::close`].
    pub fn close(self) -> Result<()> {
        SharedWriter::close(self.inner)
    }

    /// The log itself, if this is the last handle; otherwise this handle back.
    ///
    /// # Errors
    /// This handle, when other handles exist.
    pub fn into_log(self) -> std::result::Result<Log, SharedLog> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.into_inner()),
            Err(inner) => Err(SharedLog { inner }),
        }
    }
}
