//! Following a log from async code (cargo feature `async`): [`FollowStream`], a
//! [`futures_core::Stream`] over a [`Follow`].
//!
//! A stream with nothing new to deliver registers its task's [`Waker`] in [`Shared::tasks`]
//! and counts itself in [`Shared::waiters`], as a blocking follower does before it sleeps,
//! then runs the same process-wide barrier and looks at the end once more: either it sees the
//! new end, or the writer's relaxed load of `waiters` sees it waiting and
//! [`Shared::wake_all`] takes the wakers out and wakes them. So the writer pays nothing more
//! while no task waits, and a task is woken once per wait, not per record.
//!
//! No thread polls for a writer's handle. A read-only handle has no writer in this process to
//! wake its tasks: they are woken by one helper thread per process ([`Ticker`]) about every
//! millisecond while they wait, and look at the files as a blocking follower does. The same
//! thread bounds the delay of a wake-up the writer could miss where the kernel lacks the
//! barrier.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::stream::{FusedStream, Stream};

use super::follow::{heavy_barrier, Follow, FollowStop, Next, POLL_INTERVAL};
use super::reader::{LogReader, Shared};
use super::replay::Record;
use super::Log;
use crate::error::Result;

/// The identifier of the next [`FollowStream`], unique in the process.
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(0);

/// A live follower of a log for async code: the [`Follow`] of the same log as a
/// [`Stream`] of `Result<Record, StorageError>` (feature `async`). Made by
/// [`Log::follow_stream`], [`LogReader::follow_stream`], their durable variants, or
/// [`Follow::into_stream`] (for a [`Consumer`](crate::Consumer)'s follow).
///
/// **Items.** Every record from the start offset on, in order, then each new record as it is
/// published, with [`Follow`]'s guarantees: none twice, none skipped, none half-written, no
/// part of a batch. A [`StorageError::Gap`](crate::StorageError::Gap) is yielded once and the
/// stream goes on after it; after any other error the stream ends (`None`). Stopped through
/// [`FollowStream::stop_handle`], it ends at once. It never ends by itself otherwise: at the
/// live end it is `Pending` until the next record.
///
/// **Caught up.** There is no item for it: [`FollowStream::is_caught_up`] says at any time
/// whether every record published so far has been delivered (after an item: whether it was
/// the last one there is).
///
/// **Waking.** On a writer's handle the writer wakes the task when it publishes (or syncs,
/// for a durable follow); no thread polls. On a read-only handle one helper thread per
/// process wakes each waiting task about every millisecond to look at the files. Dropping the
/// stream takes its waker out.
#[derive(Debug)]
pub struct FollowStream {
    follow: Follow,
    id: u64,
    /// Whether this stream's waker may be in [`Shared::tasks`].
    registered: bool,
    /// Whether the process-wide barrier ran after the stream's waker was last added.
    barrier: bool,
    /// Set once `None` was returned.
    terminated: bool,
}

impl FollowStream {
    fn new(follow: Follow) -> FollowStream {
        let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
        FollowStream { follow, id, registered: false, barrier: false, terminated: false }
    }

    /// A handle that stops this stream from any thread: the task is woken and the stream
    /// ends (see [`FollowStop`]).
    #[must_use]
    pub fn stop_handle(&self) -> FollowStop {
        self.follow.stop_handle()
    }

    /// The offset of the next record this stream will deliver: every record before it has
    /// been delivered. Store it to resume later (see [`Consumer::commit`](crate::Consumer::commit)).
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.follow.next_offset()
    }

    /// Whether every record published so far (synced so far, for a durable stream) has been
    /// delivered: the next item will be a record published after this call. On a read-only
    /// handle, "published" means found in the files by this handle's last look.
    #[must_use]
    pub fn is_caught_up(&self) -> bool {
        self.follow.next_offset() >= self.follow.limit()
    }

    /// Whether this stream delivers only records on stable storage.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.follow.is_durable()
    }

    /// Registers the task to be woken when the end moves, then looks again: returns whether
    /// there is something to deliver after all (the caller reads on instead of sleeping).
    fn wait(&mut self, waker: &Waker) -> bool {
        let shared = self.follow.shared();
        // Registered even on a read-only handle, for `FollowStop::stop` to wake it.
        let added = shared.register_task(self.id, waker);
        self.registered = true;
        if shared.tail.is_some() {
            // No writer here: look at the files again after a poll interval.
            wake_later(waker);
        } else {
            // A task still registered since its barrier needs no other: every publish since
            // then sees it waiting.
            if added {
                self.barrier = heavy_barrier();
            }
            if !self.barrier {
                // The writer may miss this waiter (see `Shared::wake_waiters`): bound the delay.
                wake_later(waker);
            }
        }
        self.follow.has_news()
    }

    /// Takes this stream's waker out of the log's tasks, if it is there.
    fn deregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            self.follow.shared().deregister_task(self.id);
        }
    }
}

