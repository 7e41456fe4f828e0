//! Following a log that another writer appends to, through a read-only handle: across
//! segment rolls, and across a writer killed with SIGKILL mid-write and replaced by a new one
//! whose recovery cuts the torn tail before it appends.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Follow, Log, Next};
use common::{payload, small};

const CHILD_DIR_ENV: &str = "CHRONICLE_FOLLOW_CHILD_DIR";
const CHILD_TEST_NAME: &str = "follow_writer_child";

/// Collects what `follow` delivers until it has `until` bytes of log or 20 s pass.
fn collect(follow: &mut Follow, until: impl Fn(u64) -> bool) -> Vec<(u64, Vec<u8>)> {
    let started = Instant::now();
    let mut got = Vec::new();
    while !until(follow.next_offset()) {
        assert!(started.elapsed() < Duration::from_secs(20), "follower stuck at {got:?}");
        match follow.next_timeout(Duration::from_millis(50)) {
            Next::Record(r) => got.push((r.offset, r.payload.to_vec())),
            Next::CaughtUp | Next::TimedOut => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn a_read_only_follower_sees_another_writers_records_and_rolls() {
    follower_sees_records_and_rolls(false);
}

/// As above, with read checks, which read each window past the published end into memory
/// once and remember it across polls.
#[test]
fn a_read_only_follower_with_read_checks_sees_another_writers_records_and_rolls() {
    follower_sees_records_and_rolls(true);
}

fn follower_sees_records_and_rolls(read_checks: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = Log::open_with(&path, small(500)).unwrap();
    writer.append(b"before").unwrap();
    let reader = Log::open_read_only(&path).unwrap();
    reader.set_read_checks(read_checks);
    let mut follow = reader.follow(0);
    let mut durable = reader.follow_durable(0);
    let mut expected = vec![(0, b"before".to_vec())];
    for i in 0..300 {
        let p = payload(i, 100);
        if i % 3 == 0 {
            expected.extend(
                writer
                    .append_batch(&[p.clone(), p.clone()])
                    .unwrap()
                    .into_iter()
                    .map(|offset| (offset, p.clone())),
            );
        } else {
            expected.push((writer.append(&p).unwrap(), p));
        }
    }
    let end = writer.end_offset();
    let got = collect(&mut follow, |position| position >= end);
    assert_eq!(got, expected);
    // Nothing past the last sync has been proven durable to a reader yet; a sync and one
    // more record (which records that sync) let the durable follower through.
    writer.sync().unwrap();
    let last = writer.append(b"after the sync").unwrap();
    let got = collect(&mut durable, |position| position >= last);
    assert_eq!(got, expected);
}

/// The child process's body; does nothing in a normal test run. Appends with `append_sync`
/// until it is killed.
#[test]
fn follow_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mut log = Log::open_with(&dir, small(500)).unwrap();
    let first = log.replay(0).count();
    println!("\nopened");
    for i in first.. {
        log.append_sync(&payload(i, 40 + i % 300)).unwrap();
    }
}

#[test]
fn a_follower_survives_its_writer_being_killed_and_replaced() {
    follower_survives_writer_replaced(false);
}

/// As above, with read checks: what a poll read into memory is seen again, rewritten, after
/// a new writer cut the torn tail in place and wrote over it.
#[test]
fn a_follower_with_read_checks_survives_its_writer_being_killed_and_replaced() {
    follower_survives_writer_replaced(true);
}

fn follower_survives_writer_replaced(read_checks: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    Log::open_with(&path, small(500)).unwrap().close().unwrap();
    let reader = Log::open_read_only(&path).unwrap();
    reader.set_read_checks(read_checks);
    let mut follow = reader.follow(0);
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Follow while it writes, then kill it mid-write.
        let deadline = Instant::now() + Duration::from_millis(150 + 70 * round);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match follow.next_timeout(Duration::from_millis(5)) {
                Next::Record(r) => got.push(r.offset),
                Next::CaughtUp | Next::TimedOut => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        thread::sleep(Duration::from_millis(20));
        // A new writer recovers the log (cutting the torn tail) and appends.
        let mut writer = Log::open_with(&path, small(500)).unwrap();
        let surviving = writer.replay(0).count();
        for i in surviving..surviving + 20 {
            writer.append(&payload(i, 40 + i % 300)).unwrap();
        }
        let end = writer.end_offset();
        drop(writer);
        let rest = collect(&mut follow, |position| position >= end);
        assert_eq!(follow.next_offset(), end, "round {round}");
        // Everything delivered since the start is exactly the log as it now stands.
        let log = Log::open_read_only(&path).unwrap();
        let all: Vec<(u64, Vec<u8>)> =
            log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.payload.to_vec())).collect();
        for (i, (_, bytes)) in all.iter().enumerate() {
            assert_eq!(bytes, &payload(i, 40 + i % 300), "round {round}: record {i}");
        }
        let tail: Vec<(u64, Vec<u8>)> = all[all.len() - rest.len()..].to_vec();
        assert_eq!(rest, tail, "round {round}");
        assert!(got.len() + rest.len() <= all.len());
    }
    // A fresh follower of the final log agrees with the one that lived through it all.
    let log = Log::open_read_only(&path).unwrap();
    let mut again = log.follow(0);
    let end = log.end_offset();
    let everything = collect(&mut again, |position| position >= end);
    assert!(!everything.is_empty());
}

/// A read-only follower that delivered records a power loss then took (they were never
/// synced), and that a new writer wrote over, ends with `CutBehind` rather than carrying on
/// as if the records it delivered were still the log.
#[test]
fn a_follower_whose_delivered_records_were_cut_back_gets_cut_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = Log::open_with(&path, small(500)).unwrap();
    writer.append_sync(b"synced").unwrap();
    let durable_end = writer.end_offset();
    let reader = Log::open_read_only(&path).unwrap();
    let mut follow = reader.follow(0);
    for i in 0..5 {
        writer.append(&payload(i, 40)).unwrap();
    }
    let end = writer.end_offset();
    let got = collect(&mut follow, |position| position >= end);
    assert_eq!(got.len(), 6);
    // What a power loss could leave: the unsynced records gone.
    drop(writer);
    let segment = path.join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + durable_end as usize..].fill(0);
    std::fs::write(&segment, bytes).unwrap();
    let mut writer = Log::open_with(&path, small(500)).unwrap();
    assert_eq!(writer.end_offset(), durable_end);
    for i in 0..5 {
        writer.append_sync(&payload(100 + i, 40)).unwrap();
    }
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no CutBehind");
        match follow.next_timeout(Duration::from_millis(50)) {
            Next::Error(chronicle::StorageError::CutBehind { offset, .. }) => {
                assert_eq!(offset, got[5].0, "the last record it had delivered");
                break;
            }
            Next::CaughtUp | Next::TimedOut => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
