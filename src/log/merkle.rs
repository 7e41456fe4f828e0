//! The log's Merkle rollup: the pages kept beside the segments, the thread that hashes new
//! records off the append path, and the `Log` methods that answer heads, proofs and page
//! checks.
//!
//! Locking: the rollup sits behind one mutex. The hashing thread takes it for at most
//! `CATCH_UP_BYTES` of records at a time; a query takes it, hashes whatever was published
//! and not yet hashed, and answers, so every answer reflects exactly the records published
//! when it was asked.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Log, LogReader};
use crate::error::{Result, StorageError};
use crate::format::frame_stride;
use crate::rollup::page::{first_entry, LEVEL_MAX, PAGE_RECORD_LEN};
use crate::rollup::query::QueryError;
use crate::rollup::state::{EntryRef, EntrySource, Rollup};
use crate::rollup::store::{page_file_name, PageStore};
use crate::rollup::{
    verify_pages, ConsistencyProof, InclusionProof, PagesReport, RollupReport, TreeHead,
};
use crate::segment::sync_dir;

/// How long the hashing thread sleeps when it has caught up: at first, and at most (it
/// doubles while the log stays idle; queries hash what it has not, so this is only a delay).
const IDLE: Duration = Duration::from_millis(5);
const IDLE_MAX: Duration = Duration::from_millis(200);
/// Bytes of records the hashing thread hashes per turn of the lock.
const CATCH_UP_BYTES: u64 = 4 << 20;
/// Damaged pages a query recovers from before it gives up.
const RECOVERIES_MAX: usize = 16;

impl EntrySource for LogReader {
    fn start_offset(&self) -> u64 {
        LogReader::start_offset(self)
    }

    fn end_offset(&self) -> u64 {
        LogReader::end_offset(self)
    }

    fn start_entry(&self) -> u64 {
        self.shared.start_entry.load(Ordering::Acquire)
    }

