//! Defects in how a read that fails reaches the caller: a page of a segment that cannot be
//! read, under read checks (`Log::set_read_checks`), and a damaged record under the Merkle
//! queries. Each test failed before its fix.
//!
//! An unreadable page is made by cutting a segment file short under a read-only log's map: a
//! page past the new end of file cannot be read (touching it raises `SIGBUS`, and
//! `MADV_POPULATE_READ` over it fails with `EFAULT`), as a page with a disk read error would,
//! without the FUSE file system of `tests/power_cut*.rs` (`tests/power_cut_defects.rs` has
//! the disk read error itself).

mod common;

use std::path::Path;

use chronicle::{Log, Next, Options, StorageError};
use common::{file_pos, segment_of, segments, HEADER_LEN as SEGMENT_HEADER_LEN};

/// A log of one 8 MiB segment holding `n` records of 100 bytes; their offsets and frame ends.
fn one_segment_log(dir: &Path, n: usize) -> Vec<(u64, u64)> {
    let options = Options { segment_bytes: 8 << 20, ..Options::default() };
    let mut log = Log::open_with(dir, options).unwrap();
    for i in 0..n {
        log.append(&[(i % 251) as u8; 100]).unwrap();
    }
    log.close().unwrap();
    let log = Log::open_read_only(dir).unwrap();
    let frames = log
        .replay(0)
        .map(|r| r.unwrap())
        .map(|r| (r.offset, r.offset + 32 + r.payload.len() as u64))
        .collect();
    assert_eq!(segments(dir).len(), 1);
    frames
}

/// Cuts the (only) segment file to `len` bytes, page aligned, so that every page from there on
/// cannot be read through a map made before.
fn cut_segment(dir: &Path, len: u64) {
    assert_eq!(len % 4096, 0);
    let file = std::fs::OpenOptions::new().write(true).open(&segments(dir)[0].1).unwrap();
    file.set_len(len).unwrap();
}

/// `replay_until(from, until)` needs only the bytes of the records in `[from, until)`, and
/// without read checks touches nothing else. With read checks, the cursor reads a whole MiB
/// window from `from` into memory first (`replay.rs`, `Cursor::step` /
/// `Snapshot::populate_frame`: `ahead` is bounded by the segment's data end, never by
/// `until`), so an unreadable page up to a MiB *after* `until` fails a replay whose records
/// are all readable.
#[test]
fn read_checks_fail_a_bounded_replay_on_bytes_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let frames = one_segment_log(dir.path(), 20_000);
    let log = Log::open_read_only(dir.path()).unwrap();
    log.set_read_checks(true);
    // Bytes from file position 512 KiB on are unreadable; the replay wants the first 1000
    // records, which end near 136 KB of data.
    cut_segment(dir.path(), 512 << 10);
    let until = frames[1000].0;
    assert!(frames[1000].1 + SEGMENT_HEADER_LEN < 512 << 10);
    let got: Vec<_> = log.replay_until(0, until).collect();
    let errors: Vec<String> =
        got.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
    assert!(errors.is_empty(), "a replay of readable records failed: {errors:?}");
    assert_eq!(got.len(), 1000);
}

/// With read checks, a replay that meets an unreadable page should yield every record before
/// it and then the error, as it does for a damaged frame ("never skips a record"; the error
/// names where the log stops being readable). It ends up to a MiB early instead: the first
/// window that contains the bad page fails as a whole, and the readable records before the
/// page are never given (here: none of the ~3,300 readable ones), the error naming the whole
/// window.
#[test]
fn read_checks_end_a_replay_up_to_a_mib_before_the_unreadable_page() {
    let dir = tempfile::tempdir().unwrap();
    let frames = one_segment_log(dir.path(), 20_000);
    let log = Log::open_read_only(dir.path()).unwrap();
    log.set_read_checks(true);
    let cut = 512u64 << 10;
    cut_segment(dir.path(), cut);
    let readable = frames.iter().take_while(|f| f.1 + SEGMENT_HEADER_LEN <= cut).count();
    let mut replay = log.replay(0);
    let mut records = 0usize;
    let error = loop {
        match replay.next() {
            Some(Ok(_)) => records += 1,
            Some(Err(err)) => break err,
            None => panic!("the replay ended without an error after {records} records"),
        }
    };
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_eq!(records, readable, "records given before the read error ({error})");
}

