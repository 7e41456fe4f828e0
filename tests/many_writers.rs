//! Many threads appending through one shared writer: group commit and expected versions.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;

use chronicle::{
    Event, EventLog, ExpectedVersion, Log, Options, SharedEventLog, StorageError, SEGMENT_BYTES_MIN,
};

const THREADS: u64 = 8;

/// A record naming the thread that wrote it and its sequence number in that thread.
fn tagged(thread: u64, seq: u64) -> Vec<u8> {
    let mut payload = thread.to_le_bytes().to_vec();
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&[0xab; 48]);
    payload
}

fn untag(payload: &[u8]) -> (u64, u64) {
    let word = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().unwrap());
    (word(0), word(8))
}

/// Reads the log back and checks that each thread's records are all there, once, in its own
/// order; returns how many records each thread has.
fn check_threads(log: &Log) -> BTreeMap<u64, u64> {
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    for record in log.replay(log.start_offset()) {
        let record = record.unwrap();
        let (thread, seq) = untag(&record.payload);
        let expected = next.entry(thread).or_insert(0);
        assert_eq!(seq, *expected, "thread {thread}'s records out of order or missing");
        *expected += 1;
    }
    next
}

#[test]
fn eight_threads_of_durable_appends_share_syncs_and_keep_their_order() {
    const PER_THREAD: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so that the appends roll segments while syncs are in flight.
    let options = Options { segment_bytes: SEGMENT_BYTES_MIN.max(256 << 10), ..Options::default() };
    let log = Log::open_with(dir.path(), options).unwrap().into_shared();
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut last = None;
                for seq in 0..PER_THREAD {
                    let offset = log.append_sync(&tagged(thread, seq)).unwrap();
                    // Durable on return: everything up to this record is synced.
                    assert!(log.reader().durable_offset() > offset);
                    assert!(last < Some(offset), "offsets of one thread must increase");
                    last = Some(offset);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let syncs = log.sync_count();
    println!("{} durable appends took {syncs} syncs", THREADS * PER_THREAD);
    assert!(syncs > 0);
    assert!(syncs < THREADS * PER_THREAD / 2, "{syncs} syncs for {} appends", THREADS * PER_THREAD);
    log.close().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let counts = check_threads(&log);
    assert_eq!(counts.len() as u64, THREADS);
    assert!(counts.values().all(|&n| n == PER_THREAD), "{counts:?}");
}

/// A record of a batch: [`tagged`] with how many records of its batch follow it.
fn batch_member(thread: u64, seq: u64, following: u64) -> Vec<u8> {
    let mut payload = tagged(thread, seq);
    payload[16..24].copy_from_slice(&following.to_le_bytes());
    payload
}

#[test]
fn buffered_and_batched_appends_from_many_threads_interleave_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap().into_shared();
    let handles: Vec<_> = (0..4u64)
        .map(|thread| {
            let log = log.clone();
            thread::spawn(move || {
                let mut seq = 0;
                for round in 0..300u64 {
                    if round % 3 == 0 {
                        let batch: Vec<_> =
                            (0..5).map(|i| batch_member(thread, seq + i, 4 - i)).collect();
                        let offsets = if round % 2 == 0 {
                            log.append_batch(&batch).unwrap()
                        } else {
                            log.append_batch_sync(&batch).unwrap()
                        };
                        assert_eq!(offsets.len(), 5);
                        seq += 5;
                    } else {
                        log.append(&batch_member(thread, seq, 0)).unwrap();
                        seq += 1;
                    }
                }
                seq
            })
        })
        .collect();
    let written: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    log.sync().unwrap();
    let log = log.into_log().unwrap();
    // A batch is contiguous: no other thread's record lands inside it.
    let mut open_batch: Option<(u64, u64, u64)> = None;
    for record in log.replay(0) {
        let payload = record.unwrap().payload;
        let (thread, seq) = untag(&payload);
        let following = u64::from_le_bytes(payload[16..24].try_into().unwrap());
        if let Some((t, s, left)) = open_batch {
            assert_eq!((thread, seq, following), (t, s + 1, left - 1), "a batch was split");
        }
        open_batch = (following > 0).then_some((thread, seq, following));
    }
    assert!(open_batch.is_none());
    let counts = check_threads(&log);
    for (thread, &n) in written.iter().enumerate() {
        assert_eq!(counts[&(thread as u64)], n);
    }
}

fn event(aggregate: u64, n: u64) -> Event {
    Event::builder("counter.incremented")
        .aggregate_id(aggregate)
        .payload(n.to_le_bytes().to_vec())
        .build()
}

/// Checks that the aggregate's events carry versions 0..n in order, and returns n.
fn versions_of(log: &EventLog, aggregate: u64) -> u64 {
    let events = log.load_aggregate(aggregate).unwrap();
    for (i, envelope) in events.iter().enumerate() {
        assert_eq!(envelope.aggregate_version, Some(i as u64), "aggregate {aggregate}");
    }
    events.len() as u64
}

