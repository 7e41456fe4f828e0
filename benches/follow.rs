//! Following benchmarks: append-to-delivery latency in one process (a writer appends one
//! 128-byte record at a time with its send time inside; a follower thread takes the delta;
//! p50 and p99 are printed), the same across processes (this binary run again as the writer,
//! `CHRONICLE_BENCH_FOLLOW_WRITER`, stamping each record with `CLOCK_MONOTONIC`; this process
//! follows through a read-only handle), and 4 followers replaying 1M × 128 B while the writer
//! appends (each follower's throughput against a lone replay, and the writer's against no
//! follower).

use std::hint::black_box;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Log, Next};
use criterion::{criterion_group, Criterion, SamplingMode};
use rustix::time::{clock_gettime, ClockId};

const RECORDS: u64 = 1_000_000;
const PAYLOAD_LEN: usize = 128;

/// The `q` quantile of sorted `samples`.
fn quantile(samples: &[u64], q: f64) -> u64 {
    samples.get(((samples.len() - 1) as f64 * q) as usize).copied().unwrap_or(0)
}

/// Appends `n` records, each holding the nanoseconds since `epoch` when it was appended,
/// pausing `gap` between them; a follower returns each record's delivery delay.
fn latencies(n: u64, gap: Duration) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    let mut follow = log.follow(0);
    let epoch = Instant::now();
    let follower = thread::spawn(move || {
        let mut delays = Vec::with_capacity(n as usize);
        while (delays.len() as u64) < n {
            if let Next::Record(r) = follow.next_timeout(Duration::from_secs(10)) {
                let now = epoch.elapsed().as_nanos() as u64;
                let sent = u64::from_le_bytes(r.payload[..8].try_into().unwrap());
                delays.push(now - sent);
            }
        }
        delays
    });
    let mut payload = [0u8; PAYLOAD_LEN];
    for _ in 0..n {
        let spin = Instant::now();
        while spin.elapsed() < gap {
            std::hint::spin_loop();
        }
        let sent = epoch.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        log.append(&payload).unwrap();
    }
    let mut delays = follower.join().unwrap();
    delays.sort_unstable();
    delays
}

fn bench_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("follow_latency_128B");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    // A record every 20 µs: the follower sleeps between most of them, so each delivery
    // includes a wake-up.
    let mut all = Vec::new();
    group.bench_function("append_to_delivery", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let delays = latencies(2000, Duration::from_micros(20));
                total += Duration::from_nanos(quantile(&delays, 0.5));
                all.extend(delays);
            }
            total
        });
    });
    all.sort_unstable();
    eprintln!(
        "follow_latency_128B: {} deliveries, p50 {} ns, p99 {} ns, max {} ns",
        all.len(),
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        all.last().copied().unwrap_or(0)
    );
    group.finish();
}

