//! One adapter per engine, all behind the same two traits so every workload runs the same
//! code on each of them.

use std::ops::Range;
use std::path::Path;

use crate::workload::{Plan, Pool, Verifier};

pub mod baseline;
pub mod chronicle;
pub mod commitlog;
pub mod okaywal;
pub mod sqlite;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

/// An engine under test.
pub trait Engine {
    /// The name printed in the table.
    const NAME: &'static str;
    /// What its "sync" does, and whether the comparison had to add anything for it to reach
    /// the disk. Printed with the table.
    const DURABILITY: &'static str;

    type Writer: Writer;

    /// Creates an empty log in `dir` (which exists and is empty), sized for `plan`. Not timed.
    fn create(dir: &Path, plan: &Plan) -> Res<Self::Writer>;

    /// Opens the existing log in `dir`, ready to append: what a process does on restart.
    /// Timed by the reopen workload.
    fn reopen(dir: &Path, plan: &Plan) -> Res<Self::Writer>;

    /// Opens the log in `dir` afresh and hands every record's payload, in order, to `check`.
    /// Timed (open included) by the replay workloads.
    fn replay(dir: &Path, plan: &Plan, check: &mut Verifier) -> Res<()>;
}

/// A log open for writing.
pub trait Writer {
    /// Appends records `indexes` one call each, without waiting for the disk, then makes them
    /// all durable with one final sync.
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()>;

    /// Appends records `indexes` one call each, each durable before the next is appended.
    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()>;

    /// Appends records `indexes` in batches of `batch` records, each batch durable (and, where
    /// the engine offers it, atomic) before the next is appended.
    fn append_batches_durable(
        &mut self,
        pool: &mut Pool,
        indexes: Range<u64>,
        batch: usize,
    ) -> Res<()>;

    /// Makes everything durable and releases the log. Not timed.
    fn close(self) -> Res<()>;
}

/// Splits `indexes` into consecutive ranges of `batch` (the last may be shorter).
pub fn batches(indexes: Range<u64>, batch: usize) -> impl Iterator<Item = Range<u64>> {
    let batch = batch.max(1) as u64;
    (indexes.start..indexes.end)
        .step_by(batch as usize)
        .map(move |start| start..(start + batch).min(indexes.end))
}
