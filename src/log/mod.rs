//! The raw record log: an ordered set of segments, one writer, offsets, replay, and recovery
//! on open. It stores byte payloads and never looks inside them.

mod background;
mod clock;
mod consumer;
mod directory;
mod follow;
#[cfg(feature = "async")]
mod follow_stream;
mod group_commit;
mod merkle;
mod open;
mod open_reads;
mod options;
mod pager;
mod pending_sync;
mod reader;
mod recovery;
mod repair;
mod replay;
mod report;
mod retention;
mod salvage;
mod shared_log;
mod shared_writer;
mod start_record;
mod tail;
#[cfg(test)]
mod tests;
mod torn_creation;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[cfg(any(test, feature = "internals"))]
pub(crate) use background::WithoutBackgroundThreads;
pub use consumer::{Consumer, CONSUMER_NAME_MAX};
pub use follow::{Follow, FollowStop, Next};
#[cfg(feature = "async")]
pub use follow_stream::FollowStream;
pub(crate) use group_commit::HoldsLog;
pub use options::{
    Options, RecoveryMode, DROPPED_SUFFIX, RECORD_BYTES_MAX_DEFAULT, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MIN,
};
pub use reader::LogReader;
use reader::Shared;
pub use replay::{Payload, Record, RecordRef, Replay};
pub use report::{DamagedSpan, OpenReport, RepairReport, TornTail, VerifyReport};
pub use retention::RetentionReport;
pub use shared_log::SharedLog;
pub(crate) use shared_writer::SharedWriter;
#[cfg(feature = "archive")]
pub(crate) use start_record::{write_start_record, StartRecord};
use writer::Writer;

use crate::error::{Result, StorageError};

/// An append-only log of byte records in a directory of segment files.
///
/// One `Log` per directory may write (an exclusive lock enforces it); any number of
/// read-only opens and [`LogReader`] handles may read. See the crate docs for the durability
/// contract; each method states its own.
#[derive(Debug)]
pub struct Log {
    /// First, so that it drops first: its hashing thread stops before the writer lets go of
    /// the directory.
    rollup: Option<merkle::RollupHandle>,
    shared: Arc<Shared>,
    writer: Option<Writer>,
    options: Options,
    report: OpenReport,
    /// The writer's roll count when the retention policies last ran.
    seen_rolls: u64,
    /// Why the retention policies last failed, if they did.
    retention_error: Option<String>,
    /// Retention keeps the records from this offset on: an event log's index is saved only up
    /// to here (see [`Log::set_retention_floor`]).
    retention_floor: Option<u64>,
}

