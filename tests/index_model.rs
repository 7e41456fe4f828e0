//! A proptest of random appends (single and batched), clean and crash reopens, torn tails,
//! explicit index saves and partial rebuilds. After every step each index query must equal a
//! brute-force scan of the log, and every reopen must report a consistent catch-up.

mod index_common;

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use chronicle::{load_index, Event, EventLog, IndexOptions, INDEX_FILE_NAME};
use index_common::{
    assert_queries_match_scan, last_segment_base, scan, small, tear_tail, NAMESPACES, TYPES,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Appends events described by `(type, namespace, aggregate)` choices, one by one.
    Append(Vec<(u8, u8, Option<u8>)>),
    /// Appends them as one batch.
    Batch(Vec<(u8, u8, Option<u8>)>),
    /// Lets the clock move on, so that later events get a later timestamp.
    Tick,
    /// Saves the index.
    Checkpoint,
    /// Closes (saving the index) and reopens.
    Reopen,
    /// Drops without closing (the stored index is whatever was saved last) and reopens.
    CrashReopen,
    /// Drops without closing, zeroes the last segment from one of its records appended since
    /// the last sync (chosen by this number), and reopens: what a power loss can leave.
    TornTail(u8),
    /// Re-indexes from the record at this fraction of the log.
    RebuildFrom(u8),
}

fn spec() -> impl Strategy<Value = (u8, u8, Option<u8>)> {
    (0u8..3, 0u8..2, proptest::option::of(0u8..6))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(spec(), 1..12).prop_map(Op::Append),
        2 => proptest::collection::vec(spec(), 1..8).prop_map(Op::Batch),
        1 => Just(Op::Tick),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => Just(Op::CrashReopen),
        1 => any::<u8>().prop_map(Op::TornTail),
        1 => any::<u8>().prop_map(Op::RebuildFrom),
    ]
}

fn make(spec: &(u8, u8, Option<u8>), i: usize) -> Event {
    let mut e = Event::builder(TYPES[spec.0 as usize])
        .namespace(NAMESPACES[spec.1 as usize])
        .payload(vec![1; i % 13])
        .build();
    e.aggregate_id = spec.2.map(u64::from);
    e
}

fn open(dir: &Path) -> EventLog {
    // Small checkpoint interval, so automatic saves happen too.
    let options = IndexOptions { checkpoint_bytes: 1536, ..IndexOptions::default() };
    EventLog::open_with_index_options(dir, small(), options).unwrap()
}

/// What the stored index covers, if a usable file is there.
fn stored_end(dir: &Path) -> Option<u64> {
    load_index(dir.join(INDEX_FILE_NAME)).ok().map(|i| i.covered_end())
}

/// Checks the open report of a reopen: a usable index is caught up from its covered end,
/// an unusable one is rebuilt from the start, and the counts agree with the log.
fn check_report(log: &EventLog, stored: Option<u64>) {
    let report = log.index_report();
    let all = scan(log);
    if report.loaded {
        assert_eq!(Some(report.covered_offset), stored, "{report:?}");
        let after = all.iter().filter(|e| e.offset >= report.covered_offset).count();
        assert_eq!(report.records_replayed, after as u64, "{report:?}");
    } else {
        assert!(report.rebuilt_because.is_some(), "{report:?}");
        assert_eq!(report.covered_offset, 0);
        assert_eq!(report.records_replayed, all.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queries_equal_a_scan_after_every_step(ops in proptest::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        // Everything before this offset was synced (by the last open or close); a crash
        // cannot tear it, and recovery rightly calls zeroed durable data corruption.
        let mut durable = log.end_offset();
        let mut n = 0usize;
        for op in ops {
            match op {
                Op::Append(specs) => {
                    for s in &specs {
                        log.append(&make(s, n)).unwrap();
                        n += 1;
                    }
                }
                Op::Batch(specs) => {
                    let events: Vec<Event> =
                        specs.iter().enumerate().map(|(i, s)| make(s, n + i)).collect();
                    n += events.len();
                    log.append_batch(&events).unwrap();
                }
                Op::Tick => sleep(Duration::from_millis(2)),
                Op::Checkpoint => {
                    log.checkpoint().unwrap();
                    prop_assert_eq!(stored_end(dir.path()), Some(log.end_offset()));
                }
                Op::Reopen => {
                    log.close().unwrap();
                    let stored = stored_end(dir.path());
                    log = open(dir.path());
                    durable = log.end_offset();
                    prop_assert!(log.index_report().loaded);
                    check_report(&log, stored);
                }
                Op::CrashReopen => {
                    drop(log);
                    let stored = stored_end(dir.path());
                    log = open(dir.path());
                    durable = log.end_offset();
                    check_report(&log, stored);
                    prop_assert_eq!(log.index_report().loaded, stored.is_some());
                }
                Op::TornTail(at) => {
                    let all = scan(&log);
                    drop(log);
                    // Cut at a record inside the last segment that was never synced.
                    let first = last_segment_base(dir.path()).max(durable);
                    let in_last: Vec<u64> =
                        all.iter().map(|e| e.offset).filter(|&o| o >= first).collect();
                    let cut = in_last.get(at as usize % in_last.len().max(1)).copied();
                    if let Some(cut) = cut {
                        tear_tail(dir.path(), cut);
                    }
                    let stored = stored_end(dir.path());
                    log = open(dir.path());
                    durable = log.end_offset();
                    check_report(&log, stored);
                    if let (Some(cut), Some(stored)) = (cut, stored) {
                        // A cut inside a batch drops the whole batch.
                        prop_assert!(log.end_offset() <= cut);
                        // Usable exactly when the cut spared everything the index covers.
                        prop_assert_eq!(log.index_report().loaded, stored <= log.end_offset());
                    }
                }
                Op::RebuildFrom(at) => {
                    let all = scan(&log);
                    let from = all.get(at as usize % (all.len() + 1)).map_or(log.end_offset(), |e| e.offset);
                    let replayed = log.rebuild_index_from(from).unwrap();
                    let after = all.iter().filter(|e| e.offset >= from).count();
                    prop_assert_eq!(replayed, after as u64);
                }
            }
            assert_queries_match_scan(&log);
        }
        log.close().unwrap();
        prop_assert!(fs::metadata(dir.path().join(INDEX_FILE_NAME)).is_ok());
    }
}
