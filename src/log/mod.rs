//! The raw record log: an ordered set of segments, one writer, offsets, replay, and recovery
//! on open. It stores byte payloads and never looks inside them.

mod recovery;
mod replay;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use replay::Snapshot;
pub use replay::{Payload, Record, RecordRef, Replay};

use crate::error::{Result, StorageError};
use crate::format::{
    encode_frame_header, frame_stride, parse_segment_file_name, segment_file_name, FormatError,
    SegmentHeader, FLAG_BATCH_CONTINUES, FORMAT_VERSION, FRAME_ALIGN, FRAME_HEADER_LEN,
    LOCK_FILE_NAME, NO_PREVIOUS_FRAME, SEGMENT_BYTES_MAX, SEGMENT_FILE_SUFFIX, SEGMENT_HEADER_LEN,
    TEMP_FILE_SUFFIX,
};
use crate::segment::{sync_dir, Segment, SegmentWriter};
use recovery::{check_sealed, examine_after_chain, walk_chain};

/// Smallest accepted [`Options::segment_bytes`].
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Default [`Options::segment_bytes`]: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Default [`Options::record_bytes_max`]: 16 MiB.
pub const RECORD_BYTES_MAX_DEFAULT: u64 = 16 << 20;

/// Suffix given to segment files that a repair set aside; they are kept for inspection and
/// ignored by `open`.
pub const DROPPED_SUFFIX: &str = ".dropped";

/// What `open` does when it finds damage that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, with an error naming the segment and offset. Nothing is changed.
    #[default]
    Strict,
    /// Truncate the log at the first bad frame: zero the rest of that segment, set later
    /// segments aside (renamed with [`DROPPED_SUFFIX`]), and report what was dropped in
    /// [`OpenReport::repair`]. Verifies every frame of every segment, so it reads the whole
    /// log. Only for writers.
    Repair,
}

/// How a log is opened. Every field has a default (see [`Options::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Size of each new segment file, header included. Default 64 MiB
    /// ([`SEGMENT_BYTES_DEFAULT`]); at least 4 KiB ([`SEGMENT_BYTES_MIN`]), at most 4 GiB,
    /// a multiple of 8. Existing segments keep the size they were created with.
    pub segment_bytes: u64,
    /// Largest payload one record may have. Default 16 MiB ([`RECORD_BYTES_MAX_DEFAULT`]);
    /// at least 1, and a record of this size must fit in an empty segment
    /// (`segment_bytes - 64 - 32` or less).
    pub record_bytes_max: u64,
    /// What to do about damage found on open. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            recovery: RecoveryMode::Strict,
        }
    }
}

impl Options {
    /// Checks the options against each other and the format's limits.
    ///
    /// # Errors
    /// [`StorageError::InvalidOptions`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(StorageError::InvalidOptions { reason });
        if self.segment_bytes < SEGMENT_BYTES_MIN || self.segment_bytes > SEGMENT_BYTES_MAX {
            return invalid(format!(
                "segment_bytes {} is outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.segment_bytes % FRAME_ALIGN as u64 != 0 {
            return invalid(format!(
                "segment_bytes {} is not a multiple of {FRAME_ALIGN}",
                self.segment_bytes
            ));
        }
        let fits = self.segment_bytes - (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64;
        if self.record_bytes_max == 0 || self.record_bytes_max > fits {
            return invalid(format!(
                "record_bytes_max {} must be between 1 and {fits} (what fits in an empty \
                 segment of {} bytes)",
                self.record_bytes_max, self.segment_bytes
            ));
        }
        Ok(())
    }
}

/// What recovery found and did when a log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segment files in the log after opening.
    pub segments: usize,
    /// Whether the directory held no log and a new one was started.
    pub created: bool,
    /// Frames whose checksums recovery verified.
    pub records_scanned: u64,
    /// Data bytes recovery read (frames verified plus the tail examined for stray data).
    pub bytes_scanned: u64,
    /// The offset the next append gets.
    pub end_offset: u64,
    /// Leftover temporary files of an interrupted segment creation that were removed.
    pub temp_files_removed: usize,
    /// A torn tail that was cut off (zeroed in place by a writer; only skipped by a reader).
    pub torn_tail: Option<TornTail>,
    /// What an explicit [`RecoveryMode::Repair`] dropped.
    pub repair: Option<RepairReport>,
}

/// Unacknowledged bytes at the end of the log left by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the log now ends.
    pub offset: u64,
    /// Bytes after that point that held data and were cut.
    pub bytes: u64,
    /// Intact frames among them that were dropped: members of an unfinished batch, or
    /// frames written after a lost one.
    pub frames_dropped: u64,
}