    fn each_entry(
        &self,
        from: u64,
        until: u64,
        visit: &mut dyn FnMut(EntryRef<'_>) -> bool,
    ) -> Result<()> {
        let mut replay = self.replay_until(from, until);
        while let Some(record) = replay.next_ref() {
            let record = match record {
                Ok(record) => record,
                Err(StorageError::Gap { .. }) => continue,
                Err(err) => return Err(err),
            };
            let entry = EntryRef {
                offset: record.offset,
                end: record.offset.saturating_add(frame_stride(record.payload.len())),
                write_ms: record.write_timestamp_ms,
                payload: record.payload,
            };
            if !visit(entry) {
                break;
            }
        }
        Ok(())
    }
}

/// The rollup a log keeps, and its hashing thread (writers only). The pages are loaded and
/// checked against the log by the thread, or by the first query of a read-only open, never by
/// `open` itself, so that opening a log reads nothing of it.
#[derive(Debug)]
pub(super) struct RollupHandle {
    state: Arc<Mutex<Option<Rollup>>>,
    log_id: u64,
    writable: bool,
    /// The last error of the hashing thread.
    thread_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RollupHandle {
    /// Loads the pages of the log `reader` reads (writing to them if `writable`) and, for a
    /// writer, starts the hashing thread (unless [`super::background`] forbids it: queries
    /// then hash everything).
    ///
    /// # Errors
    /// A replay error while checking the stored pages against the log.
    pub(super) fn start(reader: LogReader, log_id: u64, writable: bool) -> Result<RollupHandle> {
        let state = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread_error = Arc::new(Mutex::new(None));
        let thread = match writable && super::background::threads_allowed() {
            true => Some(spawn_hasher(&state, &stop, &thread_error, reader, log_id)?),
            false => None,
        };
        Ok(RollupHandle { state, log_id, writable, thread_error, stop, thread })
    }

    /// Whether a hashing thread was started.
    #[cfg(test)]
    pub(super) fn has_thread(&self) -> bool {
        self.thread.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Rollup>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The rollup in `slot`, loaded first if it is not yet.
///
/// # Errors
/// A replay error while checking the stored pages against the log.
fn loaded<'a>(
    slot: &'a mut Option<Rollup>,
    reader: &LogReader,
    log_id: u64,
    writable: bool,
) -> Result<&'a mut Rollup> {
    if slot.is_none() {
        *slot = Some(Rollup::load(reader.dir(), log_id, writable, reader)?);
    }
    slot.as_mut().ok_or_else(|| page_error("the rollup could not be loaded"))
}

impl Drop for RollupHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn spawn_hasher(
    state: &Arc<Mutex<Option<Rollup>>>,
    stop: &Arc<AtomicBool>,
    error: &Arc<Mutex<Option<String>>>,
    reader: LogReader,
    log_id: u64,
) -> Result<JoinHandle<()>> {
    let (state, stop, error) = (Arc::clone(state), Arc::clone(stop), Arc::clone(error));
    let dir = reader.dir().to_path_buf();
    thread::Builder::new()
        .name("chronicle-rollup".to_string())
        .spawn(move || {
            lower_priority();
            let mut idle = IDLE;
            while !stop.load(Ordering::Acquire) {
                let end = reader.end_offset();
                let mut slot = state.lock().unwrap_or_else(PoisonError::into_inner);
                let turn = loaded(&mut slot, &reader, log_id, true).and_then(|rollup| {
                    if rollup.next_offset >= end {
                        return Ok(false);
                    }
                    let until = end.min(rollup.next_offset.saturating_add(CATCH_UP_BYTES));
                    rollup.catch_up(&reader, until).map(|()| true)
                });
                match turn {
                    Ok(true) => idle = IDLE,
                    Ok(false) => {
                        drop(slot);
                        thread::park_timeout(idle);
                        idle = (idle * 2).min(IDLE_MAX);
                    }
                    Err(err) => {
                        // A query meets the same error and returns it; keep it for the report
                        // and try again later.
                        *error.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(err.to_string());
                        drop(slot);
                        thread::park_timeout(IDLE_MAX);
                    }
                }
            }
        })
        .map_err(|e| StorageError::io("start the rollup's hashing thread", dir, e))
}

/// Gives the calling thread the lowest scheduling priority (nice 19; on Linux `setpriority`
/// on a thread id applies to that thread alone), so that hashing takes only CPU time the
/// writer and the page writer leave free. Failure is harmless: hashing keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

/// Drops the stored pages of the log in `dir` that cover `from` or anything after it (a
/// crash took the records there, or a repair changed them); returns how many level-0 pages
/// went. A level-0 page whose header the search finds unreadable goes too, with every page
/// after it, as loading the pages would drop them. The page files are removed instead where
/// a cut fails (its sync may report an earlier writeback error, or the file may be another
/// user's, which this process can read but not write) or a page file cannot be read for
/// want of permission: they are derived data, rebuilt from the log (but for the records
/// retention removed). A file this process can only read and that needs no cut stays.
///
/// # Errors
/// [`StorageError::Io`] if a cut failed and a page file cannot be removed either.
pub(super) fn forget_pages_from(dir: &Path, log_id: u64, from: u64) -> Result<u64> {
    let (mut store, _) = PageStore::open(dir, log_id, true);
    let held = store.count(0);
    let (mut lo, mut hi) = (0, held);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.read_header(0, mid) {
            Ok(page) if page.span.end_offset <= from => lo = mid + 1,
            _ => hi = mid,
        }
    }
    store.truncate(first_entry(0, lo));
    if store.write_error.is_none() {
        return Ok(held - lo);
    }
    drop(store);
    // Every page goes; a file that would not open is counted by its whole records.
    let level0 = std::fs::metadata(dir.join(page_file_name(0))).ok().filter(|m| m.is_file());
    let in_file = level0.map_or(0, |m| m.len() / PAGE_RECORD_LEN as u64);
    remove_page_files(dir)?;
    Ok(held.max(in_file))
}

/// Removes every page file of the log in `dir`, durably (else they could come back).
///
/// # Errors
/// [`StorageError::Io`] if a file cannot be removed, or the directory synced.
fn remove_page_files(dir: &Path) -> Result<()> {
    for level in 0..=LEVEL_MAX {
        let path = dir.join(page_file_name(level));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A directory under the name holds no pages: reading it fails, so no load trusts it.
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => {}
            Err(e) => return Err(StorageError::io("remove a page file", path, e)),
        }
    }
    sync_dir(dir)
}

