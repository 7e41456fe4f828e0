//! The durable record's clean end (`CLEAN_END`, FORMAT.md 6.2): `close` records that the log
//! ends there and holds only zeros after; the next open trusts it and reads no data; a writer
//! removes it, durably, before it writes anything, so that a crash after new appends is
//! recovered as if the flag had never been there.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use chronicle::{FormatError, Log, Options};
use common::{
    all, append_all, corruption, file_pos, frame_len, read_at, reseal_frame, segment_of, small,
    varied_lens, write_at,
};

const MAX: u64 = 600;

/// Flags of the durable record (bytes 6..8), or `None` without one.
fn durable_flags(dir: &Path) -> Option<u16> {
    let bytes = fs::read(dir.join("DURABLE")).ok()?;
    Some(u16::from_le_bytes([bytes[6], bytes[7]]))
}

#[test]
fn a_clean_close_lets_the_next_open_read_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let recs = append_all(&mut log, 0, &varied_lens(60, MAX as usize));
    log.close().unwrap();
    assert_eq!(durable_flags(dir.path()), Some(1), "close records a clean end");

    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let report = log.open_report().clone();
    assert!(report.clean_close, "{report:?}");
    assert_eq!((report.records_scanned, report.bytes_scanned), (0, 0), "{report:?}");
    assert_eq!(all(log.replay(0)), recs);
    log.verify().unwrap();
    // Closing without writing anything leaves the record as it is (the same file).
    let inode = fs::metadata(dir.path().join("DURABLE")).unwrap().ino();
    log.close().unwrap();
    assert_eq!(fs::metadata(dir.path().join("DURABLE")).unwrap().ino(), inode);

    let ro = Log::open_read_only(dir.path()).unwrap();
    assert!(ro.open_report().clean_close);
    assert_eq!(all(ro.replay(0)), recs);
}

#[test]
fn the_first_write_removes_the_clean_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    append_all(&mut log, 0, &varied_lens(30, MAX as usize));
    log.close().unwrap();

    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert_eq!(durable_flags(dir.path()), Some(1));
    log.append(b"after the clean close").unwrap();
    // Before that append returned, and with nothing synced since.
    assert_eq!(durable_flags(dir.path()), Some(0), "the first append kept the clean end");
    drop(log);
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    assert!(!log.open_report().clean_close);
    assert_eq!(all(log.replay(0)).last().unwrap().payload, b"after the clean close");
}

/// Durable records appended after a clean close, of which the first is then damaged: only the
/// ones after it prove the damage. Had the clean end stayed in the record, the open would
/// trust it and silently end the log before them.
#[test]
fn damage_after_a_clean_close_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let recs = append_all(&mut log, 0, &varied_lens(30, MAX as usize));
    log.close().unwrap();

    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let first = log.append_sync(&[7u8; 100]).unwrap();
    log.append_sync(&[8u8; 100]).unwrap();
    drop(log); // a crash: no close
               // The first new frame's length field is lost.
    let (base, path) = segment_of(dir.path(), first);
    write_at(&path, file_pos(base, first) + 4, &[0, 0, 0, 0]);

    let err = Log::open_with(dir.path(), small(MAX)).unwrap_err();
    let (_, offset, kind) = corruption(&err);
    assert_eq!(offset, first);
    assert!(
        matches!(
            kind,
            FormatError::LostDurableData { .. } | FormatError::DamagedBeforeValidData { .. }
        ),
        "{kind:?}"
    );
    assert_eq!(recs.last().map(|r| r.offset < first), Some(true));
}

/// A record with a clean end that lags behind the log (as a writer that predates the flag
/// would leave it, appending without removing it): the frames after its end are found and the
/// tail examined as usual.
#[test]
fn a_clean_end_with_frames_after_it_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let mut recs = append_all(&mut log, 0, &varied_lens(30, MAX as usize));
    log.close().unwrap();
    let stale = fs::read(dir.path().join("DURABLE")).unwrap();

    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    recs.extend(append_all(&mut log, 30, &varied_lens(40, MAX as usize)));
    let end = log.end_offset();
    log.close().unwrap();
    fs::write(dir.path().join("DURABLE"), &stale).unwrap();

    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let report = log.open_report().clone();
    assert!(!report.clean_close, "{report:?}");
    assert!(report.records_scanned > 0, "{report:?}");
    assert_eq!(report.end_offset, end);
    assert_eq!(all(log.replay(0)), recs);
}

/// Bytes after a clean end are taken to be zeros, so the open does not read them. Damage can
/// leave something there, here an intact frame that says everything before it was durable.
/// Before its first write the writer must clear it: otherwise the records appended after the
/// clean end are followed by that frame, and the next open takes it for proof that durable
/// data was lost and refuses the log, acknowledged records and all.
#[test]
fn bytes_after_a_clean_end_are_cleared_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        Options { segment_bytes: 1 << 20, record_bytes_max: Some(MAX), ..Options::default() };
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let mut recs = append_all(&mut log, 0, &varied_lens(20, MAX as usize));
    let end = log.end_offset();
    log.close().unwrap();

    // A copy of the first frame a little past the end, with that offset, no unsynced distance
    // (everything before it durable) and its checksum made good.
    let first = &recs[0];
    let (base, path) = segment_of(dir.path(), first.offset);
    let len = usize::try_from(frame_len(first.payload.len())).unwrap();
    let original = read_at(&path, file_pos(base, first.offset), len);
    let stray_offset = end + 256;
    let mut stray = original.clone();
    stray[8..16].copy_from_slice(&stray_offset.to_le_bytes());
    stray[24..28].copy_from_slice(&0u32.to_le_bytes());
    reseal_frame(&original, &mut stray);
    write_at(&path, file_pos(base, stray_offset), &stray);

    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    assert!(log.open_report().clean_close, "the clean end was not trusted");
    // Buffered: a sync would also write zeros ahead of the end, over whole pages only.
    let appended = log.append(b"in the page cache").unwrap();
    assert_eq!(appended, end);
    recs.push(common::Rec { offset: appended, payload: b"in the page cache".to_vec() });
    assert!(
        read_at(&path, file_pos(base, stray_offset), len).iter().all(|&b| b == 0),
        "the bytes after the clean end were not cleared"
    );
    drop(log); // a crash: no close

    let log = Log::open_with(dir.path(), options).unwrap();
    assert_eq!(all(log.replay(0)), recs);
    assert_eq!(log.open_report().torn_tail, None);
}

#[test]
fn a_durable_record_of_the_wrong_length_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let recs = append_all(&mut log, 0, &varied_lens(40, MAX as usize));
    log.close().unwrap();
    let record = fs::read(dir.path().join("DURABLE")).unwrap();
    // The intact record, one byte longer, one byte shorter, empty: only the first is used.
    let variants: [(&str, Vec<u8>); 4] = [
        ("intact", record.clone()),
        ("one byte longer", [record.as_slice(), &[0]].concat()),
        ("one byte shorter", record[..record.len() - 1].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in variants {
        fs::write(dir.path().join("DURABLE"), &bytes).unwrap();
        let log = Log::open_read_only(dir.path()).unwrap();
        let report = log.open_report().clone();
        assert_eq!(report.clean_close, what == "intact", "{what}: {report:?}");
        assert_eq!(report.records_scanned == 0, what == "intact", "{what}: {report:?}");
        assert_eq!(all(log.replay(0)), recs, "{what}");
    }
}
