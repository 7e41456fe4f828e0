//! Background page work for the writer, on two helper threads: prefaulting the active segment
//! ahead of the writer, and starting the write-out of the pages the writer has passed.
//!
//! **Prefaulting.** The first write to each page of a fresh, fallocated segment takes a page
//! fault that asks the filesystem to make the page writable, several microseconds each on
//! ext4: for small records that costs more than the copying itself. The helper asks the kernel
//! to set up the pages a few MiB ahead of the writer in bulk (`MADV_POPULATE_WRITE`), which is
//! about four times cheaper per page and takes the work off the appending thread. Only for a
//! writer with at least [`PREFAULT_MIN_UNSYNCED`] appended since its last sync.
//!
//! **Write-behind.** For every few MiB the writer has passed, the helper starts the
//! write-out of those pages (`sync_file_range` without waiting), so the disk works while the
//! writer appends and a later sync finds little left to write. Pages written through the map
//! first leave this process's page tables (`MADV_DONTNEED`, which keeps their contents and
//! dirtiness): writing out a page that is still mapped writable costs a write-protect and a
//! TLB-flush interrupt to every CPU running the writer, per page, which made early write-out
//! cost more than it saved; dropping the whole range's entries costs one flush. Large records
//! are written through the file, not the map (see
//! [`WRITE_THROUGH_FILE_MIN`](crate::segment::WRITE_THROUGH_FILE_MIN)), so their pages were
//! never mapped. This acknowledges nothing: a sync still writes and waits for every byte it
//! promises.
//!
//! Neither changes bytes, so both are invisible to readers and to the on-disk format. If the
//! kernel refuses either, the helper stops doing that kind of work and pages fault in, or are
//! written at the next sync, as without it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::segment::Segment;

/// How far ahead of the writer pages are prefaulted.
pub(crate) const PREFAULT_AHEAD_BYTES: u64 = 8 << 20;

/// The writer asks for prefaulting only once this many bytes are appended and not yet synced:
/// a writer that syncs more often than that does not take enough faults to gain from it, and
/// its syncs got slower with it (see `Writer::publish_appended`).
pub(crate) const PREFAULT_MIN_UNSYNCED: u64 = 1 << 20;

/// Bytes prefaulted per system call, so a new request is noticed soon.
const PREFAULT_CHUNK_BYTES: u64 = 1 << 20;

/// The writer asks for write-behind once it has appended this many bytes since its last
/// request (1 and 16 MiB were measured slower for 1M appends of 128 bytes plus a sync).
pub(crate) const WRITE_BEHIND_BYTES: u64 = 4 << 20;

/// Write-behind ranges waiting for the helper; beyond this the oldest are dropped (the next
/// sync writes them anyway), so a stalled disk cannot make the queue grow.
const WRITE_BEHIND_QUEUE_MAX: usize = 64;

#[derive(Default)]
struct State {
    segment: Option<Arc<Segment>>,
    /// Data position up to which prefaulting has been asked for.
    target: u64,
    /// Data position up to which it is done.
    done: u64,
    /// Data ranges `[from, to)` whose write-out is to be started, oldest first.
    write_behind: VecDeque<(Arc<Segment>, u64, u64)>,
    /// Set when the kernel refused that kind of work: it is no longer done.
    prefault_off: bool,
    write_behind_off: bool,
    stop: bool,
}

impl State {
    fn prefault_pending(&self) -> bool {
        !self.prefault_off && self.segment.is_some() && self.done < self.target
    }

