//! Background prefaulting of the active segment ahead of the writer.
//!
//! The first write to each page of a fresh, fallocated segment takes a page fault that asks
//! the filesystem to make the page writable, several microseconds each on ext4: for small
//! records that costs more than the copying itself. A helper thread asks the kernel to set up
//! the pages a few MiB ahead of the writer in bulk (`MADV_POPULATE_WRITE`), which is about
//! four times cheaper per page and takes the work off the appending thread.
//!
//! Prefaulting never changes bytes, so it is invisible to readers and to the on-disk format.
//! If the kernel refuses it, the prefaulter switches itself off and pages fault in as before.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::segment::Segment;

/// How far ahead of the writer pages are prefaulted.
pub(crate) const PREFAULT_AHEAD_BYTES: u64 = 8 << 20;

/// Bytes prefaulted per system call, so a new request is noticed soon.
const PREFAULT_CHUNK_BYTES: u64 = 1 << 20;

#[derive(Default)]
struct State {
    segment: Option<Arc<Segment>>,
    /// Data position up to which prefaulting has been asked for.
    target: u64,
    /// Data position up to which it is done.
    done: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Owns the helper thread; dropping it stops and joins the thread.
pub(crate) struct Prefaulter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Prefaulter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefaulter").finish_non_exhaustive()
    }
}

impl Prefaulter {
    /// Starts the helper thread, or returns `None` if no thread can be spawned (the log then
    /// works without prefaulting).
    pub(crate) fn start() -> Option<Prefaulter> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("chronicle-prefault".to_string())
            .spawn(move || run(&worker))
            .ok()?;
        Some(Prefaulter { shared, thread: Some(thread) })
    }

    /// Asks for `segment`'s data region to be prefaulted up to `target`. A different segment
    /// than before replaces it (the writer moved on).
    pub(crate) fn request(&self, segment: &Arc<Segment>, target: u64) {
        let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let same = state.segment.as_ref().is_some_and(|s| Arc::ptr_eq(s, segment));
        if !same {
            state.segment = Some(Arc::clone(segment));
            state.done = 0;
            state.target = 0;
        }
        state.target = state.target.max(target);
        self.shared.wake.notify_one();
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.stop = true;
            state.segment = None;
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The thread never panics (it only calls `madvise`); nothing to report if it did.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let (segment, from, to) = {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if state.stop {
                    return;
                }
                if state.segment.is_some() && state.done < state.target {
                    break;
                }
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            let Some(segment) = state.segment.clone() else {
                continue;
            };
            let to = state.target.min(state.done + PREFAULT_CHUNK_BYTES);
            (segment, state.done, to)
        };
        if segment.prefault(from, to).is_err() {
            // Not supported here: stop trying; appends fault pages in as they go.
            return;
        }
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.segment.as_ref().is_some_and(|s| Arc::ptr_eq(s, &segment)) {
            state.done = state.done.max(to);
        }
    }
}
