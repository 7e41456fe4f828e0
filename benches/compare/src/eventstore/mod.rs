//! The event-store phase (`--phases eventstore`): Chronicle's event log against SQLite used as
//! an event store, both durable at the same points.
//!
//! 1. **bulk**: 1,000,000 events over 10,000 aggregates (100 each, consecutive events far
//!    apart), appended then synced once (SQLite: one transaction); and again into a new store
//!    in durable batches of 100 (SQLite: a transaction per batch). The share of the batches'
//!    time that the syncs alone take is estimated from a plain `pwrite` + `fdatasync` of one
//!    batch's bytes, measured in the same repetition.
//! 2. **load**: random aggregates of the first store, 100 events each, one call per load.
//! 3. **own aggregates**: 8 threads, each appending to 10 aggregates of its own with an
//!    expected version, every append durable.
//! 4. **contended**: 8 threads appending to the same 10 aggregates: read the version, append
//!    expecting it, count a conflict and retry on a wrong version.
//! 5. **Chronicle alone**: `SharedEventLog::append_sync` from 1 thread, then from 8.
//!
//! After every workload the store is opened afresh and read back whole; the run fails unless
//! it holds exactly the events acknowledged (see [`events::Checker`]).

mod chronicle;
mod events;
mod report;
mod sqlite;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use chronicle::ChronicleStore;
use events::{check_load, Checker, Expected, Rng, Spread, Writers};
pub use report::Results;
use sqlite::SqliteStore;
use store::{Appended, EventStore, SharedStore, Sizing, StoreWriter};

use crate::engines::Res;
use crate::stats::percentile;

/// The sizes of the phase's workloads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spread: Spread,
    pub batch: usize,
    /// Timed loads per repetition, after `load_warmup` untimed ones.
    pub load_samples: usize,
    pub load_warmup: usize,
    pub threads: usize,
    /// Aggregates each thread owns in the own-aggregates workload.
    pub own_aggregates: u64,
    /// Aggregates all threads share in the contended workload.
    pub contended_aggregates: u64,
    /// How long the writers of each many-writer workload (and of each half of the
    /// append_sync scaling) append: a durable append's cost depends on the disk's sync
    /// latency, which varies twentyfold between the machines this runs on.
    pub writers_duration: Duration,
}

impl Plan {
    /// The full plan divided by `shrink` (1 for the full run, 20 for `--quick`); every
    /// aggregate keeps its 100 events.
    pub fn new(shrink: u64) -> Plan {
        let shrink = shrink.max(1);
        let aggregates = (10_000 / shrink).max(1);
        Plan {
            spread: Spread::new(aggregates * 100, aggregates),
            batch: 100,
            load_samples: (5_000 / shrink as usize).max(100),
            load_warmup: (1_000 / shrink as usize).max(10),
            threads: 8,
            own_aggregates: 10,
            contended_aggregates: 10,
            writers_duration: Duration::from_secs_f64(if shrink > 1 { 0.5 } else { 2.0 }),
        }
    }
}

/// Repetitions of the phase at most, whatever `--reps` says: its durable batches alone take
/// SQLite about a minute per repetition on a disk whose fsync takes a few milliseconds.
pub const REPS_MAX: usize = 3;

/// Names of the engines this phase runs, in table order.
pub const ENGINES: [&str; 2] = [ChronicleStore::NAME, SqliteStore::NAME];

/// Runs one repetition of the phase on the engines of `engines` (all if empty), in `root`,
/// adding the figures (or the errors) to `results`.
pub fn run_rep(results: &mut Results, root: &Path, plan: &Plan, engines: &[String], rep: usize) {
    let started = Instant::now();
    let wanted = |name: &str| engines.is_empty() || engines.iter().any(|e| e == name);
    for k in 0..ENGINES.len() {
        // Alternate which engine goes first, as the other phases do.
        let name = ENGINES[(k + rep) % ENGINES.len()];
        if !wanted(name) {
            continue;
        }
        let engine_started = Instant::now();
        let outcome = match name {
            ChronicleStore::NAME => run_engine::<ChronicleStore>(results, root, plan, rep),
            _ => run_engine::<SqliteStore>(results, root, plan, rep),
        };
        if let Err(err) = outcome {
            eprintln!("  {name} eventstore: FAILED: {err}");
            results.error(name, err.to_string());
        }
        println!("    eventstore {name}: {:.1} s", engine_started.elapsed().as_secs_f64());
    }
    if wanted(ChronicleStore::NAME) {
        let scaling_started = Instant::now();
        if let Err(err) = run_sync_scaling(results, root, plan, rep) {
            eprintln!("  chronicle append_sync scaling: FAILED: {err}");
            results.error(ChronicleStore::NAME, err.to_string());
        }
        println!(
            "    eventstore chronicle append_sync 1 vs {} threads: {:.1} s",
            plan.threads,
            scaling_started.elapsed().as_secs_f64()
        );
    }
    results.add_rep(started.elapsed());
}

