use crate::error::StorageError;
use crate::format::{DurableRecord, DURABLE_FILE_NAME};
use crate::log::Log;

/// After a failed sync the kernel may have dropped the dirty pages it could not write, so
/// a retried sync could report success for lost data: the writer must refuse everything
/// until the log is reopened, and a reopen must recover exactly what is on disk.
#[test]
fn a_failed_sync_poisons_the_writer_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let kept = log.append_sync(b"durable").unwrap();
    log.writer.as_mut().unwrap().fail_next_sync = true;
    let err = log.append_sync(b"unlucky").unwrap_err();
    assert!(matches!(err, StorageError::Io { op: "sync segment", .. }), "{err}");
    for attempt in [log.append(b"more"), log.append_sync(b"more")] {
        let err = attempt.unwrap_err();
        assert!(
            matches!(err, StorageError::Poisoned { ref cause } if cause.contains("injected")),
            "{err}"
        );
    }
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.append_batch(&[b"x"]), Err(StorageError::Poisoned { .. })));
    // Reads still work, and see what was appended (it is in the page cache).
    let seen: Vec<Vec<u8>> = log.replay(0).map(|r| r.unwrap().payload.to_vec()).collect();
    assert_eq!(seen, vec![b"durable".to_vec(), b"unlucky".to_vec()]);
    assert!(matches!(log.close(), Err(StorageError::Poisoned { .. })));

    let mut log = Log::open(dir.path()).unwrap();
    assert_eq!(log.read_at(kept).unwrap().payload.to_vec(), b"durable".to_vec());
    let next = log.append_sync(b"after reopen").unwrap();
    assert_eq!(log.read_at(next).unwrap().payload.to_vec(), b"after reopen".to_vec());
}

/// Waiting for the zeros written ahead of the end also reports a write-back error of the
/// segment's earlier pages, and the kernel reports it to an open file only once: the sync
/// after it would succeed. So a failed zeroing must fail the sync and poison the writer,
/// like a failed sync.
#[test]
fn a_failed_zeroing_ahead_fails_the_sync_and_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let kept = log.append_sync(b"durable").unwrap();
    // The first sync zeroed 1 MiB ahead; the next zeroing comes once the end is within a
    // quarter of that of the zeroed region's end.
    let record = vec![7u8; 4000];
    for _ in 0..200 {
        log.append(&record).unwrap();
    }
    log.writer.as_mut().unwrap().fail_next_zero_ahead = true;
    let err = log.append_sync(b"unlucky").unwrap_err();
    assert!(matches!(err, StorageError::Io { op: "write zeros ahead", .. }), "{err}");
    let err = log.append(b"more").unwrap_err();
    assert!(
        matches!(err, StorageError::Poisoned { ref cause } if cause.contains("write-back")),
        "{err}"
    );
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.read_at(kept).unwrap().payload.to_vec(), b"durable".to_vec());
}

/// A batch that fails part-way leaves its first frames past the end. The close after it
/// must not record a clean end, or the next open would not look there, and those frames
/// (intact, with offsets a later chain could reach) would never be cleared.
#[test]
fn a_failed_batch_keeps_close_from_recording_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    let kept = log.append(b"kept").unwrap();
    log.writer.as_mut().unwrap().fail_frame_after = Some(2);
    let batch: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
    let err = log.append_batch(&batch).unwrap_err();
    assert!(matches!(err, StorageError::Io { op: "write frame", .. }), "{err}");
    let end = log.end_offset();
    log.close().unwrap();
    let durable = std::fs::read(dir.path().join(DURABLE_FILE_NAME)).unwrap();
    assert_eq!(DurableRecord::decode(&durable).map(|r| r.clean_end), Ok(false));

    let log = Log::open(dir.path()).unwrap();
    let report = log.open_report();
    assert!(!report.clean_close, "{report:?}");
    let torn = report.torn_tail.as_ref().expect("the batch's frames are found and cut");
    assert_eq!((torn.offset, torn.frames_dropped), (end, 2), "{report:?}");
    let seen: Vec<(u64, Vec<u8>)> =
        log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.payload.to_vec())).collect();
    assert_eq!(seen, vec![(kept, b"kept".to_vec())]);
}
