//! Retention: `truncate_before` removes whole segments from the front, durably, never past a
//! consumer or beyond what the Merkle pages cover, keeps every earlier tree head computable,
//! survives a crash part-way through, and a missing first segment is refused, not read as a
//! shorter log.

mod common;

use std::fs;
use std::path::Path;

use chronicle::{Log, Options, StorageError, SEGMENT_BYTES_MIN};
use common::segment_bases;

fn options() -> Options {
    Options { segment_bytes: SEGMENT_BYTES_MIN.max(64 << 10), ..Options::default() }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(100 + (i % 50) as usize, (i % 251) as u8);
    p
}

/// A log of `n` records over many segments; returns their offsets.
fn build(dir: &Path, n: u64) -> Vec<u64> {
    let mut log = Log::open_with(dir, options()).unwrap();
    let offsets = (0..n).map(|i| log.append(&payload(i)).unwrap()).collect();
    log.close().unwrap();
    offsets
}

fn records_from(log: &Log, from: u64) -> Vec<(u64, Vec<u8>)> {
    log.replay(from).map(|r| r.unwrap()).map(|r| (r.offset, r.payload.to_vec())).collect()
}

#[test]
fn truncate_before_removes_whole_front_segments_and_keeps_heads_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = build(dir.path(), 5000);
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let old_heads: Vec<_> = [1u64, 255, 256, 1000, 2500, 5000]
        .iter()
        .map(|&n| log.tree_head(Some(n)).unwrap())
        .collect();
    let bases = segment_bases(dir.path());
    assert!(bases.len() > 5, "the test needs many segments");

    let report = log.truncate_before(offsets[2500]).unwrap();
    let new_start = report.start_offset;
    assert!(new_start > 0 && new_start <= offsets[2500], "{report:?}");
    assert!(bases.contains(&new_start));
    let removed = offsets.iter().filter(|&&o| o < new_start).count() as u64;
    assert_eq!(report.records_removed, removed);
    assert_eq!(report.segments_removed.len(), bases.iter().filter(|&&b| b < new_start).count());
    assert_eq!(log.start_offset(), new_start);
    assert_eq!(segment_bases(dir.path()).first(), Some(&new_start));
    // What remains reads as before, from the new start; an older offset is refused.
    let expected: Vec<(u64, Vec<u8>)> =
        (removed..5000).map(|i| (offsets[i as usize], payload(i))).collect();
    assert_eq!(records_from(&log, new_start), expected);
    assert!(matches!(log.replay(0).next(), Some(Err(StorageError::InvalidOffset { .. }))));
    // Earlier heads: the same at page boundaries (multiples of 256 entries) and after the
    // new start; inside a removed page the head's end offset and time are gone, which is an
    // error, never a different head. Proofs for the remaining records verify against heads
    // of the whole history.
    for head in &old_heads {
        let size = head.tree_size;
        match log.tree_head(Some(size)) {
            Ok(now) => assert_eq!(&now, head),
            Err(StorageError::Proof { .. }) => {
                assert!(size % 256 != 0 && size <= removed, "head {size} must still be there");
            }
            Err(other) => panic!("head {size}: {other}"),
        }
    }
    assert!(log.tree_head(Some(256)).is_ok());
    // Asking about removed records never costs the pages that keep those heads.
    let gone = log.inclusion_proof(offsets[10], None);
    assert!(
        matches!(gone, Err(StorageError::InvalidOffset { .. } | StorageError::Proof { .. })),
        "{gone:?}"
    );
    assert_eq!(log.rollup_report().pages_rebuilt, 0);
    assert!(log.rollup_report().dropped.is_none());
    let last = old_heads.last().unwrap();
    let proof = log.inclusion_proof(offsets[4000], Some(5000)).unwrap();
    proof.verify(Some(&last.root)).unwrap();
    log.consistency_proof(1000, Some(5000))
        .unwrap()
        .verify(Some((&old_heads[3].root, &last.root)))
        .unwrap();
    // Appending goes on, and the tree grows on from the full history.
    let next = log.append(&payload(5000)).unwrap();
    assert_eq!(log.tree_head(None).unwrap().tree_size, 5001);
    log.inclusion_proof(next, None).unwrap();
    log.close().unwrap();

    // After a reopen (writer and reader) the log begins at the new start.
    for log in
        [Log::open_with(dir.path(), options()).unwrap(), Log::open_read_only(dir.path()).unwrap()]
    {
        assert_eq!(log.start_offset(), new_start);
        assert_eq!(log.tree_head(Some(5000)).unwrap(), *last);
        assert_eq!(records_from(&log, new_start).len() as u64, 5001 - removed);
    }
}