/// A fresh directory for one workload, removed (and every dirty page flushed) when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(root: &Path, name: &str, workload: &str, rep: usize) -> Res<WorkDir> {
        let dir = root.join(format!("es-{name}-{workload}-{rep}"));
        std::fs::create_dir(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        crate::settle();
    }
}

fn seconds<T>(work: impl FnOnce() -> Res<T>) -> Res<(T, f64)> {
    let start = Instant::now();
    let value = work()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

/// Reads the store in `dir` back whole and checks it holds exactly `expected`.
fn verify<S: EventStore>(dir: &Path, expected: &Expected, workload: &str) -> Res<()> {
    let mut checker = Checker::new(expected);
    S::read_all(dir, &mut |event| checker.check(event))?;
    checker.finish().map_err(|reason| format!("{workload}: read back differs: {reason}").into())
}

/// What the scheduler counts for the calling thread: nanoseconds on a CPU, and waiting in a
/// run queue for one (`/proc/thread-self/schedstat`).
fn scheduler_ns() -> Res<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(running)), Some(Ok(waiting))) => Ok((running, waiting)),
        _ => Err(format!("unexpected /proc/thread-self/schedstat: {text:?}").into()),
    }
}

/// Where a thread's time went while it ran some work, in seconds.
struct ThreadTime {
    elapsed: f64,
    /// Waiting in a run queue for a CPU (taken by other processes, or by the engine's own
    /// background threads).
    queued: f64,
    /// Neither on a CPU nor waiting for one: asleep in the kernel. A writer alone on its
    /// thread sleeps almost only in its syncs, waiting for the disk.
    blocked: f64,
}

/// Runs `work` on this thread and returns its result and where the thread's time went.
fn timed_thread<T>(work: impl FnOnce() -> Res<T>) -> Res<(T, ThreadTime)> {
    let (running, waiting) = scheduler_ns()?;
    let start = Instant::now();
    let value = work()?;
    let elapsed = start.elapsed();
    let (running_after, waiting_after) = scheduler_ns()?;
    let queued = waiting_after - waiting;
    let awake = (running_after - running) + queued;
    let blocked = elapsed.as_nanos().saturating_sub(u128::from(awake));
    let time = ThreadTime {
        elapsed: elapsed.as_secs_f64(),
        queued: queued as f64 / 1e9,
        blocked: blocked as f64 / 1e9,
    };
    Ok((value, time))
}