#[test]
fn threads_racing_on_one_aggregate_win_each_version_exactly_once() {
    const VERSIONS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap().into_shared();
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, start) = (log.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let (mut won, mut conflicts) = (Vec::new(), 0u64);
                // In every round all threads read the version, then all append expecting
                // it: exactly one may win the round.
                for version in 0..VERSIONS {
                    start.wait();
                    let current = log.aggregate_version(7).unwrap();
                    assert_eq!(current.map_or(0, |v| v + 1), version, "a round lost its write");
                    start.wait();
                    let expected =
                        current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    match log.append_expecting_sync(expected, &[event(7, thread)]) {
                        Ok(offsets) => won.push((version, offsets[0])),
                        Err(StorageError::WrongExpectedVersion {
                            aggregate_id,
                            expected: e,
                            actual,
                        }) => {
                            assert_eq!((aggregate_id, e), (7, expected));
                            assert_ne!(actual, current, "refused although the version matched");
                            conflicts += 1;
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                (won, conflicts)
            })
        })
        .collect();
    let mut winners: BTreeMap<u64, u64> = BTreeMap::new();
    let mut conflicts = 0;
    for handle in handles {
        let (won, lost) = handle.join().unwrap();
        conflicts += lost;
        for (version, offset) in won {
            assert!(winners.insert(version, offset).is_none(), "version {version} won twice");
        }
    }
    println!("{VERSIONS} versions, {conflicts} conflicts");
    assert_eq!(conflicts, (THREADS - 1) * VERSIONS, "each round has one winner");
    assert_eq!(winners.keys().copied().collect::<Vec<_>>(), (0..VERSIONS).collect::<Vec<_>>());
    let log = log.into_event_log().unwrap();
    assert_eq!(versions_of(&log, 7), VERSIONS);
    // Offsets of the winners follow version order.
    assert!(winners.values().collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]));
    log.close().unwrap();

    // After a reopen, and after the index is rebuilt from the log, the versions hold and the
    // next expected-version append continues them.
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(versions_of(&log, 7), VERSIONS);
    assert_eq!(log.aggregate_version(7).unwrap(), Some(VERSIONS - 1));
    let index_path = log.index_path().to_path_buf();
    log.close().unwrap();
    std::fs::remove_file(index_path).unwrap();
    let mut log = EventLog::open(dir.path()).unwrap();
    assert!(!log.index_report().loaded);
    assert_eq!(versions_of(&log, 7), VERSIONS);
    let stale = log.append_expecting(ExpectedVersion::Exact(VERSIONS - 2), &[event(7, 99)]);
    assert!(matches!(
        stale,
        Err(StorageError::WrongExpectedVersion { actual: Some(a), .. }) if a == VERSIONS - 1
    ));
    log.append_expecting(ExpectedVersion::Exact(VERSIONS - 1), &[event(7, 99)]).unwrap();
    assert_eq!(versions_of(&log, 7), VERSIONS + 1);
}

#[test]
fn an_expected_version_batch_is_written_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path()).unwrap();
    let three: Vec<Event> = (0..3).map(|n| event(1, n)).collect();
    log.append_expecting(ExpectedVersion::NoStream, &three).unwrap();
    let end = log.end_offset();
    // Wrong version: nothing written.
    for expected in
        [ExpectedVersion::NoStream, ExpectedVersion::Exact(1), ExpectedVersion::Exact(3)]
    {
        match log.append_expecting(expected, &three) {
            Err(StorageError::WrongExpectedVersion { aggregate_id: 1, expected: e, actual }) => {
                assert_eq!((e, actual), (expected, Some(2)));
            }
            other => panic!("{expected:?}: {other:?}"),
        }
        assert_eq!(log.end_offset(), end);
    }
    // Not one aggregate, or empty: refused, nothing written.
    let mixed = [event(1, 0), event(2, 0)];
    assert!(matches!(
        log.append_expecting(ExpectedVersion::Any, &mixed),
        Err(StorageError::InvalidBatch { .. })
    ));
    assert!(matches!(
        log.append_expecting(ExpectedVersion::Any, &[]),
        Err(StorageError::InvalidBatch { .. })
    ));
    let loose = Event::builder("no.aggregate").build();
    assert!(matches!(
        log.append_expecting(ExpectedVersion::Any, std::slice::from_ref(&loose)),
        Err(StorageError::InvalidBatch { .. })
    ));
    assert_eq!(log.end_offset(), end);
    // `Any` appends after whatever is there; plain appends and batches get versions too.
    log.append_expecting(ExpectedVersion::Any, &[event(1, 3)]).unwrap();
    log.append(&event(1, 4)).unwrap();
    log.append(&loose).unwrap();
    log.append_batch(&[event(2, 0), event(1, 5), event(2, 1)]).unwrap();
    log.append_expecting(ExpectedVersion::Exact(5), &[event(1, 6)]).unwrap();
    assert_eq!(versions_of(&log, 1), 7);
    assert_eq!(versions_of(&log, 2), 2);
    // Replay shows the stored versions; an event without an aggregate has none.
    let replayed: Vec<_> = log.replay(0).map(|e| e.unwrap()).collect();
    let of = |id| {
        replayed
            .iter()
            .filter(|e| e.event.aggregate_id == id)
            .map(|e| e.aggregate_version)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(Some(1)), (0..7).map(Some).collect::<Vec<_>>());
    assert_eq!(of(None), vec![None]);
}

#[test]
fn shared_event_log_appends_from_threads_keep_every_aggregate_gapless() {
    let dir = tempfile::tempdir().unwrap();
    let log: SharedEventLog = EventLog::open(dir.path()).unwrap().into_shared();
    let handles: Vec<_> = (0..4u64)
        .map(|thread| {
            let log = log.clone();
            thread::spawn(move || {
                for n in 0..200 {
                    // Each thread owns aggregates thread*10.., and all share aggregate 1000.
                    log.append_sync(&event(thread * 10 + n % 3, n)).unwrap();
                    log.append(&event(1000, n)).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(log.load_aggregate(1000).unwrap().len(), 800);
    let log = log.into_event_log().unwrap();
    assert_eq!(versions_of(&log, 1000), 800);
    for thread in 0..4 {
        let total: u64 = (0..3).map(|k| versions_of(&log, thread * 10 + k)).sum();
        assert_eq!(total, 200);
    }
}