/// The environment variable that makes this binary the writer process of
/// [`cross_process_latencies`]: the log's directory.
const WRITER_ENV: &str = "CHRONICLE_BENCH_FOLLOW_WRITER";

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine.
fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The writer process: opens the log, says `ready`, waits for a line `N GAP_NS` on its
/// standard input, then appends N records stamped with [`monotonic_ns`], `GAP_NS` apart.
fn writer_process(dir: &Path) {
    let mut log = Log::open(dir).unwrap();
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let mut words = line.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    let (n, gap) = (words.next().unwrap(), Duration::from_nanos(words.next().unwrap()));
    let mut payload = [0u8; PAYLOAD_LEN];
    for _ in 0..n {
        let spin = Instant::now();
        while spin.elapsed() < gap {
            std::hint::spin_loop();
        }
        payload[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        log.append(&payload).unwrap();
    }
    log.close().unwrap();
}

/// Starts a writer process that appends `n` records `gap` apart, follows them through a
/// read-only handle, and returns each record's delivery delay, sorted.
fn cross_process_latencies(n: u64, gap: Duration) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    Log::open(&path).unwrap().close().unwrap();
    let mut writer = Command::new(std::env::current_exe().unwrap())
        .env(WRITER_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(writer.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let reader = Log::open_read_only(&path).unwrap();
    let mut follow = reader.follow(0);
    let mut stdin = writer.stdin.take().unwrap();
    writeln!(stdin, "{n} {}", gap.as_nanos()).unwrap();
    let mut delays = Vec::with_capacity(n as usize);
    while (delays.len() as u64) < n {
        match follow.next_timeout(Duration::from_secs(10)) {
            Next::Record(r) => {
                let now = monotonic_ns();
                let sent = u64::from_le_bytes(r.payload[..8].try_into().unwrap());
                delays.push(now - sent);
            }
            Next::CaughtUp => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(writer.wait().unwrap().success());
    delays.sort_unstable();
    delays
}

fn bench_cross_process_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("follow_cross_process_128B");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    // A record every 200 µs from another process; the read-only follower looks at the files
    // about every millisecond.
    let mut all = Vec::new();
    group.bench_function("append_to_delivery_read_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let delays = cross_process_latencies(1000, Duration::from_micros(200));
                total += Duration::from_nanos(quantile(&delays, 0.5));
                all.extend(delays);
            }
            total
        });
    });
    all.sort_unstable();
    if !all.is_empty() {
        eprintln!(
            "follow_cross_process_128B: {} deliveries, p50 {} ns, p99 {} ns, max {} ns",
            all.len(),
            quantile(&all, 0.5),
            quantile(&all, 0.99),
            all.last().copied().unwrap_or(0)
        );
    }
    group.finish();
}

/// Appends `RECORDS` records while `followers` threads follow from 0 until they have them
/// all; returns the writer's time and each follower's.
fn append_with_followers(followers: usize) -> (Duration, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    let start = Arc::new(Barrier::new(followers + 1));
    let handles: Vec<_> = (0..followers)
        .map(|_| {
            let mut follow = log.follow(0);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let mut n = 0u64;
                while n < RECORDS {
                    match follow.next_timeout(Duration::from_secs(10)) {
                        Next::Record(r) => {
                            black_box(&r.payload[..]);
                            n += 1;
                        }
                        Next::CaughtUp | Next::TimedOut => {}
                        other => panic!("{other:?}"),
                    }
                }
                began.elapsed()
            })
        })
        .collect();
    let payload = [7u8; PAYLOAD_LEN];
    start.wait();
    let began = Instant::now();
    for _ in 0..RECORDS {
        log.append(&payload).unwrap();
    }
    let writer = began.elapsed();
    (writer, handles.into_iter().map(|h| h.join().unwrap()).collect())
}

fn bench_followers(c: &mut Criterion) {
    let mut group = c.benchmark_group("follow_1M_128B");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    for followers in [0usize, 4] {
        let mut follower_times = Vec::new();
        group.bench_function(format!("writer_with_{followers}_followers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (writer, each) = append_with_followers(followers);
                    total += writer;
                    follower_times.extend(each);
                }
                total
            });
        });
        if !follower_times.is_empty() {
            follower_times.sort_unstable();
            eprintln!(
                "follow_1M_128B: {followers} followers, each from start to its last record: \
                 median {:?}, slowest {:?}",
                follower_times[follower_times.len() / 2],
                follower_times.last().copied().unwrap_or_default()
            );
        }
    }
    // A lone replay of the same log, for comparison with each follower.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    for _ in 0..RECORDS {
        log.append(&[7u8; PAYLOAD_LEN]).unwrap();
    }
    group.bench_function("lone_follow_of_a_written_log", |b| {
        b.iter(|| {
            let mut follow = log.follow(0);
            let mut n = 0u64;
            while let Next::Record(r) = follow.next_timeout(Duration::ZERO) {
                black_box(&r.payload[..]);
                n += 1;
            }
            assert_eq!(n, RECORDS);
        });
    });
    group.finish();
}

criterion_group!(benches, bench_latency, bench_cross_process_latency, bench_followers);

fn main() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        writer_process(Path::new(&dir));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
