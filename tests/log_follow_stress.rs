//! One writer (single appends, batches, syncs, 8 KiB segments that roll every few
//! milliseconds) and four followers, one of them slow, for 10 s (`CHRONICLE_FOLLOW_STRESS_SECS`
//! to change it): each follower must receive exactly the writer's records, in order, with no
//! gap, no duplicate and no error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Log, Next, Options};

/// A payload that names its record: its index, then filler derived from it.
fn payload(i: u64) -> Vec<u8> {
    let len = 8 + (i * 37 % 200) as usize;
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((8..len).map(|j| (i as usize * 13 + j) as u8));
    bytes
}

#[test]
fn four_followers_receive_exactly_the_writers_records() {
    let secs: u64 = std::env::var("CHRONICLE_FOLLOW_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 8192, ..Options::default() };
    let mut log = Log::open_with(dir.path().join("log"), options).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let mut followers = Vec::new();
    for f in 0..4 {
        let mut follow = if f == 3 { log.follow_durable(0) } else { log.follow(0) };
        let done = Arc::clone(&done);
        followers.push(thread::spawn(move || {
            let mut expected = 0u64;
            let mut last_offset = None;
            loop {
                match follow.next_timeout(Duration::from_millis(100)) {
                    Next::Record(r) => {
                        assert_eq!(
                            r.payload.to_vec(),
                            payload(expected),
                            "follower {f}: record {expected} at {}",
                            r.offset
                        );
                        assert!(last_offset < Some(r.offset));
                        last_offset = Some(r.offset);
                        expected += 1;
                        // Follower 0 is slow: it sleeps now and then, falling far behind.
                        if f == 0 && expected.is_multiple_of(2000) {
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                    Next::CaughtUp | Next::TimedOut => {
                        if done.load(Ordering::SeqCst) && follow.is_caught_up() {
                            return (expected, follow.next_offset());
                        }
                    }
                    other => panic!("follower {f}: {other:?}"),
                }
            }
        }));
    }
    let started = Instant::now();
    let mut i = 0u64;
    let mut syncs = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        match i % 97 {
            0..=59 => {
                log.append(&payload(i)).unwrap();
                i += 1;
            }
            60..=89 => {
                let batch: Vec<Vec<u8>> = (i..i + 5).map(payload).collect();
                log.append_batch(&batch).unwrap();
                i += 5;
            }
            90..=95 => {
                log.append_sync(&payload(i)).unwrap();
                i += 1;
            }
            _ => {
                log.sync().unwrap();
                log.append(&payload(i)).unwrap();
                i += 1;
                syncs += 1;
            }
        }
        if i.is_multiple_of(64) {
            // Let the followers catch up and wait now and then, so wake-ups are exercised.
            thread::yield_now();
        }
    }
    // Everything durable, so the durable follower catches up too.
    log.sync().unwrap();
    let end = log.end_offset();
    done.store(true, Ordering::SeqCst);
    for (f, follower) in followers.into_iter().enumerate() {
        let (count, position) = follower.join().unwrap();
        assert_eq!((count, position), (i, end), "follower {f}");
    }
    let segments = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert!(segments > 100, "only {segments} segments: the writer did not roll often");
    assert!(syncs > 0);
    eprintln!("{i} records over {segments} segments in {secs} s");
}