/// What a repair dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log now ends: the offset of the first bad frame.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// Data bytes dropped, including whole segments set aside.
    pub bytes_dropped: u64,
    /// Segment files renamed with [`DROPPED_SUFFIX`].
    pub segments_dropped: Vec<PathBuf>,
}

/// What [`Log::verify`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Records whose checksums were verified.
    pub records: u64,
    /// Payload bytes those records hold.
    pub payload_bytes: u64,
}

/// State shared between the writer and every reader handle.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    segments: RwLock<Arc<[Arc<Segment>]>>,
    /// The published end offset; the writer stores it (release) after the segment set and
    /// the frames it covers are in place, and readers load it (acquire) first.
    end: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        let end = self.end.load(Ordering::Acquire);
        let segments = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Snapshot { segments, end }
    }
}

/// A cheap, cloneable, `Send + Sync` handle that reads a log while its writer appends.
///
/// Each replay sees the records published when it started.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    /// Replays records from offset `from` to the current end. See [`Log::replay`].
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.replay_until(from, u64::MAX)
    }

    /// Replays records whose offset is in `[from, until)`. See [`Log::replay_until`].
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        Replay::new(self.shared.snapshot(), from, until)
    }

    /// Reads the one record that starts at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact record starts there.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        let snapshot = self.shared.snapshot();
        let (index, header) = snapshot.frame_at(offset)?;
        Ok(snapshot.record(index, &header))
    }

    /// The offset the next append will get: the end of the published records.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset of the first record still in the log (0 unless segments were removed).
    #[must_use]
    pub fn start_offset(&self) -> u64 {
        self.shared.snapshot().start()
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// The single writer's state.
#[derive(Debug)]
struct Writer {
    active: SegmentWriter,
    /// Data position of the next frame in the active segment.
    pos: u64,
    /// Data position up to which the active segment is known durable.
    synced_pos: u64,
    /// Offset and checksum of the last complete frame, for the next segment's header.
    last_frame: (u64, u32),
    last_timestamp_ms: u64,
    poisoned: Option<String>,
    shared: Arc<Shared>,
    segment_bytes: u64,
    record_bytes_max: u64,
    /// Holds the directory's exclusive lock for as long as the writer lives.
    _lock: File,
}

impl Writer {
    fn base(&self) -> u64 {
        self.active.segment().base_offset()
    }

    fn end(&self) -> u64 {
        self.base() + self.pos
    }

    fn capacity(&self) -> u64 {
        self.active.segment().capacity()
    }

    fn timestamp(&mut self) -> u64 {
        self.last_timestamp_ms = now_ms().max(self.last_timestamp_ms);
        self.last_timestamp_ms
    }

    fn unsynced_before(&self, pos: u64) -> u32 {
        u32::try_from(pos - self.synced_pos).unwrap_or(u32::MAX)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes everything written to the active segment durable; poisons on failure.
    fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.pos > self.synced_pos {
            if let Err(err) = self.active.sync(self.synced_pos, self.pos) {
                self.poisoned = Some(err.to_string());
                return Err(StorageError::io(
                    "sync segment",
                    self.active.segment().path(),
                    err,
                ));
            }
            self.synced_pos = self.pos;
        }
        Ok(())
    }

    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.check_usable()?;
        let max = self.record_bytes_max;
        if payload.len() as u64 > max {
            return Err(StorageError::RecordTooLarge {
                len: payload.len() as u64,
                max,
            });
        }
        if self.pos + frame_stride(payload.len()) > self.capacity() {
            self.roll()?;
        }
        let timestamp = self.timestamp();
        let offset = self.write_frame(payload, timestamp, 0)?;
        self.publish();
        Ok(offset)
    }

    fn append_batch<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        self.check_usable()?;
        let max = self.record_bytes_max;
        let mut total = 0u64;
        for payload in payloads {
            let len = payload.as_ref().len() as u64;
            if len > max {
                return Err(StorageError::RecordTooLarge { len, max });
            }
            total += frame_stride(payload.as_ref().len());
        }
        let Some(last) = payloads.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        let fresh_capacity = self.segment_bytes - SEGMENT_HEADER_LEN as u64;
        if total > fresh_capacity {
            return Err(StorageError::RecordTooLarge {
                len: total,
                max: fresh_capacity,
            });
        }
        if self.pos + total > self.capacity() {
            self.roll()?;
        }
        let timestamp = self.timestamp();
        let mut offsets = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let flags = if i == last { 0 } else { FLAG_BATCH_CONTINUES };
            offsets.push(self.write_frame(payload.as_ref(), timestamp, flags)?);
        }
        self.publish();
        Ok(offsets)
    }

    /// Makes the frames written so far visible to readers.
    fn publish(&mut self) {
        self.active.publish(self.pos);
        self.shared.end.store(self.end(), Ordering::Release);
    }

    /// Seals the active segment (syncing it whole, so a sealed segment is always durable
    /// before its successor exists) and starts a new one at the current end.
    fn roll(&mut self) -> Result<()> {
        self.sync()?;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: now_ms(),
            base_offset: self.end(),
            prev_last_frame_offset: self.last_frame.0,
            prev_last_frame_crc: self.last_frame.1,
        };
        let active = Segment::create(&self.shared.dir, self.segment_bytes, header)?;
        {
            let mut segments = self
                .shared
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut next: Vec<Arc<Segment>> = segments.iter().cloned().collect();
            next.push(Arc::clone(active.segment()));
            *segments = next.into();
        }
        self.active = active;
        self.pos = 0;
        self.synced_pos = 0;
        Ok(())
    }

    /// Writes one frame at the current position without publishing it.
    fn write_frame(&mut self, payload: &[u8], timestamp_ms: u64, flags: u32) -> Result<u64> {
        let offset = self.end();
        let header = encode_frame_header(
            offset,
            timestamp_ms,
            self.unsynced_before(self.pos),
            flags,
            payload,
        );
        self.active.write_frame(self.pos, &header, payload)?;
        self.pos += frame_stride(payload.len());
        if flags & FLAG_BATCH_CONTINUES == 0 {
            self.last_frame = (
                offset,
                u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            );
        }
        Ok(offset)
    }
}

