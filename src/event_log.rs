//! `EventLog`: the typed event store, composing the raw [`Log`] with the event codec.
//!
//! Every method delegates its storage behaviour (durability, recovery, errors) to the
//! [`Log`] method of the same name; this layer only encodes events into records and decodes
//! them back.

use std::path::Path;

use crate::error::Result;
use crate::event::{decode_event, encode_event_into, Event, EventEnvelope};
use crate::log::{Log, LogReader, OpenReport, Options, Replay};

/// An append-only store of [`Event`]s in a directory.
///
/// Each event is one record of the underlying [`Log`], encoded as described in `FORMAT.md`.
/// Offsets, durability and recovery are exactly the log's.
#[derive(Debug)]
pub struct EventLog {
    log: Log,
    /// Reused encoding buffer, so appends do not allocate once it has grown.
    buf: Vec<u8>,
    /// Reused buffers for batches: all encodings back to back, and where each ends.
    batch_buf: Vec<u8>,
    batch_ends: Vec<usize>,
}

impl EventLog {
    /// Opens (creating if missing) the event log in `dir` for writing with default options.
    ///
    /// # Errors
    /// As [`Log::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<EventLog> {
        Self::open_with(dir, Options::default())
    }

    /// Opens (creating if missing) the event log in `dir` for writing.
    ///
    /// # Errors
    /// As [`Log::open_with`]: `Locked` if another writer has it, `Corruption` for damage a
    /// crash cannot explain, `NotALog`, `UnsupportedVersion`, `InvalidOptions`, `Io`.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<EventLog> {
        Ok(Self::from_log(Log::open_with(dir, options)?))
    }

    /// Opens the event log in `dir` read-only: no lock, nothing changed on disk, appends
    /// refused with `ReadOnly`.
    ///
    /// # Errors
    /// As [`Log::open_read_only`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<EventLog> {
        Ok(Self::from_log(Log::open_read_only(dir)?))
    }

    fn from_log(log: Log) -> EventLog {
        EventLog {
            log,
            buf: Vec::new(),
            batch_buf: Vec::new(),
            batch_ends: Vec::new(),
        }
    }

    /// Appends an event and returns its offset. The log sets its write timestamp.
    ///
    /// **Durability:** in the page cache on return, as [`Log::append`]: survives a process
    /// crash, not a power loss, until the next sync.
    ///
    /// # Errors
    /// `Encode` for a string or payload MessagePack cannot describe (4 GiB or more);
    /// otherwise as [`Log::append`].
    pub fn append(&mut self, event: &Event) -> Result<u64> {
        encode_event_into(event, &mut self.buf)?;
        self.log.append(&self.buf)
    }

    /// Appends an event and makes it, and everything before it, durable before returning.
    ///
    /// # Errors
    /// As [`EventLog::append`] and [`Log::append_sync`] (a failed sync poisons the writer).
    pub fn append_sync(&mut self, event: &Event) -> Result<u64> {
        let offset = self.append(event)?;
        self.log.sync()?;
        Ok(offset)
    }

    /// Appends events as one batch: after a crash all of them are in the log or none is.
    ///
    /// **Durability:** in the page cache on return; call [`EventLog::sync`] for durability.
    ///
    /// # Errors
    /// As [`Log::append_batch`]; nothing is written if any event fails to encode.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<Vec<u64>> {
        self.batch_buf.clear();
        self.batch_ends.clear();
        for event in events {
            encode_event_into(event, &mut self.buf)?;
            self.batch_buf.extend_from_slice(&self.buf);
            self.batch_ends.push(self.batch_buf.len());
        }
        let mut start = 0;
        let records: Vec<&[u8]> = self
            .batch_ends
            .iter()
            .map(|&end| {
                let record = self.batch_buf.get(start..end).unwrap_or_default();
                start = end;
                record
            })
            .collect();
        self.log.append_batch(&records)
    }

    /// Makes every event appended so far durable.
    ///
    /// # Errors
    /// As [`Log::sync`].
    pub fn sync(&mut self) -> Result<()> {
        self.log.sync()
    }

    /// Replays events from offset `from` (a record boundary or the end) to the current end.
    /// Streaming: memory stays flat. A record that is not a valid event yields `Decode`
    /// naming its offset, and replay ends there.
    pub fn replay(&self, from: u64) -> EventReplay {
        EventReplay {
            inner: self.log.replay(from),
            failed: false,
        }
    }

    /// Replays events whose offset is in `[from, until)`.
    pub fn replay_until(&self, from: u64, until: u64) -> EventReplay {
        EventReplay {
            inner: self.log.replay_until(from, until),
            failed: false,
        }
    }

    /// Reads the one event at `offset`.
    ///
    /// # Errors
    /// `InvalidOffset` if no record starts there, `Decode` if it is not an event.
    pub fn read_at(&self, offset: u64) -> Result<EventEnvelope> {
        let record = self.log.read_at(offset)?;
        Ok(EventEnvelope {
            offset,
            write_timestamp_ms: record.write_timestamp_ms,
            event: decode_event(&record.payload, offset)?,
        })
    }

    /// The offset the next append gets.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.log.end_offset()
    }

    /// What recovery found and did when the log was opened.
    #[must_use]
    pub fn open_report(&self) -> &OpenReport {
        self.log.open_report()
    }

    /// The underlying record log.
    #[must_use]
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A `Send + Sync` handle for replaying records from other threads.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        self.log.reader()
    }

    /// Makes everything durable and releases the directory lock.
    ///
    /// # Errors
    /// As [`Log::close`].
    pub fn close(self) -> Result<()> {
        self.log.close()
    }
}

/// A streaming iterator of [`EventEnvelope`]s; see [`EventLog::replay`].
#[derive(Debug)]
pub struct EventReplay {
    inner: Replay,
    /// Set after a record failed to decode: replay ends at the first error.
    failed: bool,
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
        let decoded = decode_event(record.payload, offset);
        self.failed = decoded.is_err();
        Some(decoded.map(|event| EventEnvelope {
            offset,
            write_timestamp_ms,
            event,
        }))
    }
}
