//! Append benchmarks: buffered appends of 1M records against a naive `BufWriter` baseline,
//! durable appends against the machine's own `pwrite` + `fdatasync` rate, batches, and typed
//! events. See BENCHMARKS.md for the targets and the results.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronicle::{EventLog, Log, Options};
use common::{Prealloc, SyncFile, FRAME_LEN_128, PAYLOAD_LEN, RECORDS};
use criterion::{criterion_group, Criterion, SamplingMode};

/// Runs `iters` times: 1M appends of `data` into a fresh log opened with `options`, then a
/// `sync()` if `sync`; returns the time of the appends (and the sync). The log is closed, and
/// so written back, outside the timed region, so the next iteration starts clean.
fn time_appends(iters: u64, options: &Options, data: &[u8], sync: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = common::scratch_dir("append-log");
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        let start = Instant::now();
        for _ in 0..RECORDS {
            black_box(log.append(data).unwrap());
        }
        if sync {
            log.sync().unwrap();
        }
        total += start.elapsed();
        log.close().unwrap();
    }
    total
}

/// Runs `write` `iters` times, each on a new file in a fresh scratch directory, and returns
/// the time spent in `write`. Each file is synced afterwards, untimed, so no iteration starts
/// with another's dirty pages still to write.
fn time_file_writes(iters: u64, write: impl Fn(&Path)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = common::scratch_dir("append-file");
        let path = dir.path().join("data.dat");
        let start = Instant::now();
        write(&path);
        total += start.elapsed();
        std::fs::File::open(&path).unwrap().sync_data().unwrap();
    }
    total
}

/// 1M × 128 B appends: the naive baseline, Chronicle with its final sync, and without it,
/// beside the machine's floor (the same bytes written with plain `write` calls).
///
/// Each iteration writes into a fresh directory (made, and for Chronicle opened, outside the
/// timed region; the log's first 64 MiB segment is created by `open`, the later two are
/// created inside the timed loop as part of appending).
fn append_1m(c: &mut Criterion) {
    let data = common::payload(PAYLOAD_LEN, 1);
    let mut group = c.benchmark_group("append_128B_x1M");
    group
        .throughput(common::records(RECORDS, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));

    group.bench_function("baseline_bufwriter_fdatasync", |b| {
        b.iter_custom(|iters| {
            time_file_writes(iters, |path| common::baseline_write(path, RECORDS, &data, true))
        });
    });

    // Chronicle with the default options, with and without the final sync; then settings
    // data points: 1 GiB segments (the 160 MB of this run never roll), the next segment
    // created at the roll rather than ahead of it, and no write-behind.
    let defaults = Options::default();
    let variants = [
        ("log_append_then_sync", defaults.clone(), true),
        ("log_append_no_sync", defaults.clone(), false),
        (
            "log_append_no_sync_segment_1GiB",
            Options { segment_bytes: 1 << 30, ..defaults.clone() },
            false,
        ),
        (
            "log_append_no_sync_without_next_segment_prepared",
            Options { prepare_next_segment: false, ..defaults.clone() },
            false,
        ),
        (
            "log_append_then_sync_without_write_behind",
            Options { write_behind: false, ..defaults.clone() },
            true,
        ),
        (
            "log_append_no_sync_without_write_behind",
            Options { write_behind: false, ..defaults.clone() },
            false,
        ),
        // The Merkle rollup's hashing thread off: what keeping the tree costs appends.
        (
            "log_append_no_sync_without_merkle_rollup",
            Options { merkle_rollup: false, ..defaults },
            false,
        ),
    ];
    for (name, options, sync) in variants {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| time_appends(iters, &options, &data, sync))
        });
    }

    // The same baseline without its final fdatasync: what the buffered write path alone costs.
    group.bench_function("baseline_bufwriter_no_sync", |b| {
        b.iter_custom(|iters| {
            time_file_writes(iters, |path| common::baseline_write(path, RECORDS, &data, false))
        });
    });

    // The machine's floor for the no-sync target: the 160 MB that Chronicle writes for these
    // records (1M frames of 160 bytes), copied from one warm buffer into a new file with plain
    // `write` calls, 8 KiB and 1 MiB at a time: no framing, no checksum, nothing else. No
    // engine whose append puts its bytes in the page cache can beat this by much.
    for (name, chunk_len) in [
        ("floor_write_160MB_in_8KiB_writes", 8 << 10),
        ("floor_write_160MB_in_1MiB_writes", 1 << 20),
    ] {
        group.bench_function(name, |b| {
            let chunk = common::payload(chunk_len, 5);
            let bytes = RECORDS * FRAME_LEN_128 as u64;
            b.iter_custom(|iters| {
                time_file_writes(iters, |path| common::write_bytes(path, bytes, &chunk))
            });
        });
    }
    group.finish();
}

