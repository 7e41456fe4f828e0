//! `EventLog`: the typed event store, composing the raw [`Log`] with the event codec and the
//! indexes.
//!
//! Every method delegates its storage behaviour (durability, recovery, errors) to the
//! [`Log`] method of the same name; this layer only encodes events into records and decodes
//! them back, keeps the [`AggregateIndex`] up to date, and answers queries from it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::event::{
    decode_versioned_event, encode_versioned_event_into, Event, EventEnvelope, ExpectedVersion,
};
use crate::format::TEMP_FILE_SUFFIX;
use crate::index::{
    catch_up, catch_up_times, open_index, save_index, AggregateIndex, IndexOptions, IndexReport,
    INDEX_FILE_NAME,
};
use crate::log::{Log, LogReader, OpenReport, Options};

mod iter;
mod versions;

use iter::OffsetsIter;
pub use iter::{EventReplay, IndexedEvents, TimeRangeEvents};
use versions::Versions;

/// An append-only store of [`Event`]s in a directory.
///
/// Each event is one record of the underlying [`Log`], encoded as described in `FORMAT.md`.
/// Offsets, durability, recovery and errors are exactly the log's.
///
/// # Indexes
///
/// An event log keeps an [`AggregateIndex`] (by aggregate id, event type, namespace and write
/// time) up to date on every append, and answers [`EventLog::load_aggregate`],
/// [`EventLog::events_of_type`], [`EventLog::events_in_namespace`] and
/// [`EventLog::events_in_time_range`] from it, reading only the matching events. The index is
/// saved in the log directory (file [`INDEX_FILE_NAME`]) by [`EventLog::close`], by
/// [`EventLog::checkpoint`], and in the background every [`IndexOptions::checkpoint_bytes`] of
/// new log data. On open, a stored index that still matches the log is caught up by reading
/// only the records appended after it was saved; one that does not (missing, damaged, another
/// version, another log, ahead of a log that lost its tail) is rebuilt from the whole log, and
/// a writer deletes the unusable file. [`EventLog::index_report`] says which happened and why.
/// Dropping an event log without `close` saves nothing; the next open catches up from the last
/// save.
#[derive(Debug)]
pub struct EventLog {
    log: Log,
    /// Reused encoding buffer, so appends do not allocate once it has grown.
    buf: Vec<u8>,
    /// Reused buffers for batches: all encodings back to back, and where each ends.
    batch_buf: Vec<u8>,
    batch_ends: Vec<usize>,
    index: AggregateIndex,
    index_path: PathBuf,
    index_options: IndexOptions,
    index_report: IndexReport,
    /// The covered end of the index when it was last saved (or loaded): the automatic
    /// checkpoint counts new log bytes from here.
    saved_end: u64,
    /// The last automatic checkpoint's failure, if it failed.
    checkpoint_error: Option<String>,
    /// An automatic checkpoint being written on another thread.
    pending: PendingCheckpoint,
    /// The current version of each aggregate this handle has appended to or checked.
    versions: Versions,
}

/// An automatic checkpoint's save, running on its own thread so the append that triggered it
/// only pays for a snapshot of the index, with the covered end of that snapshot. Dropping it
/// waits for the save, so two saves (or a save and a new open of the same directory) never
/// race on the temporary file.
#[derive(Debug, Default)]
struct PendingCheckpoint(Option<(std::thread::JoinHandle<Result<()>>, u64)>);

impl PendingCheckpoint {
    /// Waits for the save in progress, if any, and returns its outcome: the covered end it
    /// saved, or `None` if none was in progress.
    fn finish(&mut self) -> Result<Option<u64>> {
        let Some((handle, end)) = self.0.take() else { return Ok(None) };
        match handle.join() {
            Ok(Ok(())) => Ok(Some(end)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StorageError::Encode {
                reason: "the index checkpoint thread panicked".to_string(),
            }),
        }
    }
}

impl Drop for PendingCheckpoint {
    fn drop(&mut self) {
        // Nobody is left to report to; the next open catches up from whichever file is there.
        let _ = self.finish();
    }
}

