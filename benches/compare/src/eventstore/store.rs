//! The two traits every event store of the comparison implements, so that each workload runs
//! the same code on Chronicle and on SQLite.

use std::path::Path;
use std::time::Duration;

use super::events::{ReadEvent, Spread};
use crate::engines::Res;

/// How a store is made: for one big bulk workload, or for the small stores of the
/// many-writer workloads, whose every append is durable.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Events the store will hold.
    pub events: u64,
    /// Whether every few events are made durable (rather than all with one sync at the end).
    pub syncs_often: bool,
}

/// An event store open by one writer.
pub trait EventStore: Sized {
    /// The name printed in the table (the same as the engine's in the other workloads).
    const NAME: &'static str;

    /// The handle of one writing thread; see [`EventStore::Shared`].
    type Writer: StoreWriter + Send + 'static;
    /// A store open for many writing threads at once.
    type Shared: SharedStore<Writer = Self::Writer>;

    /// Creates an empty store in `dir` (which exists and is empty). Not timed.
    fn create(dir: &Path, sizing: Sizing) -> Res<Self>;

    /// Opens the existing store in `dir`, as a process does on restart. Not timed.
    fn open(dir: &Path, sizing: Sizing) -> Res<Self>;

    /// Appends events `range` of `spread` one call each (all in one transaction), then makes
    /// them all durable with one sync (one commit).
    fn append_then_sync(&mut self, spread: &Spread, range: std::ops::Range<u64>) -> Res<()>;

    /// Appends events `range` of `spread` in batches of `batch` events, each batch one call
    /// (one transaction), durable before the next.
    fn append_batches_durable(
        &mut self,
        spread: &Spread,
        range: std::ops::Range<u64>,
        batch: usize,
    ) -> Res<()>;

    /// Reads every event of `aggregate` in version order; returns the time the store took,
    /// until it handed over its owned events, and those events.
    fn load_timed(&mut self, aggregate: u64) -> Res<(Duration, Vec<ReadEvent>)>;

    /// Makes everything durable and closes the store. Not timed.
    fn close(self) -> Res<()>;

    /// Opens the store in `dir` afresh and hands every event, in the order of the log (of
    /// the `position` column), to `each`. Not timed: the check after each workload.
    fn read_all(dir: &Path, each: &mut dyn FnMut(&ReadEvent)) -> Res<()>;

    /// Creates an empty store in `dir` for many writing threads. Not timed.
    fn create_shared(dir: &Path, sizing: Sizing) -> Res<Self::Shared>;
}

/// A store open for many writing threads.
pub trait SharedStore {
    type Writer;

    /// A handle for one more writing thread (SQLite: a connection of its own).
    fn writer(&self) -> Res<Self::Writer>;

    /// The number of syncs the store has run, if it counts them (Chronicle's group commit).
    fn syncs(&self) -> Option<u64>;

    /// Makes everything durable and closes the store (every writer must be dropped).
    fn close(self) -> Res<()>;
}

/// What an expected-version append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event was written and is durable.
    Durable,
    /// The aggregate was not at the expected version; nothing was written.
    Conflict,
}

/// One writing thread's handle.
pub trait StoreWriter {
    /// The aggregate's current version (its last event's), `None` if it has no events.
    fn current_version(&mut self, aggregate: u64) -> Res<Option<u64>>;

    /// Appends one event to `aggregate` if its current version is `expected` (`None`: no
    /// events yet), durable on return; the event is stamped as `writer`'s.
    fn append_expecting_durable(
        &mut self,
        aggregate: u64,
        expected: Option<u64>,
        writer: u32,
    ) -> Res<Appended>;

    /// Appends one event to `aggregate`, whose next version the caller knows is `version`,
    /// with no version check, durable on return. Only Chronicle offers it to the comparison
    /// (its `append_sync`); the others return an error.
    fn append_durable(&mut self, aggregate: u64, version: u64, writer: u32) -> Res<()>;
}
