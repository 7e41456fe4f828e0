//! Spare segments: half way through a segment the writer's helper thread makes the next
//! segment file ahead of need (`next.seg.tmp`: preallocated, mapped, no header), and the roll
//! gives it its header and its name instead of creating a file. These tests check that the
//! roll really uses the spare, that records in segments made from spares read back after a
//! reopen, and that no spare file outlives its writer.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chronicle::{Log, Options};
use common::segments;

const SPARE: &str = "next.seg.tmp";

/// 1 MiB segments: a spare is asked for after 512 KiB of each.
fn options() -> Options {
    Options { segment_bytes: 1 << 20, record_bytes_max: Some(64 << 10), ..Options::default() }
}

fn payload(i: usize) -> Vec<u8> {
    let len = 100 + (i * 37) % 900;
    (0..len).map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8).collect()
}

/// Waits up to 10 s for the helper thread to have made the spare file (preallocated in full).
fn wait_for_spare(dir: &Path) -> fs::Metadata {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(meta) = fs::metadata(dir.join(SPARE)) {
            if meta.len() == options().segment_bytes {
                return meta;
            }
        }
        assert!(Instant::now() < deadline, "no spare segment was made within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_roll_renames_the_spare_into_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let mut written = Vec::new();
    let mut rolls_from_spare = 0;
    for _ in 0..4 {
        // Past half of the active segment: the spare is asked for, then made in the background.
        let before = segments(dir.path());
        let active_base = before.last().unwrap().0;
        while log.end_offset() - active_base < 600 << 10 {
            let p = payload(written.len());
            written.push((log.append(&p).unwrap(), p));
        }
        let spare = wait_for_spare(dir.path());
        // Append until the log rolls; the new segment must be the spare's file (same inode).
        while segments(dir.path()) == before {
            let p = payload(written.len());
            written.push((log.append(&p).unwrap(), p));
        }
        let (_, newest) = segments(dir.path()).pop().unwrap();
        let inode = fs::metadata(newest).unwrap().ino();
        if inode == spare.ino() {
            rolls_from_spare += 1;
        }
        assert!(!dir.path().join(SPARE).exists(), "the spare was not used up by the roll");
    }
    assert_eq!(rolls_from_spare, 4, "every roll should have used the spare made for it");
    assert_eq!(replayed(&log), written);

    log.close().unwrap();
    assert!(!dir.path().join(SPARE).exists(), "close left a spare segment behind");
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.open_report().temp_files_removed, 0);
    assert_eq!(replayed(&log), written, "records in segments made from spares, after reopen");
    log.verify().unwrap();
}

#[test]
fn a_spare_left_by_a_crash_is_removed_by_the_next_writer_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let mut written = Vec::new();
    while log.end_offset() < 700 << 10 {
        let p = payload(written.len());
        written.push((log.append(&p).unwrap(), p));
    }
    log.sync().unwrap();
    wait_for_spare(dir.path());
    // What a crash leaves: the log's files with the spare among them. (Copied while the log
    // is open, as a crash would find them.)
    let crashed = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), crashed.path().join(entry.file_name())).unwrap();
    }
    drop(log);
    assert!(!dir.path().join(SPARE).exists(), "dropping the writer left its spare behind");

    let ro = Log::open_read_only(crashed.path()).unwrap();
    assert_eq!(replayed(&ro), written);
    drop(ro);
    assert!(crashed.path().join(SPARE).exists(), "a read-only open removed the spare");

    let log = Log::open_with(crashed.path(), options()).unwrap();
    assert_eq!(log.open_report().temp_files_removed, 1);
    assert!(!crashed.path().join(SPARE).exists());
    assert_eq!(replayed(&log), written);
}

/// A writer that syncs often gets spares too (without filling ahead), and a roll uses them.
#[test]
fn durable_appends_roll_into_spares() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let mut written = Vec::new();
    let append_durably = |log: &mut Log, written: &mut Vec<(u64, Vec<u8>)>| {
        let p = payload(written.len());
        written.push((log.append_sync(&p).unwrap(), p));
        if written.len().is_multiple_of(50) {
            let batch: Vec<Vec<u8>> = (0..5).map(|k| payload(written.len() + k)).collect();
            let offsets = log.append_batch_sync(&batch).unwrap();
            written.extend(offsets.into_iter().zip(batch));
        }
    };
    let mut rolls_from_spare = 0;
    for _ in 0..2 {
        let before = segments(dir.path());
        let active_base = before.last().unwrap().0;
        while log.end_offset() - active_base < 600 << 10 {
            append_durably(&mut log, &mut written);
        }
        let spare = wait_for_spare(dir.path());
        while segments(dir.path()) == before {
            append_durably(&mut log, &mut written);
        }
        let (_, newest) = segments(dir.path()).pop().unwrap();
        if fs::metadata(newest).unwrap().ino() == spare.ino() {
            rolls_from_spare += 1;
        }
    }
    assert_eq!(rolls_from_spare, 2, "each roll should have used the spare made for it");
    assert_eq!(replayed(&log), written);
    drop(log);
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert!(log.open_report().torn_tail.is_none());
    assert_eq!(replayed(&log), written);
}

fn replayed(log: &Log) -> Vec<(u64, Vec<u8>)> {
    log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.payload.to_vec())).collect()
}
