//! Opening a log: the single-writer lock, read-only opens, leftovers of interrupted segment
//! creation, option validation, timestamps across reopen, and the open report.

mod common;

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use chronicle::{EventLog, Log, Options, RecoveryMode, StorageError};
use common::{
    all, append_all, build_log, dir_bytes, file_pos, payload, read_at, reseal_frame,
    rewrite_header, segment_of, segments, small, stride, varied_lens, write_at, zero_from,
    CAPACITY,
};

const MAX: u64 = 300;

fn assert_locked(result: chronicle::Result<Log>, dir: &Path) {
    match result {
        Err(StorageError::Locked { path }) => assert_eq!(path, dir.join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
}

fn assert_read_only<T: std::fmt::Debug>(result: chronicle::Result<T>) {
    assert!(matches!(result, Err(StorageError::ReadOnly)), "expected ReadOnly, got {result:?}");
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Log::open_with(dir.path(), small(MAX)).unwrap();
    let mut recs = append_all(&mut first, 0, &varied_lens(30, MAX as usize));

    assert_locked(Log::open_with(dir.path(), small(MAX)), dir.path());
    assert_locked(Log::open(dir.path()), dir.path());
    assert!(matches!(
        EventLog::open_with(dir.path(), small(MAX)),
        Err(StorageError::Locked { .. })
    ));
    // A refused second writer disturbs nothing: the first keeps appending and syncing.
    recs.extend(append_all(&mut first, 30, &varied_lens(30, MAX as usize)));
    first.append_sync(b"synced").unwrap();
    recs.push(common::Rec {
        offset: recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap(),
        payload: b"synced".to_vec(),
    });
    assert_eq!(all(first.replay(0)), recs);
    assert_locked(Log::open_with(dir.path(), small(MAX)), dir.path());

    // After close, the next writer gets in and sees everything.
    first.close().unwrap();
    let mut second = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(all(second.replay(0)), recs);
    recs.extend(append_all(&mut second, 100, &[1, 2, 3]));
    // Dropping without close releases the lock too.
    drop(second);
    let third = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(all(third.replay(0)), recs);
}

#[test]
fn read_only_opens_see_everything_write_nothing_and_take_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Log::open_with(dir.path(), small(MAX)).unwrap();
    let recs = append_all(&mut writer, 0, &varied_lens(60, MAX as usize));

    // Next to a live writer (which holds the lock), before and without any sync.
    let mut ro = Log::open_read_only(dir.path()).unwrap();
    assert!(ro.is_read_only());
    assert!(!writer.is_read_only());
    assert_eq!(all(ro.replay(0)), recs);
    assert_eq!(ro.end_offset(), writer.end_offset());
    assert_read_only(ro.append(b"x"));
    assert_read_only(ro.append_sync(b"x"));
    assert_read_only(ro.append_batch(&[b"x"]));
    assert_read_only(ro.append_batch_sync(&[b"x"]));
    assert_read_only(ro.sync());
    assert_eq!(all(ro.replay(0)), recs);
    // The writer is unaffected by the reader and vice versa.
    let more = append_all(&mut writer, 60, &[10, 20]);
    assert_eq!(all(ro.replay(0)), recs, "a read-only open sees what was there when it opened");
    writer.close().unwrap();
    // A writer can open while a read-only open is alive: it took no lock.
    let writer = Log::open_with(dir.path(), small(MAX)).unwrap();
    let mut expected = recs.clone();
    expected.extend(more);
    assert_eq!(all(writer.replay(0)), expected);
    drop(writer);
    drop(ro);

    // A read-only open of a torn log skips the tail and changes no byte of any file (and
    // creates no lock file).
    // One more record, then a crash (no close): that record was never synced, so losing
    // part of it is a torn tail.
    let mut writer = Log::open_with(dir.path(), small(MAX)).unwrap();
    expected.extend(append_all(&mut writer, 70, &[100]));
    drop(writer);
    let last = expected.last().unwrap().clone();
    let (base, seg) = segment_of(dir.path(), last.offset);
    zero_from(&seg, file_pos(base, last.offset) + 20);
    fs::remove_file(dir.path().join("LOCK")).unwrap();
    let before = dir_bytes(dir.path());
    let ro = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(common::torn_of(ro.open_report()), Some((last.offset, 24, 0)));
    assert_eq!(all(ro.replay(0)), expected[..expected.len() - 1]);
    assert_eq!(ro.verify().unwrap().records, expected.len() as u64 - 1);
    drop(ro);
    assert_eq!(dir_bytes(dir.path()), before, "a read-only open changed the directory");
    // A writer then cuts the torn tail; with repair allowed it is still just a torn tail.
    let repair = Options { recovery: RecoveryMode::Salvage, ..small(MAX) };
    assert!(matches!(
        Log::open_with(dir.path(), repair).map(|l| l.end_offset()),
        Ok(end) if end == last.offset
    ));
}

#[test]
fn leftover_temporary_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let recs = build_log(dir.path(), MAX, &varied_lens(40, MAX as usize));
    let next_base = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    let temp = dir.path().join(format!("{}.tmp", common::seg_name(next_base)));
    fs::write(&temp, payload(1, 700)).unwrap();
    let other = dir.path().join("notes.txt");
    fs::write(&other, b"not ours").unwrap();

    let ro = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.open_report().temp_files_removed, 0);
    assert_eq!(all(ro.replay(0)), recs);
    drop(ro);
    assert!(temp.exists(), "a read-only open removed a file");

    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(log.open_report().temp_files_removed, 1);
    assert!(!temp.exists());
    assert!(other.exists(), "a file that is not the log's was removed");
    assert_eq!(all(log.replay(0)), recs);
    drop(log);
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(log.open_report().temp_files_removed, 0);
}

