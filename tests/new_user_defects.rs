//! Defects a new user ran into on day one, one test each, named after what they saw.

use chronicle::{Event, EventEnvelope, EventLog, Log, Options, StorageError};

/// What a user saw: `chronicle verify` and `stats` on an empty directory, or on one holding
/// unrelated files, printed `ok`; `Log::open` on a directory of unrelated files quietly wrote
/// a segment and `LOCK` among them.
#[test]
fn a_directory_that_is_not_a_log_is_refused_not_treated_as_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    // Empty: read-only opens refuse it, a writer makes a log in it.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(Log::open_read_only(&empty), Err(StorageError::NotALogDirectory { .. })));
    assert!(std::fs::read_dir(&empty).unwrap().next().is_none(), "a read-only open wrote");
    // Unrelated files: refused by readers and writers, and nothing is written there.
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("holiday.jpg"), b"not a log").unwrap();
    match Log::open(&photos) {
        Err(StorageError::NotALogDirectory { path, found }) => {
            assert_eq!(path, photos);
            assert!(found.contains("holiday.jpg"), "{found}");
        }
        other => panic!("expected NotALogDirectory, got {other:?}"),
    }
    assert!(matches!(Log::open_read_only(&photos), Err(StorageError::NotALogDirectory { .. })));
    assert!(matches!(EventLog::open(&photos), Err(StorageError::NotALogDirectory { .. })));
    let names: Vec<_> =
        std::fs::read_dir(&photos).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["holiday.jpg"], "the refused open wrote files");
    // Unless asked for explicitly.
    let options = Options { create_among_other_files: true, ..Options::default() };
    let mut log = Log::open_with(&photos, options).unwrap();
    assert_eq!(log.append(b"x").unwrap(), 0);
    log.close().unwrap();
    // A directory that holds only what an interrupted first open leaves (the lock file and a
    // temporary segment) becomes a log.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::write(interrupted.join("LOCK"), b"").unwrap();
    std::fs::write(interrupted.join("00000000000000000000.seg.tmp"), [0u8; 64]).unwrap();
    let mut log = Log::open(&interrupted).unwrap();
    assert!(log.open_report().created);
    assert_eq!(log.append(b"first").unwrap(), 0);
    drop(log);
    // A regular file is not a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(Log::open(&file).is_err());
    assert!(Log::open_read_only(&file).is_err());
}

/// What a user saw: `Options { segment_bytes: 1 << 20, ..Default::default() }` failed at open
/// because the record limit kept its 16 MiB default.
#[test]
fn small_segments_with_the_default_record_limit_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 1 << 20, ..Options::default() };
    assert_eq!(options.effective_record_bytes_max(), (1 << 20) - 64 - 32);
    let mut log = Log::open_with(dir.path(), options).unwrap();
    let big = vec![7u8; (1 << 20) - 64 - 32];
    let at = log.append(&big).unwrap();
    assert_eq!(&*log.read_at(at).unwrap().payload, &big[..]);
    assert!(matches!(log.append(&[0u8; 1 << 20]), Err(StorageError::RecordTooLarge { .. })));
}

/// What a user saw: `replay(offset)` inside a record said "no intact record starts at this
/// offset", which reads like damage.
#[test]
fn an_offset_inside_a_record_names_the_nearest_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let first = log.append(&[1u8; 100]).unwrap();
    let second = log.append(&[2u8; 100]).unwrap();
    let inside = first + 64;
    match log.replay(inside).next() {
        Some(Err(StorageError::InvalidOffset { offset, reason })) => {
            assert_eq!(offset, inside);
            assert!(reason.contains("not a record boundary"), "{reason}");
            assert!(reason.contains(&format!("{first} and {second}")), "{reason}");
        }
        other => panic!("expected InvalidOffset, got {other:?}"),
    }
}

/// What a user saw: decoding a raw record as an event needed the private decoder, an event
/// replay could not say where to resume, and loading an aggregate after a snapshot read all
/// of its events.
#[test]
fn events_decode_from_records_replays_resume_and_aggregates_load_from_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = EventLog::open(dir.path()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..6u32 {
        let event = Event::builder("account.credited")
            .namespace("bank")
            .aggregate_id(7)
            .payload(vec![i as u8])
            .build();
        offsets.push(events.append(&event).unwrap());
    }
    events.close().unwrap();

    let log = Log::open_read_only(dir.path()).unwrap();
    let record = log.read_at(offsets[2]).unwrap();
    let envelope = EventEnvelope::from_record(&record).unwrap();
    assert_eq!((envelope.offset, envelope.event.payload.clone()), (offsets[2], vec![2]));
    drop(log);

    let events = EventLog::open_read_only(dir.path()).unwrap();
    let mut replay = events.replay(offsets[0]);
    replay.next().unwrap().unwrap();
    replay.next().unwrap().unwrap();
    assert_eq!(replay.position(), offsets[2]);
    let after_snapshot: Vec<u64> =
        events.aggregate_events_from(7, offsets[4]).map(|e| e.unwrap().offset).collect();
    assert_eq!(after_snapshot, offsets[4..]);
}