fn run_engine<S: EventStore>(
    results: &mut Results,
    root: &Path,
    plan: &Plan,
    rep: usize,
) -> Res<()> {
    let spread = plan.spread;
    let bulk = Sizing { events: spread.events, syncs_often: false };
    let every_event =
        Expected::uniform(0..spread.aggregates, spread.events_per_aggregate(), Writers::One);

    // (a) Everything appended, then one sync; (b) loads from that store.
    {
        let dir = WorkDir::new(root, S::NAME, "bulk", rep)?;
        let mut store = S::create(&dir.0, bulk)?;
        crate::settle();
        let ((), secs) = seconds(|| store.append_then_sync(&spread, 0..spread.events))?;
        results.push(report::Metric::Buffered, S::NAME, spread.events as f64 / secs);
        store.close()?;
        verify::<S>(&dir.0, &every_event, "bulk append")?;
        crate::settle();

        let mut store = S::open(&dir.0, bulk)?;
        let mut rng = Rng::new(0x10ad + rep as u64);
        let mut latencies = Vec::with_capacity(plan.load_samples);
        for k in 0..plan.load_warmup + plan.load_samples {
            let aggregate = rng.below(spread.aggregates);
            let (elapsed, events) = store.load_timed(aggregate)?;
            check_load(aggregate, &events, spread.events_per_aggregate(), &Writers::One)?;
            if k >= plan.load_warmup {
                latencies.push(elapsed.as_secs_f64());
            }
        }
        results.push(report::Metric::LoadP50, S::NAME, percentile(&mut latencies, 0.50));
        results.push(report::Metric::LoadP99, S::NAME, percentile(&mut latencies, 0.99));
        store.close()?;
    }

    // (a) Durable batches of 100.
    {
        let dir = WorkDir::new(root, S::NAME, "batches", rep)?;
        let mut store = S::create(&dir.0, Sizing { syncs_often: true, ..bulk })?;
        crate::settle();
        // The writing thread's time asleep is its time waiting for the disk: measured, not
        // estimated from a separate measurement of the disk, whose sync latency drifts
        // tenfold from one minute to the next.
        let ((), time) =
            timed_thread(|| store.append_batches_durable(&spread, 0..spread.events, plan.batch))?;
        results.push(report::Metric::Batches, S::NAME, spread.events as f64 / time.elapsed);
        let batches = spread.events.div_ceil(plan.batch as u64) as f64;
        results.push(report::Metric::BatchBlockedShare, S::NAME, time.blocked / time.elapsed);
        results.push(report::Metric::BatchBlockedEach, S::NAME, time.blocked / batches);
        results.push(report::Metric::BatchQueuedShare, S::NAME, time.queued / time.elapsed);
        store.close()?;
        verify::<S>(&dir.0, &every_event, "durable batches")?;
    }

    // (c) Each thread appends to aggregates of its own, expecting their versions.
    {
        let dir = WorkDir::new(root, S::NAME, "own", rep)?;
        let per_thread = plan.own_aggregates;
        let shared = S::create_shared(&dir.0, Sizing { events: 100_000, syncs_often: true })?;
        let writers = (0..plan.threads).map(|_| shared.writer()).collect::<Res<Vec<_>>>()?;
        let syncs_before = shared.syncs();
        crate::settle();
        let (counts, secs) = run_threads(writers, plan.writers_duration, |thread, writer, end| {
            let first = thread as u64 * per_thread;
            let mut versions: Vec<Option<u64>> = vec![None; per_thread as usize];
            let mut k = 0;
            while Instant::now() < end {
                let slot = k % versions.len();
                k += 1;
                let aggregate = first + slot as u64;
                let expected = versions[slot];
                match writer.append_expecting_durable(aggregate, expected, thread as u32)? {
                    Appended::Durable => versions[slot] = Some(expected.map_or(0, |v| v + 1)),
                    Appended::Conflict => {
                        return Err(format!(
                            "aggregate {aggregate}, written by this thread alone, was not at \
                             {expected:?}"
                        )
                        .into())
                    }
                }
            }
            let counts: Vec<(u64, u64)> = (first..)
                .zip(&versions)
                .map(|(aggregate, version)| (aggregate, version.map_or(0, |v| v + 1)))
                .collect();
            Ok(counts)
        })?;
        let counts: HashMap<u64, u64> = counts.into_iter().flatten().collect();
        let total: u64 = counts.values().sum();
        results.push(report::Metric::Own, S::NAME, total as f64 / secs);
        if let (Some(before), Some(after)) = (syncs_before, shared.syncs()) {
            let syncs = (after - before).max(1);
            results.push(report::Metric::OwnPerSync, S::NAME, total as f64 / syncs as f64);
        }
        shared.close()?;
        let expected = Expected { counts, writers: Writers::Owned { per_writer: per_thread } };
        verify::<S>(&dir.0, &expected, "own aggregates")?;
    }

    // (d) All threads on the same aggregates: read the version, append expecting it, retry
    // on a conflict.
    {
        let dir = WorkDir::new(root, S::NAME, "contended", rep)?;
        let shared = S::create_shared(&dir.0, Sizing { events: 100_000, syncs_often: true })?;
        let writers = (0..plan.threads).map(|_| shared.writer()).collect::<Res<Vec<_>>>()?;
        crate::settle();
        let aggregates = plan.contended_aggregates;
        let (outcomes, secs) =
            run_threads(writers, plan.writers_duration, |thread, writer, end| {
                let mut rng = Rng::new(0xc0de + (rep * 64 + thread) as u64);
                let mut won = Vec::new();
                let mut conflicts = 0u64;
                while Instant::now() < end {
                    let aggregate = rng.below(aggregates);
                    loop {
                        let current = writer.current_version(aggregate)?;
                        match writer.append_expecting_durable(aggregate, current, thread as u32)? {
                            Appended::Durable => {
                                won.push((aggregate, current.map_or(0, |v| v + 1)));
                                break;
                            }
                            Appended::Conflict => conflicts += 1,
                        }
                    }
                }
                Ok((won, conflicts))
            })?;
        shared.close()?;
        let conflicts: u64 = outcomes.iter().map(|(_, c)| c).sum();
        let total: u64 = outcomes.iter().map(|(won, _)| won.len() as u64).sum();
        let mut winners = HashMap::new();
        let mut counts = HashMap::new();
        for (thread, (won, _)) in outcomes.into_iter().enumerate() {
            for (aggregate, version) in won {
                if winners.insert((aggregate, version), thread as u32).is_some() {
                    return Err(format!(
                        "contended: two writers were told they appended version {version} of \
                         aggregate {aggregate}"
                    )
                    .into());
                }
                *counts.entry(aggregate).or_insert(0) += 1;
            }
        }
        results.push(report::Metric::Contended, S::NAME, total as f64 / secs);
        results.push(
            report::Metric::ConflictShare,
            S::NAME,
            conflicts as f64 / (conflicts + total) as f64,
        );
        let expected = Expected { counts, writers: Writers::Recorded(winners) };
        verify::<S>(&dir.0, &expected, "contended aggregates")?;
    }
    Ok(())
}