/// The latency of a segment roll: the append that fills a 16 MiB segment and the 999 after it
/// (which write the first pages of the new segment), with the next segment prepared in the
/// background (the default) and without. Each iteration fills a fresh log up to the roll
/// outside the timed region, then waits 50 ms so the background work is done, as it would be
/// for any writer that takes longer than that to fill the second half of a segment.
fn roll(c: &mut Criterion) {
    const SEGMENT_BYTES: u64 = 16 << 20;
    const AFTER_ROLL: u64 = 1000;
    let data = common::payload(PAYLOAD_LEN, 3);
    // Frames that fill the first segment's data region exactly as far as they fit.
    let fill = (SEGMENT_BYTES - 64) / FRAME_LEN_128 as u64;
    let mut group = c.benchmark_group("roll_16MiB_segment");
    group
        .throughput(common::records(AFTER_ROLL, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, prepare) in
        [("next_segment_prepared", true), ("next_segment_created_at_roll", false)]
    {
        let options = Options {
            segment_bytes: SEGMENT_BYTES,
            record_bytes_max: Some(1 << 20),
            prepare_next_segment: prepare,
            ..Options::default()
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = common::scratch_dir("roll");
                    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
                    for _ in 0..fill {
                        log.append(&data).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    let start = Instant::now();
                    for _ in 0..AFTER_ROLL {
                        black_box(log.append(&data).unwrap());
                    }
                    total += start.elapsed();
                    log.close().unwrap();
                }
                total
            });
        });
    }
    group.finish();
}

/// 1M typed events (128-byte payloads) through `EventLog::append`, no sync in the timed loop.
fn event_append_1m(c: &mut Criterion) {
    let body = common::payload(PAYLOAD_LEN, 11);
    let events: Vec<_> = (0..1024).map(|i| common::bench_event(i, &body)).collect();
    let mut group = c.benchmark_group("event_append_128B_x1M");
    group
        .throughput(common::records(RECORDS, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6));
    for (name, merkle_rollup) in [
        ("event_log_append_no_sync", true),
        ("event_log_append_no_sync_without_merkle_rollup", false),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = common::scratch_dir("event-append");
                    let options = Options { merkle_rollup, ..Options::default() };
                    let mut log = EventLog::open_with(dir.path(), options).unwrap();
                    let start = Instant::now();
                    for i in 0..RECORDS {
                        let event = &events[(i % 1024) as usize];
                        black_box(log.append(event).unwrap());
                    }
                    total += start.elapsed();
                    log.close().unwrap();
                }
                total
            });
        });
    }
    group.finish();
}

