//! Following a log: replay from an offset, then wait for the records published next.
//!
//! A [`Follow`] replays over a [`Snapshot`] bounded by the published end (or, for a durable
//! follow, the synced end) and, when it reaches that bound, takes a fresh snapshot: it sees
//! new segments as the writer rolls, and never reads past what was published, so it never
//! sees a half-written record or part of a batch. When nothing is new it registers in
//! [`Shared::waiters`] and sleeps on the shared condition variable; the writer pays one
//! relaxed load per publish while nobody waits (see [`Shared::wake_waiters`]). A read-only
//! handle has no writer in this process: its follower polls the files instead
//! (`log/tail.rs`). With the `async` feature, `log/follow_stream.rs` wraps a [`Follow`] as a
//! `Stream` whose task waits the same way, without blocking a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::reader::Shared;
use super::replay::{Record, Replay};
use crate::error::StorageError;

/// How long a follower at the live end watches for the next record before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// How long a waiting follower sleeps at most between two looks at the end when the
/// process-wide memory barrier is not available (see [`Shared::wake_waiters`]): a wake-up the
/// writer missed then costs at most this much delay.
const FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// How often a follower of a read-only handle looks for records another process appended.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// What [`Follow::next_timeout`] found.
#[derive(Debug)]
pub enum Next<T = Record> {
    /// The next record, in offset order: never one already delivered, never one skipped.
    Record(T),
    /// An error. A [`StorageError::Gap`] (records a repair took out) is reported once and
    /// the follow goes on after it; after any other error (a damaged frame, a bad start
    /// offset, a record that is not an event, the log cut back behind the follower) the
    /// follow has ended and every later call returns [`Next::Stopped`].
    Error(StorageError),
    /// Every record up to the live end (the published end, or the synced end for a durable
    /// follow) has been delivered. Reported once each time the follower reaches the end (the
    /// first time even if it started there); the next call waits for new records.
    CaughtUp,
    /// Nothing new arrived before the timeout.
    TimedOut,
    /// [`FollowStop::stop`] was called, or the follow ended after an error.
    Stopped,
}

/// A handle that stops a [`Follow`] from another thread: cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct FollowStop {
    stopped: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl FollowStop {
    /// Stops the follow: a follower waiting in [`Follow::next_timeout`] wakes at once and
    /// gets [`Next::Stopped`], as does every later call. Records already delivered stay
    /// delivered; a record being returned when this is called may still be returned first.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.shared.wake_all();
    }

    /// Whether [`FollowStop::stop`] was called.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// A live follower of a log: every record from a start offset on, in order, and then each
/// new record as it is published. Made by [`LogReader::follow`](super::LogReader::follow),
/// [`Log::follow`](super::Log::follow) and their durable variants.
///
/// **Guarantees.** It never yields a record twice, never skips one, never yields a record
/// that is not complete and published (nor part of a batch), and sees new segments as the
/// writer rolls. It holds no lock the writer needs: a slow follower never slows the writer,
/// and is never dropped (it holds the segments it reads; the log keeps every record).
///
/// **Reading.** [`Follow::next_timeout`] returns a [`Next`]; the [`Iterator`] impl blocks
/// until the next record or error and ends when the follow is stopped or ends. To stop it
/// from another thread, take a [`FollowStop`] with [`Follow::stop_handle`].
///
/// **Durability.** [`LogReader::follow`](super::LogReader::follow) delivers records once
/// published (they may still be lost to a power cut if no sync covers them);
/// [`LogReader::follow_durable`](super::LogReader::follow_durable) only once synced.
///
/// **Across processes.** On a read-only handle the follower looks for records that another
/// process appends every millisecond or so (see [`Log::open_read_only`](super::Log::open_read_only)).
#[derive(Debug)]
pub struct Follow {
    shared: Arc<Shared>,
    replay: Replay,
    /// The offset of the next record to deliver.
    next: u64,
    durable: bool,
    stopped: Arc<AtomicBool>,
    /// Whether every record up to the live end has been delivered.
    caught_up: bool,
    /// Whether [`Next::CaughtUp`] was returned since the last record.
    reported_caught_up: bool,
    /// Set after an error the follow cannot go past.
    ended: bool,
}

impl Follow {
    pub(super) fn new(shared: Arc<Shared>, from: u64, durable: bool) -> Follow {
        let snapshot = shared.snapshot();
        let limit = if durable { shared.durable_end.load(Ordering::Acquire) } else { snapshot.end };
        // With `until` at least `from`, a start past the durable end (but a boundary of the
        // published log) is checked and yields nothing yet.
        let replay = Replay::new(snapshot, from, limit.max(from));
        Follow {
            shared,
            replay,
            next: from,
            durable,
            stopped: Arc::new(AtomicBool::new(false)),
            caught_up: false,
            reported_caught_up: false,
            ended: false,
        }
    }

    /// A handle that stops this follow from any thread.
    #[must_use]
    pub fn stop_handle(&self) -> FollowStop {
        FollowStop { stopped: Arc::clone(&self.stopped), shared: Arc::clone(&self.shared) }
    }

