//! Background work for the writer, on two helper threads: filling the active segment's pages
//! ahead of the writer, starting the write-out of the pages the writer has passed, and making
//! the next segment file before the active one fills.
//!
//! **Filling ahead.** A page of a fresh, preallocated segment is not in the page cache. The
//! first write to it through the map takes a page fault in which the kernel zeroes it, by
//! reading ahead over the unwritten extent: several MiB of large folios zeroed at a time, and
//! where the memory is fresh to this virtual machine (its host reclaims freed memory), slowly.
//! For small records that costs more than the copying itself. The helper writes zeros over
//! the pages [`FILL_AHEAD_BYTES`] ahead of the writer with `write`, which copies into new
//! pages without zeroing them first ([`PagerHandle::fill_ahead`]); the writer's copies then
//! find the pages in the cache and take a cheap fault per 64 KiB or so. A fence keeps the
//! zeros off every byte the writer writes. Only for a writer with at least
//! [`FILL_MIN_UNSYNCED`] appended since its last sync.
//!
//! 1M appends of 128 bytes took 64–109 ms (median 69) with fresh memory this way, against
//! 114–156 ms (median 145) when the helper had the kernel fault the pages in
//! (`MADV_POPULATE_WRITE`). With warm memory the two were level for 64 MiB segments, faster
//! with a final sync (criterion medians 86 against 93 ms), and slower in one 1 GiB segment
//! (66 against 58 ms), where the kernel's faulting in had left the writer no fault to take.
//! Populating the filled pages as well made the fresh-memory runs slower and no median
//! faster.
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
//! **Spare segments.** Once the active segment is half full, the write-out thread makes the
//! next segment file ahead of need ([`SpareSegment`]: created, preallocated, zero-filled with
//! [`Options::zero_fill_segments`](crate::Options::zero_fill_segments), mapped), and for
//! a writer that fills ahead, the fill thread then fills its first [`FILL_AHEAD_BYTES`]
//! (after the active segment's needs). The roll takes it, writes its
//! header and renames it into place, instead of waiting for all that itself: the append that
//! fills a 16 MiB segment and the 999 after it took 3.0 ms without, 0.15 ms with it. A roll
//! that finds the spare still being worked on waits for that one step; one that finds none (or
//! a failed one) creates its segment itself, as without it.
//!
//! None of this changes a byte of the log, so it is invisible to readers and recovery (the
//! spare's temporary name is in `FORMAT.md`). If the kernel refuses filling or write-out, the
//! helper stops doing that kind of work and pages fault in, or are written at the next sync,
//! as without it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::error::Result;
use crate::segment::{NewFile, PagerHandle, SpareSegment};

/// How far ahead of the writer pages are filled.
pub(crate) const FILL_AHEAD_BYTES: u64 = 8 << 20;

/// The writer asks for filling ahead only once this many bytes are appended and not yet
/// synced: a writer that syncs more often than that does not take enough faults to gain from
/// it, and its syncs got slower with pages prepared ahead (see `Writer::publish_appended`).
pub(crate) const FILL_MIN_UNSYNCED: u64 = 1 << 20;

/// Bytes filled per system call, so a new request is noticed soon.
const FILL_STEP_BYTES: u64 = 1 << 20;

/// The writer asks for write-behind once it has appended this many bytes since its last
/// request (1 and 16 MiB were measured slower for 1M appends of 128 bytes plus a sync).
pub(crate) const WRITE_BEHIND_BYTES: u64 = 4 << 20;

/// Write-behind ranges waiting for the helper; beyond this the oldest are dropped (the next
/// sync writes them anyway), so a stalled disk cannot make the queue grow.
const WRITE_BEHIND_QUEUE_MAX: usize = 64;

/// The spare segment for the writer's next roll (see [`SpareSegment`]).
#[derive(Debug, Default)]
enum Spare {
    /// None asked for.
    #[default]
    None,
    /// Asked for, not yet started: a spare made as `new` says in `dir`, with its first
    /// `fill_bytes` of data filled.
    Wanted { dir: PathBuf, new: NewFile, fill_bytes: u64 },
    /// A helper thread is creating it (the write-out thread) or filling it (the fill thread).
    Busy,
    /// Made, and filled up to `spare.filled()` of `fill_bytes`.
    Ready { spare: SpareSegment, fill_bytes: u64 },
    /// Making it failed; the roll creates its segment itself (and reports that error).
    Failed,
}

