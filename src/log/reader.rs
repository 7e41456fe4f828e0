//! The state shared between the writer and its readers, and the [`LogReader`] handle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};

use super::follow::Follow;
use super::replay::{Record, Replay, Snapshot};
use super::tail::Tail;
use crate::error::Result;
use crate::segment::Segment;

/// State shared between the writer and every reader handle.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) segments: RwLock<Arc<[Arc<Segment>]>>,
    /// The published end offset; the writer stores it (release) after the segment set and
    /// the frames it covers are in place, and readers load it (acquire) first.
    pub(super) end: AtomicU64,
    /// The offset up to which the log is known to be on stable storage: the writer stores it
    /// (release) after each successful sync, never above `end`. For a read-only handle, what
    /// the frames it has read prove durable (see `log/tail.rs`).
    pub(super) durable_end: AtomicU64,
    /// The log's identifier (as in every segment header), for consumer position files.
    pub(super) log_id: u64,
    /// How many records the log had before its first segment (retention removed them): the
    /// Merkle tree's entry number of the first record (`FORMAT.md` 6.6).
    pub(super) start_entry: AtomicU64,
    /// Followers waiting for `end` or `durable_end` to move (see [`Shared::wake_waiters`]).
    pub(super) waiters: AtomicUsize,
    /// The lock and condition variable waiting followers sleep on; the writer touches them
    /// only while `waiters` is non-zero.
    pub(super) wake: Mutex<()>,
    pub(super) wake_cond: Condvar,
    /// The async tasks waiting like the followers above, each counted in `waiters` while it
    /// is here (see `log/follow_stream.rs`); `wake_all` takes them out and wakes them.
    #[cfg(feature = "async")]
    pub(super) tasks: Mutex<Vec<(u64, std::task::Waker)>>,
    /// Whether replays read each window of a segment into the page tables before touching it
    /// ([`Log::set_read_checks`](super::Log::set_read_checks)).
    pub(super) read_checks: AtomicBool,
    /// For a read-only handle: what a follower needs to find the records another process
    /// appends after this handle opened (`None` for a writer's handle, which publishes them).
    pub(super) tail: Option<Mutex<Tail>>,
}

impl Shared {
    pub(super) fn new(
        dir: PathBuf,
        segments: Arc<[Arc<Segment>]>,
        end: u64,
        durable_end: u64,
        log_id: u64,
        tail: Option<Tail>,
    ) -> Shared {
        Shared {
            dir,
            segments: RwLock::new(segments),
            end: AtomicU64::new(end),
            durable_end: AtomicU64::new(durable_end.min(end)),
            log_id,
            start_entry: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            wake: Mutex::new(()),
            wake_cond: Condvar::new(),
            #[cfg(feature = "async")]
            tasks: Mutex::new(Vec::new()),
            read_checks: AtomicBool::new(false),
            tail: tail.map(Mutex::new),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let end = self.end.load(Ordering::Acquire);
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner).clone();
        Snapshot { segments, end, read_checks: self.read_checks.load(Ordering::Relaxed) }
    }

    /// Called by the writer right after it stored `end` or `durable_end`: wakes the waiting
    /// followers, if there are any. With none (the common case) this is one relaxed load and
    /// no system call.
    ///
    /// Why a relaxed load suffices: a follower registers in `waiters` and then runs a
    /// process-wide memory barrier (`membarrier`, see `follow::heavy_barrier`) before it reads
    /// the end again, and the compiler fence keeps this load after the store in the program.
    /// So either the follower reads the new end, or this load sees it waiting. Where the
    /// barrier is not available, followers wait in slices of `follow::FALLBACK_SLICE` instead.
    #[inline]
    pub(super) fn wake_waiters(&self) {
        compiler_fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Wakes every follower waiting on this log (takes the lock, so that a follower between
    /// checking the end and sleeping cannot miss it), and every async task waiting on it.
    #[cold]
    #[inline(never)]
    pub(super) fn wake_all(&self) {
        {
            let _guard = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake_cond.notify_all();
        }
        #[cfg(feature = "async")]
        self.wake_tasks();
    }
}

/// A cheap, cloneable, `Send + Sync` handle that reads a log while its writer appends.
///
/// Each replay sees the records published when it started.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(super) shared: Arc<Shared>,
}

impl LogReader {
    /// Replays records from offset `from` to the current end. See
    /// [`Log::replay`](super::Log::replay).
    #[must_use]
    pub fn replay(&self, from: u64) -> Replay {
        self.replay_until(from, u64::MAX)
    }

    /// Replays records whose offset is in `[from, until)`. See
    /// [`Log::replay_until`](super::Log::replay_until).
    #[must_use]
    pub fn replay_until(&self, from: u64, until: u64) -> Replay {
        Replay::new(self.shared.snapshot(), from, until)
    }

    /// Reads the one record that starts at `offset`.
    ///
    /// # Errors
    /// [`StorageError::InvalidOffset`](crate::StorageError::InvalidOffset) if no intact record
    /// starts there; [`StorageError::Gap`](crate::StorageError::Gap) if a repair replaced the
    /// records there with a gap.
    pub fn read_at(&self, offset: u64) -> Result<Record> {
        let snapshot = self.shared.snapshot();
        let (index, frame) = snapshot.frame_at(offset)?;
        if frame.header.is_gap() {
            return Err(snapshot.gap_error(index, &frame.header));
        }
        Ok(snapshot.record(index, &frame.header))
    }

    /// The header of the frame that starts at `offset`, a record's or a gap's: what the index
    /// needs to know of a frame it covers, whether or not it is a record.
    pub(crate) fn frame_header_at(&self, offset: u64) -> Result<crate::format::FrameHeader> {
        let snapshot = self.shared.snapshot();
        Ok(snapshot.frame_at(offset)?.1.header)
    }

    /// Follows the log from offset `from`: every record from `from` on, and then each record
    /// as the writer publishes it. See [`Follow`] for what it yields and guarantees.
    ///
    /// `from` must be a record boundary or the end offset, as for [`LogReader::replay`];
    /// otherwise the first item is [`StorageError::InvalidOffset`](crate::StorageError::InvalidOffset)
    /// and the follow ends. **Durability:** it delivers records once they are published
    /// (in the page cache: a record delivered may still be lost to a power cut). Use
    /// [`LogReader::follow_durable`] for records on stable storage only.
    #[must_use]
    pub fn follow(&self, from: u64) -> Follow {
        Follow::new(Arc::clone(&self.shared), from, false)
    }

    /// As [`LogReader::follow`], but delivers a record only once it is on stable storage: once
    /// a sync (`append_sync`, `sync`, `close`, or the sync on open) that covers it has
    /// returned. A record appended but never synced is never delivered, even after it is
    /// published. On a read-only handle, a record is delivered once a later frame in the log
    /// records that it was synced (each frame says how far the log was durable when it was
    /// written), so the last records may wait until the writer appends again.
    #[must_use]
    pub fn follow_durable(&self, from: u64) -> Follow {
        Follow::new(Arc::clone(&self.shared), from, true)
    }

    /// The offset the next append will get: the end of the published records.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// The offset up to which the log is known to be on stable storage (for a read-only
    /// handle: what the frames it has read prove durable).
    #[must_use]
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable_end.load(Ordering::Acquire)
    }

    /// How many records retention removed before [`LogReader::start_offset`]: the Merkle
    /// tree's entry number of the first record still in the log.
    #[must_use]
    pub fn start_entry(&self) -> u64 {
        self.shared.start_entry.load(Ordering::Acquire)
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