#[test]
fn retention_waits_for_consumers_and_for_the_pages_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = build(dir.path(), 3000);
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let mut consumer = log.consumer("projection").unwrap();
    consumer.commit(offsets[100]).unwrap();
    let report = log.truncate_before(offsets[2900]).unwrap();
    assert!(report.start_offset <= offsets[100], "{report:?}");
    assert!(report.limited_by.as_deref().unwrap_or("").contains("projection"), "{report:?}");
    consumer.commit(offsets[2000]).unwrap();
    let report = log.truncate_before(offsets[2900]).unwrap();
    assert!(
        report.start_offset > offsets[100] && report.start_offset <= offsets[2000],
        "{report:?}"
    );
    drop(log);

    // Without stored pages, only a forced removal goes ahead, and the tree then refuses to
    // answer rather than number the entries wrongly.
    let dir = tempfile::tempdir().unwrap();
    let no_pages = Options { merkle_rollup: false, ..options() };
    let mut log = Log::open_with(dir.path(), no_pages.clone()).unwrap();
    let offsets: Vec<u64> = (0..3000).map(|i| log.append(&payload(i)).unwrap()).collect();
    let report = log.truncate_before(offsets[2000]).unwrap();
    assert!(report.segments_removed.is_empty(), "{report:?}");
    let report = log.truncate_before_forced(offsets[2000]).unwrap();
    assert!(!report.segments_removed.is_empty());
    assert!(matches!(log.tree_head(None), Err(StorageError::Proof { .. })));
    drop(log);
    let log = Log::open_with(dir.path(), no_pages).unwrap();
    assert!(matches!(log.tree_head(None), Err(StorageError::Proof { .. })));
}

#[test]
fn a_replay_running_during_retention_reads_every_record_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = build(dir.path(), 3000);
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let mut replay = log.replay(0);
    let first: Vec<_> = replay.by_ref().take(10).map(|r| r.unwrap().offset).collect();
    let mut follow = log.follow(0);
    let report = log.truncate_before(offsets[2500]).unwrap();
    assert!(!report.segments_removed.is_empty());
    let rest: Vec<u64> = replay.map(|r| r.unwrap().offset).collect();
    assert_eq!(first.len() + rest.len(), 3000);
    let mut followed = Vec::new();
    while followed.len() < 3000 {
        match follow.next_timeout(std::time::Duration::from_secs(5)) {
            chronicle::Next::Record(r) => followed.push(r.offset),
            chronicle::Next::CaughtUp => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(followed, offsets);
}

#[test]
fn a_crash_between_the_start_record_and_the_removal_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = build(dir.path(), 3000);
    let backup = tempfile::tempdir().unwrap();
    for e in fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), backup.path().join(e.file_name())).unwrap();
    }
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.truncate_before(offsets[2000]).unwrap();
    log.close().unwrap();
    // Put the removed segment files back: as if the crash came after the start record was
    // written and before the files were removed.
    for path in &report.segments_removed {
        fs::copy(backup.path().join(path.file_name().unwrap()), path).unwrap();
    }
    let reader = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.start_offset(), report.start_offset, "a reader skips them");
    drop(reader);
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.start_offset(), report.start_offset);
    assert_eq!(
        segment_bases(dir.path()).first(),
        Some(&report.start_offset),
        "the writer removes them"
    );
    drop(log);

    // A damaged start record refuses the log; so does one of another log.
    let start = dir.path().join("START");
    let good = fs::read(&start).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 1;
    fs::write(&start, &bad).unwrap();
    assert!(matches!(Log::open_read_only(dir.path()), Err(StorageError::BrokenChain { .. })));
    let other = tempfile::tempdir().unwrap();
    let other_offsets = build(other.path(), 3000);
    Log::open_with(other.path(), options()).unwrap().truncate_before(other_offsets[2000]).unwrap();
    fs::copy(other.path().join("START"), &start).unwrap();
    assert!(Log::open_read_only(dir.path()).is_err());
    fs::write(&start, &good).unwrap();
    assert!(Log::open_read_only(dir.path()).is_ok());
}