impl Stream for FollowStream {
    type Item = Result<Record>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        loop {
            match this.follow.try_next() {
                Some(Next::Record(record)) => {
                    this.deregister();
                    return Poll::Ready(Some(Ok(record)));
                }
                Some(Next::Error(err)) => {
                    this.deregister();
                    return Poll::Ready(Some(Err(err)));
                }
                Some(Next::Stopped) => {
                    this.deregister();
                    this.terminated = true;
                    return Poll::Ready(None);
                }
                Some(Next::CaughtUp | Next::TimedOut) => continue,
                None => {}
            }
            if !this.wait(cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

impl FusedStream for FollowStream {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl Drop for FollowStream {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl Follow {
    /// This follow as a [`FollowStream`] (feature `async`), from its next offset on: for
    /// example a [`Consumer`](crate::Consumer)'s follow, for async code.
    #[must_use]
    pub fn into_stream(self) -> FollowStream {
        FollowStream::new(self)
    }
}

impl LogReader {
    /// As [`LogReader::follow`], as a [`FollowStream`] for async code (feature `async`).
    /// A bad `from` is the first item, an [`InvalidOffset`](crate::StorageError::InvalidOffset)
    /// error, and the stream ends.
    #[must_use]
    pub fn follow_stream(&self, from: u64) -> FollowStream {
        self.follow(from).into_stream()
    }

    /// As [`LogReader::follow_durable`], as a [`FollowStream`] (feature `async`): delivers a
    /// record only once a sync covers it.
    #[must_use]
    pub fn follow_durable_stream(&self, from: u64) -> FollowStream {
        self.follow_durable(from).into_stream()
    }
}

impl Log {
    /// Follows the log from offset `from` as a [`FollowStream`] for async code (feature
    /// `async`). See [`LogReader::follow_stream`].
    #[must_use]
    pub fn follow_stream(&self, from: u64) -> FollowStream {
        self.reader().follow_stream(from)
    }

    /// As [`Log::follow_stream`], delivering only records on stable storage. See
    /// [`LogReader::follow_durable_stream`].
    #[must_use]
    pub fn follow_durable_stream(&self, from: u64) -> FollowStream {
        self.reader().follow_durable_stream(from)
    }
}

impl Shared {
    /// Puts task `id`'s waker in [`Shared::tasks`] and counts it in `waiters`; if it is there
    /// already, replaces its waker with `waker`. Returns whether it was added.
    fn register_task(&self, id: u64, waker: &Waker) -> bool {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, registered)) = tasks.iter_mut().find(|(task, _)| *task == id) {
            if !registered.will_wake(waker) {
                registered.clone_from(waker);
            }
            return false;
        }
        tasks.push((id, waker.clone()));
        // Under the lock: `wake_tasks` subtracts what it takes out under it too.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Takes task `id`'s waker out, if `wake_tasks` has not already.
    fn deregister_task(&self, id: u64) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = tasks.iter().position(|(task, _)| *task == id) {
            tasks.swap_remove(at);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes every waiting task's waker out and wakes it (outside the lock: a waker may run
    /// code of the executor's). A woken task registers again if it finds nothing new.
    pub(super) fn wake_tasks(&self) {
        let woken = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            if tasks.is_empty() {
                return;
            }
            self.waiters.fetch_sub(tasks.len(), Ordering::SeqCst);
            std::mem::take(&mut *tasks)
        };
        for (_, waker) in woken {
            waker.wake();
        }
    }
}

/// The helper thread that wakes the tasks that must look again after [`POLL_INTERVAL`]: those
/// of read-only handles, and any task where the process-wide barrier is missing. It sleeps
/// on a condition variable while no task is scheduled.
#[derive(Debug)]
struct Ticker {
    due: Mutex<Vec<Waker>>,
    scheduled: Condvar,
}

impl Ticker {
    /// Wakes `waker` about [`POLL_INTERVAL`] from now.
    fn schedule(&self, waker: &Waker) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        if !due.iter().any(|scheduled| scheduled.will_wake(waker)) {
            due.push(waker.clone());
        }
        self.scheduled.notify_one();
    }

    /// The helper thread's body: waits for a task, sleeps a poll interval, wakes every task
    /// scheduled by then.
    fn run(&self) {
        loop {
            {
                let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
                while due.is_empty() {
                    due = self.scheduled.wait(due).unwrap_or_else(PoisonError::into_inner);
                }
            }
            std::thread::sleep(POLL_INTERVAL);
            let woken =
                std::mem::take(&mut *self.due.lock().unwrap_or_else(PoisonError::into_inner));
            for waker in woken {
                waker.wake();
            }
        }
    }
}

/// Wakes `waker` about [`POLL_INTERVAL`] from now, through the process's [`Ticker`] (its
/// thread started on first use). If that thread cannot be started, wakes it at once: the
/// task then looks again without pause.
fn wake_later(waker: &Waker) {
    static TICKER: Ticker = Ticker { due: Mutex::new(Vec::new()), scheduled: Condvar::new() };
    static RUNNING: OnceLock<bool> = OnceLock::new();
    let running = *RUNNING.get_or_init(|| {
        let thread = std::thread::Builder::new().name("chronicle-ticker".into());
        thread.spawn(|| TICKER.run()).is_ok()
    });
    if running {
        TICKER.schedule(waker);
    } else {
        waker.wake_by_ref();
    }
}
