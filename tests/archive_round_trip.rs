//! Backup and restore round trips, against a real S3-compatible server on loopback and a
//! `file://` directory: the restored log holds the same records at the same offsets, answers
//! index queries the same and has the same tree head, for the whole log and for points in time
//! (offsets and write times) chosen at random.

mod archive_common;

use std::path::Path;

use archive_common::{append_events, records, records_in, small_segments, S3Server};
use chronicle::archive::{self, BackupOptions, RestoreOptions, RestorePoint};
use chronicle::{EventLog, Log, StorageError};

/// Checks that the log restored in `restored` is the prefix of `original` below `end`: the same
/// records at the same offsets, the original's tree head for that prefix, and the same answers
/// from the event index (rebuilt by `EventLog::open`).
fn check_prefix(original: &EventLog, restored: &Path, end: u64) {
    let expected: Vec<_> = records(original.log()).into_iter().filter(|r| r.0 < end).collect();
    let got = records_in(restored);
    assert_eq!(got.len(), expected.len(), "records restored");
    assert!(got == expected, "the restored records differ from the original's");
    let log = Log::open(restored).unwrap();
    assert_eq!(log.end_offset(), end);
    let head = log.tree_head(None).unwrap();
    assert_eq!(head, original.log().tree_head(Some(expected.len() as u64)).unwrap());
    log.close().unwrap();
    let events = EventLog::open(restored).unwrap();
    for aggregate in 0..7 {
        let got: Vec<u64> = events.aggregate_events(aggregate).map(|e| e.unwrap().offset).collect();
        let want: Vec<u64> = original
            .aggregate_events(aggregate)
            .map(|e| e.unwrap().offset)
            .filter(|o| *o < end)
            .collect();
        assert_eq!(got, want, "aggregate {aggregate}");
    }
    let placed = |log: &EventLog| -> Vec<u64> {
        log.events_of_type("order.placed", 0)
            .map(|e| e.unwrap().offset)
            .filter(|o| *o < end)
            .collect()
    };
    assert_eq!(placed(&events), placed(original));
    events.close().unwrap();
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Restores `url` to random offsets and times and checks each against `original`.
fn restore_random_points(url: &str, store: &[(String, String)], original: &EventLog, seed: u64) {
    let all = records(original.log());
    let end = original.log().end_offset();
    let scratch = tempfile::tempdir().unwrap();
    let mut state = seed;
    for round in 0..10 {
        let pick = splitmix(&mut state);
        let point = match round % 3 {
            0 => RestorePoint::Offset(pick % (end + 1)),
            1 => RestorePoint::Offset(all[(pick % all.len() as u64) as usize].0),
            _ => {
                let (first, last) = (all[0].1, all[all.len() - 1].1);
                RestorePoint::Time(first + pick % (last - first + 2))
            }
        };
        let target = scratch.path().join(format!("restored-{round}"));
        let options = RestoreOptions { point, store_options: store.to_vec(), ..Default::default() };
        let report = archive::restore(url, &target, &options).unwrap();
        assert!(report.log_checked);
        let kept = all.iter().filter(|r| r.0 < report.end_offset).count();
        // The cut is at a batch boundary at or before the point: at most a batch (4 records)
        // short of it.
        let short = match point {
            RestorePoint::Offset(offset) => {
                assert!(all[..kept].iter().all(|r| r.0 < offset), "{point:?}");
                all[kept..].iter().take_while(|r| r.0 < offset).count()
            }
            RestorePoint::Time(ms) => {
                assert!(all[..kept].iter().all(|r| r.1 <= ms), "{point:?}");
                all[kept..].iter().take_while(|r| r.1 <= ms).count()
            }
            RestorePoint::Latest => 0,
        };
        assert!(short < 4, "{point:?}: {short} records short of the point");
        assert_eq!(report.head.tree_size, kept as u64);
        // A bounded read: the catalog, then for each segment up to the point its manifest and
        // at most `pieces_max` (8) pieces.
        assert!(report.objects_read <= 1 + report.segments * 9, "{report:?}");
        check_prefix(original, &target, report.end_offset);
    }
}

#[test]
fn s3_round_trip_whole_log_and_points_in_time() {
    let server = S3Server::start();
    let url = server.url("orders");
    let dir = tempfile::tempdir().unwrap();
    let mut events = EventLog::open_with(dir.path().join("log"), small_segments()).unwrap();
    let options = BackupOptions {
        zstd_level: Some(3),
        store_options: server.options(),
        ..Default::default()
    };

    append_events(&mut events, 500, 1);
    events.sync().unwrap();
    // A catalog every 64 KiB: a crash in a long first backup keeps what it shipped.
    let often = BackupOptions { catalog_every_bytes: 64 << 10, ..options.clone() };
    let first = archive::backup(events.log(), &url, often).unwrap();
    assert_eq!(first.end_offset, events.log().end_offset());
    assert!(first.segments_shipped >= 2, "{first:?}");
    assert!(first.catalogs_published >= 2, "{first:?}");

    // Buffered appends after the last sync are not shipped; the next backup ships only what is
    // new: the rest of the segment it stopped in and the segments after it.
    append_events(&mut events, 300, 2);
    let durable = events.log().reader().durable_offset();
    let second = archive::backup(events.log(), &url, options.clone()).unwrap();
    assert_eq!(second.end_offset, durable);
    assert!(second.bytes_shipped < durable - first.end_offset + 64 * 8, "{second:?}");
    events.sync().unwrap();
    let third = archive::backup(events.log(), &url, options.clone()).unwrap();
    assert_eq!(third.end_offset, events.log().end_offset());
    assert_eq!(third.head, Some(events.log().tree_head(None).unwrap()));
    let nothing = archive::backup(events.log(), &url, options.clone()).unwrap();
    assert_eq!((nothing.segments_shipped, nothing.catalogs_published), (0, 0));

    let check = archive::verify_backup(&url, &server.options()).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.end_offset, events.log().end_offset());

    let target = dir.path().join("restored");
    let report = archive::restore(
        &url,
        &target,
        &RestoreOptions { store_options: server.options(), ..Default::default() },
    )
    .unwrap();
    assert_eq!(report.end_offset, events.log().end_offset());
    check_prefix(&events, &target, events.log().end_offset());
    restore_random_points(&url, &server.options(), &events, 7);
}