/// What the damage campaign could only catch at replay: a log whose first segment file is
/// missing read as a shorter log that begins later. Without a start record, the first segment
/// must follow no other; with one, it must begin where the record says.
#[test]
fn a_missing_first_segment_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3000);
    let bases = segment_bases(dir.path());
    fs::remove_file(dir.path().join(format!("{:020}.seg", bases[0]))).unwrap();
    for open in [Log::open_read_only(dir.path()), Log::open_with(dir.path(), options())] {
        match open {
            Err(StorageError::BrokenChain { reason, .. }) => {
                assert!(reason.contains("missing"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    // With a start record, a missing segment after its start is refused too.
    let dir = tempfile::tempdir().unwrap();
    let offsets = build(dir.path(), 3000);
    let report =
        Log::open_with(dir.path(), options()).unwrap().truncate_before(offsets[1000]).unwrap();
    fs::remove_file(dir.path().join(format!("{:020}.seg", report.start_offset))).unwrap();
    assert!(matches!(Log::open_read_only(dir.path()), Err(StorageError::BrokenChain { .. })));
}

#[test]
fn an_event_log_after_retention_answers_only_for_remaining_events_and_keeps_versions() {
    use chronicle::{Event, EventLog, ExpectedVersion};
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), options()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..3000u64 {
        let event = Event::builder(["a", "b"][(i % 2) as usize])
            .aggregate_id(i % 3)
            .payload(payload(i))
            .build();
        offsets.push(log.append(&event).unwrap());
    }
    let report = log.truncate_before(offsets[2000]).unwrap();
    let start = report.start_offset;
    assert!(start > 0);
    let remaining = offsets.iter().filter(|&&o| o >= start).count();
    let of_0 = log.load_aggregate(0).unwrap();
    assert!(of_0.iter().all(|e| e.offset >= start));
    assert_eq!(
        of_0.len(),
        offsets.iter().enumerate().filter(|(i, &o)| i % 3 == 0 && o >= start).count()
    );
    assert_eq!(
        log.events_of_type("a", 0).count(),
        offsets.iter().enumerate().filter(|(i, &o)| i % 2 == 0 && o >= start).count()
    );
    assert_eq!(log.events_in_time_range(0, u64::MAX).count(), remaining);
    // Versions continue from the whole history.
    assert_eq!(log.aggregate_version(1).unwrap(), Some(999));
    log.append_expecting(
        ExpectedVersion::Exact(999),
        &[Event::builder("c").aggregate_id(1).build()],
    )
    .unwrap();
    log.close().unwrap();
    let log = EventLog::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.aggregate_version(1).unwrap(), Some(1000));
    assert_eq!(log.replay(start).count(), remaining + 1);
}

#[test]
fn size_and_age_policies_trim_the_front_as_segments_fill_and_wait_for_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 64u64 << 10;
    let by_size = Options { retention_max_bytes: Some(4 * segment), ..options() };
    let mut log = Log::open_with(dir.path(), by_size).unwrap();
    let mut offsets = Vec::new();
    for i in 0..20_000u64 {
        offsets.push(log.append(&payload(i)).unwrap());
    }
    assert!(log.retention_error().is_none(), "{:?}", log.retention_error());
    let (start, end) = (log.start_offset(), log.end_offset());
    assert!(start > 0, "the size policy removed nothing");
    // At least the limit is kept, and not much more than a segment and the pages' lag beyond it.
    assert!(end - start >= 4 * segment, "{start}..{end}");
    assert!(end - start < 12 * segment, "{start}..{end}");
    let first = offsets.iter().position(|&o| o == start).unwrap() as u64;
    let kept: Vec<(u64, Vec<u8>)> = records_from(&log, start);
    assert_eq!(kept.len() as u64, 20_000 - first);
    assert_eq!(kept[0].1, payload(first));
    // A lagging consumer holds the policy back.
    let mut consumer = log.consumer("slow").unwrap();
    consumer.commit(log.start_offset()).unwrap();
    let held = log.start_offset();
    for i in 20_000..30_000u64 {
        log.append(&payload(i)).unwrap();
    }
    assert_eq!(log.start_offset(), held, "retention went past the consumer");
    drop(log);

    // Age zero: every segment but the newest may go once the pages cover it.
    let dir = tempfile::tempdir().unwrap();
    let by_age = Options { retention_max_age: Some(std::time::Duration::ZERO), ..options() };
    let mut log = Log::open_with(dir.path(), by_age).unwrap();
    for i in 0..20_000u64 {
        log.append(&payload(i)).unwrap();
    }
    assert!(log.start_offset() > 0);
    assert!(segment_bases(dir.path()).len() < 12, "{:?}", segment_bases(dir.path()));
    assert_eq!(log.tree_head(None).unwrap().tree_size, 20_000);
}
