//! Merkle rollup benchmarks: hashing 1M leaves of 128-byte records (the rate hashing must keep
//! up with), and the tree head and one inclusion proof of a 1M-record log as they are computed
//! today, from the log on each call (a replay, the leaf hashes and the tree).

mod common;

use std::hint::black_box;
use std::time::Duration;

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

fn from_the_log(c: &mut Criterion) {
    let dir = common::scratch_dir("rollup");
    common::build_log(dir.path(), RECORDS, PAYLOAD_LEN);
    let log = Log::open_read_only(dir.path()).unwrap();
    let mut group = c.benchmark_group("rollup_from_log_128B_x1M");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function("tree_head", |b| b.iter(|| black_box(log.tree_head(None).unwrap())));
    let offset = log.replay(0).nth(RECORDS as usize / 2).unwrap().unwrap().offset;
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| black_box(log.inclusion_proof(offset, None).unwrap()))
    });
    let proof = log.inclusion_proof(offset, None).unwrap();
    group.bench_function("verify_inclusion", |b| b.iter(|| proof.verify(None).unwrap()));
    group.finish();
}

criterion_group!(benches, leaf_hashing, from_the_log);
criterion_main!(benches);