    /// The offset of the next record this follow will deliver: every record before it has
    /// been delivered. Store it to resume later (see [`Consumer`](crate::Consumer)).
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Whether every record up to the live end had been delivered when this follow last
    /// looked (see [`Next::CaughtUp`]); false again once a new record is delivered.
    #[must_use]
    pub fn is_caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether this follow delivers only records on stable storage.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The offset up to which this follow may deliver records now.
    pub(super) fn limit(&self) -> u64 {
        let field = if self.durable { &self.shared.durable_end } else { &self.shared.end };
        field.load(Ordering::Acquire)
    }

    /// Returns the next record, or waits up to `timeout` for one.
    ///
    /// See [`Next`] for each outcome. A zero `timeout` never sleeps (it may still return
    /// [`Next::CaughtUp`] once). Errors are returned as [`Next::Error`]: a gap is reported and
    /// passed; any other error ends the follow. After the writer is dropped or closed, an
    /// in-process follow simply finds nothing new.
    pub fn next_timeout(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(next) = self.try_next() {
                return next;
            }
            let now = Instant::now();
            let remaining = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
            if remaining.is_zero() {
                return Next::TimedOut;
            }
            self.wait(remaining);
        }
    }

    /// The next outcome that needs no waiting: a record, an error, [`Next::CaughtUp`] (once
    /// per arrival at the end) or [`Next::Stopped`]; `None` when nothing new is published
    /// and the caught-up signal was given. Never returns [`Next::TimedOut`].
    pub(super) fn try_next(&mut self) -> Option<Next> {
        loop {
            if self.ended || self.stopped.load(Ordering::Acquire) {
                return Some(Next::Stopped);
            }
            match self.replay.next() {
                Some(Ok(record)) => {
                    self.next = self.replay.position();
                    self.caught_up = false;
                    self.reported_caught_up = false;
                    return Some(Next::Record(record));
                }
                Some(Err(err @ StorageError::Gap { .. })) => {
                    self.next = self.replay.position();
                    return Some(Next::Error(err));
                }
                Some(Err(err)) => {
                    self.ended = true;
                    return Some(Next::Error(err));
                }
                None => {}
            }
            if self.refresh() {
                continue;
            }
            if let Some(err) = self.poll_other_writer() {
                self.ended = true;
                return Some(Next::Error(err));
            }
            if self.refresh() {
                continue;
            }
            self.caught_up = true;
            if !self.reported_caught_up {
                self.reported_caught_up = true;
                return Some(Next::CaughtUp);
            }
            return None;
        }
    }

    /// Whether a record past the next offset is published, or the follow was stopped: what
    /// a waiter re-checks after registering.
    pub(super) fn has_news(&self) -> bool {
        self.limit() > self.next || self.stopped.load(Ordering::SeqCst)
    }

    /// The log's shared state.
    #[cfg(feature = "async")]
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a replay over a fresh snapshot if the live end moved past `next`.
    fn refresh(&mut self) -> bool {
        let limit = self.limit();
        if limit <= self.next {
            return false;
        }
        self.replay = Replay::new(self.shared.snapshot(), self.next, limit);
        true
    }

    /// For a read-only handle: looks for records another process appended. `Some` for an
    /// error that ends the follow.
    fn poll_other_writer(&self) -> Option<StorageError> {
        let tail = self.shared.tail.as_ref()?;
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.poll(&self.shared, self.next).err()
    }

    /// Sleeps until the live end may have moved, the follow is stopped, or `remaining`
    /// passed (at most one slice of it for a read-only handle, which must poll).
    fn wait(&self, remaining: Duration) {
        let shared = &self.shared;
        // Watch the end for a moment first: a writer that is appending publishes again within
        // microseconds, and sleeping costs a system call on both sides, a process-wide
        // barrier here, and a wake-up of every waiting follower on each later publish.
        if shared.tail.is_none() {
            let spin_until = Instant::now() + SPIN.min(remaining);
            while Instant::now() < spin_until {
                if self.limit() > self.next || self.stopped.load(Ordering::Relaxed) {
                    return;
                }
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        let barrier = heavy_barrier();
        let slice = if shared.tail.is_some() {
            remaining.min(POLL_INTERVAL)
        } else if barrier {
            remaining
        } else {
            remaining.min(FALLBACK_SLICE)
        };
        {
            let guard = shared.wake.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked under the lock that `FollowStop::stop` and the writer's wake-up take,
            // after registering as a waiter: a publish or stop after this wakes the wait.
            if !self.has_news() {
                let _unused = shared
                    .wake_cond
                    .wait_timeout(guard, slice)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        shared.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Iterator for Follow {
    type Item = crate::Result<Record>;

    /// Blocks until the next record or error; `None` once the follow is stopped or ended.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Next::Record(record) => return Some(Ok(record)),
                Next::Error(err) => return Some(Err(err)),
                Next::Stopped => return None,
                Next::CaughtUp | Next::TimedOut => {}
            }
        }
    }
}

/// A full memory barrier on every running thread of this process (`membarrier`, private
/// expedited), so that the writer's plain store of the end and its relaxed load of
/// `waiters` cannot pass each other unseen (see [`Shared::wake_waiters`]). Returns whether
/// the barrier ran; if the kernel lacks it, followers wait in [`FALLBACK_SLICE`]s instead.
pub(super) fn heavy_barrier() -> bool {
    use rustix::thread::{membarrier, MembarrierCommand};
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered =
        *REGISTERED.get_or_init(|| membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok());
    registered && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
}