impl crate::log::HoldsLog for EventLog {
    fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    fn close(self) -> Result<()> {
        EventLog::close(self)
    }
}

impl EventLog {
    /// Opens the event log in `dir` for writing with default options, creating a new log as
    /// [`Log::open_with`] does (only where `dir` does not exist yet or is empty).
    ///
    /// # Errors
    /// As [`EventLog::open_with_index_options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<EventLog> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the event log in `dir` for writing with `options` and the default
    /// [`IndexOptions`], creating a new log as [`Log::open_with`] does.
    ///
    /// # Errors
    /// As [`EventLog::open_with_index_options`].
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<EventLog> {
        Self::open_with_index_options(dir, options, IndexOptions::default())
    }

    /// Opens the event log in `dir` for writing, with options for the log and for its index,
    /// creating a new log as [`Log::open_with`] does. Recovery and durability are the log's.
    /// The stored index is loaded and caught up, or rebuilt; see [`EventLog::index_report`].
    /// If catching up or rebuilding read at least [`IndexOptions::checkpoint_bytes`] of log,
    /// the index is saved before this returns, so that the next open does not read it again.
    ///
    /// # Errors
    /// As [`Log::open_with`]: `Locked` if another writer has it, `Corruption` for damage a
    /// crash cannot explain, `NotALog`, `UnsupportedVersion`, `InvalidOptions`, `Io`; also
    /// [`StorageError::Corruption`] if a record the index must read is damaged, and the errors
    /// of [`EventLog::checkpoint`] for a save at open. A record that is not an event is passed
    /// over and counted in [`IndexReport::records_not_events`], not an error; a damaged or
    /// mismatched index file is never an error: it is rebuilt.
    pub fn open_with_index_options(
        dir: impl AsRef<Path>,
        options: Options,
        index_options: IndexOptions,
    ) -> Result<EventLog> {
        Self::from_log(Log::open_with(dir, options)?, index_options)
    }

