//! Index queries against a brute-force scan, and what open does with stored index files that
//! no longer match the log: damaged (every byte flipped in turn), truncated, from another log,
//! ahead of a log whose tail was torn, of another version. Each must be detected, rebuilt, and
//! the queries must still return exactly what a full scan returns.

use std::fs;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use chronicle::{
    load_index, save_index, Event, EventLog, IndexOptions, StorageError, INDEX_FILE_NAME,
};

mod index_common;

use index_common::*;

/// A closed log of `n` events with a saved index; returns the index file's bytes.
fn build(dir: &Path, n: u64) -> Vec<u8> {
    let mut log = EventLog::open_with(dir, small()).unwrap();
    append_range(&mut log, 0, n, 7);
    assert_queries_match_scan(&log);
    log.close().unwrap();
    fs::read(dir.join(INDEX_FILE_NAME)).unwrap()
}

fn assert_rebuilt(log: &EventLog, reason_contains: &str) {
    let report = log.index_report();
    assert!(!report.loaded, "{report:?}");
    let reason = report.rebuilt_because.as_deref().unwrap_or("");
    assert!(reason.contains(reason_contains), "reason {reason:?}");
    assert_eq!(report.covered_offset, 0);
    assert_eq!(report.records_replayed, scan(log).len() as u64);
    assert_queries_match_scan(log);
}

#[test]
fn queries_match_scan_across_segments_batches_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    assert_rebuilt(&log, "no index file");
    assert_queries_match_scan(&log);
    append_range(&mut log, 0, 60, 9);
    let batch: Vec<Event> = (60..75).map(event).collect();
    let offsets = log.append_batch(&batch).unwrap();
    assert_eq!(offsets.len(), 15);
    log.append_sync(&event(75)).unwrap();
    assert!(log.log().open_report().segments >= 1);
    assert_queries_match_scan(&log);
    log.close().unwrap();

    let log = EventLog::open_with(dir.path(), small()).unwrap();
    let report = log.index_report().clone();
    assert!(report.loaded, "{report:?}");
    assert_eq!(report.rebuilt_because, None);
    assert_eq!(report.records_replayed, 0);
    assert_eq!(report.covered_offset, log.end_offset());
    assert!(log.log().reader().start_offset() == 0 && scan(&log).len() == 76);
    assert!(log.log().open_report().segments > 1, "test must span segments");
    assert_queries_match_scan(&log);
}

#[test]
fn reopen_after_drop_replays_only_new_records() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 40);
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    let covered = log.end_offset();
    append_range(&mut log, 40, 53, 5);
    drop(log); // No close: the stored index is the one from before these 13 appends.
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    let report = log.index_report();
    assert!(report.loaded, "{report:?}");
    assert_eq!(report.covered_offset, covered);
    assert_eq!(report.records_replayed, 13);
    assert_queries_match_scan(&log);
}

#[test]
fn every_flipped_byte_of_the_index_file_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let good = build(dir.path(), 12);
    let path = dir.path().join(INDEX_FILE_NAME);
    assert!(good.len() > 64);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        let log = EventLog::open_with(dir.path(), small()).unwrap();
        let report = log.index_report();
        assert!(!report.loaded, "flip at byte {i} was accepted: {report:?}");
        assert!(
            report.rebuilt_because.as_deref().unwrap().contains("unusable"),
            "byte {i}: {report:?}"
        );
        assert_queries_match_scan(&log);
    }
    // The good file is still accepted afterwards.
    fs::write(&path, &good).unwrap();
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    assert!(log.index_report().loaded);
    assert_queries_match_scan(&log);
}

#[test]
fn truncated_index_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let good = build(dir.path(), 20);
    let path = dir.path().join(INDEX_FILE_NAME);
    for len in [0, 1, 10, 63, 64, 65, good.len() / 2, good.len() - 1] {
        fs::write(&path, &good[..len]).unwrap();
        assert!(load_index(&path).is_err(), "truncated to {len}");
        let log = EventLog::open_with(dir.path(), small()).unwrap();
        assert_rebuilt(&log, "unusable");
    }
}

#[test]
fn index_file_of_another_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = build(dir.path(), 10);
    bytes[4] = 2; // The version field follows the 4-byte magic.
    let path = dir.path().join(INDEX_FILE_NAME);
    fs::write(&path, &bytes).unwrap();
    let err = load_index(&path).unwrap_err();
    assert!(matches!(err, StorageError::UnsupportedVersion { found: 2, .. }), "{err}");
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    assert_rebuilt(&log, "version");
}

