//! Merkle rollup benchmarks on a log of 1M records of 128 bytes: hashing leaves (the rate the
//! hashing thread must keep up with), catching up a log with no stored pages, and heads and
//! proofs answered from stored pages in the page cache. What appends cost with the tree on is
//! in `append.rs` (`*_without_merkle_rollup`).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chronicle::rollup;
use chronicle::Log;
use common::{PAYLOAD_LEN, RECORDS};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

fn leaf_hashing(c: &mut Criterion) {
    let payload = common::payload(PAYLOAD_LEN, 1);
    let mut group = c.benchmark_group("rollup_leaf_hash_128B_x1M");
    group.throughput(common::records(RECORDS, PAYLOAD_LEN));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function("leaf_hash", |b| {
        b.iter(|| {
            let mut last = rollup::empty_root();
            for i in 0..RECORDS {
                last = rollup::leaf_hash(i * 160, 1_796_000_000_000, &payload);
            }
            black_box(last)
        })
    });
    group.finish();
}

/// Removes the log's page files, so the next open finds every record unhashed.
fn remove_pages(dir: &std::path::Path) {
    for level in 0..8 {
        let _ = std::fs::remove_file(dir.join(format!("rollup-{level}.pages")));
    }
}

/// The first head of a 1M-record log whose pages are gone: every record read and hashed,
/// every page sealed. A writer stores the pages (its hashing thread and the query share the
/// work); a read-only open keeps them in memory.
fn catch_up(c: &mut Criterion) {
    let dir = common::scratch_dir("rollup-catch-up");
    common::build_log(dir.path(), RECORDS, PAYLOAD_LEN);
    let mut group = c.benchmark_group("rollup_catch_up_128B_x1M");
    group.throughput(common::records(RECORDS, PAYLOAD_LEN));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for (name, read_only) in [("writer_first_head", false), ("read_only_first_head", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    remove_pages(dir.path());
                    let start = Instant::now();
                    let log = match read_only {
                        true => Log::open_read_only(dir.path()).unwrap(),
                        false => Log::open(dir.path()).unwrap(),
                    };
                    black_box(log.tree_head(None).unwrap());
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// A small xorshift generator, so every query asks about another place of the log.
struct Picks(u64);

impl Picks {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Heads and proofs of a 1M-record log with its pages stored and in the page cache, each
/// call about a random place of the log.
fn queries(c: &mut Criterion) {
    let dir = common::scratch_dir("rollup-queries");
    common::build_log(dir.path(), RECORDS, PAYLOAD_LEN);
    let log = Log::open(dir.path()).unwrap();
    let head = log.tree_head(None).unwrap();
    let records: Vec<(u64, u64)> =
        log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.write_timestamp_ms)).collect();
    let mut group = c.benchmark_group("rollup_queries_1M");
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    let mut picks = Picks(0x9e37_79b9_7f4a_7c15);
    group.bench_function("tree_head_latest", |b| b.iter(|| black_box(log.tree_head(None))));
    group.bench_function("tree_head_by_size", |b| {
        b.iter(|| black_box(log.tree_head(Some(1 + picks.below(RECORDS)))))
    });
    group.bench_function("tree_head_by_time", |b| {
        b.iter(|| black_box(log.tree_head_at(records[picks.below(RECORDS) as usize].1)))
    });
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| black_box(log.inclusion_proof(records[picks.below(RECORDS) as usize].0, None)))
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| black_box(log.consistency_proof(1 + picks.below(RECORDS - 1), None)))
    });
    let proof = log.inclusion_proof(records[RECORDS as usize / 3].0, None).unwrap();
    group
        .bench_function("verify_inclusion", |b| b.iter(|| proof.verify(Some(&head.root)).unwrap()));
    group.finish();
    let report = log.rollup_report();
    println!(
        "rollup of {} entries: {} bytes of page files ({:.1} per entry), {} bytes of memory",
        report.entries_hashed,
        report.disk_bytes,
        report.disk_bytes as f64 / report.entries_hashed as f64,
        report.memory_bytes
    );
}

criterion_group!(benches, leaf_hashing, catch_up, queries);
criterion_main!(benches);
