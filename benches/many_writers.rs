//! Many writers: durable appends from 1 and from 8 threads through one `SharedLog` (group
//! commit), with the per-call latency of each printed as p50/p99, and single-threaded buffered
//! appends through `Log` and through `SharedLog` (the cost of the shared handle's lock).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Log, SharedLog};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

const PAYLOAD: [u8; 128] = [0x5a; 128];
/// Durable appends per measured iteration, split over the threads.
const DURABLE_APPENDS: u64 = 4000;
const BUFFERED_RECORDS: u64 = 1_000_000;

/// The `q` quantile of sorted `samples`.
fn quantile(samples: &[u64], q: f64) -> u64 {
    samples.get(((samples.len() - 1) as f64 * q) as usize).copied().unwrap_or(0)
}

/// `DURABLE_APPENDS` `append_sync` calls split over `threads` threads on a fresh log; returns
/// the wall time, each call's latency in nanoseconds, and the number of syncs.
fn durable_appends(threads: u64) -> (Duration, Vec<u64>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log")).unwrap().into_shared();
    // Warm the segment's first pages and the zeroed region, as a running service would have.
    log.append_sync(&PAYLOAD).unwrap();
    let syncs_before = log.sync_count();
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut latencies = Vec::with_capacity((DURABLE_APPENDS / threads) as usize);
                for _ in 0..DURABLE_APPENDS / threads {
                    let t = Instant::now();
                    log.append_sync(&PAYLOAD).unwrap();
                    latencies.push(t.elapsed().as_nanos() as u64);
                }
                latencies
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let mut latencies: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let elapsed = t.elapsed();
    latencies.sort_unstable();
    (elapsed, latencies, log.sync_count() - syncs_before)
}

fn bench_durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_sync_4000x128B");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for threads in [1u64, 8] {
        let (mut all, mut syncs) = (Vec::new(), 0);
        group.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (elapsed, latencies, n) = durable_appends(threads);
                    total += elapsed;
                    all.extend(latencies);
                    syncs += n;
                }
                total
            });
        });
        all.sort_unstable();
        let runs = all.len() as u64 / DURABLE_APPENDS;
        println!(
            "{threads} thread(s): per call p50 {:.1} µs, p99 {:.1} µs; {:.0} appends per sync",
            quantile(&all, 0.5) as f64 / 1e3,
            quantile(&all, 0.99) as f64 / 1e3,
            (runs * DURABLE_APPENDS) as f64 / syncs.max(1) as f64,
        );
    }
    group.finish();
}

fn bench_buffered(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_1M_128B_one_thread");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let mut log = Log::open(dir.path().join("log")).unwrap();
                let t = Instant::now();
                for _ in 0..BUFFERED_RECORDS {
                    log.append(&PAYLOAD).unwrap();
                }
                total += t.elapsed();
            }
            total
        });
    });
    group.bench_function("shared_log", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let log: SharedLog = Log::open(dir.path().join("log")).unwrap().into_shared();
                let t = Instant::now();
                for _ in 0..BUFFERED_RECORDS {
                    log.append(&PAYLOAD).unwrap();
                }
                total += t.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, bench_durable, bench_buffered);
criterion_main!(benches);