/// Slices of the append_sync scaling: the single writer and the many take turns this many
/// times, so that both see the disk in the same state (its sync latency drifts).
const SCALING_SLICES: u32 = 4;

/// Chronicle alone: `SharedEventLog::append_sync` (no version check) from one thread and from
/// `plan.threads` threads at once, each to an aggregate of its own, each append timed. The
/// two take turns in slices, each into a store of its own; the figures compare them within
/// the repetition.
fn run_sync_scaling(results: &mut Results, root: &Path, plan: &Plan, rep: usize) -> Res<()> {
    type S = ChronicleStore;
    let sizing = Sizing { events: 100_000, syncs_often: true };
    let counts = [1, plan.threads];
    let dirs = counts
        .iter()
        .map(|threads| WorkDir::new(root, S::NAME, &format!("sync{threads}"), rep))
        .collect::<Res<Vec<_>>>()?;
    let stores =
        dirs.iter().map(|dir| S::create_shared(&dir.0, sizing)).collect::<Res<Vec<_>>>()?;
    let syncs_before: Vec<u64> = stores.iter().map(|s| s.syncs().unwrap_or_default()).collect();
    // Per thread count: appends by each thread so far, every latency, seconds.
    let mut appended: Vec<Vec<u64>> = counts.iter().map(|&n| vec![0; n]).collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut secs = vec![0.0; counts.len()];
    crate::settle();
    for _ in 0..SCALING_SLICES {
        for (k, store) in stores.iter().enumerate() {
            let writers = (0..counts[k]).map(|_| store.writer()).collect::<Res<Vec<_>>>()?;
            let first_versions = &appended[k];
            let (slice, slice_secs) = run_threads(
                writers,
                plan.writers_duration / SCALING_SLICES,
                |thread, writer, end| {
                    let mut version = first_versions[thread];
                    let mut latencies = Vec::new();
                    while Instant::now() < end {
                        let start = Instant::now();
                        writer.append_durable(thread as u64, version, thread as u32)?;
                        latencies.push(start.elapsed().as_secs_f64());
                        version += 1;
                    }
                    Ok(latencies)
                },
            )?;
            secs[k] += slice_secs;
            for (thread, thread_latencies) in slice.into_iter().enumerate() {
                appended[k][thread] += thread_latencies.len() as u64;
                latencies[k].extend(thread_latencies);
            }
        }
    }
    let syncs: Vec<u64> =
        stores.iter().zip(&syncs_before).map(|(s, b)| s.syncs().unwrap_or_default() - b).collect();
    for store in stores {
        store.close()?;
    }
    let rates: Vec<f64> = latencies.iter().zip(&secs).map(|(l, s)| l.len() as f64 / s).collect();
    let single_median = percentile(&mut latencies[0], 0.50);
    let many_p99 = percentile(&mut latencies[1], 0.99);
    results.push(report::Metric::Sync1, S::NAME, rates[0]);
    results.push(report::Metric::Sync1P50, S::NAME, single_median);
    results.push(report::Metric::SyncMany, S::NAME, rates[1]);
    results.push(report::Metric::SyncManyP99, S::NAME, many_p99);
    results.push(report::Metric::SyncManyPerSync, S::NAME, {
        latencies[1].len() as f64 / syncs[1].max(1) as f64
    });
    results.push(report::Metric::SyncScaling, S::NAME, rates[1] / rates[0]);
    results.push(report::Metric::SyncTail, S::NAME, many_p99 / single_median);
    for ((dir, threads), appended) in dirs.iter().zip(counts).zip(appended) {
        let counts: HashMap<u64, u64> = (0..).zip(appended).collect();
        let expected = Expected { counts, writers: Writers::Owned { per_writer: 1 } };
        verify::<S>(&dir.0, &expected, &format!("append_sync from {threads} thread(s)"))?;
    }
    Ok(())
}