/// One durable 128 B append per iteration, beside `pwrite` of the same 160 frame bytes +
/// `fdatasync` into a preallocated file (fallocated, and fully zero-written).
fn append_sync(c: &mut Criterion) {
    let data = common::payload(PAYLOAD_LEN, 2);
    let frame = common::payload(FRAME_LEN_128, 3);
    let mut group = c.benchmark_group("append_sync_128B");
    group
        .throughput(common::records(1, PAYLOAD_LEN))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));

    group.bench_function("baseline_pwrite_fdatasync_fallocated", |b| {
        let mut file = SyncFile::new(Prealloc::Fallocate);
        b.iter_custom(|iters| file.write_sync(iters, &frame));
    });
    group.bench_function("baseline_pwrite_fdatasync_zeroed", |b| {
        let mut file = SyncFile::new(Prealloc::Zeroed);
        b.iter_custom(|iters| file.write_sync(iters, &frame));
    });
    group.bench_function("log_append_sync", |b| {
        let dir = common::scratch_dir("append-sync-each");
        let mut log = Log::open(dir.path()).unwrap();
        b.iter(|| log.append_sync(black_box(&data)).unwrap());
        log.close().unwrap();
    });
    group.finish();
}

/// One durable batch of 100 × 128 B per iteration, beside one `pwrite` of the same 16,000
/// frame bytes + `fdatasync` into a preallocated file (fallocated, and fully zero-written);
/// the log with default options and with `zero_fill_segments`.
fn append_batch_sync(c: &mut Criterion) {
    const BATCH: usize = 100;
    let batch: Vec<Vec<u8>> =
        (0..BATCH).map(|i| common::payload(PAYLOAD_LEN, 100 + i as u64)).collect();
    let frames = common::payload(FRAME_LEN_128 * BATCH, 4);
    let mut group = c.benchmark_group("append_batch_sync_100x128B");
    group
        .throughput(common::records(BATCH as u64, PAYLOAD_LEN))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("baseline_pwrite_16000B_fdatasync_fallocated", |b| {
        let mut file = SyncFile::new(Prealloc::Fallocate);
        b.iter_custom(|iters| file.write_sync(iters, &frames));
    });
    group.bench_function("baseline_pwrite_16000B_fdatasync_zeroed", |b| {
        let mut file = SyncFile::new(Prealloc::Zeroed);
        b.iter_custom(|iters| file.write_sync(iters, &frames));
    });
    for (name, zero_fill_segments) in
        [("log_append_batch_sync", false), ("log_append_batch_sync_zero_filled_segments", true)]
    {
        group.bench_function(name, |b| {
            let dir = common::scratch_dir("batch-sync");
            let options = Options { zero_fill_segments, ..Options::default() };
            let mut log = Log::open_with(dir.path(), options).unwrap();
            b.iter(|| black_box(log.append_batch_sync(&batch).unwrap()));
            log.close().unwrap();
        });
    }
    group.finish();
}

/// The fixed per-record costs of the buffered append path, measured on their own over 1M
/// records: reading the wall clock (`SystemTime::now()` to milliseconds: what the log paid per
/// record before it read the clock only when a new millisecond may have begun, see
/// `log::clock`), crc32fast over a frame's checked bytes in two parts (the log's own checksum
/// of small frames, a parallel fold, is internal and measured as part
/// of `Log::append`), the baseline's CRC of the payload alone, and copying 160 bytes into
/// memory that is already mapped.
fn per_record_costs(c: &mut Criterion) {
    let n = RECORDS as usize;
    let mut group = c.benchmark_group("per_record_cost_x1M");
    group
        .throughput(common::records(RECORDS, PAYLOAD_LEN))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("wall_clock_ms", |b| {
        b.iter(|| {
            let mut last = 0u64;
            for _ in 0..n {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                last = last.max(now);
            }
            black_box(last)
        });
    });
    let frames = common::payload(n * FRAME_LEN_128, 5);
    // As `format::crc32` is fed for frames too long for the parallel fold: the 28 header bytes
    // after the checksum, then the payload, into a clone of a hasher made once.
    let prototype = crc32fast::Hasher::new();
    group.bench_function("frame_crc_28_128", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in frames.chunks_exact(FRAME_LEN_128) {
                let mut h = prototype.clone();
                h.update(&f[4..32]);
                h.update(&f[32..]);
                acc ^= h.finalize();
            }
            black_box(acc)
        });
    });
    group.bench_function("payload_crc_128", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in frames.chunks_exact(FRAME_LEN_128) {
                acc ^= crc32fast::hash(&f[32..]);
            }
            black_box(acc)
        });
    });
    let mut target = vec![1u8; n * FRAME_LEN_128];
    group.bench_function("copy_160B_into_touched_memory", |b| {
        b.iter(|| {
            for (dst, src) in
                target.chunks_exact_mut(FRAME_LEN_128).zip(frames.chunks_exact(FRAME_LEN_128))
            {
                dst.copy_from_slice(black_box(src));
            }
            black_box(&target);
        });
    });
    group.finish();
}