#[test]
fn index_from_another_log_is_rebuilt() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // Same events, same offsets: only the write timestamps tell the logs apart.
    let index_a = build(a.path(), 30);
    sleep(Duration::from_millis(5));
    build(b.path(), 30);
    fs::write(b.path().join(INDEX_FILE_NAME), &index_a).unwrap();
    let log = EventLog::open_with(b.path(), small()).unwrap();
    assert_rebuilt(&log, "checksum");

    // A longer log with a shorter log's index: the named last record is not where it was.
    let c = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(c.path(), small()).unwrap();
    for i in 0..40 {
        let mut e = event(i);
        e.payload = vec![7; 3 + (i as usize % 11)];
        log.append(&e).unwrap();
    }
    log.close().unwrap();
    fs::write(c.path().join(INDEX_FILE_NAME), &index_a).unwrap();
    let log = EventLog::open_with(c.path(), small()).unwrap();
    let report = log.index_report();
    assert!(!report.loaded, "{report:?}");
    assert_queries_match_scan(&log);
}

#[test]
fn index_ahead_of_a_torn_log_is_rebuilt() {
    // The index is saved by a checkpoint, which does not sync the log; then the machine loses
    // the unsynced tail. Only records appended since the last sync (here, the reopen) may be
    // torn: recovery rightly refuses zeroed durable data as corruption.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    append_range(&mut log, 30, 50, 6);
    log.checkpoint().unwrap();
    let offsets: Vec<u64> = scan(&log).iter().map(|e| e.offset).collect();
    drop(log);
    let cut = offsets[47];
    assert!(cut >= last_segment_base(dir.path()), "cut inside the last segment");
    tear_tail(dir.path(), cut);
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    assert_eq!(log.end_offset(), cut);
    assert_rebuilt(&log, "ends at");
    assert_eq!(scan(&log).len(), 47);
    drop(log);

    // Torn, then the log grows again past where the index ended before the index is looked
    // at (a plain `Log` writer appended): the last record's checksum gives it away.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 10);
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    append_range(&mut log, 10, 20, 6);
    log.checkpoint().unwrap();
    let offsets: Vec<u64> = scan(&log).iter().map(|e| e.offset).collect();
    drop(log);
    tear_tail(dir.path(), offsets[15]);
    sleep(Duration::from_millis(3));
    let mut raw = chronicle::Log::open_with(dir.path(), small()).unwrap();
    let mut other = Vec::new();
    for i in 100..110 {
        other.clear();
        other.extend(encode(&event(i)));
        raw.append(&other).unwrap();
    }
    raw.close().unwrap();
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    assert_rebuilt(&log, "checksum");
}

/// The event codec is not public; an event log in a scratch directory encodes for us.
fn encode(event: &Event) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    let offset = log.append(event).unwrap();
    log.log().read_at(offset).unwrap().payload.to_vec()
}

#[test]
fn rebuild_index_from_replays_only_from_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    append_range(&mut log, 0, 30, 4);
    let all = scan(&log);
    log.checkpoint().unwrap(); // Brings the time index up to date, for the comparison.
    let before = log.index().clone();
    let replayed = log.rebuild_index_from(all[20].offset).unwrap();
    assert_eq!(replayed, 10);
    assert_eq!(log.index(), &before);
    assert_queries_match_scan(&log);
    assert_eq!(log.rebuild_index_from(log.end_offset()).unwrap(), 0);
    assert_eq!(log.rebuild_index_from(0).unwrap(), 30);
    assert_queries_match_scan(&log);
    let err = log.rebuild_index_from(all[3].offset + 8).unwrap_err();
    assert!(matches!(err, StorageError::InvalidOffset { .. }), "{err}");
    let err = log.rebuild_index_from(log.end_offset() + 8).unwrap_err();
    assert!(matches!(err, StorageError::InvalidOffset { .. }), "{err}");
    assert_queries_match_scan(&log);
}