/// A read error on the frame a replay starts at, or on the record `read_at` reads, is
/// reported as `InvalidOffset` ("not a record boundary, it seems"), as if the caller had
/// passed a bad offset: `Snapshot::frame_at` (`replay.rs`) maps every error of `decode` other
/// than `Corruption` to `InvalidOffset`, and `decode` now fails with `Io` when
/// `populate_frame` does. The offsets here are record boundaries; the bytes cannot be read.
/// (Through `frame_at` the same misreport reaches `Consumer::follow` ("was the log repaired
/// or cut back?") and a read-only follower's `check_last_frame`, which calls it `CutBehind`.)
#[test]
fn read_checks_report_an_unreadable_record_as_an_invalid_offset() {
    let dir = tempfile::tempdir().unwrap();
    let frames = one_segment_log(dir.path(), 20_000);
    let log = Log::open_read_only(dir.path()).unwrap();
    log.set_read_checks(true);
    cut_segment(dir.path(), 1 << 20);
    let (offset, _) = frames[15_000];
    assert!(offset + SEGMENT_HEADER_LEN > 1 << 20);

    let err = log.read_at(offset).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "read_at of a boundary: {err}");
    let err = log.replay(offset).next().unwrap().unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "replay from a boundary: {err}");
}

const FOLLOW_CHILD: &str = "CHRONICLE_REVIEW_FOLLOW_CHILD";

/// `set_read_checks` says it covers follows. A read-only handle follows another process's
/// writer by decoding the frames past its published end straight through the map
/// (`tail.rs`, `Tail::publish_new_frames`: `segment.data(..)` then `decode_frame`, which
/// checksums the whole frame), with no `populate`. So with read checks on, an unreadable page
/// there still kills the process with `SIGBUS`. The child process opens a log read-only,
/// turns read checks on, finds the file cut short under its map, and follows from the end.
#[test]
fn read_checks_leave_a_read_only_follower_open_to_sigbus() {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Command;

    const NAME: &str = "read_checks_leave_a_read_only_follower_open_to_sigbus";
    if let Some(dir) = std::env::var_os(FOLLOW_CHILD) {
        return follow_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let frames = one_segment_log(dir.path(), 60);
    // The published end lies on the third page of the file; the child cuts the file to two.
    let end = frames.last().unwrap().1.next_multiple_of(8);
    assert!(end + SEGMENT_HEADER_LEN > 8192 && end + SEGMENT_HEADER_LEN < 3 * 4096, "{end}");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env(FOLLOW_CHILD, dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.signal(),
        None,
        "the follower was killed by a signal ({}) with read checks on: {said}",
        output.status
    );
    assert!(output.status.success(), "the child failed: {}: {said}", output.status);
    assert!(said.contains("follow error") && said.contains("could not be read"), "{said}");
}

fn follow_child(dir: &Path) {
    let log = Log::open_read_only(dir).unwrap();
    log.set_read_checks(true);
    cut_segment(dir, 8192);
    let mut follow = log.follow(log.end_offset());
    for _ in 0..3 {
        match follow.next_timeout(std::time::Duration::from_millis(50)) {
            Next::Error(err) => {
                println!("follow error: {err}");
                return;
            }
            other => println!("follow: {}", matches!(other, Next::TimedOut | Next::CaughtUp)),
        }
    }
}

/// An inclusion or consistency proof reads pages only: a record damaged on disk after its
/// page was stored does not stop proofs that do not prove it (b160642 gives both below).
/// Proofs now run `checked_root`, whose `entry_info` walks the level-0 page of entry
/// `size - 1` through the log (`query.rs`, `Rollup::walk_page`); a damaged record on that
/// walk is blamed on the page (`BadPage`: "its first entry is not where its header says"),
/// which is dropped with every page after it (`recover_from`) and cannot be rebuilt, so the
/// proof fails with `Corruption`. And from then on every query of this handle fails, even a
/// head that answered before the proof was asked for.
#[test]
fn a_damaged_record_in_the_last_page_of_a_size_now_fails_its_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 16 << 10, ..Options::default() };
    let mut log = Log::open_with(dir.path(), options).unwrap();
    for i in 0..700u64 {
        let payload: Vec<u8> = (0..i % 41).map(|k| (i ^ k) as u8).collect();
        log.append(&payload).unwrap();
    }
    log.sync().unwrap();
    let head_10 = log.tree_head(Some(10)).unwrap();
    log.close().unwrap();
    let records: Vec<(u64, usize)> = Log::open_read_only(dir.path())
        .unwrap()
        .replay(0)
        .map(|r| r.unwrap())
        .map(|r| (r.offset, r.payload.len()))
        .collect();
    // Damage a payload byte of record 300 (entry 300, level-0 page 1), in a sealed segment.
    let (offset, len) = records[300];
    assert!(len > 0);
    let (base, segment) = segment_of(dir.path(), offset);
    assert!(segment != segments(dir.path()).last().unwrap().1, "record 300 should be sealed");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[(file_pos(base, offset) + 32) as usize] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();

    let log = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(log.tree_head(Some(10)).unwrap(), head_10);
    let proof = log.inclusion_proof(records[0].0, Some(400)).map(|_| ());
    let consistency = log.consistency_proof(100, Some(400)).map(|_| ());
    let head = log.tree_head(Some(10)).map(|_| ());
    assert!(
        proof.is_ok() && consistency.is_ok() && head.is_ok(),
        "inclusion of entry 0 in 400: {proof:?}; consistency 100 to 400: {consistency:?}; \
         head of 10 (which answered before): {head:?}"
    );
}