/// Runs `work(thread, writer, end)` on one thread per writer, all released at once, each to
/// stop appending at `end` (`duration` after the release); returns their results and the
/// seconds from the release until the last one finished.
fn run_threads<W: Send, T: Send>(
    writers: Vec<W>,
    duration: Duration,
    work: impl Fn(usize, &mut W, Instant) -> Res<T> + Sync,
) -> Res<(Vec<T>, f64)> {
    let barrier = Barrier::new(writers.len() + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = writers
            .into_iter()
            .enumerate()
            .map(|(thread, mut writer)| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let end = Instant::now() + duration;
                    // The writer (a connection, a handle) is closed after the clock stops.
                    (work(thread, &mut writer, end), writer)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut joined = Vec::with_capacity(handles.len());
        for handle in handles {
            joined.push(handle.join().map_err(|_| "a writing thread panicked")?);
        }
        let secs = start.elapsed().as_secs_f64();
        let mut outcomes = Vec::with_capacity(joined.len());
        for (outcome, writer) in joined {
            drop(writer);
            outcomes.push(outcome?);
        }
        Ok((outcomes, secs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("chronicle-compare-es-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// Both engines run every workload of the phase on a small plan, and what they store
    /// reads back as written.
    #[test]
    fn both_engines_run_the_phase_and_read_back_what_was_written() {
        let root = scratch("phase");
        let mut plan = Plan::new(100);
        plan.writers_duration = Duration::from_millis(100);
        plan.load_samples = 20;
        let mut results = Results::new(plan.clone());
        run_rep(&mut results, &root, &plan, &[], 0);
        let _ = std::fs::remove_dir_all(&root);
        let (text, _) = results.render("test");
        assert!(results.all_ok(), "{text}");
        for (metric, label) in report::ROWS {
            assert!(results.median(metric, ChronicleStore::NAME).is_some(), "chronicle: {label}");
            if metric != report::Metric::OwnPerSync {
                assert!(results.median(metric, SqliteStore::NAME).is_some(), "sqlite: {label}");
            }
        }
        for metric in [report::Metric::Sync1, report::Metric::SyncManyP99] {
            assert!(results.median(metric, ChronicleStore::NAME).is_some(), "{metric:?}");
        }
    }

    /// Of two writers expecting the same version of an aggregate, the second is told of the
    /// conflict and writes nothing.
    fn conflict_is_reported<S: EventStore>() {
        let root = scratch(S::NAME);
        let shared =
            S::create_shared(&root, Sizing { events: 10, syncs_often: false }).expect("store");
        let (mut a, mut b) = (shared.writer().expect("writer"), shared.writer().expect("writer"));
        assert_eq!(a.append_expecting_durable(7, None, 0).expect("append"), Appended::Durable);
        assert_eq!(b.append_expecting_durable(7, None, 1).expect("append"), Appended::Conflict);
        assert_eq!(b.current_version(7).expect("version"), Some(0));
        assert_eq!(b.append_expecting_durable(7, Some(0), 1).expect("append"), Appended::Durable);
        assert_eq!(a.append_expecting_durable(7, Some(0), 0).expect("append"), Appended::Conflict);
        drop((a, b));
        shared.close().expect("close");
        let mut counts = HashMap::new();
        let winners = HashMap::from([((7, 0), 0), ((7, 1), 1)]);
        counts.insert(7, 2);
        verify::<S>(&root, &Expected { counts, writers: Writers::Recorded(winners) }, "test")
            .expect("read back");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn chronicle_reports_a_conflict() {
        conflict_is_reported::<ChronicleStore>();
    }

    #[test]
    fn sqlite_reports_a_conflict() {
        conflict_is_reported::<SqliteStore>();
    }
}
