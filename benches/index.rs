//! Index benchmarks, on a log of 1M typed events (4 event types, 2 namespaces, 10,000
//! aggregates of 100 events each, 32-byte payloads), with every file in the page cache:
//!
//! - `open_1M`: opening with an up-to-date index file vs. with it deleted (a full rebuild),
//!   measured in the same run, plus `Log::open` alone for reference (the part of the open that
//!   the index cannot save);
//! - `append_200k`: buffered typed appends through `EventLog` (which keeps the four indexes
//!   up to date) vs. the same records encoded the same way and appended to a bare `Log`;
//! - `query_1M`: `load_aggregate` of an aggregate with 100 events, and a 1 ms time range;
//! - `checkpoint_1M`: saving the index of 1M events.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chronicle::{Event, EventLog, IndexOptions, Log, Options, INDEX_FILE_NAME};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const EVENTS: u64 = 1_000_000;
const AGGREGATES: u64 = 10_000;
const TYPES: [&str; 4] = ["order.placed", "order.paid", "order.shipped", "user.renamed"];
const NAMESPACES: [&str; 2] = ["shop", "crm"];
const APPENDS: u64 = 200_000;
/// Payload bytes of every event.
const PAYLOAD_LEN: usize = 32;

fn event(i: u64) -> Event {
    Event::builder(TYPES[(i % 4) as usize])
        .namespace(NAMESPACES[(i / 7 % 2) as usize])
        .aggregate_id(i % AGGREGATES)
        .payload(common::payload(PAYLOAD_LEN, i))
        .build()
}

/// No automatic checkpoints: the benchmarks save (or not) explicitly.
fn manual() -> IndexOptions {
    IndexOptions { checkpoint_bytes: 0, ..IndexOptions::default() }
}

fn build(dir: &Path) {
    let mut log = EventLog::open_with_index_options(dir, Options::default(), manual()).unwrap();
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    for e in &events {
        log.append(e).unwrap();
    }
    log.close().unwrap();
}

fn open(c: &mut Criterion) {
    let scratch = common::scratch_dir("index-open");
    let dir = scratch.path().join("log");
    build(&dir);
    let index_path = dir.join(INDEX_FILE_NAME);
    let saved = std::fs::read(&index_path).unwrap();

    let mut group = c.benchmark_group("open_1M");
    group
        .throughput(common::records(EVENTS, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("with_index", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log =
                    EventLog::open_with_index_options(&dir, Options::default(), manual()).unwrap();
                total += start.elapsed();
                assert!(log.index_report().loaded);
                assert_eq!(log.index_report().records_replayed, 0);
                assert_eq!(log.index().records(), EVENTS);
            }
            total
        });
    });
    group.bench_function("index_deleted", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_file(&index_path).unwrap();
                let start = Instant::now();
                let log =
                    EventLog::open_with_index_options(&dir, Options::default(), manual()).unwrap();
                total += start.elapsed();
                assert!(!log.index_report().loaded);
                assert_eq!(log.index_report().records_replayed, EVENTS);
                drop(log);
                std::fs::write(&index_path, &saved).unwrap();
            }
            total
        });
    });
    group.bench_function("log_open_only", |b| {
        b.iter(|| Log::open(&dir).unwrap());
    });
    group.bench_function("load_index_file_only", |b| {
        b.iter(|| chronicle::load_index(&index_path).unwrap());
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let events: Vec<Event> = (0..APPENDS).map(event).collect();
    let mut group = c.benchmark_group("append_200k");
    group
        .throughput(common::records(APPENDS, PAYLOAD_LEN))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6));
    group.bench_function("event_log_indexed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = common::scratch_dir("index-append");
                let mut log =
                    EventLog::open_with_index_options(scratch.path(), Options::default(), manual())
                        .unwrap();
                let start = Instant::now();
                for e in &events {
                    log.append(e).unwrap();
                }
                total += start.elapsed();
                assert_eq!(log.index().records(), APPENDS);
            }
            total
        });
    });
    group.bench_function("log_encode_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = common::scratch_dir("index-append");
                let mut log = Log::open(scratch.path()).unwrap();
                let mut buf = Vec::new();
                let start = Instant::now();
                for e in &events {
                    // What `EventLog::append` does without an index: the same encoding into a
                    // reused buffer, then a buffered append.
                    buf.clear();
                    rmp_serde::encode::write(&mut buf, e).unwrap();
                    log.append(&buf).unwrap();
                }
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn query(c: &mut Criterion) {
    let scratch = common::scratch_dir("index-query");
    let dir = scratch.path().join("log");
    build(&dir);
    let mut log = EventLog::open_with_index_options(&dir, Options::default(), manual()).unwrap();
    let id = 4242;
    assert_eq!(log.index().aggregate(id).len(), 100);
    let mid = log.index().time_entries()[log.index().time_entries().len() / 2].0;
    let in_range = log.events_in_time_range(mid, mid + 1).count();
    assert!(in_range > 0);

    let mut group = c.benchmark_group("query_1M");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(common::records(100, PAYLOAD_LEN));
    group.bench_function("load_aggregate_100", |b| {
        b.iter(|| {
            let events = log.load_aggregate(id).unwrap();
            assert_eq!(events.len(), 100);
            events
        });
    });
    group.throughput(common::records(in_range as u64, PAYLOAD_LEN));
    group.bench_function("time_range_1ms", |b| {
        b.iter(|| {
            let found = log.events_in_time_range(mid, mid + 1).count();
            assert_eq!(found, in_range);
            found
        });
    });
    group.finish();

    // Records/s of events indexed; bytes/s of index file written.
    log.checkpoint().unwrap();
    let index_bytes = std::fs::metadata(dir.join(INDEX_FILE_NAME)).unwrap().len();
    let mut group = c.benchmark_group("checkpoint_1M");
    group
        .throughput(Throughput::ElementsAndBytes { elements: EVENTS, bytes: index_bytes })
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("save_index", |b| b.iter(|| log.checkpoint().unwrap()));
    group.finish();
}

criterion_group!(benches, open, append, query);
criterion_main!(benches);
