//! Following a log in the same process: replay then live records, the caught-up signal,
//! timeouts, stopping from another thread, segment rolls, gaps, and durable-only follows.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Follow, Log, Next, Options, RecoveryMode, StorageError};
use common::{file_pos, flip_bit, payload, segments, small};

const SHORT: Duration = Duration::from_millis(20);

/// The next record's offset and payload, failing on anything else within 5 s.
fn next_record(follow: &mut Follow) -> (u64, Vec<u8>) {
    loop {
        match follow.next_timeout(Duration::from_secs(5)) {
            Next::Record(r) => return (r.offset, r.payload.to_vec()),
            Next::CaughtUp => {}
            other => panic!("expected a record, got {other:?}"),
        }
    }
}

#[test]
fn follow_replays_then_signals_caught_up_then_delivers_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let first: Vec<u64> = (0..50).map(|i| log.append(&payload(i, 40)).unwrap()).collect();
    let mut follow = log.follow(0);
    assert!(!follow.is_caught_up());
    for (i, &offset) in first.iter().enumerate() {
        assert_eq!(next_record(&mut follow), (offset, payload(i, 40)));
    }
    assert!(matches!(follow.next_timeout(SHORT), Next::CaughtUp));
    assert!(follow.is_caught_up());
    assert_eq!(follow.next_offset(), log.end_offset());
    // Caught up is reported once; then the follower waits and times out.
    let started = Instant::now();
    assert!(matches!(follow.next_timeout(SHORT), Next::TimedOut));
    assert!(started.elapsed() >= SHORT);
    assert!(matches!(follow.next_timeout(Duration::ZERO), Next::TimedOut));
    let offset = log.append(b"live").unwrap();
    assert_eq!(next_record(&mut follow), (offset, b"live".to_vec()));
    assert!(!follow.is_caught_up());
    assert!(matches!(follow.next_timeout(Duration::ZERO), Next::CaughtUp));
}

#[test]
fn follow_from_the_end_reports_caught_up_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append(b"old").unwrap();
    let mut follow = log.follow(log.end_offset());
    assert!(matches!(follow.next_timeout(Duration::ZERO), Next::CaughtUp));
    let offset = log.append(b"new").unwrap();
    assert_eq!(next_record(&mut follow), (offset, b"new".to_vec()));
}

#[test]
fn follow_from_a_bad_offset_fails_once_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append(b"0123456789").unwrap();
    for bad in [8, 1 << 20] {
        let mut follow = log.follow(bad);
        match follow.next_timeout(SHORT) {
            Next::Error(StorageError::InvalidOffset { offset, .. }) => assert_eq!(offset, bad),
            other => panic!("expected InvalidOffset, got {other:?}"),
        }
        assert!(matches!(follow.next_timeout(SHORT), Next::Stopped));
    }
}

#[test]
fn stop_wakes_a_waiting_follower_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut follow = log.follow(0);
    let stop = follow.stop_handle();
    let waiter = thread::spawn(move || {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            match follow.next_timeout(Duration::from_secs(30)) {
                Next::Stopped => return (seen, started.elapsed()),
                other => seen.push(format!("{other:?}")),
            }
        }
    });
    thread::sleep(Duration::from_millis(50));
    assert!(!stop.is_stopped());
    stop.stop();
    let (seen, waited) = waiter.join().unwrap();
    assert_eq!(seen, vec!["CaughtUp".to_string()]);
    assert!(waited < Duration::from_secs(10), "stop did not wake the follower: {waited:?}");
}

#[test]
fn a_waiting_follower_wakes_for_an_append_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    let mut follow = log.follow(0);
    let started = Instant::now();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 100 {
            match follow.next_timeout(Duration::from_secs(30)) {
                Next::Record(r) => got.push(r.payload.to_vec()),
                Next::CaughtUp => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    for i in 0..100 {
        log.append(&payload(i, 30)).unwrap();
        if i % 10 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let got = reader.join().unwrap();
    // Each wait is 30 s long: only the writer's wake-ups make this quick.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(got, (0..100).map(|i| payload(i, 30)).collect::<Vec<_>>());
}

#[test]
fn follow_sees_new_segments_as_the_writer_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(1000)).unwrap();
    let mut follow = log.follow(0);
    assert!(matches!(follow.next_timeout(Duration::ZERO), Next::CaughtUp));
    let mut expected = Vec::new();
    for i in 0..200 {
        let offset = log.append(&payload(i, 300)).unwrap();
        expected.push((offset, payload(i, 300)));
        // Alternate between reading at once and letting records pile up over rolls.
        if i % 7 == 0 {
            while follow.next_offset() < log.end_offset() {
                let got = next_record(&mut follow);
                assert_eq!(&got, &expected[expected.len() - 1 - count_behind(&expected, &got)]);
            }
        }
    }
    assert!(segments(&dir.path().join("log")).len() > 10);
    let mut again = log.follow(0);
    for want in &expected {
        assert_eq!(&next_record(&mut again), want);
    }
    assert!(matches!(again.next_timeout(Duration::ZERO), Next::CaughtUp));
}

