//! Reopening a large log with an up-to-date stored index reads only what was appended after
//! the index was saved: for N = 1,000,000 events and K = 10 more, exactly 10 records.

mod index_common;

use chronicle::{Event, EventLog, Options};
use index_common::{collect, scan};

const N: u64 = 1_000_000;
const K: u64 = 10;
const AGGREGATES: u64 = 1000;

/// A tiny event (about 12 bytes of record), so that a million of them stay cheap to write.
fn tiny(i: u64) -> Event {
    Event::builder(if i.is_multiple_of(2) { "a" } else { "b" })
        .namespace("n")
        .aggregate_id(i % AGGREGATES)
        .build()
}

#[test]
fn reopen_after_k_appends_replays_exactly_k_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), Options::default()).unwrap();
    let batch: Vec<Event> = (0..1000).map(tiny).collect();
    for _ in 0..N / 1000 {
        log.append_batch(&batch).unwrap();
    }
    log.close().unwrap();

    let mut log = EventLog::open_with(dir.path(), Options::default()).unwrap();
    let report = log.index_report().clone();
    assert!(report.loaded, "{report:?}");
    assert_eq!(report.records_replayed, 0);
    assert_eq!(log.index().records(), N);
    let covered = log.end_offset();
    assert_eq!(report.covered_offset, covered);
    for i in N..N + K {
        log.append(&tiny(i)).unwrap();
    }
    drop(log); // As a crash would: the stored index still covers only the first N.

    let log = EventLog::open_with(dir.path(), Options::default()).unwrap();
    let report = log.index_report();
    assert!(report.loaded, "{report:?}");
    assert_eq!(report.rebuilt_because, None);
    assert_eq!(report.covered_offset, covered);
    assert_eq!(report.records_replayed, K);
    assert_eq!(log.index().records(), N + K);
    assert_eq!(log.index().covered_end(), log.end_offset());

    // Spot checks against a full scan: one aggregate and one type.
    let all = scan(&log);
    assert_eq!(all.len() as u64, N + K);
    let id = (N + 3) % AGGREGATES;
    let expected: Vec<_> =
        all.iter().filter(|e| e.event.aggregate_id == Some(id)).cloned().collect();
    assert_eq!(expected.len() as u64, N / AGGREGATES + 1);
    assert_eq!(log.load_aggregate(id).unwrap(), expected);
    let from = all[all.len() - 25].offset;
    let expected: Vec<_> =
        all.iter().filter(|e| e.event.event_type == "b" && e.offset >= from).cloned().collect();
    assert_eq!(collect(log.events_of_type("b", from)), expected);
    assert_eq!(log.index().of_type("a").len() + log.index().of_type("b").len(), all.len());
}