    fn write_behind_pending(&self) -> bool {
        !self.write_behind_off && !self.write_behind.is_empty()
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owns the helper threads; dropping it stops and joins them (pending write-behind is
/// abandoned: it was never promised).
pub(crate) struct Pager {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").finish_non_exhaustive()
    }
}

impl Pager {
    /// Starts the helper threads, or returns `None` if they cannot be spawned (the log then
    /// works without them).
    pub(crate) fn start() -> Option<Pager> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let mut threads = Vec::new();
        for kind in [Kind::Prefault, Kind::WriteBehind] {
            let worker = Arc::clone(&shared);
            let name = match kind {
                Kind::Prefault => "chronicle-prefault",
                Kind::WriteBehind => "chronicle-writeback",
            };
            let spawned = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || run(&worker, kind));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(_) => {
                    drop(Pager { shared, threads });
                    return None;
                }
            }
        }
        Some(Pager { shared, threads })
    }

    /// Asks for `segment`'s data region to be prefaulted up to `target`. A different segment
    /// than before replaces it (the writer moved on).
    pub(crate) fn prefault(&self, segment: &Arc<Segment>, target: u64) {
        let mut state = self.shared.state();
        let same = state.segment.as_ref().is_some_and(|s| Arc::ptr_eq(s, segment));
        if !same {
            state.segment = Some(Arc::clone(segment));
            state.done = 0;
            state.target = 0;
        }
        state.target = state.target.max(target);
        self.shared.wake.notify_all();
    }

    /// Asks for the write-out of `segment`'s data bytes `[from, to)` to be started. The
    /// writer must not write into that range again (it only appends after it).
    pub(crate) fn write_behind(&self, segment: &Arc<Segment>, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let mut state = self.shared.state();
        if state.write_behind_off {
            return;
        }
        if state.write_behind.len() >= WRITE_BEHIND_QUEUE_MAX {
            state.write_behind.pop_front();
        }
        state.write_behind.push_back((Arc::clone(segment), from, to));
        self.shared.wake.notify_all();
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            state.stop = true;
            state.segment = None;
            state.write_behind.clear();
        }
        self.shared.wake.notify_all();
        for thread in self.threads.drain(..) {
            // The threads never panic (they only make system calls); nothing to report if one did.
            let _ = thread.join();
        }
    }
}

/// One piece of work taken from the state.
enum Job {
    Prefault(Arc<Segment>, u64, u64),
    WriteBehind(Arc<Segment>, u64, u64),
}

/// The two kinds of work, each done by its own thread, so that a write-out waiting for the
/// disk never holds up the prefaulting the writer is about to need. (With one thread doing
/// both, 1M appends of 128 bytes plus a sync took a median of about 125 ms over 30 runs,
/// against 106 ms with two, and varied more.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prefault,
    WriteBehind,
}

/// Waits for the next job of `kind`; `None` when the pager stops.
fn next_job(shared: &Shared, kind: Kind) -> Option<Job> {
    let mut state = shared.state();
    loop {
        if state.stop {
            return None;
        }
        if kind == Kind::Prefault && state.prefault_pending() {
            if let Some(segment) = state.segment.clone() {
                let to = state.target.min(state.done + PREFAULT_CHUNK_BYTES);
                return Some(Job::Prefault(segment, state.done, to));
            }
        }
        if kind == Kind::WriteBehind && state.write_behind_pending() {
            if let Some((segment, from, to)) = state.write_behind.pop_front() {
                return Some(Job::WriteBehind(segment, from, to));
            }
        }
        state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

fn run(shared: &Shared, kind: Kind) {
    while let Some(job) = next_job(shared, kind) {
        match job {
            Job::Prefault(segment, from, to) => {
                let done = segment.prefault(from, to).is_ok();
                let mut state = shared.state();
                if !done {
                    // Not supported here: stop trying; appends fault pages in as they go.
                    state.prefault_off = true;
                } else if state.segment.as_ref().is_some_and(|s| Arc::ptr_eq(s, &segment)) {
                    state.done = state.done.max(to);
                }
            }
            Job::WriteBehind(segment, from, to) => {
                if segment.start_writeback(from, to).is_err() {
                    // Not supported here: the next sync writes everything, as without it.
                    let mut state = shared.state();
                    state.write_behind_off = true;
                    state.write_behind.clear();
                }
            }
        }
    }
}
