//! Whether a log may start background threads: the rollup's hashing thread and the pager's
//! helpers. Always, except on a thread inside [`WithoutBackgroundThreads`], which the fuzz
//! targets use: a log per input spent most of its time starting, waking and joining threads,
//! and work that happens at a thread's whim makes an input's outcome depend on timing.
//!
//! Without threads a log does the same work at fixed points instead: the Merkle pages are
//! hashed and stored by the first query that needs them (as a query always does for what the
//! thread has not reached), and the pager makes a spare segment at once when asked for one.
//! Write-behind and filling ahead, which change nothing but speed, are left out.

use std::cell::Cell;

thread_local! {
    static THREADS_OFF: Cell<bool> = const { Cell::new(false) };
}

/// Whether a log opened (or first appended to) on this thread may start background threads.
pub(super) fn threads_allowed() -> bool {
    !THREADS_OFF.with(Cell::get)
}

/// While it lives, logs opened on this thread start no background threads (see the module
/// docs). Dropping it restores what was before.
#[cfg(any(test, feature = "internals"))]
pub(crate) struct WithoutBackgroundThreads {
    before: bool,
}

#[cfg(any(test, feature = "internals"))]
impl WithoutBackgroundThreads {
    pub(crate) fn new() -> WithoutBackgroundThreads {
        WithoutBackgroundThreads { before: THREADS_OFF.with(|off| off.replace(true)) }
    }
}

#[cfg(any(test, feature = "internals"))]
impl Drop for WithoutBackgroundThreads {
    fn drop(&mut self) {
        THREADS_OFF.with(|off| off.set(self.before));
    }
}