/// How many records of `expected` come after `got`.
fn count_behind(expected: &[(u64, Vec<u8>)], got: &(u64, Vec<u8>)) -> usize {
    let at = expected.iter().position(|e| e == got).expect("delivered a record never appended");
    expected.len() - 1 - at
}

#[test]
fn follow_reports_a_gap_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    let offsets: Vec<u64> = (0..20).map(|i| log.append(&payload(i, 50)).unwrap()).collect();
    log.close().unwrap();
    // Damage record 5's payload; a salvage repair turns it into a gap.
    let (base, seg) = segments(&path).into_iter().rev().find(|(b, _)| *b <= offsets[5]).unwrap();
    flip_bit(&seg, file_pos(base, offsets[5]) + 40, 3);
    let options = Options { recovery: RecoveryMode::Salvage, ..small(200) };
    let mut log = Log::open_with(&path, options).unwrap();
    let mut follow = log.follow(0);
    for (i, &offset) in offsets.iter().enumerate().take(5) {
        assert_eq!(next_record(&mut follow), (offset, payload(i, 50)));
    }
    match follow.next_timeout(SHORT) {
        Next::Error(StorageError::Gap { start, end, .. }) => {
            assert_eq!((start, end), (offsets[5], offsets[6]));
        }
        other => panic!("expected the gap, got {other:?}"),
    }
    for (i, &offset) in offsets.iter().enumerate().skip(6) {
        assert_eq!(next_record(&mut follow), (offset, payload(i, 50)));
    }
    let offset = log.append(b"after the gap").unwrap();
    assert_eq!(next_record(&mut follow), (offset, b"after the gap".to_vec()));
}

#[test]
fn durable_follow_delivers_only_synced_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    for i in 0..100 {
        log.append(&payload(i, 20)).unwrap();
    }
    log.sync().unwrap();
    let synced = log.end_offset();
    let unsynced: Vec<u64> = (100..150).map(|i| log.append(&payload(i, 20)).unwrap()).collect();
    let mut durable = log.follow_durable(0);
    assert!(durable.is_durable());
    let mut n = 0;
    loop {
        match durable.next_timeout(SHORT) {
            Next::Record(r) => {
                assert_eq!(r.payload.to_vec(), payload(n, 20));
                n += 1;
            }
            Next::CaughtUp => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(n, 100);
    assert_eq!(durable.next_offset(), synced);
    assert!(matches!(durable.next_timeout(SHORT), Next::TimedOut));
    // The plain follower sees all 150.
    let plain: Vec<_> = log.replay(0).map(Result::unwrap).collect();
    assert_eq!(plain.len(), 150);
    // A sync from another thread wakes the durable follower.
    let waiter = thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 50 {
            match durable.next_timeout(Duration::from_secs(30)) {
                Next::Record(r) => got.push(r.offset),
                Next::CaughtUp => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    thread::sleep(Duration::from_millis(30));
    log.sync().unwrap();
    assert_eq!(waiter.join().unwrap(), unsynced);
}

#[test]
fn durable_follow_from_an_unsynced_boundary_waits_for_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append_sync(b"synced").unwrap();
    let from = log.append(b"buffered").unwrap();
    let mut durable = log.follow_durable(from);
    assert!(matches!(durable.next_timeout(Duration::ZERO), Next::CaughtUp));
    assert!(matches!(durable.next_timeout(SHORT), Next::TimedOut));
    log.sync().unwrap();
    assert_eq!(next_record(&mut durable), (from, b"buffered".to_vec()));
}

#[test]
fn a_durable_follower_of_a_crash_image_never_sees_records_after_the_last_sync() {
    // The writer's process ends without a sync after record 100: a durable follower in it,
    // and one of the image reopened, deliver exactly the synced 100.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    let mut follow = log.follow_durable(0);
    for i in 0..100 {
        log.append(&payload(i, 20)).unwrap();
    }
    log.sync().unwrap();
    for i in 100..150 {
        log.append(&payload(i, 20)).unwrap();
    }
    let mut n = 0;
    while let Next::Record(_) | Next::CaughtUp = follow.next_timeout(SHORT) {
        if follow.is_caught_up() {
            break;
        }
        n += 1;
    }
    assert_eq!(n, 100);
    assert!(matches!(follow.next_timeout(SHORT), Next::TimedOut));
    // Dropping the log without close stands for the crash; the follower stays put.
    drop(log);
    assert!(matches!(follow.next_timeout(SHORT), Next::TimedOut));
    assert_eq!(follow.next_offset(), 100 * common::stride(20));
}

#[test]
fn iterator_blocks_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), small(200)).unwrap();
    log.append(b"a").unwrap();
    log.append(b"b").unwrap();
    let follow = log.follow(0);
    let stop = follow.stop_handle();
    let reader = thread::spawn(move || follow.map(|r| r.unwrap().payload.to_vec()).collect());
    thread::sleep(Duration::from_millis(20));
    log.append(b"c").unwrap();
    thread::sleep(Duration::from_millis(20));
    stop.stop();
    let got: Vec<Vec<u8>> = reader.join().unwrap();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}