    /// Opens the event log in `dir` read-only: no lock, nothing changed on disk, appends
    /// refused with `ReadOnly`.
    ///
    /// # Errors
    /// As [`Log::open_read_only`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<EventLog> {
        Self::from_log(Log::open_read_only(dir)?, IndexOptions::default())
    }

    /// Opens the event log in `dir` read-only, as [`EventLog::open_read_only`], with the
    /// options that apply to a reader ([`Log::open_read_only_with`]): with
    /// [`Options::read_checks`], the index catch-up at open is read with checks too.
    ///
    /// # Errors
    /// As [`Log::open_read_only_with`].
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: Options) -> Result<EventLog> {
        Self::from_log(Log::open_read_only_with(dir, options)?, IndexOptions::default())
    }

    fn from_log(mut log: Log, index_options: IndexOptions) -> Result<EventLog> {
        let index_path = log.dir().join(INDEX_FILE_NAME);
        if !log.is_read_only() {
            // A save interrupted before its rename leaves this behind; it is never read.
            let mut tmp = index_path.clone().into_os_string();
            tmp.push(TEMP_FILE_SUFFIX);
            match fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove temporary index file", tmp, e)),
            }
        }
        let (index, index_report) =
            open_index(&log, &index_path, index_options.rebuild_after_retention)?;
        if !index_report.loaded && !log.is_read_only() {
            // An unusable file would be refused again on every open until the next save;
            // removing it now also keeps anyone from mistaking it for this log's index.
            match fs::remove_file(&index_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::io("remove unusable index file", index_path, e))
                }
            }
        }
        // After a rebuild nothing usable is stored, but counting from the start makes a
        // large rebuild save at once (below) and a small one wait for the next checkpoint.
        let saved_end = index_report.covered_offset;
        // What the file on disk covers: retention must not remove what it does not describe.
        let on_disk = if index_report.loaded { saved_end } else { log.start_offset() };
        log.set_retention_floor(Some(on_disk));
        let mut event_log = EventLog {
            log,
            buf: Vec::new(),
            batch_buf: Vec::new(),
            batch_ends: Vec::new(),
            index,
            index_path,
            index_options,
            index_report,
            saved_end,
            checkpoint_error: None,
            pending: PendingCheckpoint::default(),
            versions: Versions::default(),
        };
        // Catching up only extends the index, so this cannot underflow; saturating keeps it
        // panic-free all the same.
        let caught_up = event_log.index.covered_end().saturating_sub(event_log.saved_end);
        let threshold = event_log.index_options.checkpoint_bytes;
        let due = threshold != 0 && caught_up >= threshold;
        // A file cut back to the log describes records past its end that new appends would
        // write differently: it is replaced before any.
        let cut_back = event_log.index_report.cut_back_from.is_some();
        if (due || cut_back) && !event_log.log.is_read_only() {
            event_log.checkpoint()?;
        }
        Ok(event_log)
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
        self.append_record(event, false)
    }

    /// [`EventLog::append`]; with `for_sync`, written the way [`Log::append_sync`] writes a
    /// record it is about to sync.
    pub(crate) fn append_record(&mut self, event: &Event, for_sync: bool) -> Result<u64> {
        let version = match event.aggregate_id {
            Some(id) => Some(self.next_version(id)?),
            None => None,
        };
        encode_versioned_event_into(event, version, &mut self.buf)?;
        let offset = if for_sync {
            self.log.append_for_sync(&self.buf)?
        } else {
            self.log.append(&self.buf)?
        };
        let (timestamp, crc) = self.last_stamp();
        self.index.insert_read(offset, self.log.end_offset(), timestamp, crc, event);
        if let (Some(id), Some(version)) = (event.aggregate_id, version) {
            self.versions.set(id, version);
        }
        self.after_append();
        Ok(offset)
    }

    /// The write timestamp and frame checksum the log gave the record just appended.
    #[inline]
    fn last_stamp(&self) -> (u64, u32) {
        (
            self.log.last_write_timestamp_ms().unwrap_or_default(),
            self.log.last_record_crc().unwrap_or_default(),
        )
    }

    /// Index upkeep after an append: the automatic checkpoint when it is due, which costs a
    /// typical append one comparison.
    #[inline]
    fn after_append(&mut self) {
        // The inserts just set the covered end to the log's end, unless there were none (an
        // empty batch). The index may then cover less than at its last save: after
        // `rebuild_index_from` stopped at a damaged record. Nothing new is to be saved then.
        let end = self.index.covered_end();
        let threshold = self.index_options.checkpoint_bytes;
        if threshold != 0 && end.saturating_sub(self.saved_end) >= threshold {
            self.auto_checkpoint();
        }
    }

    /// Saves a snapshot of the index on another thread. The append itself succeeded, so a
    /// failed save is not its error: it is kept for [`EventLog::checkpoint_error`], and the
    /// stored index stays the older one, which the next open catches up.
    #[cold]
    fn auto_checkpoint(&mut self) {
        self.finish_pending_checkpoint();
        self.saved_end = self.index.covered_end();
        if self.index.last_record_offset().is_some() && self.index.last_crc().is_none() {
            // Only after `rebuild_index_from`: the checksum must be read from the log first.
            if let Err(err) = self.checkpoint() {
                self.checkpoint_error = Some(err.to_string());
            }
            return;
        }
        let snapshot = self.index.clone();
        let path = self.index_path.clone();
        let spawned = std::thread::Builder::new()
            .name("chronicle-checkpoint".to_string())
            .spawn(move || save_index(&path, &snapshot));
        match spawned {
            Ok(handle) => self.pending = PendingCheckpoint(Some((handle, self.saved_end))),
            Err(err) => self.checkpoint_error = Some(format!("cannot start a thread: {err}")),
        }
    }

    /// Appends an event and makes it, and everything before it, durable before returning.
    ///
    /// # Errors
    /// As [`EventLog::append`] and [`Log::append_sync`] (a failed sync poisons the writer).
    pub fn append_sync(&mut self, event: &Event) -> Result<u64> {
        let offset = self.append_record(event, true)?;
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
        self.append_events(events, None, false)
    }

    /// Appends events as one batch (see [`EventLog::append_batch`]) and makes it, and
    /// everything before it, durable before returning, with one sync.
    ///
    /// # Errors
    /// As [`EventLog::append_batch`] and [`Log::append_sync`].
    pub fn append_batch_sync(&mut self, events: &[Event]) -> Result<Vec<u64>> {
        let offsets = self.append_events(events, None, true)?;
        self.log.sync()?;
        Ok(offsets)
    }

    /// Appends `events` as one batch, each with its aggregate version (see
    /// [`EventEnvelope::aggregate_version`]); with `expected`, only if their one aggregate is at
    /// that version (checked by [`EventLog::check_expected`]). Nothing is written on any
    /// error. With `for_sync`, written the way [`Log::append_sync`] writes records it syncs.
    pub(crate) fn append_events(
        &mut self,
        events: &[Event],
        expected: Option<ExpectedVersion>,
        for_sync: bool,
    ) -> Result<Vec<u64>> {
        let versions = match expected {
            Some(expected) => self.check_expected(expected, events)?,
            None => self.batch_versions(events)?,
        };
        self.batch_buf.clear();
        self.batch_ends.clear();
        for (event, &version) in events.iter().zip(&versions) {
            encode_versioned_event_into(event, version, &mut self.buf)?;
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
        let offsets = if for_sync {
            self.log.append_batch_for_sync(&records)?
        } else {
            self.log.append_batch(&records)?
        };
        // A batch shares one timestamp; only its last frame's checksum identifies it.
        let (timestamp, crc) = self.last_stamp();
        let end = self.log.end_offset();
        for (i, (event, &offset)) in events.iter().zip(&offsets).enumerate() {
            let next = offsets.get(i + 1).copied().unwrap_or(end);
            self.index.insert_read(offset, next, timestamp, crc, event);
        }
        for (event, version) in events.iter().zip(versions) {
            if let (Some(id), Some(version)) = (event.aggregate_id, version) {
                self.versions.set(id, version);
            }
        }
        self.after_append();
        Ok(offsets)
    }

    /// Removes the whole segments before `offset` from the log, as [`Log::truncate_before`]
    /// does (never past a consumer, only what the Merkle pages cover). The index is saved
    /// first and keeps its entries for the removed records, so aggregate versions continue,
    /// but no query returns them. From then on the index file is the only record of the
    /// versions of aggregates whose events were all removed (see
    /// [`IndexOptions::rebuild_after_retention`]). The size and age policies
    /// ([`Options::retention_max_bytes`]) remove only what the last completed index save
    /// covers.
    ///
    /// # Errors
    /// As [`EventLog::checkpoint`] and [`Log::truncate_before`].
    pub fn truncate_before(&mut self, offset: u64) -> Result<crate::RetentionReport> {
        self.checkpoint()?;
        self.log.truncate_before(offset)
    }

    /// As [`EventLog::truncate_before`], but past consumers' positions and the Merkle pages'
    /// cover, as [`Log::truncate_before_forced`].
    ///
    /// # Errors
    /// As [`EventLog::checkpoint`] and [`Log::truncate_before_forced`].
    pub fn truncate_before_forced(&mut self, offset: u64) -> Result<crate::RetentionReport> {
        self.checkpoint()?;
        self.log.truncate_before_forced(offset)
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
        EventReplay::new(self.log.replay(from))
    }

    /// Replays events whose offset is in `[from, until)`.
    pub fn replay_until(&self, from: u64, until: u64) -> EventReplay {
        EventReplay::new(self.log.replay_until(from, until))
    }

    /// Reads the one event at `offset`.
    ///
    /// # Errors
    /// `InvalidOffset` if no record starts there, `Decode` if it is not an event.
    pub fn read_at(&self, offset: u64) -> Result<EventEnvelope> {
        let record = self.log.read_at(offset)?;
        let (event, aggregate_version) = decode_versioned_event(&record.payload, offset)?;
        Ok(EventEnvelope {
            offset,
            write_timestamp_ms: record.write_timestamp_ms,
            event,
            aggregate_version,
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

    /// Saves the index (see [`EventLog::checkpoint`]), makes everything durable and
    /// releases the directory lock.
    ///
    /// # Errors
    /// As [`EventLog::checkpoint`] and [`Log::close`]. The log is closed even if saving the
    /// index failed; the first error is returned.
    pub fn close(mut self) -> Result<()> {
        let saved = if self.log.is_read_only() { Ok(()) } else { self.checkpoint() };
        let closed = self.log.close();
        saved.and(closed)
    }

    /// Saves the index to the log directory now, atomically and durably (as [`save_index`]),
    /// so that the next open only reads what is appended after this point.
    ///
    /// The log itself is not synced: an index that covers records a crash then loses is
    /// detected on open (it is ahead of the log, or its last record's checksum differs) and
    /// rebuilt. Cost: one write of the whole index file and two fsyncs.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`]; [`StorageError::Io`] if the file cannot be written; a read
    /// error if the last indexed record cannot be read back.
    pub fn checkpoint(&mut self) -> Result<()> {
        // The file holds about 12 bytes per event plus the names.
        if self.log.is_read_only() {
            return Err(StorageError::ReadOnly);
        }
        // An automatic save in progress finishes first; this one then replaces it.
        self.finish_pending_checkpoint();
        catch_up_times(&mut self.index, &self.log)?;
        if let (Some(offset), None) = (self.index.last_record_offset(), self.index.last_crc()) {
            let crc = self.log.frame_header_at(offset)?.crc;
            self.index.set_last_crc(crc);
        }
        save_index(&self.index_path, &self.index)?;
        self.saved_end = self.index.covered_end();
        self.log.set_retention_floor(Some(self.saved_end));
        self.checkpoint_error = None;
        Ok(())
    }

    /// Waits for an automatic save in progress, keeping its failure for
    /// [`EventLog::checkpoint_error`] or letting retention go as far as it saved.
    fn finish_pending_checkpoint(&mut self) {
        match self.pending.finish() {
            Ok(Some(end)) => self.log.set_retention_floor(Some(end)),
            Ok(None) => {}
            Err(err) => self.checkpoint_error = Some(err.to_string()),
        }
    }

    /// Why the last automatic checkpoint failed, if it did (cleared by a successful save).
    #[must_use]
    pub fn checkpoint_error(&self) -> Option<&str> {
        self.checkpoint_error.as_deref()
    }

    /// What opening did with the stored index: whether it was used, from which offset it was
    /// caught up, how many records that read, and why it was rebuilt if it was.
    #[must_use]
    pub fn index_report(&self) -> &IndexReport {
        &self.index_report
    }

    /// The index, as of the last append.
    #[must_use]
    pub fn index(&self) -> &AggregateIndex {
        &self.index
    }

    /// The path of the index file.
    #[must_use]
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// Re-indexes the log from `offset` on: drops the index's entries at or after `offset`
    /// and indexes the records from there to the end, reading only those; the entries before
    /// `offset` are kept. Returns the number of records read.
    ///
    /// `offset` must be a record boundary no further than the index's covered end (a later
    /// start would leave records unindexed), or the log's start.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] for an offset that is not a record boundary, is before
    /// the log's start, or is past the covered end; a read error as for open.
    pub fn rebuild_index_from(&mut self, offset: u64) -> Result<u64> {
        let start = self.log.start_offset();
        if offset > self.index.covered_end() || offset < start {
            return Err(StorageError::InvalidOffset {
                offset,
                reason: "outside the range the index covers; records would be left unindexed"
                    .to_string(),
            });
        }
        if offset < self.log.end_offset() {
            self.log.frame_header_at(offset)?;
        }
        self.index.truncate(offset);
        self.versions.clear();
        Ok(catch_up(&mut self.index, &self.log)?.0)
    }

    /// Reads all events of aggregate `id`, in log order, reading only those events.
    ///
    /// # Errors
    /// The first read error (see [`EventLog::read_at`]).
    pub fn load_aggregate(&self, id: u64) -> Result<Vec<EventEnvelope>> {
        self.aggregate_events(id).collect()
    }

    /// The state of aggregate `id` as of `at_ms`: its events written at or before then, in log
    /// order, with the head of the log's Merkle tree at that time (the largest tree whose
    /// records were all written by then), so that each event can be proven to be in it
    /// ([`Log::inclusion_proof`] with that tree size).
    ///
    /// # Errors
    /// The first read error, as for [`EventLog::load_aggregate`] and
    /// [`Log::tree_head_at`].
    pub fn aggregate_as_of(
        &self,
        id: u64,
        at_ms: u64,
    ) -> Result<(Vec<EventEnvelope>, crate::rollup::TreeHead)> {
        let head = self.log.tree_head_at(at_ms)?;
        let mut events = self.load_aggregate(id)?;
        events.retain(|e| e.offset < head.end_offset);
        Ok((events, head))
    }

    /// The delta report of aggregate `id`: its events written in `[from_ms, to_ms)`, in log
    /// order.
    ///
    /// # Errors
    /// The first read error, as for [`EventLog::load_aggregate`].
    pub fn aggregate_events_between(
        &self,
        id: u64,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<EventEnvelope>> {
        let mut events = self.load_aggregate(id)?;
        events.retain(|e| (from_ms..to_ms).contains(&e.write_timestamp_ms));
        Ok(events)
    }

    /// Streams the events of aggregate `id`, in log order, reading each as it is reached.
    #[must_use]
    pub fn aggregate_events(&self, id: u64) -> IndexedEvents<'_> {
        self.aggregate_events_from(id, 0)
    }

    /// Streams the events of aggregate `id` at offsets `from` and after, in log order: the
    /// events after a snapshot taken at `from`, without reading the earlier ones. `from` need
    /// not be a record boundary.
    #[must_use]
    pub fn aggregate_events_from(&self, id: u64, from: u64) -> IndexedEvents<'_> {
        let mut offsets = self.index.aggregate(id);
        // The index still lists records that retention removed; they are skipped.
        let from = from.max(self.log.start_offset());
        let skipped = offsets.partition_point(|&o| o < from);
        offsets.drain(..skipped);
        IndexedEvents {
            log: self,
            offsets: OffsetsIter::Owned(offsets.into_iter()),
            failed: false,
            position: Some(skipped as u64),
        }
    }

    /// Streams the events whose `event_type` is `event_type` at offsets `from` and after, in
    /// log order. `from` need not be a record boundary.
    #[must_use]
    pub fn events_of_type(&self, event_type: &str, from: u64) -> IndexedEvents<'_> {
        self.indexed(self.index.of_type(event_type), from)
    }

    /// Streams the events whose `namespace` is `namespace` at offsets `from` and after, in
    /// log order. `from` need not be a record boundary.
    #[must_use]
    pub fn events_in_namespace(&self, namespace: &str, from: u64) -> IndexedEvents<'_> {
        self.indexed(self.index.in_namespace(namespace), from)
    }

    fn indexed<'a>(&'a self, offsets: &'a [u64], from: u64) -> IndexedEvents<'a> {
        let from = from.max(self.log.start_offset());
        let first = offsets.partition_point(|&o| o < from);
        IndexedEvents {
            log: self,
            offsets: OffsetsIter::Borrowed(offsets.get(first..).unwrap_or_default().iter()),
            failed: false,
            position: None,
        }
    }

    /// Streams the events whose write timestamp is in `[from_ms, to_ms)`, in log order,
    /// reading the log from the first of them to the first event written at `to_ms` or later
    /// (timestamps never decrease in offset order).
    #[must_use]
    pub fn events_in_time_range(&self, from_ms: u64, to_ms: u64) -> TimeRangeEvents {
        // The time index gives the first such event by binary search.
        let monotonic = self.index.times_monotonic();
        let log_start = self.log.start_offset();
        let start =
            if monotonic { self.index.time_scan_start(from_ms).max(log_start) } else { log_start };
        let empty = from_ms >= to_ms;
        TimeRangeEvents {
            inner: self.replay(if empty { self.end_offset() } else { start }),
            from_ms,
            to_ms,
            stop_early: monotonic,
            done: empty,
        }
    }
}
