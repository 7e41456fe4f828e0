//! Group commit: many threads ask for durability at once, and one sync serves them all.
//!
//! A caller that needs the log durable up to some offset either finds it already is, waits
//! while another thread's sync is in flight, or becomes the leader: it takes what is unsynced
//! from the writer under the writer's lock ([`Log::begin_sync`]), releases the lock, waits for
//! the disk ([`PendingSync::perform`]) while other threads go on appending, then records the
//! outcome under the lock again. Callers that arrived during that sync are served by the next
//! leader, whose sync covers all of their records at once (the leader/follower scheme of
//! RocksDB's and okaywal's write paths). One sync is in flight at a time, which is what
//! [`PendingSync`] requires.
//!
//! A failed sync poisons the writer for everyone: the leader returns the I/O error, every
//! thread waiting and every later call gets [`StorageError::Poisoned`].

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::pending_sync::PendingSync;
use super::Log;
use crate::error::{Result, StorageError};

/// Something that owns the log a group commit syncs (the log itself, or an event log).
pub(crate) trait HoldsLog {
    /// The log.
    fn log_mut(&mut self) -> &mut Log;

    /// Closes it, as its own `close` does.
    fn close(self) -> Result<()>;
}

impl HoldsLog for Log {
    fn log_mut(&mut self) -> &mut Log {
        self
    }

    fn close(self) -> Result<()> {
        Log::close(self)
    }
}

/// The group-commit state of one shared writer.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    /// Signalled when a sync finishes (or its leader gives up).
    finished: Condvar,
    /// Signalled when a caller starts waiting, for a leader gathering its group.
    arrived: Condvar,
    /// Callers inside a durable append or sync (see [`GroupCommit::enter`]).
    active: AtomicUsize,
}

/// Counts a caller as active in a [`GroupCommit`] while it lives.
pub(crate) struct Active<'a>(&'a GroupCommit);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct CommitState {
    /// Whether a leader's sync is in flight (or being gathered).
    leading: bool,
    /// Callers waiting for a sync.
    waiting: usize,
    /// Callers the last sync served when it began (its leader and the callers then waiting).
    last_group: usize,
    /// How long the last sync took to write out.
    last_sync: Duration,
    /// The offset up to which the log is known durable.
    durable: u64,
    /// Why the writer is poisoned, once a sync failed.
    failure: Option<String>,
    /// Syncs that wrote something (for statistics and tests).
    syncs: u64,
}

impl GroupCommit {
    /// A group commit for a log durable up to `durable`.
    pub(crate) fn new(durable: u64) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(CommitState {
                leading: false,
                waiting: 0,
                last_group: 1,
                last_sync: Duration::ZERO,
                durable,
                failure: None,
                syncs: 0,
            }),
            finished: Condvar::new(),
            arrived: Condvar::new(),
            active: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, CommitState> {
        // The state is a few plain fields, consistent after every statement: a panic while it
        // was locked leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the caller as active until the returned guard drops: a durable append calls it
    /// before it appends, so that a leader knows whose records are about to arrive.
    pub(crate) fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }

    /// How many syncs that wrote something have completed.
    pub(crate) fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Returns once every record before `target` is on stable storage, syncing as the leader
    /// if no sync is in flight that covers it. `writer` is the lock that guards the log.
    ///
    /// # Errors
    /// The leader's [`StorageError::Io`] if its sync failed; [`StorageError::Poisoned`] for a
    /// writer poisoned before or while waiting; [`StorageError::ReadOnly`].
    pub(crate) fn sync_through<T: HoldsLog>(&self, target: u64, writer: &Mutex<T>) -> Result<()> {
        let mut state = self.state();
        loop {
            if let Some(cause) = &state.failure {
                return Err(StorageError::Poisoned { cause: cause.clone() });
            }
            if state.durable >= target {
                return Ok(());
            }
            if !state.leading {
                break;
            }
            state.waiting += 1;
            self.arrived.notify_one();
            state = self.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        state.leading = true;
        let state = self.gather(state);
        let group = state.waiting + 1;
        drop(state);
        let mut leader = Leader { commit: self, done: false };
        let started = Instant::now();
        let outcome = lead(writer);
        leader.done = true;
        let mut state = self.state();
        state.leading = false;
        state.last_group = group;
        state.last_sync = started.elapsed();
        let result = match outcome {
            Ok((end, wrote)) => {
                state.durable = state.durable.max(end);
                state.syncs += u64::from(wrote);
                Ok(())
            }
            Err(err) => {
                if !matches!(err, StorageError::ReadOnly) {
                    state.failure.get_or_insert_with(|| err.to_string());
                }
                Err(err)
            }
        };
        drop(state);
        self.finished.notify_all();
        result
    }
}

impl GroupCommit {
    /// Before a leader begins its sync: if other callers are active (appending durably, see
    /// [`GroupCommit::enter`]) and the last sync served more than its leader, waits until they
    /// all wait for a sync, for at most half the last sync's time (and never over
    /// [`GATHER_MAX`]). Without it, the threads the last sync released append again just after
    /// the next leader began, and groups alternate between one caller and the rest
    /// (PostgreSQL's `commit_delay` and `commit_siblings` do the same with a fixed delay). A
    /// lone writer never waits.
    fn gather<'a>(&'a self, mut state: MutexGuard<'a, CommitState>) -> MutexGuard<'a, CommitState> {
        let peers = self.active.load(Ordering::Relaxed).saturating_sub(1);
        if peers == 0 || state.last_group <= 1 || state.waiting >= peers {
            return state;
        }
        let deadline = Instant::now() + (state.last_sync / 2).min(GATHER_MAX);
        while state.waiting < self.active.load(Ordering::Relaxed).saturating_sub(1) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state =
                self.arrived.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        state
    }
}

/// The longest a leader waits to gather its group (see [`GroupCommit::gather`]).
const GATHER_MAX: Duration = Duration::from_micros(200);

/// One leader's sync: begin under the lock, perform without it, finish under it. Returns the
/// offset now durable and whether anything was written. A panic while performing it (which
/// only makes system calls, so never should) becomes an error that poisons the writer:
/// otherwise the writer would be left with its sync in flight and refuse every later one as
/// "in flight" rather than as poisoned.
fn lead<T: HoldsLog>(writer: &Mutex<T>) -> Result<(u64, bool)> {
    let pending: PendingSync = lock(writer)?.log_mut().begin_sync()?;
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| pending.perform())).unwrap_or_else(|_| {
            let err = std::io::Error::other("the sync panicked; nothing it covered is promised");
            Err(StorageError::io("sync the log", pending.dir(), err))
        });
    let end = pending.end();
    let wrote = pending.writes_anything();
    lock(writer)?.log_mut().finish_sync(&pending, outcome)?;
    Ok((end, wrote))
}

/// Locks the writer; a thread that panicked while holding it may have left an append half
/// done, so the writer is then refused rather than used.
pub(crate) fn lock<T>(writer: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    writer.lock().map_err(|_| StorageError::Poisoned {
        cause: "a thread panicked while it held the writer".to_string(),
    })
}

/// Clears the leader's mark if its sync unwinds, so that waiting threads do not wait forever;
/// the writer is then treated as poisoned.
struct Leader<'a> {
    commit: &'a GroupCommit,
    done: bool,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.commit.state();
        state.leading = false;
        state.failure.get_or_insert_with(|| "a thread panicked while syncing".to_string());
        drop(state);
        self.commit.finished.notify_all();
    }
}
