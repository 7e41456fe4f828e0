//! Replay benchmarks: 1M × 128 B records (`Replay::next_ref` and the `Iterator` form) against
//! a naive `BufReader` baseline that checks every CRC, 64 KiB records in bytes per second,
//! and typed events. The logs are written once, before any timing, and stay in the page
//! cache: these measure the CPU cost of replay, not the disk.

mod common;

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chronicle::{EventLog, Log};
use common::{PAYLOAD_LEN, RECORDS};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use tempfile::TempDir;

/// Records of the large-record benchmark: 4096 × 64 KiB = 256 MiB over 5 segments.
const LARGE_RECORDS: u64 = 4096;
const LARGE_LEN: usize = 64 << 10;

/// Replays the whole log from a freshly opened read-only handle with `next_ref`. The open is
/// outside the timed region (see the recovery benchmarks for its cost). Returns the time and
/// checks the count, so a broken replay cannot pass as a fast one.
fn time_next_ref(dir: &std::path::Path, expected: u64) -> Duration {
    time_next_ref_with(dir, expected, false)
}

/// [`time_next_ref`], with read checks (`Log::set_read_checks`) as `read_checks` says.
fn time_next_ref_with(dir: &std::path::Path, expected: u64, read_checks: bool) -> Duration {
    let log = Log::open_read_only(dir).unwrap();
    log.set_read_checks(read_checks);
    let start = Instant::now();
    let mut replay = log.replay(0);
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some(record) = replay.next_ref() {
        let record = record.unwrap();
        records += 1;
        bytes += black_box(record.payload).len() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(records, expected);
    black_box(bytes);
    elapsed
}

fn time_iterator(dir: &std::path::Path, expected: u64) -> Duration {
    let log = Log::open_read_only(dir).unwrap();
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    for record in log.replay(0) {
        let record = record.unwrap();
        records += 1;
        bytes += black_box(&record.payload[..]).len() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(records, expected);
    black_box(bytes);
    elapsed
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
}

/// A log and a baseline file holding the same records, written on first use (so a filtered
/// run builds only what it measures) and removed at the end.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn build(name: &str, count: u64, len: usize) -> Fixture {
        let dir = common::scratch_dir(name);
        common::build_log(&dir.path().join("log"), count, len);
        let baseline = dir.path().join("baseline.dat");
        common::baseline_write(&baseline, count, &common::payload(len, 7), true);
        Fixture { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn baseline(&self) -> PathBuf {
        self.dir.path().join("baseline.dat")
    }
}

fn replay_1m(c: &mut Criterion) {
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| Fixture::build("replay-1m", RECORDS, PAYLOAD_LEN));

    let mut group = c.benchmark_group("replay_128B_x1M");
    group.throughput(common::records(RECORDS, PAYLOAD_LEN));
    configure(&mut group);
    group.bench_function("baseline_bufreader_crc", |b| {
        let baseline = fixture().baseline();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (records, _) = black_box(common::baseline_read(&baseline));
                total += start.elapsed();
                assert_eq!(records, RECORDS);
            }
            total
        });
    });
    group.bench_function("log_replay_next_ref", |b| {
        let log_dir = fixture().log();
        b.iter_custom(|iters| (0..iters).map(|_| time_next_ref(&log_dir, RECORDS)).sum());
    });
    group.bench_function("log_replay_next_ref_read_checks", |b| {
        let log_dir = fixture().log();
        b.iter_custom(|iters| {
            (0..iters).map(|_| time_next_ref_with(&log_dir, RECORDS, true)).sum()
        });
    });
    group.bench_function("log_replay_iterator", |b| {
        let log_dir = fixture().log();
        b.iter_custom(|iters| (0..iters).map(|_| time_iterator(&log_dir, RECORDS)).sum());
    });
    group.finish();
}

fn replay_64k(c: &mut Criterion) {
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| Fixture::build("replay-64k", LARGE_RECORDS, LARGE_LEN));

    let mut group = c.benchmark_group("replay_64KiB_x4096");
    group.throughput(common::records(LARGE_RECORDS, LARGE_LEN));
    configure(&mut group);
    group.bench_function("baseline_bufreader_crc", |b| {
        let baseline = fixture().baseline();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (records, _) = black_box(common::baseline_read(&baseline));
                total += start.elapsed();
                assert_eq!(records, LARGE_RECORDS);
            }
            total
        });
    });
    group.bench_function("log_replay_next_ref", |b| {
        let log_dir = fixture().log();
        b.iter_custom(|iters| (0..iters).map(|_| time_next_ref(&log_dir, LARGE_RECORDS)).sum());
    });
    group.bench_function("log_replay_next_ref_read_checks", |b| {
        let log_dir = fixture().log();
        b.iter_custom(|iters| {
            (0..iters).map(|_| time_next_ref_with(&log_dir, LARGE_RECORDS, true)).sum()
        });
    });
    // The floor for any checked replay: CRC-32 of as many bytes, 64 KiB at a time, from one
    // 256 MiB buffer (too big for the caches, like the mapped segments).
    group.bench_function("crc32fast_only_256MiB_buffer", |b| {
        let buffer = common::payload(LARGE_RECORDS as usize * LARGE_LEN, 7);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for chunk in buffer.chunks(LARGE_LEN) {
                    black_box(crc32fast::hash(black_box(chunk)));
                }
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn event_replay_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_replay_128B_x1M");
    group.throughput(common::records(RECORDS, PAYLOAD_LEN));
    configure(&mut group);
    group.bench_function("event_log_replay", |b| {
        let dir = common::scratch_dir("event-replay-1m");
        common::build_event_log(dir.path(), RECORDS);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let log = EventLog::open_read_only(dir.path()).unwrap();
                let start = Instant::now();
                let mut count = 0u64;
                for envelope in log.replay(0) {
                    let envelope = envelope.unwrap();
                    black_box(&envelope.event.payload);
                    count += 1;
                }
                total += start.elapsed();
                assert_eq!(count, RECORDS);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, replay_1m, replay_64k, event_replay_1m);
criterion_main!(benches);