#[test]
fn missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    match Log::open_read_only(&missing) {
        Err(StorageError::Io { path, source, .. }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(!missing.exists(), "a read-only open created the directory");
    // A writer does not create missing parents: a mistyped path fails, creating nothing.
    match Log::open_with(&missing, small(MAX)) {
        Err(StorageError::Io { path, source, op }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(op.contains("parent directory does not exist"), "{op}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(!missing.parent().unwrap().exists(), "a writer created the missing parent");
    // With the parent there, a writer creates the directory with an empty log.
    std::fs::create_dir(missing.parent().unwrap()).unwrap();
    let mut log = Log::open_with(&missing, small(MAX)).unwrap();
    assert!(log.open_report().created);
    assert_eq!(log.append(b"first").unwrap(), 0);
    assert_eq!(segments(&missing).len(), 1);
}

#[test]
fn invalid_options_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("log");
    let bad = [
        (0, 100),
        (4095, 100),
        (4100, 100),
        (8196, 100),
        ((1 << 32) + 8, 100),
        (u64::MAX, 100),
        (4096, 0),
        (4096, 4096 - 64 - 32 + 1),
        (4096, 4096),
        (8192, 8192),
        (4096, u64::MAX),
    ];
    for (segment_bytes, record_bytes_max) in bad {
        let options = Options {
            segment_bytes,
            record_bytes_max: Some(record_bytes_max),
            ..Options::default()
        };
        assert!(options.validate().is_err());
        match Log::open_with(&target, options.clone()) {
            Err(StorageError::InvalidOptions { reason }) => assert!(!reason.is_empty()),
            other => {
                panic!("{segment_bytes}/{record_bytes_max}: expected InvalidOptions, got {other:?}")
            }
        }
        assert!(matches!(
            EventLog::open_with(&target, options),
            Err(StorageError::InvalidOptions { .. })
        ));
        assert!(!target.exists(), "an invalid open created the directory");
    }
    // The extremes that are valid.
    for (segment_bytes, record_bytes_max) in [(4096, 1), (4096, 4000), (4104, 4008)] {
        let options = Options {
            segment_bytes,
            record_bytes_max: Some(record_bytes_max),
            ..Options::default()
        };
        options.validate().unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open_with(d.path(), options).unwrap();
        let p = payload(0, record_bytes_max as usize);
        log.append(&p).unwrap();
        log.append(&p).unwrap();
        assert_eq!(all(log.replay(0)).len(), 2);
    }
    Options::default().validate().unwrap();
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn timestamps(log: &Log) -> Vec<u64> {
    log.replay(0).map(|r| r.unwrap().write_timestamp_ms).collect()
}

/// Rewrites the frame of record `rec` (in place, same length) with another timestamp and a
/// valid checksum; returns the new frame checksum.
fn forge_timestamp(dir: &Path, rec: &common::Rec, ts: u64) -> u32 {
    let (base, seg) = segment_of(dir, rec.offset);
    let pos = file_pos(base, rec.offset);
    let original = read_at(&seg, pos, common::frame_len(rec.payload.len()) as usize);
    let mut frame = original.clone();
    frame[16..24].copy_from_slice(&ts.to_le_bytes());
    let crc = reseal_frame(&original, &mut frame);
    write_at(&seg, pos, &frame);
    crc
}

#[test]
fn timestamps_never_decrease_across_records_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let mut recs = build_log(dir.path(), MAX, &varied_lens(50, MAX as usize));
    {
        let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
        recs.extend(append_all(&mut log, 50, &varied_lens(50, MAX as usize)));
        let ts = timestamps(&log);
        assert_eq!(ts.len(), 100);
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
        // Wall-clock milliseconds, not a counter (a loose bound, not a timing assertion).
        assert!(ts[0] + 86_400_000 > start && ts[0] < start + 86_400_000);
        // A crash rather than a close: the forged frame below is then not part of what was
        // recorded durable, only a frame that the next open reads back.
        drop(log);
    }

    // The last stored timestamp is in the future (the clock was set back since): records
    // appended after a reopen must not get earlier timestamps.
    let future = now_ms() + 10 * 86_400_000;
    forge_timestamp(dir.path(), recs.last().unwrap(), future);
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(all(log.replay(0)), recs);
    recs.extend(append_all(&mut log, 200, &[5, 6]));
    let ts = timestamps(&log);
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps decrease after a reopen");
    assert_eq!(ts[ts.len() - 1], future);
    log.close().unwrap();
}

#[test]
fn timestamps_never_decrease_across_a_reopen_onto_an_empty_last_segment() {
    // As above, but the last segment is empty (a crash right after it was created), so the
    // newest timestamp is in the previous, sealed segment. Recovery takes the timestamp to
    // continue from only from the last segment's frames, and starts from 0 when it has none.
    let dir = tempfile::tempdir().unwrap();
    let mut recs = Vec::new();
    {
        // One writer whose run ends in a crash right after a roll.
        let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
        recs.extend(append_all(&mut log, 0, &varied_lens(50, MAX as usize)));
        let n = segments(dir.path()).len();
        while segments(dir.path()).len() == n {
            recs.extend(append_all(&mut log, recs.len(), &[MAX as usize]));
        }
        drop(log);
    }
    let n = segments(dir.path()).len() - 1;
    let rolled = recs.pop().unwrap();
    let (base, last_seg) = segments(dir.path())[n].clone();
    assert_eq!(rolled.offset, base);
    zero_from(&last_seg, file_pos(base, base));
    // Give the sealed segment's last frame a future timestamp, and relink the empty segment's
    // header to the rewritten frame so the chain stays valid.
    let future = now_ms() + 10 * 86_400_000;
    let link = recs.last().unwrap().clone();
    let crc = forge_timestamp(dir.path(), &link, future);
    rewrite_header(&last_seg, |h| h[32..36].copy_from_slice(&crc.to_le_bytes()));

    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(log.end_offset(), base);
    assert_eq!(all(log.replay(0)), recs);
    append_all(&mut log, 300, &[5]);
    let ts = timestamps(&log);
    assert_eq!(ts[ts.len() - 2], future);
    assert!(
        ts[ts.len() - 1] >= future,
        "the record appended after reopening onto an empty last segment got timestamp {}, \
         earlier than its predecessor's {future}",
        ts[ts.len() - 1]
    );
}

#[test]
fn open_report_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let r = log.open_report().clone();
    assert!(r.created);
    assert_eq!((r.segments, r.records_scanned, r.end_offset), (1, 0, 0));
    assert_eq!((r.temp_files_removed, r.torn_tail, r.repair), (0, None, None));
    drop(log);

    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert!(!log.open_report().created);
    let recs = append_all(&mut log, 0, &varied_lens(90, MAX as usize));
    // A crash (no close): recovery has to scan at least what was appended to the last
    // segment, which was never synced.
    drop(log);
    let segs = segments(dir.path());
    let last_base = segs.last().unwrap().0;
    let in_last = recs.iter().filter(|r| r.offset >= last_base).count() as u64;
    let end = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    assert!(segs.len() >= 4 && in_last >= 2);

    let check = |log: &Log, after_close: bool| {
        let r = log.open_report();
        assert!(!r.created);
        assert_eq!(r.segments, segs.len());
        // Only the last segment's frames are read on open; sealed ones are linked by headers.
        // After a clean close an open may skip even those.
        if after_close {
            assert!(r.records_scanned <= in_last, "{r:?}");
            assert!(r.bytes_scanned <= CAPACITY, "{r:?}");
        } else {
            // After a crash the last segment's frames must all be verified; an engine that
            // does not sync on roll may have to verify earlier segments too.
            assert!(r.records_scanned >= in_last, "{r:?}");
            assert!(r.records_scanned <= recs.len() as u64, "{r:?}");
            assert!(r.bytes_scanned >= end - last_base, "{r:?}");
        }
        assert_eq!(r.end_offset, end);
        assert_eq!((r.temp_files_removed, &r.torn_tail, &r.repair), (0, &None, &None));
        assert_eq!(log.start_offset(), 0);
        assert_eq!(log.end_offset(), end);
    };
    check(&Log::open_read_only(dir.path()).unwrap(), false);
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    check(&log, false);
    assert_eq!(log.options(), &small(MAX));
    assert_eq!(log.dir(), dir.path());
    log.close().unwrap();
    check(&Log::open_read_only(dir.path()).unwrap(), true);
    check(&Log::open_with(dir.path(), small(MAX)).unwrap(), true);
}
