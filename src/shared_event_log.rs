//! [`SharedEventLog`]: one event log's writer shared by many threads, with group commit and
//! expected-version appends.

use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::event::{decode_versioned_event, Event, EventEnvelope, ExpectedVersion};
use crate::event_log::{EventLog, EventReplay};
use crate::log::{LogReader, SharedWriter};

/// An event log that many threads append to at once: cheap to clone, `Send + Sync`, every
/// method takes `&self`. Made by [`EventLog::into_shared`].
///
/// Appends (with their index update and version check) take an internal lock for the time it
/// takes to encode and copy the events in; durable appends wait for the disk without it and
/// share syncs with concurrent callers, as [`SharedLog`](crate::SharedLog) describes. Each
/// durable call returns only when its events and every event before them are on stable
/// storage; a failed sync poisons the writer for every thread.
///
/// **Expected versions.** [`SharedEventLog::append_expecting`] checks the aggregate's version
/// and writes under the same lock, so of several threads that expect the same version exactly
/// one succeeds; the others get
/// [`StorageError::WrongExpectedVersion`](crate::StorageError::WrongExpectedVersion) and
/// wrote nothing.
#[derive(Debug, Clone)]
pub struct SharedEventLog {
    inner: Arc<SharedWriter<EventLog>>,
}

impl EventLog {
    /// Turns this event log into a [`SharedEventLog`] that many threads can append to.
    #[must_use]
    pub fn into_shared(self) -> SharedEventLog {
        SharedEventLog { inner: Arc::new(SharedWriter::new(self)) }
    }
}

impl SharedEventLog {
    /// Appends an event; durability and errors as [`EventLog::append`].
    ///
    /// # Errors
    /// As [`EventLog::append`].
    pub fn append(&self, event: &Event) -> Result<u64> {
        self.inner.write(|log| log.append_record(event, false))
    }

    /// Appends an event and returns once it and everything before it are durable, sharing
    /// the sync with concurrent callers.
    ///
    /// # Errors
    /// As [`EventLog::append_sync`]; [`StorageError::Poisoned`](crate::StorageError::Poisoned)
    /// after a sync failed in any thread.
    pub fn append_sync(&self, event: &Event) -> Result<u64> {
        self.inner.write_durably(|log| log.append_record(event, true))
    }

    /// Appends events as one atomic batch; see [`EventLog::append_batch`].
    ///
    /// # Errors
    /// As [`EventLog::append_batch`].
    pub fn append_batch(&self, events: &[Event]) -> Result<Vec<u64>> {
        self.inner.write(|log| log.append_events(events, None, false))
    }

    /// Appends events as one atomic batch and returns once they are durable, sharing the sync.
    ///
    /// # Errors
    /// As [`EventLog::append_batch_sync`].
    pub fn append_batch_sync(&self, events: &[Event]) -> Result<Vec<u64>> {
        self.inner.write_durably(|log| log.append_events(events, None, true))
    }

    /// Appends `events` of one aggregate if it is at `expected`; see
    /// [`EventLog::append_expecting`].
    ///
    /// # Errors
    /// As [`EventLog::append_expecting`].
    pub fn append_expecting(
        &self,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<Vec<u64>> {
        self.inner.write(|log| log.append_events(events, Some(expected), false))
    }

    /// [`SharedEventLog::append_expecting`], returning once the events are durable (group
    /// commit). A wrong version is reported before anything is written or synced.
    ///
    /// # Errors
    /// As [`EventLog::append_expecting_sync`].
    pub fn append_expecting_sync(
        &self,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<Vec<u64>> {
        self.inner.write_durably(|log| log.append_events(events, Some(expected), true))
    }

    /// Makes every event appended before this call (by any thread) durable.
    ///
    /// # Errors
    /// As [`EventLog::sync`].
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// How many syncs that wrote something the group commit has run.
    #[must_use]
    pub fn sync_count(&self) -> u64 {
        self.inner.sync_count()
    }

    /// The current version of aggregate `id` (its last event's), `None` if it has none; see
    /// [`EventLog::aggregate_version`].
    ///
    /// # Errors
    /// As [`EventLog::aggregate_version`].
    pub fn aggregate_version(&self, id: u64) -> Result<Option<u64>> {
        self.inner.read(|log| log.aggregate_version(id))?
    }

    /// Reads all events of aggregate `id`, in log order, with their versions. Holds the lock
    /// only to copy the aggregate's offsets from the index; the events are read without it.
    ///
    /// # Errors
    /// The first read or decode error, naming its offset.
    pub fn load_aggregate(&self, id: u64) -> Result<Vec<EventEnvelope>> {
        let (offsets, start) =
            self.inner.read(|log| (log.index().aggregate(id), log.log().start_offset()))?;
        let reader = self.inner.reader();
        // The index still lists what retention removed; those are skipped, but count.
        let skipped = offsets.partition_point(|&o| o < start);
        let mut events = Vec::with_capacity(offsets.len() - skipped);
        for (position, &offset) in (0u64..).zip(&offsets).skip(skipped) {
            let record = match reader.read_at(offset) {
                Ok(record) => record,
                // Retention, run by another thread's append since the offsets were taken,
                // removed it: skipped as those below `start` are.
                Err(StorageError::InvalidOffset { .. }) if offset < reader.start_offset() => {
                    continue;
                }
                Err(err) => return Err(err),
            };
            let (event, stored) = decode_versioned_event(&record.payload, offset)?;
            events.push(EventEnvelope {
                offset,
                write_timestamp_ms: record.write_timestamp_ms,
                event,
                aggregate_version: stored.or(Some(position)),
            });
        }
        Ok(events)
    }

    /// Replays events from `from` to the end published now; see [`EventLog::replay`].
    #[must_use]
    pub fn replay(&self, from: u64) -> EventReplay {
        EventReplay::new(self.inner.reader().replay(from))
    }

    /// The offset the next append gets (another thread may take it first).
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.inner.reader().end_offset()
    }

    /// A reader handle for the underlying records; reading never takes the writer's lock.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        self.inner.reader().clone()
    }

    /// Runs `f` with the event log, holding the writer's lock meanwhile: for the queries only
    /// [`EventLog`] offers.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) if a thread panicked while
    /// holding the lock.
    pub fn with_event_log<R>(&self, f: impl FnOnce(&EventLog) -> R) -> Result<R> {
        self.inner.read(f)
    }

    /// Saves the index now; see [`EventLog::checkpoint`].
    ///
    /// # Errors
    /// As [`EventLog::checkpoint`].
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.write(EventLog::checkpoint)
    }

    /// Makes everything durable and, if this is the last handle, closes the event log as
    /// [`EventLog::close`] does; otherwise it stays open for the other handles.
    ///
    /// # Errors
    /// As [`EventLog::close`].
    pub fn close(self) -> Result<()> {
        SharedWriter::close(self.inner)
    }

    /// The event log itself, if this is the last handle; otherwise this handle back.
    ///
    /// # Errors
    /// This handle, when other handles exist.
    pub fn into_event_log(self) -> std::result::Result<EventLog, SharedEventLog> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.into_inner()),
            Err(inner) => Err(SharedEventLog { inner }),
        }
    }
}
