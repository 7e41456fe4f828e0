// Issue 18, defect 1. A user ran the README's quick start in a debug build: its first event has
// namespace "shop", four bytes long, and the append panicked inside the index with "attempt to
// shift right with overflow". The record was already in the log when the index panicked, so
// every later open of that directory panicked too, while catching the index up. Release builds
// did not panic (there the shift amount is masked: the name's key was merely packed
// differently, with no wrong answer), which is why `cargo test --release` in CI never saw it.
//
// These tests append names of every length (event types and namespaces alike, including the
// four-byte ones), and aggregate ids across the whole `u64` range, and check every index query
// against a filtered full replay: as appended, after a reopen that loads the saved index, and
// after a reopen that rebuilds it because the index file was deleted.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chronicle::{Event, EventEnvelope, EventLog, INDEX_FILE_NAME};
use proptest::prelude::*;

#[test]
fn four_byte_event_type_does_not_panic_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path()).unwrap();
    // The README's quick-start event: a four-byte namespace.
    let placed = Event::builder("order.placed").namespace("shop").aggregate_id(42).build();
    // A four-byte event type too.
    let paid_event = Event::builder("paid").namespace("shop").aggregate_id(42).build();
    let first = log.append(&placed).unwrap();
    let second = log.append(&paid_event).unwrap();
    let offsets =
        |it: chronicle::IndexedEvents<'_>| -> Vec<u64> { it.map(|e| e.unwrap().offset).collect() };
    assert_eq!(offsets(log.events_in_namespace("shop", 0)), [first, second]);
    assert_eq!(offsets(log.events_of_type("paid", 0)), [second]);
    assert_eq!(offsets(log.events_in_namespace("sho", 0)), Vec::<u64>::new());
    assert_eq!(offsets(log.events_in_namespace("shops", 0)), Vec::<u64>::new());
    log.close().unwrap();

    // Reopening catches the index up, or rebuilds it, through the same code.
    let mut shop = vec![first, second];
    let mut paid = vec![second];
    for delete_index in [false, true] {
        if delete_index {
            fs::remove_file(dir.path().join(INDEX_FILE_NAME)).unwrap();
        }
        let mut log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.index_report().loaded, !delete_index);
        assert_eq!(offsets(log.events_in_namespace("shop", 0)), shop);
        assert_eq!(offsets(log.events_of_type("paid", 0)), paid);
        // And the appends after it find the same names again.
        let next = log.append(&paid_event).unwrap();
        shop.push(next);
        paid.push(next);
        assert_eq!(offsets(log.events_in_namespace("shop", 0)), shop);
        assert_eq!(offsets(log.events_of_type("paid", 0)), paid);
        drop(log);
        // Dropped without a close: the next open catches the index up from the log.
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(offsets(log.events_in_namespace("shop", 0)), shop);
        assert_eq!(offsets(log.events_of_type("paid", 0)), paid);
        log.close().unwrap();
    }
}

/// Every query's answer against a filter over a full replay, for the names and ids given
/// (plus the ones in the log).
fn assert_queries_match_replay(log: &EventLog, names: &[String], ids: &[u64]) {
    let all: Vec<EventEnvelope> = log.replay(0).collect::<Result<_, _>>().unwrap();
    let mut types: BTreeSet<&str> = all.iter().map(|e| e.event.event_type.as_str()).collect();
    let mut namespaces: BTreeSet<&str> = all.iter().map(|e| e.event.namespace.as_str()).collect();
    types.extend(names.iter().map(String::as_str));
    namespaces.extend(names.iter().map(String::as_str));
    let mut aggregates: BTreeSet<u64> = all.iter().filter_map(|e| e.event.aggregate_id).collect();
    aggregates.extend(ids);
    let collect = |it: chronicle::IndexedEvents<'_>| -> Vec<EventEnvelope> {
        it.collect::<Result<_, _>>().unwrap()
    };
    for ty in types {
        let expected: Vec<_> = all.iter().filter(|e| e.event.event_type == ty).cloned().collect();
        assert_eq!(collect(log.events_of_type(ty, 0)), expected, "event type {ty:?}");
    }
    for ns in namespaces {
        let expected: Vec<_> = all.iter().filter(|e| e.event.namespace == ns).cloned().collect();
        assert_eq!(collect(log.events_in_namespace(ns, 0)), expected, "namespace {ns:?}");
    }
    for id in aggregates {
        let expected: Vec<_> =
            all.iter().filter(|e| e.event.aggregate_id == Some(id)).cloned().collect();
        assert_eq!(log.load_aggregate(id).unwrap(), expected, "aggregate {id}");
        assert_eq!(collect(log.aggregate_events(id)), expected, "aggregate {id}");
    }
}