impl Log {
    /// The id in the log's segment headers.
    fn log_id(&self) -> u64 {
        self.shared.snapshot().segments.first().map_or(0, |s| s.header().log_id)
    }

    /// Runs `query` on the rollup once it has hashed every published record: on the kept
    /// pages, or on a rollup built in memory for this call if the log keeps none. A damaged
    /// page met on the way is dropped, rebuilt from the log, and the query asked again.
    fn with_rollup<T>(
        &self,
        query: impl Fn(&Rollup, &LogReader) -> std::result::Result<T, QueryError>,
    ) -> Result<T> {
        let reader = self.reader();
        let end = reader.end_offset();
        let Some(handle) = &self.rollup else {
            let mut rollup = Rollup::in_memory(self.log_id(), &reader);
            rollup.catch_up(&reader, end)?;
            return query(&rollup, &reader).map_err(|err| match err {
                QueryError::Log(err) => err,
                QueryError::Page(bad) => page_error(&bad.reason),
            });
        };
        let mut slot = handle.lock();
        let rollup = loaded(&mut slot, &reader, handle.log_id, handle.writable)?;
        rollup.catch_up(&reader, end)?;
        for _ in 0..RECOVERIES_MAX {
            match query(rollup, &reader) {
                Ok(answer) => return Ok(answer),
                Err(QueryError::Log(err)) => return Err(err),
                Err(QueryError::Page(bad)) => rollup.recover_from(&bad, &reader)?,
            }
        }
        Err(page_error("stored pages kept failing their checks while being rebuilt"))
    }

    /// For retention: hashes every published record, makes the stored pages durable, and
    /// returns the offset of the last record under the last level-0 page on disk (records
    /// before it are in stored pages, so they may be removed); `UpTo(None)` if the log keeps
    /// no pages or has none on disk yet.
    ///
    /// # Errors
    /// A replay error; [`StorageError::Io`] if the page files cannot be synced.
    pub(super) fn durable_page_cover(&self) -> Result<PageCover> {
        let Some(handle) = &self.rollup else { return Ok(PageCover::UpTo(None)) };
        let reader = self.reader();
        let mut slot = handle.lock();
        let rollup = loaded(&mut slot, &reader, handle.log_id, handle.writable)?;
        if rollup.entries < reader.start_entry() {
            // Records were removed that no stored page covers (by `truncate_before_forced`
            // with the pages off, or their pages were lost since): no tree head can be
            // computed, whatever is removed now.
            return Ok(PageCover::TreeLost);
        }
        rollup.catch_up(&reader, reader.end_offset())?;
        let on_disk = rollup
            .store
            .make_durable()
            .map_err(|e| StorageError::io("sync page files", reader.dir(), e))?;
        let Some(last) = on_disk.checked_sub(1) else { return Ok(PageCover::UpTo(None)) };
        let page = rollup.store.read_header(0, last).map_err(|bad| page_error(&bad.reason))?;
        Ok(PageCover::UpTo(Some(page.span.last_offset)))
    }

    /// Checks the stored pages against the log, as loading them does (once: a handle that
    /// loaded them checked them then), and cuts those that do not match; a log that keeps no
    /// pages checks those an earlier open stored. A forced truncation does this first: once
    /// the records a page covers are gone, a page loaded later cannot be compared with them
    /// and is taken as it is. Pages that cannot be checked (a read error in the records they
    /// end with) are removed, and the tree with them once those records go.
    ///
    /// # Errors
    /// [`StorageError::Io`] if unchecked page files cannot be removed.
    pub(super) fn check_pages_before_removal(&self) -> Result<()> {
        let reader = self.reader();
        let Some(handle) = &self.rollup else {
            return match Rollup::load(reader.dir(), self.log_id(), true, &reader) {
                Ok(_) => Ok(()),
                Err(_) => remove_page_files(reader.dir()),
            };
        };
        // Held while the files go, so that the hashing thread cannot load them meanwhile.
        let mut slot = handle.lock();
        match loaded(&mut slot, &reader, handle.log_id, handle.writable) {
            Ok(_) => Ok(()),
            Err(_) => remove_page_files(reader.dir()),
        }
    }