#[test]
fn file_round_trip_with_a_growing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("backup").display());
    let mut events = EventLog::open_with(dir.path().join("log"), small_segments()).unwrap();
    // An empty log backs up to its first segment's header alone, and restores.
    let empty = archive::backup(events.log(), &url, BackupOptions::default()).unwrap();
    assert_eq!((empty.end_offset, empty.segments_shipped), (0, 1));
    let options = BackupOptions {
        pieces_max: 3,
        consumer: Some("backup".to_string()),
        ..BackupOptions::default()
    };
    // Shipping often while one segment grows stores it in pieces, then again as one.
    for round in 0..8 {
        append_events(&mut events, 25, 10 + round);
        events.sync().unwrap();
        let report = archive::backup(events.log(), &url, options.clone()).unwrap();
        assert_eq!(report.end_offset, events.log().end_offset());
        // The consumer marks what the destination holds, for retention to keep the rest.
        let consumer = events.log().consumer("backup").unwrap();
        assert_eq!(consumer.position(), Some(report.end_offset));
    }
    let check = archive::verify_backup(&url, &[]).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let target = dir.path().join("restored");
    archive::restore(&url, &target, &RestoreOptions::default()).unwrap();
    check_prefix(&events, &target, events.log().end_offset());
    restore_random_points(&url, &[], &events, 11);
    // Another log is refused: the destination holds this one's backup.
    let other = Log::open(dir.path().join("other")).unwrap();
    let err = archive::backup(&other, &url, BackupOptions::default()).unwrap_err();
    assert!(matches!(err, archive::ArchiveError::Diverged { .. }), "{err}");
    // A plain path is a local directory too.
    let plain = dir.path().join("plain");
    archive::backup(events.log(), plain.to_str().unwrap(), BackupOptions::default()).unwrap();
    let check = archive::verify_backup(plain.to_str().unwrap(), &[]).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// Retention and backups together. A backup keeps what retention later removes from the log:
/// the next backup goes on where the last stopped, and a restore gives the whole history back.
/// A first backup of a log whose front is already gone restores to a log that begins where the
/// original now does, knowing how many records came before it.
#[test]
fn backups_of_a_log_that_retention_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("backup").display());
    let mut log = Log::open_with(dir.path().join("log"), small_segments()).unwrap();
    let payload = |i: usize| vec![(i % 251) as u8; 100 + i * 7 % 300];
    for i in 0..2000 {
        log.append(&payload(i)).unwrap();
    }
    log.sync().unwrap();
    let options = BackupOptions { consumer: Some("backup".to_string()), ..Default::default() };
    let first = archive::backup(&log, &url, options.clone()).unwrap();
    let shipped = records(&log);
    let head_before = log.tree_head(None).unwrap(); // also brings the stored pages up to date
    let trimmed = log.truncate_before(first.end_offset).unwrap();
    assert!(trimmed.start_offset > 0 && trimmed.records_removed > 0, "{trimmed:?}");
    for i in 2000..3000 {
        log.append(&payload(i)).unwrap();
    }
    log.sync().unwrap();
    let second = archive::backup(&log, &url, options).unwrap();
    assert_eq!(second.end_offset, log.end_offset());
    let check = archive::verify_backup(&url, &[]).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);

    // The whole history comes back, with the original's tree heads.
    let whole = dir.path().join("whole");
    let report = archive::restore(&url, &whole, &RestoreOptions::default()).unwrap();
    assert_eq!((report.start_offset, report.end_offset), (0, log.end_offset()));
    assert!(report.log_checked);
    let last_shipped = shipped.last().unwrap().0;
    let mut expected = shipped.clone();
    expected.extend(records(&log).into_iter().filter(|r| r.0 > last_shipped));
    assert_eq!(expected.len(), 3000);
    assert!(records_in(&whole) == expected, "the restored history differs");
    let restored = Log::open(&whole).unwrap();
    assert_eq!(restored.tree_head(Some(2000)).unwrap(), head_before);
    assert_eq!(restored.tree_head(None).unwrap(), log.tree_head(None).unwrap());
    restored.close().unwrap();

    // A first backup after retention holds the log from its new start.
    let fresh = format!("file://{}", dir.path().join("fresh").display());
    archive::backup(&log, &fresh, BackupOptions::default()).unwrap();
    let front = dir.path().join("front");
    let report = archive::restore(&fresh, &front, &RestoreOptions::default()).unwrap();
    assert_eq!((report.start_offset, report.end_offset), (log.start_offset(), log.end_offset()));
    assert!(records_in(&front) == records(&log), "the restored records differ");
    let mut restored = Log::open(&front).unwrap();
    assert_eq!(restored.start_offset(), log.start_offset());
    assert_eq!(restored.reader().start_entry(), log.reader().start_entry());
    // No stored pages cover the records before it, so it computes no tree head.
    assert!(matches!(restored.tree_head(None), Err(StorageError::Proof { .. })));
    // It is a log like any other: it takes appends and reopens.
    let offset = restored.append_sync(b"after the restore").unwrap();
    restored.close().unwrap();
    let reopened = Log::open_read_only(&front).unwrap();
    assert_eq!(&*reopened.read_at(offset).unwrap().payload, b"after the restore");
}
