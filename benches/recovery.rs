//! Reopen benchmarks: opening a log of 1M × 128 B records (three 64 MiB segments) cleanly, read
//! only, and after a simulated crash that left a torn final record. The files are in the page
//! cache (just written); a cold-cache open also pays to read the last segment from disk.

mod common;

use std::cell::OnceCell;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chronicle::Log;
use common::{PAYLOAD_LEN, RECORDS};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use tempfile::TempDir;

/// The segment file holding logical offset `offset`, and the file position of that offset.
fn locate(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    let base = *bases.iter().rev().find(|&&b| b <= offset).unwrap();
    let path = dir.join(format!("{base:020}.seg"));
    (path, 64 + offset - base)
}

fn reopen(c: &mut Criterion) {
    // Built on first use, so a filtered run that measures none of these writes nothing.
    let fixture: OnceCell<(TempDir, PathBuf)> = OnceCell::new();
    let log_dir = || {
        let (_, log_dir) = fixture.get_or_init(|| {
            let dir = common::scratch_dir("recovery-1m");
            let log_dir = dir.path().join("log");
            common::build_log(&log_dir, RECORDS, PAYLOAD_LEN);
            (dir, log_dir)
        });
        log_dir.clone()
    };

    // Records/s and bytes/s of the log an open makes available.
    let mut group = c.benchmark_group("open_1M_x128B");
    group
        .throughput(common::records(RECORDS, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("clean_writer", |b| {
        let log_dir = log_dir();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = Log::open(&log_dir).unwrap();
                total += start.elapsed();
                assert_eq!(log.open_report().torn_tail, None);
                assert_eq!(log.open_report().segments, 3);
            }
            total
        });
    });

    group.bench_function("clean_read_only", |b| {
        let log_dir = log_dir();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = Log::open_read_only(&log_dir).unwrap();
                total += start.elapsed();
                assert_eq!(log.open_report().segments, 3);
            }
            total
        });
    });

    group.bench_function("torn_tail_writer", |b| {
        let log_dir = log_dir();
        // A crash image: one more record was appended (never synced: the writer is dropped
        // without `close`, as a crashed process would leave it) and its second half never
        // reached the file. Before each timed open the damaged frame is written back (the
        // previous open zeroed it).
        let torn_offset = {
            let mut log = Log::open(&log_dir).unwrap();
            let offset = log.append(&common::payload(PAYLOAD_LEN, 99)).unwrap();
            drop(log);
            offset
        };
        let (segment, file_pos) = locate(&log_dir, torn_offset);
        let mut damaged = vec![0u8; 32 + PAYLOAD_LEN];
        {
            let file = OpenOptions::new().read(true).open(&segment).unwrap();
            file.read_exact_at(&mut damaged, file_pos).unwrap();
        }
        damaged[32 + PAYLOAD_LEN / 2..].fill(0);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let file = OpenOptions::new().write(true).open(&segment).unwrap();
                file.write_all_at(&damaged, file_pos).unwrap();
                drop(file);
                let start = Instant::now();
                let log = Log::open(&log_dir).unwrap();
                total += start.elapsed();
                let torn = log.open_report().torn_tail.clone().expect("a torn tail");
                assert_eq!(torn.offset, torn_offset);
                assert_eq!(log.end_offset(), torn_offset);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, reopen);
criterion_main!(benches);