impl Log {
    /// Opens the log in `dir` for writing with default [`Options`], creating a new log if
    /// `dir` does not exist yet (its parent must) or is empty. See [`Log::open_with`].
    ///
    /// # Errors
    /// As [`Log::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the log in `dir` for writing, holding the directory's exclusive lock until the
    /// log is closed or dropped. A new log is created only if `dir` does not exist (its parent
    /// must) or is empty; a directory that holds other files but no segment is refused unless
    /// [`Options::create_among_other_files`].
    ///
    /// **Recovery:** a torn tail (bytes a crash left unfinished, which no sync acknowledged) is
    /// cut: zeroed in place, synced, and reported in [`Log::open_report`]. On return every
    /// record that survives is on stable storage. Damage to data that was durable is refused,
    /// or repaired as [`Options::recovery`] says (`FORMAT.md`, "Recovery rules").
    /// Unless a repair is asked for, opening reads each segment's header, the durable record
    /// and, after a crash, what was written since the last known durable point.
    ///
    /// # Errors
    /// [`StorageError::Locked`] if another writer holds the directory;
    /// [`StorageError::NotALog`] or [`StorageError::UnsupportedVersion`] for a foreign or
    /// newer file; [`StorageError::Corruption`] or [`StorageError::BrokenChain`] for damage a
    /// crash cannot explain (unless a repair mode is chosen); [`StorageError::NotALogDirectory`];
    /// [`StorageError::InvalidOptions`]; [`StorageError::Io`] (a missing parent directory, a
    /// failed system call).
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        // Also removes leftovers of an interrupted segment creation and checks every segment
        // header and the chain between segments. After a crash it walks the frames written
        // since the last sync and the unused part of the last segment the filesystem reports
        // as written; after a clean close the first append checks that unused part instead.
        open::open_log(dir.as_ref(), options, false)
    }

    /// Opens the log in `dir` for reading only. Takes no lock and changes nothing on disk; a
    /// torn tail is skipped, not zeroed. Sees the records that were complete when it opened.
    ///
    /// # Errors
    /// As [`Log::open_with`] (except `Locked`); [`StorageError::Io`] if `dir` does not exist
    /// or is not a directory; [`StorageError::NotALogDirectory`] if it holds no segment file.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        open::open_log(dir.as_ref(), Options::default(), true)
    }

    /// Opens the log in `dir` for reading only, as [`Log::open_read_only`], with the
    /// [`Options`] that apply to a reader: [`Options::read_checks`] and
    /// [`Options::merkle_rollup`]. The others are for writers: they are checked
    /// ([`Options::validate`]), a repair mode is refused, and the rest change nothing here.
    ///
    /// # Errors
    /// As [`Log::open_read_only`]; [`StorageError::InvalidOptions`] for options that fail
    /// [`Options::validate`] or a [`RecoveryMode`] other than `Strict`.
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        open::open_log(dir.as_ref(), options, true)
    }

    /// After a write: runs the retention policies if the writer rolled to a new segment
    /// since they last ran (one comparison otherwise).
    #[inline]
    fn after_write(&mut self) {
        if self.writer.as_ref().is_some_and(|w| w.rolls != self.seen_rolls) {
            self.apply_retention_policies();
        }
    }

    /// The writer, or `ReadOnly`. Each writer operation checks for poisoning itself.
    fn writer(&mut self) -> Result<&mut Writer> {
        // Not `ok_or`: that builds the error on every call and drops it again (the drop glue
        // of `StorageError` is an out-of-line call on the append path).
        match self.writer.as_mut() {
            Some(writer) => Ok(writer),
            None => Err(StorageError::ReadOnly),
        }
    }

    /// Appends one record and returns its offset.
    ///
    /// **Durability:** on return the record is in the operating system's page cache: it
    /// survives this process crashing, not the machine losing power, until a later
    /// [`Log::sync`] (or `append_sync`, `close`) returns.
    ///
    /// # Errors
    /// [`StorageError::RecordTooLarge`] (nothing written), [`StorageError::ReadOnly`],
    /// [`StorageError::Poisoned`], or [`StorageError::Io`] from creating a new segment or, on
    /// the first write after a clean close, from rewriting the durable record (`FORMAT.md`
    /// 6.2): the record was not written and the log stays usable; or from zeroing bytes after
    /// a clean end: the writer is then poisoned, as after a failed sync.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        // Records under 16 KiB are copied into the segment's shared map, with no system call
        // unless a segment fills up; larger ones are written with one `pwritev` (see
        // `segment::WRITE_THROUGH_FILE_MIN`). A full segment is replaced by the spare made in
        // the background (`Options::prepare_next_segment`) or by one created now, without
        // waiting for the disk: the next sync makes it durable.
        let offset = self.writer()?.append(payload, false)?;
        self.after_write();
        Ok(offset)
    }

    /// Appends one record and makes it durable before returning its offset.
    ///
    /// **Durability:** on return this record and every record appended before it are on
    /// stable storage, with any segment files created since the last sync and their directory
    /// entries.
    ///
    /// # Errors
    /// As [`Log::append`]; if the sync fails the record may or may not be durable, the error
    /// is returned, and the writer is poisoned: every later write returns
    /// [`StorageError::Poisoned`] until the log is reopened.
    pub fn append_sync(&mut self, payload: &[u8]) -> Result<u64> {
        // Written with `pwritev` whatever its size: a page in the writer's page tables costs a
        // write-protect and a TLB flush when `msync` writes it, dearer than the system call.
        let offset = self.append_for_sync(payload)?;
        self.sync()?;
        Ok(offset)
    }

    /// Appends a record that the caller syncs next, as [`Log::append_sync`] does: written with
    /// `pwritev` whatever its size, so that its page is not in the writer's page tables when
    /// the sync writes it. Durability and errors as [`Log::append`].
    pub(crate) fn append_for_sync(&mut self, payload: &[u8]) -> Result<u64> {
        let offset = self.writer()?.append(payload, true)?;
        self.after_write();
        Ok(offset)
    }

    /// Appends several records as one batch and returns their offsets, in order.
    ///
    /// **Atomicity:** after a crash either every record of the batch is in the log or none
    /// is; readers never see part of a batch. All frames but the last carry a "batch
    /// continues" flag, and recovery drops a batch whose last frame is missing. A batch never
    /// spans two segments, so it must fit in one (`segment_bytes - 64` bytes of frames).
    ///
    /// **Durability:** as [`Log::append`]; call [`Log::sync`] (or use
    /// [`Log::append_batch_sync`]) to make it durable. An empty batch writes nothing.
    ///
    /// # Errors
    /// [`StorageError::RecordTooLarge`] if any payload exceeds the record limit or the batch
    /// does not fit in a segment (nothing written); otherwise as [`Log::append`].
    pub fn append_batch<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        let offsets = self.writer()?.append_batch(payloads, false)?;
        self.after_write();
        Ok(offsets)
    }

    /// Appends a batch that the caller syncs next, as [`Log::append_batch_sync`] does.
    pub(crate) fn append_batch_for_sync<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
    ) -> Result<Vec<u64>> {
        let offsets = self.writer()?.append_batch(payloads, true)?;
        self.after_write();
        Ok(offsets)
    }

    /// Appends a batch (see [`Log::append_batch`]) and makes it, and everything before it,
    /// durable before returning, with one sync for the whole batch.
    ///
    /// # Errors
    /// As [`Log::append_batch`] and [`Log::append_sync`].
    pub fn append_batch_sync<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        let offsets = self.writer()?.append_batch(payloads, true)?;
        self.after_write();
        self.sync()?;
        Ok(offsets)
    }

    /// Makes every record appended so far durable: on return they are on stable storage,
    /// with every segment file created since the last sync and its directory entry. A sync
    /// with nothing new to write makes no system call.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`], [`StorageError::Poisoned`], or [`StorageError::Io`] if the
    /// sync fails, which poisons the writer: every later write returns
    /// [`StorageError::Poisoned`] until the log is reopened.
    pub fn sync(&mut self) -> Result<()> {
        // `msync(MS_SYNC)` of the ranges appended since the last sync (it waits for write-out
        // already started by `Options::write_behind`), after syncing new segment files and the
        // directory. Once per MiB of log it also writes the next MiB past the end with zeros,
        // so that later syncs overwrite blocks instead of converting preallocated extents.
        // A failure to write or wait for those zeros fails the sync too: waiting for them also
        // reports any earlier write-back error of the segment's file, which the kernel reports
        // only once, so the sync could not be trusted.
        self.writer()?.sync()
    }

    /// Takes what is unsynced for a sync performed without `&mut` access (group commit; see
    /// `log/pending_sync.rs`).
    pub(crate) fn begin_sync(&mut self) -> Result<pending_sync::PendingSync> {
        self.writer()?.begin_sync()
    }

    /// Records the outcome of a sync taken by [`Log::begin_sync`].
    pub(crate) fn finish_sync(
        &mut self,
        pending: &pending_sync::PendingSync,
        outcome: Result<()>,
    ) -> Result<()> {
        self.writer()?.finish_sync(pending, outcome)
    }

    /// Replays the records from offset `from` to the end published when this is called.
    ///
    /// `from` must be the offset of a record (as returned by an append or a replay), or the
    /// end offset (which yields nothing). Otherwise the first item is
    /// [`StorageError::InvalidOffset`]. Memory use is flat; payloads stay in the map. A gap a
    /// repair left is yielded as one [`StorageError::Gap`], and the replay goes on after it.
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.reader().replay(from)
    }

    /// Replays the records whose offset is in `[from, until)`. `until` need not be a record
    /// boundary; `from` must be, as for [`Log::replay`].
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        self.reader().replay_until(from, until)
    }

    /// Follows the log from offset `from`: replays every record from there, then waits for
    /// each new one. See [`LogReader::follow`] and [`Follow`].
    #[must_use]
    pub fn follow(&self, from: u64) -> Follow {
        self.reader().follow(from)
    }

    /// Follows the log from `from`, delivering only records on stable storage. See
    /// [`LogReader::follow_durable`].
    #[must_use]
    pub fn follow_durable(&self, from: u64) -> Follow {
        self.reader().follow_durable(from)
    }

    /// Opens the consumer `name`: a named, durable position in this log, stored in
    /// `consumer-{name}.pos` in the log's directory, with which a reader resumes where it left
    /// off after a restart. Nothing is written until [`Consumer::commit`]. Consumers live on
    /// the raw log, not only on `EventLog`, because a position is an offset of the log,
    /// whatever its records hold; [`EventLog::consumer`](crate::EventLog::consumer)
    /// delegates here. Works on read-only handles too (see [`Consumer`]).
    ///
    /// # Errors
    /// [`StorageError::Consumer`] if `name` is empty, longer than [`CONSUMER_NAME_MAX`]
    /// bytes, starts with a dot or holds anything but ASCII letters, digits, `-`, `_`, `.`;
    /// or if its position file is damaged or belongs to another log; [`StorageError::Io`].
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        Consumer::open(Arc::clone(&self.shared), name)
    }

    /// The names of the consumers that have a stored position in this log's directory,
    /// sorted.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the directory cannot be listed.
    pub fn consumers(&self) -> Result<Vec<String>> {
        consumer::list(&self.shared)
    }

    /// Removes consumer `name`'s stored position (durably: the directory is synced);
    /// returns whether it had one.
    ///
    /// # Errors
    /// [`StorageError::Consumer`] for a name [`Log::consumer`] refuses; [`StorageError::Io`].
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        consumer::remove(&self.shared, name)
    }

    /// Reads the one record at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact record starts at `offset`;
    /// [`StorageError::Gap`] if a repair replaced the records there with a gap.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        self.reader().read_at(offset)
    }

    /// The header of the frame at `offset`, a record's or a gap's.
    pub(crate) fn frame_header_at(&self, offset: u64) -> Result<crate::format::FrameHeader> {
        self.reader().frame_header_at(offset)
    }

    /// Turns read checks on or off for replays (and follows, `read_at`, proofs, index
    /// catch-up, the check of the tail at the first write after a clean close) made from this
    /// log or its readers from now on. Off by default; to have them from the open on, set
    /// [`Options::read_checks`].
    ///
    /// Replay reads segments through memory maps, so a disk read error on a page that is
    /// not in memory reaches the process as `SIGBUS`, which kills it. With read checks, a
    /// replay first reads each MiB of a segment (or a whole larger record) into memory with
    /// `MADV_POPULATE_READ`, and such an error ends it with [`StorageError::Io`] naming the
    /// segment and the bytes instead. Their price is replay speed (BENCHMARKS.md, "Choosing
    /// settings"). Where the kernel has no `MADV_POPULATE_READ` (Linux before 5.14, other
    /// systems) nothing is checked, and a page that left memory after it was read (reclaimed,
    /// or under a payload kept after its replay moved on) is read again without a check.
    pub fn set_read_checks(&self, on: bool) {
        self.shared.read_checks.store(on, Ordering::Relaxed);
    }

    /// The offset the next append gets.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset of the first record in the log.
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.snapshot().start()
    }

    /// The write timestamp of the last record in the log as this writer knows it (the last
    /// one appended, or the last one recovered on open); `None` for a read-only handle or an
    /// empty log.
    #[must_use]
    pub fn last_write_timestamp_ms(&self) -> Option<u64> {
        let writer = self.writer.as_ref()?;
        (writer.last_frame.0 != crate::format::NO_PREVIOUS_FRAME).then_some(writer.clock.last_ms())
    }

    /// The stored checksum of the last complete frame in the log as this writer knows it (it
    /// identifies that exact record, see [`Record::crc`]); `None` for a read-only handle or an
    /// empty log.
    #[must_use]
    pub fn last_record_crc(&self) -> Option<u32> {
        let writer = self.writer.as_ref()?;
        (writer.last_frame.0 != crate::format::NO_PREVIOUS_FRAME).then_some(writer.last_frame.1)
    }

    /// What recovery found and did when this log was opened.
    #[must_use]
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The options the log was opened with.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether this handle may append.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A reader handle that can replay from other threads while this log appends.
    #[must_use]
    pub fn reader(&self) -> LogReader {
        LogReader { shared: Arc::clone(&self.shared) }
    }

    /// Reads every record of every segment and checks its checksum, its offset and the chain.
    /// Gaps a repair left are listed in [`VerifyReport::gaps`], not treated as errors.
    ///
    /// # Errors
    /// The first [`StorageError::Corruption`] found, naming the segment and offset.
    pub fn verify(&self) -> Result<VerifyReport> {
        let snapshot = self.shared.snapshot();
        let mut report =
            VerifyReport { segments: snapshot.segments.len(), ..VerifyReport::default() };
        let mut replay = Replay::new(snapshot.clone(), snapshot.start(), snapshot.end);
        while let Some(record) = replay.next_ref() {
            match record {
                Ok(record) => {
                    report.records += 1;
                    report.payload_bytes += record.payload.len() as u64;
                }
                Err(StorageError::Gap { start, end, .. }) => report.gaps.push((start, end)),
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// Plans a repair of the log in `dir` without changing anything: checks every frame of
    /// every segment and reports what opening it with `mode` ([`RecoveryMode::Salvage`] or
    /// [`RecoveryMode::Truncate`]) would do, with [`RepairReport::applied`] `false`.
    ///
    /// # Errors
    /// [`StorageError::NotALogDirectory`] or an I/O error for a path that holds no log;
    /// [`StorageError::BrokenChain`] or [`StorageError::Corruption`] for damage no repair can
    /// mend (segments that do not form one chain, a damaged header); [`StorageError::InvalidOptions`]
    /// for [`RecoveryMode::Strict`]; [`StorageError::Io`] for a segment that cannot be read
    /// (every segment is read into memory before it is checked, so a disk read error is this
    /// error, not a `SIGBUS`).
    pub fn plan_repair(dir: impl AsRef<Path>, mode: RecoveryMode) -> Result<RepairReport> {
        open::plan_repair(dir.as_ref(), mode)
    }

    /// Makes everything durable, marks the log closed cleanly (`FORMAT.md` 6.2), so that the
    /// next open need not examine its tail, and releases the directory's lock. After an append failed
    /// part-way (an I/O error) the log is not marked clean: the next open examines its tail
    /// and clears what that append left. On a read-only log it does nothing.
    ///
    /// **Durability:** on return every appended record is on stable storage.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the final sync fails (the lock is released all the same), or
    /// [`StorageError::Poisoned`].
    pub fn close(mut self) -> Result<()> {
        // The rollup's hashing thread stops first (pages are derived: nothing waits for it).
        self.rollup.take();
        // The mark is the durable record (`DURABLE`) with a clean end, written unless it
        // already says exactly that.
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        writer.sync()?;
        writer.record_close()
    }

    /// Refuses every later write, as a failed sync does: a thread panicked while it held a
    /// shared writer, and may have left an append half done.
    pub(crate) fn poison(&mut self, cause: &str) {
        if let Some(writer) = self.writer.as_mut() {
            writer.poisoned.get_or_insert_with(|| cause.to_string());
        }
    }
}