#[test]
fn automatic_and_explicit_checkpoints_save_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let options = IndexOptions { checkpoint_bytes: 1024, ..IndexOptions::default() };
    let mut log = EventLog::open_with_index_options(dir.path(), small(), options.clone()).unwrap();
    assert!(!path.exists(), "nothing to save yet");
    let mut saves = 0;
    let mut last = None;
    let mut offsets = Vec::new();
    // Enough appends for several saves: each is complete by the time the next is triggered.
    for i in 0..120 {
        offsets.push(log.append(&event(i)).unwrap());
        // Automatic saves run on another thread: a save appears some time after the append
        // that triggered it, and at the latest when the next one is triggered.
        let stored = fs::metadata(&path).ok().map(|_| load_index(&path).unwrap());
        if let Some(stored) = stored {
            if Some(stored.covered_end()) != last {
                saves += 1;
                last = Some(stored.covered_end());
                let covered = stored.covered_end();
                assert!(covered <= log.end_offset(), "save {saves} after append {i}");
                assert!(covered >= 1024 * saves, "save {saves} covers {covered}");
                // It is a snapshot of exactly the events below its covered end.
                let below = offsets.iter().filter(|&&o| o < covered).count() as u64;
                assert_eq!(stored.records(), below, "save {saves} after append {i}");
                assert!(offsets.contains(&covered) || covered == log.end_offset());
            }
        }
    }
    assert!(saves >= 2, "{saves} automatic saves");
    assert_eq!(log.checkpoint_error(), None);
    log.checkpoint().unwrap();
    let stored = load_index(&path).unwrap();
    assert_eq!(&stored, log.index());
    drop(log);
    let log = EventLog::open_with_index_options(dir.path(), small(), options).unwrap();
    assert!(log.index_report().loaded);
    assert_eq!(log.index_report().records_replayed, 0);
    assert_queries_match_scan(&log);
}

#[test]
fn save_and_load_round_trip_and_read_only_open_uses_the_index() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 25);
    let path = dir.path().join(INDEX_FILE_NAME);
    let loaded = load_index(&path).unwrap();
    assert_eq!(loaded.records(), 25);
    let copy = dir.path().join("copy.chx");
    save_index(&copy, &loaded).unwrap();
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&path).unwrap());
    let log = EventLog::open_read_only(dir.path()).unwrap();
    assert!(log.index_report().loaded);
    assert_eq!(&load_index(&path).unwrap(), log.index());
    assert_queries_match_scan(&log);
}

#[test]
fn an_empty_batch_after_a_failed_rebuild_does_not_underflow_the_checkpoint_count() {
    // The automatic checkpoint counted new bytes as `covered_end - saved_end`, assuming the
    // index never covers less than at its last save. A rebuild that stops at a damaged record
    // leaves it covering less; an empty batch then changes nothing, and the subtraction
    // panicked a debug build (a release build wrapped and saved the partial index).
    let dir = tempfile::tempdir().unwrap();
    let options = IndexOptions { checkpoint_bytes: 1 << 20, ..IndexOptions::default() };
    let mut log = EventLog::open_with_index_options(dir.path(), small(), options).unwrap();
    append_range(&mut log, 0, 10, 100);
    log.checkpoint().unwrap();
    let damaged = scan(&log)[2].offset;
    assert!(damaged + 64 < 4096, "the record must be in the first segment");
    // Flip a payload byte of record 2 in the first segment file (base offset 0).
    let segment = dir.path().join(format!("{:020}.seg", 0));
    let file = fs::OpenOptions::new().read(true).write(true).open(&segment).unwrap();
    let at = 64 + damaged + 32;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
    let err = log.rebuild_index_from(0).unwrap_err();
    assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
    assert_eq!(log.index().covered_end(), damaged);
    let end = log.end_offset();
    assert_eq!(log.append_batch(&[]).unwrap(), Vec::<u64>::new());
    assert_eq!(log.checkpoint_error(), None);
    // No checkpoint was due: the saved index still covers the whole log (dropping the log
    // waits for an automatic save, had one started).
    drop(log);
    assert_eq!(load_index(dir.path().join(INDEX_FILE_NAME)).unwrap().covered_end(), end);
}

/// What an operator saw: `chronicle index rebuild` on a log whose last record was not an event
/// (a raw record written through `Log`) saved an index that every later open refused ("event
/// type lists do not end at the last indexed record") and rebuilt from the whole log. Records
/// that are not events are covered but not listed (FORMAT.md 8.2), so the lists may end
/// before the last indexed record.
#[test]
fn an_index_whose_last_record_is_not_an_event_loads_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 50);
    let mut raw = chronicle::Log::open_with(dir.path(), small()).unwrap();
    raw.append(b"\xff not an event").unwrap();
    raw.close().unwrap();
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    assert_eq!(log.index_report().records_not_events, 1);
    log.checkpoint().unwrap();
    log.close().unwrap();
    let log = EventLog::open_with(dir.path(), small()).unwrap();
    let report = log.index_report();
    assert!(report.loaded && report.rebuilt_because.is_none(), "{report:?}");
    assert_eq!(report.records_replayed, 0);
    assert_eq!(log.index().records(), 50);
}