    /// The head of the Merkle tree over the log's first `tree_size` records (all published
    /// records by default): its size, root, end offset and last write time.
    ///
    /// # Errors
    /// [`StorageError::Proof`] for a size larger than the log; a replay error
    /// ([`StorageError::Corruption`]) if a record cannot be read.
    pub fn tree_head(&self, tree_size: Option<u64>) -> Result<TreeHead> {
        self.with_rollup(|rollup, reader| rollup.head(reader, tree_size))
    }

    /// The head of the largest tree whose last record was written at or before `at_ms`
    /// (milliseconds since the Unix epoch); the empty tree if none was.
    ///
    /// # Errors
    /// As [`Log::tree_head`].
    pub fn tree_head_at(&self, at_ms: u64) -> Result<TreeHead> {
        self.with_rollup(|rollup, reader| rollup.head_at(reader, at_ms))
    }

    /// A proof that the record at `offset` is in the tree of `tree_size` records (all
    /// published records by default), carrying the record, so that it verifies alone
    /// ([`InclusionProof::verify`]).
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`] if no record starts at `offset` or it is not in that
    /// tree; [`StorageError::Proof`] for a size larger than the log; a replay error.
    pub fn inclusion_proof(&self, offset: u64, tree_size: Option<u64>) -> Result<InclusionProof> {
        self.with_rollup(|rollup, reader| rollup.inclusion(reader, offset, tree_size))
    }

    /// A proof that the tree of `old_size` records is a prefix of the tree of `new_size`
    /// records (all published records by default) ([`ConsistencyProof::verify`]).
    ///
    /// # Errors
    /// [`StorageError::Proof`] unless `0 < old_size <= new_size <=` the log's records; a
    /// replay error.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<ConsistencyProof> {
        self.with_rollup(|rollup, reader| rollup.consistency(reader, old_size, new_size))
    }

    /// What the rollup has hashed and stored, and what it found when it loaded its pages
    /// (which this loads, if no query has yet). Hashes no record.
    #[must_use]
    pub fn rollup_report(&self) -> RollupReport {
        let Some(handle) = &self.rollup else {
            return RollupReport::default();
        };
        let reader = self.reader();
        let mut slot = handle.lock();
        let rollup = match loaded(&mut slot, &reader, handle.log_id, handle.writable) {
            Ok(rollup) => rollup,
            Err(err) => {
                let error = Some(err.to_string());
                return RollupReport { stored_pages: true, error, ..RollupReport::default() };
            }
        };
        let pages = rollup.store.counts();
        let thread_error = handle.thread_error.lock().unwrap_or_else(PoisonError::into_inner);
        RollupReport {
            stored_pages: true,
            entries_hashed: rollup.entries,
            hashed_to_offset: rollup.next_offset,
            pages,
            disk_bytes: rollup.store.disk_bytes(),
            memory_bytes: rollup.memory_bytes(),
            entries_kept_on_open: rollup.notes.entries_kept,
            dropped: rollup.notes.dropped.clone(),
            pages_rebuilt: rollup.pages_rebuilt,
            error: rollup.store.write_error.clone().or_else(|| thread_error.clone()),
        }
    }

    /// Recomputes the rollup's pages from the log and checks the stored ones of `level` (all
    /// levels by default) whose index is in `pages` (all by default): each page's checksum and
    /// header hash, its link to the previous page of its level, its root, children and span.
    /// Reads the whole log; changes nothing.
    ///
    /// # Errors
    /// A replay error ([`StorageError::Corruption`]) if a record cannot be read.
    pub fn verify_pages(
        &self,
        level: Option<u8>,
        pages: Option<Range<u64>>,
    ) -> Result<PagesReport> {
        let reader = self.reader();
        if reader.start_entry() > 0 {
            return Err(page_error(
                "checking pages against the log is not supported once retention removed its \
                 first records (the pages of the removed range cannot be recomputed)",
            ));
        }
        verify_pages(reader.dir(), self.log_id(), &reader, level, pages)
    }
}

fn page_error(reason: &str) -> StorageError {
    StorageError::Proof { reason: format!("the rollup's pages: {reason}") }
}

/// How far the stored Merkle pages let retention remove records.
pub(super) enum PageCover {
    /// Up to the last record under the last level-0 page on disk; `None` if there is none.
    UpTo(Option<u64>),
    /// No limit: records were already removed that no stored page covers, so the tree cannot
    /// be computed whatever is removed now.
    TreeLost,
}
