//! Durable consumer positions: commit, resume after reopening, list, remove, name and
//! position checks, the event log's consumers, and positions that survive SIGKILL at any
//! moment (a child process commits in a loop and is killed; `CHRONICLE_CONSUMER_CYCLES` sets
//! the number of kills, 40 by default).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime};

use chronicle::{Event, EventFollow, EventLog, Log, Next, StorageError};
use common::{payload, small};

const CHILD_DIR_ENV: &str = "CHRONICLE_CONSUMER_CHILD_DIR";
const CHILD_TEST_NAME: &str = "consumer_child";

fn drain(follow: &mut chronicle::Follow) -> Vec<u64> {
    let mut offsets = Vec::new();
    loop {
        match follow.next_timeout(Duration::from_millis(10)) {
            Next::Record(r) => offsets.push(r.offset),
            Next::CaughtUp => return offsets,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_consumer_resumes_from_its_committed_position_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    let offsets: Vec<u64> = (0..30).map(|i| log.append(&payload(i, 20)).unwrap()).collect();
    let mut consumer = log.consumer("billing").unwrap();
    assert_eq!(consumer.position(), None);
    let mut follow = consumer.follow().unwrap();
    let first: Vec<u64> = (0..10)
        .map(|_| match follow.next_timeout(Duration::ZERO) {
            Next::Record(r) => r.offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(first, offsets[..10]);
    consumer.commit(follow.next_offset()).unwrap();
    assert_eq!(consumer.position(), Some(offsets[10]));
    log.close().unwrap();

    let log = Log::open_read_only(&path).unwrap();
    let consumer = log.consumer("billing").unwrap();
    assert_eq!(consumer.position(), Some(offsets[10]));
    assert_eq!(drain(&mut consumer.follow().unwrap()), offsets[10..]);
    assert_eq!(log.consumers().unwrap(), vec!["billing".to_string()]);
    // A read-only log may commit its consumers, and the directory stays a log.
    let mut other = log.consumer("audit").unwrap();
    other.commit(log.end_offset()).unwrap();
    assert_eq!(log.consumers().unwrap(), vec!["audit".to_string(), "billing".to_string()]);
    assert!(log.remove_consumer("audit").unwrap());
    assert!(!log.remove_consumer("audit").unwrap());
    assert_eq!(log.consumers().unwrap(), vec!["billing".to_string()]);
    drop(log);
    Log::open_with(&path, small(200)).unwrap().close().unwrap();
}

#[test]
fn bad_names_and_positions_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    log.append(b"0123456789").unwrap();
    for bad in ["", "../escape", "a/b", ".hidden", &"n".repeat(200)] {
        match log.consumer(bad) {
            Err(StorageError::Consumer { name, reason }) => {
                assert_eq!(name, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let mut consumer = log.consumer("c").unwrap();
    assert!(matches!(consumer.commit(8), Err(StorageError::InvalidOffset { offset: 8, .. })));
    assert!(matches!(consumer.commit(1 << 30), Err(StorageError::InvalidOffset { .. })));
    assert_eq!(consumer.position(), None);
    // A stored position the log no longer has (written by hand here: a log cut back).
    consumer.commit(log.end_offset()).unwrap();
    log.close().unwrap();
    let file = path.join("consumer-c.pos");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[16..24].copy_from_slice(&4096u64.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let log = Log::open_read_only(&path).unwrap();
    match log.consumer("c").unwrap().follow() {
        Err(StorageError::Consumer { reason, .. }) => {
            assert!(reason.contains("4096"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A damaged file is refused, not read as position 0.
    bytes[17] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(matches!(log.consumer("c"), Err(StorageError::Consumer { .. })));
}

#[test]
fn an_event_log_consumer_follows_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = EventLog::open(dir.path().join("events")).unwrap();
    for i in 0..5 {
        events.append(&Event::builder("order.placed").aggregate_id(i).build()).unwrap();
    }
    let mut consumer = events.consumer("mailer").unwrap();
    let mut follow = EventFollow::from(consumer.follow().unwrap());
    let mut ids = Vec::new();
    while let Next::Record(envelope) = follow.next_timeout(Duration::ZERO) {
        ids.push(envelope.event.aggregate_id);
    }
    assert_eq!(ids, (0..5).map(Some).collect::<Vec<_>>());
    consumer.commit(follow.next_offset()).unwrap();
    let mut live = events.follow(follow.next_offset());
    events.append(&Event::builder("order.paid").aggregate_id(9).build()).unwrap();
    match live.next_timeout(Duration::from_secs(5)) {
        Next::Record(envelope) => assert_eq!(envelope.event.event_type, "order.paid"),
        other => panic!("{other:?}"),
    }
    assert_eq!(events.consumers().unwrap(), vec!["mailer".to_string()]);
    events.close().unwrap();
}

/// The child process's body; does nothing in a normal test run. Commits the boundary of
/// every record in turn, over and over, printing each position before and after.
#[test]
fn consumer_child() {
    use std::io::Write as _;
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let log = Log::open_read_only(Path::new(&dir)).unwrap();
    let offsets: Vec<u64> = log.replay(0).map(|r| r.unwrap().offset).collect();
    let mut consumer = log.consumer("crashy").unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nstarted").unwrap();
    for round in 0.. {
        for &offset in offsets.iter().skip(round % 2) {
            writeln!(out, "committing {offset}").unwrap();
            out.flush().unwrap();
            consumer.commit(offset).unwrap();
            writeln!(out, "committed {offset}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn committed_positions_survive_sigkill_at_any_moment() {
    let cycles: u64 =
        std::env::var("CHRONICLE_CONSUMER_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = Log::open_with(&path, small(200)).unwrap();
    for i in 0..40 {
        log.append(&payload(i, 50)).unwrap();
    }
    log.close().unwrap();
    let mut rng =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut stored = None;
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(rng % 20_000);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>()
        });
        thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        // What the child may have left: the position stored before this cycle, or any it
        // started committing; and at least the last it finished committing.
        let mut allowed: Vec<Option<u64>> = vec![stored];
        for line in &lines {
            if let Some(p) = line.strip_prefix("committing ") {
                allowed.push(Some(p.parse().unwrap()));
            } else if let Some(p) = line.strip_prefix("committed ") {
                allowed = vec![Some(p.parse::<u64>().unwrap())];
            }
        }
        let log = Log::open_read_only(&path).unwrap();
        let consumer = log.consumer("crashy").unwrap_or_else(|e| {
            panic!("cycle {cycle}: the position file is unreadable after a kill: {e}")
        });
        let now = consumer.position();
        assert!(
            allowed.contains(&now),
            "cycle {cycle}: stored {now:?}, expected one of {allowed:?} ({} lines)",
            lines.len()
        );
        if now.is_some() {
            consumer.follow().unwrap();
        }
        stored = now;
    }
    assert!(stored.is_some(), "no child ever committed: the kills all came too early");
}