#[derive(Default)]
struct State {
    segment: Option<PagerHandle>,
    /// Data position up to which filling has been asked for.
    target: u64,
    /// Data position up to which it is done.
    done: u64,
    /// Data ranges `[from, to)` whose write-out is to be started, oldest first.
    write_behind: VecDeque<(PagerHandle, u64, u64)>,
    spare: Spare,
    /// Set when the kernel refused that kind of work: it is no longer done.
    fill_off: bool,
    write_behind_off: bool,
    stop: bool,
}

impl State {
    fn fill_pending(&self) -> bool {
        !self.fill_off && self.segment.is_some() && self.done < self.target
    }

    fn write_behind_pending(&self) -> bool {
        !self.write_behind_off && !self.write_behind.is_empty()
    }

    /// Whether the spare needs work: making, or (with filling on) more filling.
    fn spare_pending(&self) -> bool {
        match &self.spare {
            Spare::Wanted { .. } => true,
            Spare::Ready { spare, fill_bytes } => !self.fill_off && spare.filled() < *fill_bytes,
            Spare::None | Spare::Busy | Spare::Failed => false,
        }
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
    /// The helper threads; none for a pager [`Pager::without_threads`], whose spare segments
    /// are made by the caller.
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
        for kind in [Kind::Fill, Kind::WriteBehind] {
            let worker = Arc::clone(&shared);
            let name = match kind {
                Kind::Fill => "chronicle-fill",
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

    /// A pager without helper threads (see `super::background`): it makes a spare segment
    /// in the writer's thread when asked for one, so that the log's files go through the same
    /// steps, and leaves out filling ahead and write-behind, which change only speed.
    pub(crate) fn without_threads() -> Pager {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        Pager { shared, threads: Vec::new() }
    }

    /// Whether this pager has no helper threads ([`Pager::without_threads`]).
    fn inline(&self) -> bool {
        self.threads.is_empty()
    }

    /// How many helper threads this pager started.
    #[cfg(test)]
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// Asks for `segment`'s data region to be filled with zeros up to `target`, ahead of the
    /// writer ([`PagerHandle::fill_ahead`]). A different segment than before replaces it (the
    /// writer moved on).
    pub(crate) fn fill_ahead(&self, segment: PagerHandle, target: u64) {
        if self.inline() {
            return;
        }
        let mut state = self.shared.state();
        let same = state.segment.as_ref().is_some_and(|s| s.same_segment(&segment));
        if !same {
            state.segment = Some(segment);
            state.done = 0;
            state.target = 0;
        }
        state.target = state.target.max(target);
        self.shared.wake.notify_all();
    }

    /// Tells the helper that the writer moved on to `segment`, whose data region is already
    /// filled up to `filled` (it was a spare).
    pub(crate) fn adopt(&self, segment: PagerHandle, filled: u64) {
        if self.inline() {
            return;
        }
        let mut state = self.shared.state();
        state.segment = Some(segment);
        state.done = filled;
        state.target = filled;
    }

    /// Asks for a spare segment made as `new` says in `dir`, with its first `fill_bytes`
    /// of data filled, unless one is already asked for or made.
    pub(crate) fn request_spare(&self, dir: PathBuf, new: NewFile, fill_bytes: u64) {
        let mut state = self.shared.state();
        if !matches!(state.spare, Spare::None | Spare::Failed) {
            return;
        }
        if self.inline() {
            state.spare = match SpareSegment::create(&dir, new) {
                Ok(spare) => Spare::Ready { spare, fill_bytes: 0 },
                Err(_) => Spare::Failed,
            };
            return;
        }
        state.spare = Spare::Wanted { dir, new, fill_bytes };
        self.shared.wake.notify_all();
    }

    /// Takes the spare segment: `None` if there is none (or it was not started yet: the request
    /// is then dropped, as the caller is about to create the segment itself), or if making it
    /// failed. Waits while the helper is busy with it, which takes at most one step of making
    /// or filling it.
    pub(crate) fn take_spare(&self) -> Option<SpareSegment> {
        let mut state = self.shared.state();
        while matches!(state.spare, Spare::Busy) {
            state = self.shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        match std::mem::take(&mut state.spare) {
            Spare::Ready { spare, .. } => Some(spare),
            Spare::None | Spare::Wanted { .. } | Spare::Busy | Spare::Failed => None,
        }
    }

    /// Asks for the write-out of data bytes `[from, to)` of `segment` to be started. The
    /// writer must not write into that range again (it only appends after it).
    pub(crate) fn write_behind(&self, segment: PagerHandle, from: u64, to: u64) {
        if to <= from || self.inline() {
            return;
        }
        let mut state = self.shared.state();
        if state.write_behind_off {
            return;
        }
        if state.write_behind.len() >= WRITE_BEHIND_QUEUE_MAX {
            state.write_behind.pop_front();
        }
        state.write_behind.push_back((segment, from, to));
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
            // Dropping an unused spare deletes its file.
            state.spare = Spare::None;
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
    Fill(PagerHandle, u64, u64),
    WriteBehind(PagerHandle, u64, u64),
    MakeSpare { dir: PathBuf, new: NewFile, fill_bytes: u64 },
    FillSpare { spare: SpareSegment, fill_bytes: u64 },
}

/// The two kinds of work, each done by its own thread, so that a write-out waiting for the
/// disk never holds up the filling the writer is about to need. (With one thread doing
/// both, 1M appends of 128 bytes plus a sync took a median of about 125 ms over 30 runs,
/// against 106 ms with two, and varied more.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fill,
    WriteBehind,
}

/// Waits for the next job of `kind`; `None` when the pager stops.
fn next_job(shared: &Shared, kind: Kind) -> Option<Job> {
    let mut state = shared.state();
    loop {
        if state.stop {
            return None;
        }
        if kind == Kind::Fill && state.fill_pending() {
            if let Some(segment) = state.segment.clone() {
                let to = state.target.min(state.done + FILL_STEP_BYTES);
                return Some(Job::Fill(segment, state.done, to));
            }
        }
        // The spare file is made by the write-out thread, so that the fill thread never waits
        // for a new file's allocation (which may read block bitmaps from the disk); the fill
        // thread fills it, after the active segment, which the writer needs first.
        let spare_job = match &state.spare {
            Spare::Wanted { .. } => kind == Kind::WriteBehind,
            Spare::Ready { .. } => kind == Kind::Fill,
            Spare::None | Spare::Busy | Spare::Failed => false,
        };
        if spare_job && state.spare_pending() {
            match std::mem::replace(&mut state.spare, Spare::Busy) {
                Spare::Wanted { dir, new, fill_bytes } => {
                    return Some(Job::MakeSpare { dir, new, fill_bytes });
                }
                Spare::Ready { spare, fill_bytes } => {
                    return Some(Job::FillSpare { spare, fill_bytes });
                }
                other => state.spare = other,
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
            Job::Fill(segment, from, to) => {
                let filled = segment.fill_ahead(from, to);
                let mut state = shared.state();
                match filled {
                    // Failed: stop trying; appends fault pages in as they go.
                    Err(_) => state.fill_off = true,
                    Ok(reached) => {
                        if state.segment.as_ref().is_some_and(|s| s.same_segment(&segment)) {
                            state.done = state.done.max(reached).max(to);
                        }
                    }
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
            Job::MakeSpare { dir, new, fill_bytes } => {
                let made = SpareSegment::create(&dir, new);
                finish_spare(shared, made, fill_bytes);
            }
            Job::FillSpare { mut spare, fill_bytes } => {
                let to = fill_bytes.min(spare.filled() + FILL_STEP_BYTES);
                if spare.fill(to).is_err() {
                    shared.state().fill_off = true;
                }
                finish_spare(shared, Ok(spare), fill_bytes);
            }
        }
    }
}

/// Puts the spare back after a step of work on it, and wakes a roll waiting for it.
fn finish_spare(shared: &Shared, made: Result<SpareSegment>, fill_bytes: u64) {
    let mut state = shared.state();
    state.spare = match made {
        // Stopping: drop the spare (which deletes its file) rather than keep it.
        Ok(_) if state.stop => Spare::None,
        Ok(spare) => Spare::Ready { spare, fill_bytes },
        Err(_) => Spare::Failed,
    };
    shared.wake.notify_all();
}