/// The durable-append comparisons again, with the contenders interleaved in rounds of 50
/// operations (single records) or 25 (batches) so that background I/O from other processes
/// hits all of them alike. Prints the medians; criterion's separate runs above are more
/// exposed to such drift on a shared machine.
fn interleaved_sync_check() {
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 50;
    const BATCH: usize = 100;
    let data = common::payload(PAYLOAD_LEN, 2);
    let frame = common::payload(FRAME_LEN_128, 3);
    let batch: Vec<Vec<u8>> =
        (0..BATCH).map(|i| common::payload(PAYLOAD_LEN, 100 + i as u64)).collect();
    let frames = common::payload(FRAME_LEN_128 * BATCH, 4);
    let dir = common::scratch_dir("append-sync-interleaved");
    let mut log = Log::open(dir.path()).unwrap();
    let mut fallocated = SyncFile::new(Prealloc::Fallocate);
    let mut zeroed = SyncFile::new(Prealloc::Zeroed);
    let (mut l, mut f, mut z) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lb, mut fb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            log.append_sync(&data).unwrap();
            l.push(start.elapsed());
        }
        for _ in 0..PER_ROUND {
            f.push(fallocated.write_sync(1, &frame));
        }
        for _ in 0..PER_ROUND {
            z.push(zeroed.write_sync(1, &frame));
        }
        for _ in 0..PER_ROUND / 2 {
            let start = Instant::now();
            black_box(log.append_batch_sync(&batch).unwrap());
            lb.push(start.elapsed());
        }
        for _ in 0..PER_ROUND / 2 {
            fb.push(fallocated.write_sync(1, &frames));
        }
    }
    log.close().unwrap();
    let median_us = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let (ml, mf, mz) = (median_us(&mut l), median_us(&mut f), median_us(&mut z));
    let (mlb, mfb) = (median_us(&mut lb), median_us(&mut fb));
    println!(
        "interleaved append_sync medians over {} ops each: log_append_sync {ml:.1} us, \
         pwrite+fdatasync fallocated {mf:.1} us, zeroed {mz:.1} us; log/fallocated {:.3}, \
         log/zeroed {:.3}",
        ROUNDS * PER_ROUND,
        ml / mf,
        ml / mz,
    );
    println!(
        "interleaved batch medians over {} ops each: log_append_batch_sync(100 x 128 B) \
         {mlb:.1} us, pwrite 16000 B + fdatasync fallocated {mfb:.1} us; log/pwrite {:.3}",
        ROUNDS * PER_ROUND / 2,
        mlb / mfb,
    );
}

criterion_group!(
    benches,
    append_1m,
    roll,
    event_append_1m,
    append_sync,
    append_batch_sync,
    per_record_costs
);

fn main() {
    benches();
    // Runs with `cargo bench`, unless a name filter was given that does not mention "sync";
    // never under `cargo test` (which passes no `--bench`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if bench_mode && (filters.is_empty() || filters.iter().any(|f| f.contains("sync"))) {
        interleaved_sync_check();
    }
    Criterion::default().configure_from_args().final_summary();
}