/// A name of exactly `len` bytes, built from `chars` (ASCII and multi-byte characters) and
/// padded with ASCII where a multi-byte character would not fit.
fn name_of_len(len: usize, chars: &[char]) -> String {
    let mut name = String::with_capacity(len);
    for &c in chars.iter().cycle().take(len) {
        if name.len() + c.len_utf8() > len {
            break;
        }
        name.push(c);
    }
    while name.len() < len {
        name.push('x');
    }
    name
}

fn name() -> impl Strategy<Value = String> {
    // Every length from 0 to 64 bytes, in characters of one to four bytes.
    let ch = prop_oneof![
        any::<u8>().prop_map(|b| char::from(b & 0x7f)),
        Just('é'),
        Just('€'),
        Just('🦀'),
        any::<char>(),
    ];
    (0usize..=64, proptest::collection::vec(ch, 1..8)).prop_map(|(len, chars)| {
        let name = name_of_len(len, &chars);
        assert_eq!(name.len(), len);
        name
    })
}

fn aggregate_id() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(0)),
        1 => Just(Some(u64::MAX)),
        1 => Just(Some(u64::MAX - 1)),
        1 => Just(Some(1 << 32)),
        1 => Just(Some(u64::from(u32::MAX))),
        4 => any::<u64>().prop_map(Some),
    ]
}

/// Indexes into a small pool of names (so that names repeat, as they do in a real log).
fn spec() -> impl Strategy<Value = (usize, usize, Option<u64>)> {
    (any::<usize>(), any::<usize>(), aggregate_id())
}

fn reopen(dir: &Path) -> EventLog {
    EventLog::open(dir).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn names_of_every_length_and_all_aggregate_ids_are_indexed_exactly(
        pool in proptest::collection::vec(name(), 1..12),
        specs in proptest::collection::vec(spec(), 1..40),
        // A name of each length is also queried, present or not.
        probe_chars in proptest::collection::vec(any::<char>(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut probes: Vec<String> = (0..=64).map(|len| name_of_len(len, &probe_chars)).collect();
        probes.extend(pool.iter().cloned());
        let ids: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1];

        let mut log = reopen(dir.path());
        for (i, &(ty, ns, id)) in specs.iter().enumerate() {
            let mut event = Event::builder(pool[ty % pool.len()].clone())
                .namespace(pool[ns % pool.len()].clone())
                .payload(vec![i as u8; i % 5])
                .build();
            event.aggregate_id = id;
            if i % 7 == 6 {
                log.append_batch(&[event.clone(), event]).unwrap();
            } else {
                log.append(&event).unwrap();
            }
        }
        assert_queries_match_replay(&log, &probes, &ids);
        log.close().unwrap();

        // The index as saved, loaded from the file.
        let log = reopen(dir.path());
        prop_assert!(log.index_report().loaded, "{:?}", log.index_report());
        assert_queries_match_replay(&log, &probes, &ids);
        drop(log);

        // The index rebuilt from the log.
        fs::remove_file(dir.path().join(INDEX_FILE_NAME)).unwrap();
        let log = reopen(dir.path());
        prop_assert!(!log.index_report().loaded, "{:?}", log.index_report());
        assert_queries_match_replay(&log, &probes, &ids);
    }
}
