//! The streaming iterators of [`EventLog`]'s replays and queries.

use super::EventLog;
use crate::error::Result;
use crate::event::{decode_versioned_event, EventEnvelope};
use crate::log::Replay;

/// A streaming iterator over the events at a list of offsets from the index; see
/// [`EventLog::aggregate_events`]. It ends after the first error.
#[derive(Debug)]
pub struct IndexedEvents<'a> {
    pub(super) log: &'a EventLog,
    pub(super) offsets: OffsetsIter<'a>,
    pub(super) failed: bool,
    /// For one aggregate's events: the position of the next one among the aggregate's events,
    /// its version when the record does not store one (written before versions were).
    pub(super) position: Option<u64>,
}

/// The offsets an [`IndexedEvents`] reads: borrowed from the index, or assembled for it.
#[derive(Debug)]
pub(super) enum OffsetsIter<'a> {
    Borrowed(std::slice::Iter<'a, u64>),
    Owned(std::vec::IntoIter<u64>),
}

impl OffsetsIter<'_> {
    fn next(&mut self) -> Option<u64> {
        match self {
            OffsetsIter::Borrowed(offsets) => offsets.next().copied(),
            OffsetsIter::Owned(offsets) => offsets.next(),
        }
    }

    fn len(&self) -> usize {
        match self {
            OffsetsIter::Borrowed(offsets) => offsets.len(),
            OffsetsIter::Owned(offsets) => offsets.len(),
        }
    }
}

impl Iterator for IndexedEvents<'_> {
    type Item = Result<EventEnvelope>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let offset = self.offsets.next()?;
        let mut event = self.log.read_at(offset);
        self.failed = event.is_err();
        if let (Ok(envelope), Some(position)) = (&mut event, &mut self.position) {
            envelope.aggregate_version = envelope.aggregate_version.or(Some(*position));
            *position += 1;
        }
        Some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.offsets.len()))
    }
}

/// A streaming iterator over the events written in a time range; see
/// [`EventLog::events_in_time_range`]. It ends after the first error.
#[derive(Debug)]
pub struct TimeRangeEvents {
    pub(super) inner: EventReplay,
    pub(super) from_ms: u64,
    pub(super) to_ms: u64,
    /// Whether timestamps are known to be monotonic, so the first one at `to_ms` or later
    /// ends the range.
    pub(super) stop_early: bool,
    pub(super) done: bool,
}

impl Iterator for TimeRangeEvents {
    type Item = Result<EventEnvelope>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let item = match self.inner.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(err)) => {
                    self.done = true;
                    return Some(Err(err));
                }
                Some(Ok(envelope)) => envelope,
            };
            let ts = item.write_timestamp_ms;
            if ts >= self.to_ms && self.stop_early {
                self.done = true;
                return None;
            }
            if ts >= self.from_ms && ts < self.to_ms {
                return Some(Ok(item));
            }
        }
        None
    }
}

/// A streaming iterator of [`EventEnvelope`]s; see [`EventLog::replay`].
#[derive(Debug)]
pub struct EventReplay {
    inner: Replay,
    /// Set after a record failed to decode: replay ends at the first error.
    failed: bool,
}

impl EventReplay {
    /// Events decoded from a replay of the log's records.
    pub(crate) fn new(inner: Replay) -> EventReplay {
        EventReplay { inner, failed: false }
    }

    /// The offset of the next record this replay would read: where to resume later.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.inner.position()
    }
}

impl Iterator for EventReplay {
    type Item = Result<EventEnvelope>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let record = match self.inner.next_ref()? {
            Ok(record) => record,
            Err(err) => return Some(Err(err)),
        };
        let offset = record.offset;
        let write_timestamp_ms = record.write_timestamp_ms;
        let decoded = decode_versioned_event(record.payload, offset);
        self.failed = decoded.is_err();
        Some(decoded.map(|(event, aggregate_version)| EventEnvelope {
            offset,
            write_timestamp_ms,
            event,
            aggregate_version,
        }))
    }
}