/// An append-only log of byte records in a directory of segment files.
///
/// One `Log` per directory may write (an exclusive lock enforces it); any number of
/// read-only opens and [`LogReader`] handles may read. See the crate docs for the durability
/// contract; each method states its own.
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    writer: Option<Writer>,
    options: Options,
    report: OpenReport,
}

impl Log {
    /// Opens the log in `dir` for writing with default [`Options`], creating the directory
    /// and an empty log if needed. See [`Log::open_with`].
    ///
    /// # Errors
    /// As [`Log::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the log in `dir` for writing, creating the directory and an empty log if needed.
    ///
    /// Takes the directory's exclusive lock, removes leftovers of an interrupted segment
    /// creation, checks every segment header and the chain between segments, and scans the
    /// last segment: a torn tail (bytes a crash left unfinished, which no `append_sync` ever
    /// acknowledged) is zeroed in place, synced, and reported in [`Log::open_report`]. The
    /// surviving records are synced before the first append. Cost: one header per segment plus
    /// the last segment's data region; the rest of the log is not read.
    ///
    /// # Errors
    /// [`StorageError::Locked`] if another writer holds the directory;
    /// [`StorageError::NotALog`] or [`StorageError::UnsupportedVersion`] for a foreign or
    /// newer file; [`StorageError::Corruption`] or [`StorageError::BrokenChain`] for damage a
    /// crash cannot explain (unless [`RecoveryMode::Repair`]); [`StorageError::InvalidOptions`];
    /// [`StorageError::Io`].
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        open_log(dir.as_ref(), options, false)
    }

    /// Opens the log in `dir` for reading only. Takes no lock and changes nothing on disk; a
    /// torn tail is skipped, not zeroed. Sees the records that were complete when it opened.
    ///
    /// # Errors
    /// As [`Log::open_with`] (except `Locked`); [`StorageError::Io`] if `dir` does not exist.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        open_log(dir.as_ref(), Options::default(), true)
    }

    fn writer(&mut self) -> Result<&mut Writer> {
        let writer = self.writer.as_mut().ok_or(StorageError::ReadOnly)?;
        writer.check_usable()?;
        Ok(writer)
    }

    /// Appends one record and returns its offset.
    ///
    /// **Durability:** on return the record is in the operating system's page cache (it was
    /// copied into the segment's shared memory map): it survives this process crashing, but
    /// not the machine losing power until a later [`Log::sync`] or `append_sync`. No system
    /// call is made, except when a segment fills up: then the full segment is synced and the
    /// next one created.
    ///
    /// # Errors
    /// [`StorageError::RecordTooLarge`] (nothing written), [`StorageError::ReadOnly`],
    /// [`StorageError::Poisoned`], or [`StorageError::Io`] from creating a new segment (the
    /// record was not written; the log stays usable).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.writer()?.append(payload)
    }

    /// Appends one record and makes it durable before returning its offset.
    ///
    /// **Durability:** on return this record and every record appended before it are on
    /// stable storage (`msync(MS_SYNC)` of the written range, an `fdatasync` of it on Linux;
    /// new segment files and their directory entries were synced when created).
    ///
    /// # Errors
    /// As [`Log::append`]; if the sync fails the record may or may not be durable, the error
    /// is returned, and the writer is poisoned: every later write returns
    /// [`StorageError::Poisoned`] until the log is reopened.
    pub fn append_sync(&mut self, payload: &[u8]) -> Result<u64> {
        let offset = self.append(payload)?;
        self.sync()?;
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
        self.writer()?.append_batch(payloads)
    }

    /// Appends a batch (see [`Log::append_batch`]) and makes it, and everything before it,
    /// durable before returning, with one sync for the whole batch.
    ///
    /// # Errors
    /// As [`Log::append_batch`] and [`Log::append_sync`].
    pub fn append_batch_sync<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Vec<u64>> {
        let offsets = self.append_batch(payloads)?;
        self.sync()?;
        Ok(offsets)
    }

    /// Makes every record appended so far durable.
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`], [`StorageError::Poisoned`], or [`StorageError::Io`] if the
    /// sync fails, which poisons the writer.
    pub fn sync(&mut self) -> Result<()> {
        self.writer()?.sync()
    }

    /// Replays the records from offset `from` to the end published when this is called.
    ///
    /// `from` must be the offset of a record (as returned by an append or a replay), or the
    /// end offset (which yields nothing). Otherwise the first item is
    /// [`StorageError::InvalidOffset`]. Memory use is flat; payloads stay in the map.
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

    /// Reads the one record at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no intact record starts at `offset`.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        self.reader().read_at(offset)
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
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Reads every record of every segment and checks its checksum, its offset and the chain.
    ///
    /// # Errors
    /// The first [`StorageError::Corruption`] found, naming the segment and offset.
    pub fn verify(&self) -> Result<VerifyReport> {
        let snapshot = self.shared.snapshot();
        let mut report = VerifyReport {
            segments: snapshot.segments.len(),
            ..VerifyReport::default()
        };
        let mut replay = Replay::new(snapshot.clone(), snapshot.start(), snapshot.end);
        while let Some(record) = replay.next_ref() {
            let record = record?;
            report.records += 1;
            report.payload_bytes += record.payload.len() as u64;
        }
        Ok(report)
    }

    /// Makes everything durable and releases the directory's lock.
    ///
    /// **Durability:** on return every appended record is on stable storage.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the final sync fails (the lock is released all the same), or
    /// [`StorageError::Poisoned`].
    pub fn close(mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.sync(),
            None => Ok(()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Segment files and leftover temporary files found in a log directory.
struct Listing {
    bases: Vec<u64>,
    temps: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing> {
    let mut listing = Listing {
        bases: Vec::new(),
        temps: Vec::new(),
    };
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list log directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_segment_file_name(name) {
            listing.bases.push(base);
        } else if name.ends_with(&format!("{SEGMENT_FILE_SUFFIX}{TEMP_FILE_SUFFIX}")) {
            listing.temps.push(entry.path());
        }
    }
    listing.bases.sort_unstable();
    Ok(listing)
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io("open lock file", &path, e))?;
    // `flock`-style: held by the open file description, so no other close in this process
    // releases it (unlike a POSIX record lock).
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(StorageError::io("lock log directory", &path, e)),
    }
}

fn open_log(dir: &Path, options: Options, read_only: bool) -> Result<Log> {
    options.validate()?;
    if read_only && options.recovery == RecoveryMode::Repair {
        return Err(StorageError::InvalidOptions {
            reason: "repair needs a writer, not a read-only open".to_string(),
        });
    }
    let repair = options.recovery == RecoveryMode::Repair;
    let lock = if read_only {
        None
    } else {
        fs::create_dir_all(dir).map_err(|e| StorageError::io("create log directory", dir, e))?;
        Some(lock_dir(dir)?)
    };
    let mut report = OpenReport::default();
    let listing = list_dir(dir)?;
    if !read_only && !listing.temps.is_empty() {
        for temp in &listing.temps {
            fs::remove_file(temp)
                .map_err(|e| StorageError::io("remove temporary file", temp, e))?;
        }
        sync_dir(dir)?;
        report.temp_files_removed = listing.temps.len();
    }

    let mut segments = Vec::with_capacity(listing.bases.len());
    for &base in &listing.bases {
        segments.push(Segment::open(
            dir.join(segment_file_name(base)),
            base,
            !read_only,
        )?);
    }

    // Sealed segments: check each link; with repair, also every frame.
    let mut cut: Option<(usize, u64, String)> = None;
    for i in 1..segments.len() {
        let next_base = segments[i].base_offset();
        let (before, after) = segments.split_at_mut(i);
        let (prev, next) = (&mut before[i - 1], &after[0]);
        let checked = check_link(prev, next, repair);
        match checked {
            Ok(()) => {}
            Err(LinkFailure::Frame(pos, kind)) if repair => {
                cut = Some((i - 1, pos, kind.to_string()));
                break;
            }
            Err(LinkFailure::Broken(reason)) if repair => {
                let data_end = next_base
                    .saturating_sub(prev.base_offset())
                    .min(prev.capacity());
                cut = Some((i - 1, data_end, reason));
                break;
            }
            Err(LinkFailure::Frame(pos, kind)) => {
                return Err(StorageError::Corruption {
                    segment: prev.path().to_path_buf(),
                    offset: prev.base_offset() + pos,
                    kind,
                });
            }
            Err(LinkFailure::Broken(reason)) => {
                return Err(StorageError::BrokenChain {
                    segment: next.path().to_path_buf(),
                    reason,
                });
            }
        }
    }
    if let Some((keep, pos, reason)) = &cut {
        let repair_report = set_aside(dir, &mut segments, *keep, *pos, reason)?;
        report.repair = Some(repair_report);
    }

    let last = segments.pop();
    let mut all: Vec<Arc<Segment>> = segments.into_iter().map(Arc::new).collect();
    let mut tail = Tail {
        end: 0,
        last_frame: (NO_PREVIOUS_FRAME, 0),
        last_timestamp_ms: 0,
    };
    let active = match last {
        Some(mut last) => {
            tail = recover_tail(&mut last, repair, read_only, &mut report)?;
            if read_only {
                all.push(Arc::new(last));
                None
            } else {
                let writer = SegmentWriter::new(last)?;
                // The surviving records may still be only in the page cache (the previous
                // writer may have crashed before syncing). Make them durable now, so that
                // every frame written from here on truthfully records what was durable.
                let end_pos = tail.end - writer.segment().base_offset();
                writer.sync(0, end_pos).map_err(|e| {
                    StorageError::io("sync recovered segment", writer.segment().path(), e)
                })?;
                Some(writer)
            }
        }
        // A read-only open of a directory with no segments sees an empty log.
        None if read_only => None,
        None => {
            let header = SegmentHeader {
                version: FORMAT_VERSION,
                flags: 0,
                created_at_ms: now_ms(),
                base_offset: 0,
                prev_last_frame_offset: NO_PREVIOUS_FRAME,
                prev_last_frame_crc: 0,
            };
            report.created = true;
            Some(Segment::create(dir, options.segment_bytes, header)?)
        }
    };
    if let Some(active) = &active {
        all.push(Arc::clone(active.segment()));
    }
    report.segments = all.len();
    report.end_offset = tail.end;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        segments: RwLock::new(all.into()),
        end: AtomicU64::new(tail.end),
    });
    let writer = match (active, lock) {
        (Some(active), Some(lock)) => {
            let pos = tail.end - active.segment().base_offset();
            let mut writer = Writer {
                active,
                pos,
                synced_pos: pos,
                last_frame: tail.last_frame,
                last_timestamp_ms: tail.last_timestamp_ms,
                poisoned: None,
                shared: Arc::clone(&shared),
                segment_bytes: options.segment_bytes,
                record_bytes_max: options.record_bytes_max,
                _lock: lock,
            };
            writer.publish();
            Some(writer)
        }
        _ => None,
    };
    Ok(Log {
        shared,
        writer,
        options,
        report,
    })
}

/// Where the recovered log ends and what its last complete frame was.
struct Tail {
    end: u64,
    last_frame: (u64, u32),
    last_timestamp_ms: u64,
}

/// Scans the last segment, decides between a clean end, a torn tail and damage, and (for a
/// writer) zeroes the torn bytes in place and publishes the surviving data.
fn recover_tail(
    last: &mut Segment,
    repair: bool,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<Tail> {
    let base = last.base_offset();
    let data = last.data_exclusive();
    let walk = walk_chain(data, base, 0);
    let after = examine_after_chain(data, base, walk.chain_end);
    report.records_scanned += walk.frames;
    report.bytes_scanned += last.capacity();
    let end_pos = walk.complete_end;
    let dirty_end = after.dirty_end.max(walk.chain_end);
    if let Some(next_valid) = after.written_after_durable {
        let kind = walk
            .stop
            .clone()
            .unwrap_or(FormatError::DamagedBeforeValidData { next_valid });
        if !repair {
            return Err(StorageError::Corruption {
                segment: last.path().to_path_buf(),
                offset: base + walk.chain_end,
                kind,
            });
        }
        let entry = report.repair.get_or_insert(RepairReport {
            offset: base + end_pos,
            reason: kind.to_string(),
            bytes_dropped: 0,
            segments_dropped: Vec::new(),
        });
        entry.offset = entry.offset.min(base + end_pos);
        entry.bytes_dropped += dirty_end - end_pos;
    } else if dirty_end > end_pos {
        report.torn_tail = Some(TornTail {
            offset: base + end_pos,
            bytes: dirty_end - end_pos,
            frames_dropped: walk.incomplete_frames + after.stray_frames,
        });
    }
    if !read_only {
        if dirty_end > end_pos {
            last.zero_exclusive(end_pos, dirty_end)?;
        }
        last.set_published_exclusive(end_pos);
    }
    let last_frame = match walk.last_complete {
        Some(h) => (h.offset, h.crc),
        None => (
            last.header().prev_last_frame_offset,
            last.header().prev_last_frame_crc,
        ),
    };
    Ok(Tail {
        end: base + end_pos,
        last_frame,
        last_timestamp_ms: walk.last_complete.map_or(0, |h| h.write_timestamp_ms),
    })
}

enum LinkFailure {
    /// A frame of the previous segment is bad at this data position.
    Frame(u64, FormatError),
    /// The headers do not agree.
    Broken(String),
}

/// Checks that `next` continues `prev`: its base is where `prev`'s data ends, and its header
/// names `prev`'s last frame, which must be intact and complete a record. With `full`, also
/// verifies every frame of `prev`. Publishes `prev`'s data on success.
fn check_link(prev: &mut Segment, next: &Segment, full: bool) -> Result<(), LinkFailure> {
    let prev_base = prev.base_offset();
    let h = *next.header();
    let data_end = h
        .base_offset
        .checked_sub(prev_base)
        .filter(|&end| end <= prev.capacity() && end > 0)
        .ok_or_else(|| {
            LinkFailure::Broken(format!(
                "base offset {} does not fall inside the previous segment (base {prev_base}, \
                 {} data bytes); a segment is missing or out of place",
                h.base_offset,
                prev.capacity()
            ))
        })?;
    if full {
        check_sealed(prev.data_exclusive(), prev_base, data_end)
            .map_err(|(pos, kind)| LinkFailure::Frame(pos, kind))?;
    }
    let last_pos = h
        .prev_last_frame_offset
        .checked_sub(prev_base)
        .filter(|&pos| pos < data_end)
        .ok_or_else(|| {
            LinkFailure::Broken(format!(
                "header names previous last frame at offset {}, outside the previous segment \
                 (base {prev_base})",
                h.prev_last_frame_offset
            ))
        })?;
    let bytes = prev
        .data_exclusive()
        .get(usize::try_from(last_pos).unwrap_or(usize::MAX)..);
    let bytes = bytes.unwrap_or_default();
    let bytes = bytes
        .get(..usize::try_from(data_end - last_pos).unwrap_or(usize::MAX))
        .unwrap_or(bytes);
    match crate::format::decode_frame(bytes, h.prev_last_frame_offset) {
        Ok(crate::format::FrameRead::Frame(frame)) => {
            if frame.header.crc != h.prev_last_frame_crc {
                return Err(LinkFailure::Broken(format!(
                    "previous segment's last frame has checksum {:#010x}, header expects \
                     {:#010x}: the previous segment is not the one this segment followed",
                    frame.header.crc, h.prev_last_frame_crc
                )));
            }
            if last_pos + frame.header.stride() != data_end {
                return Err(LinkFailure::Broken(format!(
                    "previous segment's last frame ends at offset {}, not at this segment's \
                     base {}",
                    prev_base + last_pos + frame.header.stride(),
                    h.base_offset
                )));
            }
            if frame.header.flags & FLAG_BATCH_CONTINUES != 0 {
                return Err(LinkFailure::Frame(last_pos, FormatError::IncompleteBatch));
            }
        }
        Ok(crate::format::FrameRead::End) => {
            return Err(LinkFailure::Frame(
                last_pos,
                FormatError::UnexpectedEnd {
                    expected_end: h.base_offset,
                },
            ));
        }
        Err(kind) => return Err(LinkFailure::Frame(last_pos, kind)),
    }
    prev.set_published_exclusive(data_end);
    Ok(())
}

/// Repair: keeps segments `..=keep`, truncates segment `keep` at data position `pos`, and
/// renames every later segment with [`DROPPED_SUFFIX`].
fn set_aside(
    dir: &Path,
    segments: &mut Vec<Segment>,
    keep: usize,
    pos: u64,
    reason: &str,
) -> Result<RepairReport> {
    let mut report = RepairReport {
        offset: segments.get(keep).map_or(0, |s| s.base_offset() + pos),
        reason: reason.to_string(),
        bytes_dropped: 0,
        segments_dropped: Vec::new(),
    };
    for segment in segments.drain(keep + 1..) {
        report.bytes_dropped += segment.capacity();
        let from = segment.path().to_path_buf();
        let mut to = from.clone().into_os_string();
        to.push(DROPPED_SUFFIX);
        drop(segment);
        fs::rename(&from, &to).map_err(|e| StorageError::io("set aside segment", &from, e))?;
        report.segments_dropped.push(PathBuf::from(to));
    }
    if let Some(segment) = segments.get_mut(keep) {
        let capacity = segment.capacity();
        // Zero everything from the bad frame on; the tail scan then finds a clean end here.
        segment.zero_exclusive(pos, capacity)?;
        report.bytes_dropped += capacity - pos;
    }
    sync_dir(dir)?;
    Ok(report)
}
