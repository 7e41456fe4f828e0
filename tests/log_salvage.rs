//! The salvage repair on logs damaged at random places: frame headers (lengths, offsets,
//! checksums, flags) and payloads, in sealed segments and the active one, several spans at
//! once. Every intact record must keep its offset and bytes, every damaged span must be
//! reported and become a gap, and a second `verify` must report the gaps and nothing else.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chronicle::{Event, EventLog, Log, Options, RecoveryMode, RepairReport, StorageError};
use common::{
    copy_dir, file_pos, flip_bit, frame_len, segment_of, segments, small, stride, varied_lens, Rec,
    Rng,
};

const MAX: u64 = 300;

fn salvage() -> Options {
    Options { recovery: RecoveryMode::Salvage, ..small(MAX) }
}

/// Replays `log` from its start: the records, and the gaps in order.
fn records_and_gaps(log: &Log) -> (Vec<Rec>, Vec<(u64, u64)>) {
    let (mut recs, mut gaps) = (Vec::new(), Vec::new());
    for item in log.replay(log.start_offset()) {
        match item {
            Ok(r) => recs.push(Rec { offset: r.offset, payload: r.payload.to_vec() }),
            Err(StorageError::Gap { start, end, .. }) => gaps.push((start, end)),
            Err(other) => panic!("replay after salvage failed: {other}"),
        }
    }
    (recs, gaps)
}

/// The spans a salvage must report for the damaged records `hit` (indexes into `recs`): each
/// run of consecutive damaged records in one segment, from the first one's offset to the
/// next intact record's offset, or to the end of the segment's data.
fn expected_spans(dir: &Path, recs: &[Rec], hit: &BTreeSet<usize>, end: u64) -> Vec<(u64, u64)> {
    let segs = segments(dir);
    let data_end =
        |offset: u64| segs.iter().find(|(base, _)| *base > offset).map_or(end, |(base, _)| *base);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for &i in hit {
        let start = recs[i].offset;
        let seg_end = data_end(start);
        let next = recs.get(i + 1).map_or(end, |r| r.offset).min(seg_end);
        let starts_segment = segs.iter().any(|(base, _)| *base == start);
        match spans.last_mut() {
            Some(last) if last.1 == start && !starts_segment => last.1 = next,
            _ => spans.push((start, next)),
        }
    }
    spans
}

#[test]
fn salvage_keeps_every_intact_record_over_random_damage() {
    let src = tempfile::tempdir().unwrap();
    let recs = common::build_log(src.path(), MAX, &varied_lens(240, MAX as usize));
    let end = recs.last().map(|r| r.offset + stride(r.payload.len())).unwrap();
    assert!(segments(src.path()).len() >= 8);
    for seed in 0..100u64 {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        // One to five damaged records, some next to each other, one bit each, anywhere in
        // the checked bytes of the frame (its header, length and checksum included).
        let mut hit = BTreeSet::new();
        for _ in 0..=rng.below(5) {
            let i = rng.below(recs.len() as u64) as usize;
            hit.insert(i);
            if rng.below(4) == 0 && i + 1 < recs.len() {
                hit.insert(i + 1);
            }
        }
        for &i in &hit {
            let r = &recs[i];
            let (base, path) = segment_of(dir.path(), r.offset);
            let at = rng.below(frame_len(r.payload.len()));
            flip_bit(&path, file_pos(base, r.offset) + at, rng.below(8) as u8);
        }
        let expected = expected_spans(dir.path(), &recs, &hit, end);

        let plan = Log::plan_repair(dir.path(), RecoveryMode::Salvage).unwrap();
        assert!(!plan.applied);
        let log = Log::open_with(dir.path(), salvage()).unwrap();
        let report: RepairReport = log.open_report().repair.clone().expect("no repair report");
        let spans: Vec<(u64, u64)> = report.damaged.iter().map(|d| (d.start, d.end)).collect();
        assert_eq!(spans, expected, "seed {seed}: damaged spans");
        assert_eq!(plan.damaged, report.damaged, "seed {seed}: the plan differs from the repair");
        assert_eq!(report.records_kept, (recs.len() - hit.len()) as u64, "seed {seed}");
        assert_eq!(report.records_dropped, 0, "seed {seed}");
        assert_eq!(log.end_offset(), end, "seed {seed}: the log's end moved");
        // Every intact record, at its offset, with its bytes; the gaps are the spans.
        let (kept, gaps) = records_and_gaps(&log);
        let intact: Vec<Rec> = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| !hit.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(kept, intact, "seed {seed}: records after salvage");
        assert_eq!(gaps, expected, "seed {seed}: gaps in replay");
        assert_eq!(log.verify().unwrap().gaps, expected, "seed {seed}: gaps in verify");
        // The damaged bytes are kept beside the log, one file per span.
        assert_eq!(report.saved.len(), expected.len(), "seed {seed}");
        for (path, (start, stop)) in report.saved.iter().zip(&expected) {
            assert_eq!(fs::metadata(path).unwrap().len(), stop - start, "seed {seed}");
        }
        log.close().unwrap();
        // A strict reopen finds nothing; a second repair finds nothing to mend.
        let log = Log::open_with(dir.path(), small(MAX)).unwrap();
        assert_eq!(log.open_report().torn_tail, None);
        assert_eq!(log.verify().unwrap().gaps, expected);
        drop(log);
        let again = Log::plan_repair(dir.path(), RecoveryMode::Salvage).unwrap();
        assert!(!again.damage_found(), "seed {seed}: {again:?}");
        // Only segments that hold a gap have version 2.
        let gap_segments: BTreeSet<u64> =
            expected.iter().map(|(start, _)| segment_of(dir.path(), *start).0).collect();
        for (base, path) in segments(dir.path()) {
            let version = u16::from_le_bytes(fs::read(&path).unwrap()[4..6].try_into().unwrap());
            assert_eq!(version, if gap_segments.contains(&base) { 2 } else { 1 }, "seed {seed}");
        }
    }
}

