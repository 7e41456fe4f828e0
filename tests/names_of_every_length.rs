// Issue 18, defect 1. A user ran the README's quick start in a debug build: its first event has
// namespace "shop", four bytes long, and the append panicked inside the index with "attempt to
// shift right with overflow". The record was already in the log when the index panicked, so
// every later open of that directory panicked too, while catching the index up. Release builds
// did not panic (there the shift amount is masked: the name's key was merely packed
// differently, with no wrong answer), which is why `cargo test --release` in CI never saw it.

use std::fs;

use chronicle::{Event, EventLog, INDEX_FILE_NAME};

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
