//! A segment the operating system refuses to create, with a real error rather than a
//! failpoint: a child process lowers its file size limit (`RLIMIT_FSIZE`) below the segment
//! size and appends until the log needs a new segment. `fallocate` then fails with `EFBIG`.
//!
//! What must hold:
//! - the append that needed the new segment gets [`StorageError::Io`] naming the step
//!   ("preallocate segment") and carrying the operating system's error, and so does the next
//!   one: no panic, no poisoned writer, nothing half made;
//! - every record acknowledged before it is readable, in the child and after it exits;
//! - no temporary file is left behind (the background spare's nor the roll's own);
//! - once the limit is gone, the same log reopens strictly, ends where the last
//!   acknowledged record ends, and rolls into a new segment as usual.
//!
//! The child is this test binary run again with only [`file_size_limit_child`] selected and
//! `CHRONICLE_FSIZE_CHILD_DIR` set (without it, that test does nothing).

mod common;

use std::path::Path;
use std::process::Command;

use chronicle::{Log, Options, StorageError};
use common::Rec;

const CHILD_DIR_ENV: &str = "CHRONICLE_FSIZE_CHILD_DIR";
const CHILD_TEST_NAME: &str = "file_size_limit_child";
const SEGMENT_BYTES: u64 = 64 << 10;
/// Below the segment size, so no new segment can be preallocated; above the durable record
/// and the other small files the writer writes.
const FILE_SIZE_LIMIT: u64 = 32 << 10;
const PAYLOAD_LEN: usize = 1000;
/// Records written before the child starts: about a third of the first segment.
const RECORDS_BEFORE: u64 = 20;
/// `EFBIG` on Linux.
const EFBIG: i32 = 27;

fn options() -> Options {
    Options { segment_bytes: SEGMENT_BYTES, record_bytes_max: Some(8 << 10), ..Options::default() }
}

fn payload(seq: u64) -> Vec<u8> {
    common::payload(seq as usize, PAYLOAD_LEN)
}

/// Every record of the log in `dir`, read from a fresh read-only open.
fn records(dir: &Path) -> Vec<Rec> {
    common::all(Log::open_read_only(dir).unwrap().replay(0))
}

/// Run only as the child (see the module docs): appends under the file size limit and
/// reports on standard output what happened, one fact per line.
#[test]
fn file_size_limit_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    // The test harness has printed this test's name without a line end.
    println!();
    // SAFETY: plain system calls on this process's own signal disposition and resource
    // limit, made before this test starts any thread of its own. Ignoring SIGXFSZ turns a
    // write past the limit into an `EFBIG` error instead of killing the process.
    let limited = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit { rlim_cur: FILE_SIZE_LIMIT, rlim_max: FILE_SIZE_LIMIT };
        libc::setrlimit(libc::RLIMIT_FSIZE, &limit)
    };
    assert_eq!(limited, 0, "setrlimit failed");

    let mut log = Log::open_with(dir, options()).unwrap();
    let mut seq = RECORDS_BEFORE;
    let first_error = loop {
        match log.append(&payload(seq)) {
            Ok(offset) => println!("ack {seq} {offset}"),
            Err(err) => break err,
        }
        seq += 1;
        assert!(seq < 10_000, "the file size limit never stopped an append");
    };
    let second_error = log.append(&payload(seq)).expect_err("the retry needs the same segment");
    for (name, err) in [("first", &first_error), ("second", &second_error)] {
        match err {
            StorageError::Io { op, path, source } => println!(
                "{name} io {op} {} {}",
                source.raw_os_error().unwrap_or(-1),
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            other => println!("{name} other {other}"),
        }
    }
    // The writer can still read what it wrote (a replay error fails the child).
    let readable = log.replay(0).map(Result::unwrap).count();
    println!("readable {readable}");
    // Ends without `close`, as a process may: the records are in the page cache.
    std::process::exit(0);
}

#[test]
fn a_segment_the_file_size_limit_refuses_fails_the_append_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("log");
    let mut expected = Vec::new();
    {
        let mut log = Log::open_with(&dir, options()).unwrap();
        for seq in 0..RECORDS_BEFORE {
            expected
                .push(Rec { offset: log.append(&payload(seq)).unwrap(), payload: payload(seq) });
        }
        log.close().unwrap();
    }

    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut errors = Vec::new();
    let mut readable = None;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ack", seq, offset] => {
                let seq: u64 = seq.parse().unwrap();
                assert_eq!(seq, expected.len() as u64, "acknowledgements out of order");
                expected.push(Rec { offset: offset.parse().unwrap(), payload: payload(seq) });
            }
            [name @ ("first" | "second"), rest @ ..] => {
                errors.push((name.to_string(), rest.join(" ")))
            }
            ["readable", n] => readable = Some(n.parse::<usize>().unwrap()),
            _ => {}
        }
    }
    // The child appended until the first segment was full: more than it started with.
    assert!(expected.len() as u64 > RECORDS_BEFORE + 10, "child output: {stdout}");
    assert_eq!(errors.len(), 2, "child output: {stdout}");
    for (name, detail) in &errors {
        assert!(
            detail.starts_with(&format!("io preallocate segment {EFBIG} ")),
            "{name} error was {detail:?}"
        );
    }
    assert_eq!(readable, Some(expected.len()), "child output: {stdout}");

    // Nothing half made: only the one segment, the lock and the durable record.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "left behind: {names:?}");
    assert_eq!(common::segments(&dir).len(), 1, "files: {names:?}");

    // Everything acknowledged is there, byte for byte, in order.
    assert_eq!(records(&dir), expected);

    // Without the limit the same log opens strictly, ends after the last acknowledged
    // record, and rolls into a second segment.
    let mut log = Log::open_with(&dir, options()).unwrap();
    let last = expected.last().unwrap().offset;
    assert_eq!(log.end_offset(), last + common::stride(PAYLOAD_LEN));
    let seq = expected.len() as u64;
    let offset = log.append(&payload(seq)).unwrap();
    expected.push(Rec { offset, payload: payload(seq) });
    log.close().unwrap();
    assert_eq!(records(&dir), expected);
    assert_eq!(common::segments(&dir).len(), 2);
}