/// A repair stopped by a crash after writing a gap that ends a sealed segment, before the
/// next header names it: the log refuses a strict open, and the next repair finishes it.
#[test]
fn a_repair_interrupted_before_the_relink_is_finished_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let recs = common::build_log(dir.path(), MAX, &varied_lens(80, MAX as usize));
    let segs = segments(dir.path());
    let (next_base, next_path) = segs[2].clone();
    let last_of_sealed = recs.iter().rposition(|r| r.offset < next_base).unwrap();
    let r = &recs[last_of_sealed];
    flip_bit(&segs[1].1, file_pos(segs[1].0, r.offset) + 40, 1);
    let old_header = fs::read(&next_path).unwrap()[..64].to_vec();
    let log = Log::open_with(dir.path(), salvage()).unwrap();
    assert_eq!(log.open_report().repair.as_ref().unwrap().damaged.len(), 1);
    drop(log);
    // Undo the relink, as a crash before it would have left the file.
    common::write_at(&next_path, 0, &old_header);
    assert!(matches!(
        Log::open_with(dir.path(), small(MAX)),
        Err(StorageError::BrokenChain { .. })
    ));
    let log = Log::open_with(dir.path(), salvage()).unwrap();
    assert!(!log.open_report().repair.as_ref().unwrap().damage_found());
    drop(log);
    let log = Log::open_with(dir.path(), small(MAX)).unwrap();
    let (kept, gaps) = records_and_gaps(&log);
    assert_eq!(kept.len(), recs.len() - 1);
    assert_eq!(gaps, vec![(r.offset, next_base)]);
}

/// An event log over a salvaged log: its indexes skip the gap, a stored index is used again,
/// and queries return the events that survived.
#[test]
fn an_event_log_opens_and_indexes_across_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let mut events = EventLog::open_with(dir.path(), options.clone()).unwrap();
    let offsets: Vec<u64> = (0..120u64)
        .map(|i| {
            let event =
                Event::builder("deposit").aggregate_id(i % 3).payload(vec![i as u8; 20]).build();
            events.append(&event).unwrap()
        })
        .collect();
    events.close().unwrap();
    let damaged = offsets[50];
    let (base, path) = segment_of(dir.path(), damaged);
    flip_bit(&path, file_pos(base, damaged) + 33, 0);
    assert!(
        EventLog::open_with(dir.path(), options.clone()).is_err() || {
            // A strict open may succeed (the damage lies before the recorded durable end, which a
            // clean open does not read); a full check then finds it.
            Log::open_read_only(dir.path()).unwrap().verify().is_err()
        }
    );
    let repaired = Options { recovery: RecoveryMode::Salvage, ..options.clone() };
    drop(Log::open_with(dir.path(), repaired).unwrap());
    fs::remove_file(dir.path().join(chronicle::INDEX_FILE_NAME)).ok();
    let events = EventLog::open_with(dir.path(), options.clone()).unwrap();
    let of_one: Vec<u64> =
        events.load_aggregate(50 % 3).unwrap().iter().map(|e| e.offset).collect();
    let expected: Vec<u64> = offsets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 50 % 3 && *i != 50)
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(of_one, expected);
    events.close().unwrap();
    let events = EventLog::open_with(dir.path(), options).unwrap();
    assert!(events.index_report().loaded, "{:?}", events.index_report());
    assert_eq!(events.events_of_type("deposit", 0).count(), 119);
}

/// A repair interrupted after saving a damaged span's bytes, and after starting to overwrite
/// them, saves nothing over that copy when run again: the copy holds the bytes as they were.
#[test]
fn an_earlier_copy_of_a_damaged_span_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let recs = common::build_log(dir.path(), MAX, &varied_lens(40, MAX as usize));
    let r = &recs[5];
    let (base, path) = segment_of(dir.path(), r.offset);
    flip_bit(&path, file_pos(base, r.offset) + 33, 3);
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(format!(".damaged-{:020}", r.offset));
    let copy = dir.path().join(name);
    fs::write(&copy, b"the bytes an interrupted repair saved").unwrap();
    let log = Log::open_with(dir.path(), salvage()).unwrap();
    assert_eq!(log.open_report().repair.as_ref().unwrap().saved, vec![copy.clone()]);
    assert_eq!(fs::read(&copy).unwrap(), b"the bytes an interrupted repair saved");
}
