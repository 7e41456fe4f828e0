//! Eight threads appending durable batches through one [`SharedLog`], killed with SIGKILL at
//! random moments: after every kill the log holds every batch whose append returned, each
//! thread's records are a gapless prefix of what it wrote, and no batch is partly present.
//!
//! The test binary runs itself as the child (`crash_child_threads`, active only with
//! `CHRONICLE_MANY_WRITERS_CHILD_DIR` set).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chronicle::{Log, Options};

const CHILD_DIR_ENV: &str = "CHRONICLE_MANY_WRITERS_CHILD_DIR";
const CHILD_TEST_NAME: &str = "crash_child_threads";
const THREADS: u64 = 8;
/// Kill cycles; `CHRONICLE_MANY_WRITERS_CYCLES` overrides.
const CYCLES_DEFAULT: u64 = 40;

/// A record: thread, sequence number in that thread, records of its batch after it.
fn encode(thread: u64, seq: u64, following: u64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    for word in [thread, seq, following] {
        payload.extend_from_slice(&word.to_le_bytes());
    }
    payload.resize(24 + (seq % 97) as usize, 0x5a);
    payload
}

fn decode(payload: &[u8]) -> (u64, u64, u64) {
    let word = |i: usize| u64::from_le_bytes(payload[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1), word(2))
}

fn options() -> Options {
    // Small segments: kills land in rolls and new-segment syncs too.
    Options { segment_bytes: 256 << 10, ..Options::default() }
}

/// Reads the log and checks it: per thread a gapless run of sequence numbers from 0, each
/// batch whole. Returns the next sequence number of each thread.
fn check(log: &Log) -> BTreeMap<u64, u64> {
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    // Batches in progress, per thread: how many of their records are still to come.
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    for record in log.replay(log.start_offset()) {
        let record = record.unwrap();
        let (thread, seq, following) = decode(&record.payload);
        let expected = next.entry(thread).or_insert(0);
        assert_eq!(seq, *expected, "thread {thread}: a gap or a repeat");
        *expected += 1;
        if let Some(left) = open.get(&thread).copied() {
            assert_eq!(following, left - 1, "thread {thread}: batch broken");
        }
        if following > 0 {
            open.insert(thread, following);
        } else {
            open.remove(&thread);
        }
    }
    assert!(open.is_empty(), "a batch is partly present: {open:?}");
    next
}

#[test]
fn crash_child_threads() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let log = Log::open_with(Path::new(&dir), options()).unwrap();
    let next = check(&log);
    let log = log.into_shared();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut out = out.lock().unwrap();
        writeln!(out, "\nopened").unwrap();
        out.flush().unwrap();
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, out) = (log.clone(), Arc::clone(&out));
            let mut seq = next.get(&thread).copied().unwrap_or(0);
            thread::spawn(move || loop {
                let count = 1 + (seq * 7 + thread) % 5;
                let batch: Vec<_> =
                    (0..count).map(|i| encode(thread, seq + i, count - 1 - i)).collect();
                if count == 1 {
                    log.append_sync(&batch[0]).unwrap();
                } else {
                    log.append_batch_sync(&batch).unwrap();
                }
                seq += count;
                let mut out = out.lock().unwrap();
                writeln!(out, "ack {thread} {seq}").unwrap();
                out.flush().unwrap();
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_during_many_threads_of_durable_batches_loses_nothing_acknowledged() {
    let cycles = std::env::var("CHRONICLE_MANY_WRITERS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut acked_total, mut survived_unacked) = (0u64, 0u64);
    // Each thread's record count after the last cycle.
    let mut before: BTreeMap<u64, u64> = BTreeMap::new();
    for cycle in 0..cycles {
        let child = Command::new(&exe)
            .args(["--exact", CHILD_TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let reader = thread::spawn(move || {
            let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "opened" {
                    let _ = opened_tx.send(());
                }
                if let Some(rest) = line.strip_prefix("ack ") {
                    let mut words = rest.split(' ').map(|w| w.parse::<u64>().unwrap());
                    let (thread, seq) = (words.next().unwrap(), words.next().unwrap());
                    acked.insert(thread, seq);
                }
            }
            acked
        });
        opened_rx.recv_timeout(Duration::from_secs(120)).expect("the child did not open the log");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        thread::sleep(Duration::from_millis(20 + rng % 200));
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "cycle {cycle}: the child ended on its own");
        let acked = reader.join().unwrap();
        let log = Log::open_with(dir.path(), options()).unwrap();
        let present = check(&log);
        for (thread, &seq) in &acked {
            let have = present.get(thread).copied().unwrap_or(0);
            assert!(
                have >= seq,
                "cycle {cycle}: thread {thread} acknowledged {seq}, log has {have}"
            );
            survived_unacked += have - seq;
        }
        for (thread, &seq) in &acked {
            acked_total += seq - before.get(thread).copied().unwrap_or(0);
        }
        before = present;
        log.close().unwrap();
    }
    println!(
        "{cycles} kills of {THREADS} threads: all {acked_total} acknowledged records present, \
         {survived_unacked} records beyond the last acknowledgement survived"
    );
}
