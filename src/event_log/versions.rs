//! Aggregate versions: the number of an aggregate's events before each one, stored in every
//! event record that has an aggregate id (`FORMAT.md` 7), and the expected-version appends that
//! check them (optimistic concurrency, as in event stores).
//!
//! An aggregate's current version is its last event's: read from that record, whose offset
//! the index knows, so finding it costs one record read whatever the aggregate's length, and
//! it is right after a reopen or an index rebuild because it comes from the log itself. A
//! record written before versions were stored has none; its version is its position among
//! the aggregate's events. This handle then remembers each version it found or assigned, so
//! later appends to the same aggregate read nothing.

use super::EventLog;
use crate::error::{Result, StorageError};
use crate::event::{decode_versioned_event, Event, ExpectedVersion};
use crate::index::hash::FxHashMap;

/// The current versions of the aggregates this handle has appended to or checked.
#[derive(Debug, Default)]
pub(super) struct Versions {
    /// Aggregate id → current version (its last event's), for aggregates with events. Looked
    /// up and set on every append of an event with an aggregate: a fast hasher, as the index's.
    current: FxHashMap<u64, u64>,
}

impl Versions {
    /// Records that aggregate `id`'s last event now has `version`.
    pub(super) fn set(&mut self, id: u64, version: u64) {
        self.current.insert(id, version);
    }

    /// Forgets everything (the index was rebuilt: what it covers may have changed).
    pub(super) fn clear(&mut self) {
        self.current.clear();
    }
}

impl EventLog {
    /// The current version of aggregate `id`: the version of its last event, `None` if it has
    /// none. Costs one record read (the last event's), or nothing for an aggregate this handle
    /// has appended to since it opened.
    ///
    /// # Errors
    /// A read or decode error for the aggregate's last event, naming its offset.
    pub fn aggregate_version(&self, id: u64) -> Result<Option<u64>> {
        match self.versions.current.get(&id) {
            Some(&version) => Ok(Some(version)),
            None => self.version_from_log(id),
        }
    }

    /// [`EventLog::aggregate_version`], remembering what it read.
    fn current_version(&mut self, id: u64) -> Result<Option<u64>> {
        let version = self.aggregate_version(id)?;
        if let Some(version) = version {
            self.versions.set(id, version);
        }
        Ok(version)
    }

    /// The version of aggregate `id`'s last event as its record says, or as its position
    /// among the aggregate's events for a record that stores none.
    fn version_from_log(&self, id: u64) -> Result<Option<u64>> {
        let Some((last, count)) = self.index.aggregate_tail(id) else {
            return Ok(None);
        };
        if last < self.log.start_offset() {
            // Retention removed the aggregate's last event; the index still counts it.
            return Ok(Some(count.saturating_sub(1)));
        }
        let record = match self.log.read_at(last) {
            Ok(record) => record,
            // A repair replaced the aggregate's last event with a gap: the event is lost, but
            // its version was given and is not given again. Versions count the aggregate's
            // events, which the index still does, the lost one included.
            Err(StorageError::Gap { .. }) => return Ok(Some(count.saturating_sub(1))),
            Err(err) => return Err(err),
        };
        let (_, stored) = decode_versioned_event(&record.payload, last)?;
        Ok(Some(stored.unwrap_or(count.saturating_sub(1))))
    }

    /// The version the next event of aggregate `id` gets.
    pub(super) fn next_version(&mut self, id: u64) -> Result<u64> {
        match self.current_version(id)? {
            None => Ok(0),
            Some(version) => version.checked_add(1).ok_or_else(|| StorageError::Encode {
                reason: format!("aggregate {id} is at the largest version, {version}"),
            }),
        }
    }

    /// The version of each event of a batch (`None` for one without an aggregate), counting
    /// on from each aggregate's current version, for aggregates that appear more than once as
    /// much as for the others. Changes nothing: the versions are recorded once the batch is
    /// written.
    pub(super) fn batch_versions(&mut self, events: &[Event]) -> Result<Vec<Option<u64>>> {
        let mut next: FxHashMap<u64, u64> = FxHashMap::default();
        let mut versions = Vec::with_capacity(events.len());
        for event in events {
            let Some(id) = event.aggregate_id else {
                versions.push(None);
                continue;
            };
            let version = match next.get(&id) {
                Some(&version) => version,
                None => self.next_version(id)?,
            };
            versions.push(Some(version));
            next.insert(id, version.saturating_add(1));
        }
        Ok(versions)
    }

    /// Checks an expected-version batch: not empty, every event of one aggregate, which is at
    /// `expected`. Returns the events' versions.
    ///
    /// # Errors
    /// [`StorageError::InvalidBatch`]; [`StorageError::WrongExpectedVersion`]; a read error
    /// for the aggregate's last event.
    pub(super) fn check_expected(
        &mut self,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<Vec<Option<u64>>> {
        let invalid = |reason: String| StorageError::InvalidBatch { reason };
        let Some(first) = events.first() else {
            return Err(invalid("an expected-version append needs at least one event".into()));
        };
        let Some(id) = first.aggregate_id else {
            return Err(invalid("event 0 has no aggregate id".into()));
        };
        if let Some((i, other)) =
            events.iter().enumerate().find(|(_, event)| event.aggregate_id != Some(id))
        {
            return Err(invalid(format!(
                "event {i} belongs to aggregate {:?}, not to aggregate {id} as event 0 does",
                other.aggregate_id
            )));
        }
        let actual = self.current_version(id)?;
        if !expected.is_met_by(actual) {
            return Err(StorageError::WrongExpectedVersion { aggregate_id: id, expected, actual });
        }
        let first_version = self.next_version(id)?;
        Ok((0..events.len() as u64).map(|i| Some(first_version.saturating_add(i))).collect())
    }

    /// Appends `events`, all of one aggregate, as one batch if the aggregate is at `expected`:
    /// either every event is written, with consecutive versions after the current one, or
    /// nothing is. The check and the write happen under this handle's exclusive access, and
    /// only one writer may hold a log, so no other append can slip between them (with
    /// [`SharedEventLog`](crate::SharedEventLog), its lock does the same across threads).
    ///
    /// **Durability:** as [`EventLog::append_batch`]; see
    /// [`EventLog::append_expecting_sync`].
    ///
    /// # Errors
    /// [`StorageError::WrongExpectedVersion`] naming the aggregate's actual version;
    /// [`StorageError::InvalidBatch`] for an empty batch or one whose events are not all of
    /// one aggregate; otherwise as [`EventLog::append_batch`].
    pub fn append_expecting(
        &mut self,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<Vec<u64>> {
        self.append_events(events, Some(expected), false)
    }

    /// [`EventLog::append_expecting`], then a sync: on success the events and everything
    /// before them are on stable storage.
    ///
    /// # Errors
    /// As [`EventLog::append_expecting`] and [`EventLog::sync`].
    pub fn append_expecting_sync(
        &mut self,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<Vec<u64>> {
        let offsets = self.append_events(events, Some(expected), true)?;
        self.sync()?;
        Ok(offsets)
    }
}
