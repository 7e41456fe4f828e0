//! Appending and reading back: round trips across many segment rolls, the record size limit,
//! and replay / `replay_until` / `read_at` at every record boundary, inside frames, at the
//! end and past it, through `Log`, `LogReader` and a read-only open.

mod common;

use chronicle::{Log, LogReader, Record, Replay, StorageError};
use common::{
    all, append_all, assert_invalid_offset, dir_bytes, drain, payload, segment_bytes, segments,
    small, stride, varied_lens, Rec, CAPACITY, FRAME_HEADER_LEN, SEGMENT_BYTES,
};

/// The read side of a log, so every check runs through each way of reading.
trait Source {
    fn replay(&self, from: u64) -> Replay;
    fn replay_until(&self, from: u64, until: u64) -> Replay;
    fn read_at(&self, offset: u64) -> chronicle::Result<Record>;
    fn end(&self) -> u64;
}

impl Source for Log {
    fn replay(&self, from: u64) -> Replay {
        Log::replay(self, from)
    }
    fn replay_until(&self, from: u64, until: u64) -> Replay {
        Log::replay_until(self, from, until)
    }
    fn read_at(&self, offset: u64) -> chronicle::Result<Record> {
        Log::read_at(self, offset)
    }
    fn end(&self) -> u64 {
        self.end_offset()
    }
}

impl Source for LogReader {
    fn replay(&self, from: u64) -> Replay {
        LogReader::replay(self, from)
    }
    fn replay_until(&self, from: u64, until: u64) -> Replay {
        LogReader::replay_until(self, from, until)
    }
    fn read_at(&self, offset: u64) -> chronicle::Result<Record> {
        LogReader::read_at(self, offset)
    }
    fn end(&self) -> u64 {
        self.end_offset()
    }
}

/// Asserts that a replay's first item is `InvalidOffset` for `offset` and that it then ends.
fn assert_replay_invalid(replay: Replay, offset: u64) {
    let (recs, err) = drain(replay);
    assert!(recs.is_empty(), "replay from {offset} yielded records {recs:?}");
    assert_invalid_offset(&err.expect("expected InvalidOffset, replay ended cleanly"), offset);
}

/// Everything about reading `recs` (the whole log, in order) through `src`.
/// `pair_step` thins the `replay_until` matrix (1 = every boundary as `from`).
fn check_reads(src: &dyn Source, recs: &[Rec], pair_step: usize) {
    let end = recs.last().map_or(0, |r| r.offset + stride(r.payload.len()));
    assert_eq!(src.end(), end);
    let boundaries: Vec<u64> = recs.iter().map(|r| r.offset).chain([end]).collect();

    // From every boundary (the end included): exactly the suffix.
    for (i, &from) in boundaries.iter().enumerate() {
        assert_eq!(all(src.replay(from)), recs[i..], "replay({from})");
    }

    // `replay_until` for every boundary against a spread of `until` values: at boundaries,
    // inside frames (aligned and not), equal to and below `from`, at the end, past the end.
    let mut untils: Vec<u64> = vec![0, 1, end, end + 1, end + 8, end + 4096, u64::MAX];
    for &b in &boundaries {
        untils.extend([b, b + 1, b + 8, b.saturating_sub(8), b + 31]);
    }
    let last = boundaries.len() - 1;
    for (i, &from) in boundaries.iter().enumerate() {
        if i % pair_step != 0 && i != last {
            continue;
        }
        for &until in &untils {
            let expected: Vec<Rec> =
                recs[i..].iter().filter(|r| r.offset < until).cloned().collect();
            assert_eq!(
                all(src.replay_until(from, until)),
                expected,
                "replay_until({from}, {until})"
            );
        }
    }

    // `read_at` at every boundary returns that record, with the replay's timestamp.
    let timestamps: Vec<u64> = src.replay(0).map(|r| r.unwrap().write_timestamp_ms).collect();
    for (rec, ts) in recs.iter().zip(&timestamps) {
        let got = src.read_at(rec.offset).unwrap();
        assert_eq!(got.offset, rec.offset);
        assert_eq!(&*got.payload, &rec.payload[..]);
        assert_eq!(got.write_timestamp_ms, *ts);
    }
    assert!(timestamps.windows(2).all(|w| w[0] <= w[1]), "timestamps decrease");

    // Inside frames: every non-boundary position of a few frames (header, payload, padding).
    let mut probe: Vec<usize> = vec![0, recs.len() - 1];
    probe.extend(recs.iter().position(|r| r.payload.is_empty()));
    let max_len = recs.iter().map(|r| r.payload.len()).max().unwrap();
    probe.extend(recs.iter().position(|r| r.payload.len() == max_len));
    // The first record of the second and of the last segment, which start at a segment base.
    let bases: Vec<u64> = segments_of(recs);
    for base in [bases[1], *bases.last().unwrap()] {
        probe.extend(recs.iter().position(|r| r.offset == base));
    }
    for &i in &probe {
        let r = &recs[i];
        for p in r.offset + 1..r.offset + stride(r.payload.len()) {
            assert_replay_invalid(src.replay(p), p);
            assert_replay_invalid(src.replay_until(p, u64::MAX), p);
            assert_replay_invalid(src.replay_until(p, p), p);
            assert_replay_invalid(src.replay_until(p, 0), p);
            assert_invalid_offset(&src.read_at(p).unwrap_err(), p);
        }
    }

    // At the end: empty and no error. Past the end: InvalidOffset.
    assert_eq!(all(src.replay(end)), vec![]);
    assert_eq!(all(src.replay_until(end, u64::MAX)), vec![]);
    assert_invalid_offset(&src.read_at(end).unwrap_err(), end);
    for p in (end + 1..end + 80).chain([end + 4096, end + CAPACITY, u64::MAX - 7, u64::MAX]) {
        assert_replay_invalid(src.replay(p), p);
        assert_replay_invalid(src.replay_until(p, u64::MAX), p);
        assert_invalid_offset(&src.read_at(p).unwrap_err(), p);
    }
}

/// Base offsets of segments as implied by the records: a record starts a new segment when it
/// does not fit in the rest of the current one.
fn segments_of(recs: &[Rec]) -> Vec<u64> {
    let mut bases = vec![0];
    for r in recs {
        let base = *bases.last().unwrap();
        if r.offset + stride(r.payload.len()) > base + CAPACITY {
            bases.push(r.offset);
        }
    }
    bases
}

#[test]
fn round_trip_varied_sizes_across_many_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let max = 500usize;
    let lens = varied_lens(240, max);
    assert!(lens.contains(&0) && lens.contains(&max));
    let recs = {
        let mut log = Log::open_with(dir.path(), small(max as u64)).unwrap();
        let recs = append_all(&mut log, 0, &lens);
        assert_eq!(all(log.replay(0)), recs);
        log.close().unwrap();
        recs
    };
    let files = segments(dir.path());
    let bases: Vec<u64> = files.iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, segments_of(&recs), "segment bases differ from the roll rule");
    assert!(bases.len() >= 14, "only {} segments", bases.len());
    for (_, path) in &files {
        assert_eq!(std::fs::metadata(path).unwrap().len(), SEGMENT_BYTES);
    }

    let log = Log::open_with(dir.path(), small(max as u64)).unwrap();
    assert_eq!(log.open_report().segments, bases.len());
    assert_eq!(all(log.replay(0)), recs);
    for r in &recs {
        assert_eq!(&*log.read_at(r.offset).unwrap().payload, &r.payload[..]);
    }
    assert_eq!(log.verify().unwrap().records, recs.len() as u64);
    assert_eq!(log.verify().unwrap().payload_bytes, lens.iter().sum::<usize>() as u64);
}

#[test]
fn records_of_the_largest_size_fill_a_segment_each() {
    // With 4 KiB segments, the largest record the options allow (4096 - 64 - 32 bytes) is a
    // frame that fills a whole data region.
    let dir = tempfile::tempdir().unwrap();
    let max = (SEGMENT_BYTES - 64 - FRAME_HEADER_LEN) as usize;
    assert_eq!(stride(max), CAPACITY);
    let lens = [max, 0, max, max, 0, 0, max];
    let recs = {
        let mut log = Log::open_with(dir.path(), small(max as u64)).unwrap();
        let recs = append_all(&mut log, 0, &lens);
        log.close().unwrap();
        recs
    };
    let offsets: Vec<u64> = recs.iter().map(|r| r.offset).collect();
    let c = CAPACITY;
    assert_eq!(offsets, [0, c, c + 32, 2 * c + 32, 3 * c + 32, 3 * c + 64, 3 * c + 96]);
    let bases: Vec<u64> = segments(dir.path()).iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, [0, c, c + 32, 2 * c + 32, 3 * c + 32, 3 * c + 96]);
    let log = Log::open_with(dir.path(), small(max as u64)).unwrap();
    assert_eq!(all(log.replay(0)), recs);
    assert_eq!(all(log.replay(c + 32)), recs[2..]);
}

#[test]
fn too_large_records_and_batches_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let max = 1000u64;
    let mut log = Log::open_with(dir.path(), small(max)).unwrap();
    let mut recs = append_all(&mut log, 0, &[10, 999, 1000, 0, 500]);
    let end = log.end_offset();
    // The segment files and the durable record: the writer's helper may meanwhile make the
    // next segment ahead of need (`next.seg.tmp`), which no refused append causes.
    let log_files = |dir: &std::path::Path| {
        let mut files = segment_bytes(dir);
        files.extend(dir_bytes(dir).into_iter().filter(|(name, _)| name.starts_with("DURABLE")));
        files
    };
    let before = log_files(dir.path());

    let too_large = |err: StorageError, len: u64, max: u64| match err {
        StorageError::RecordTooLarge { len: l, max: m } => assert_eq!((l, m), (len, max)),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    };
    too_large(log.append(&payload(1, 1001)).unwrap_err(), 1001, max);
    too_large(log.append_sync(&payload(1, 1001)).unwrap_err(), 1001, max);
    too_large(log.append(&payload(1, 100_000)).unwrap_err(), 100_000, max);
    // One oversized record in a batch refuses the whole batch.
    let batch = [payload(2, 10), payload(3, 1001), payload(4, 10)];
    too_large(log.append_batch(&batch).unwrap_err(), 1001, max);
    // Each record fits, but five frames of 1032 bytes do not fit in one 4032-byte region.
    let batch: Vec<Vec<u8>> = (0..5).map(|i| payload(i, 1000)).collect();
    too_large(log.append_batch(&batch).unwrap_err(), 5 * 1032, CAPACITY);
    too_large(log.append_batch_sync(&batch).unwrap_err(), 5 * 1032, CAPACITY);
    assert_eq!(log.append_batch::<Vec<u8>>(&[]).unwrap(), Vec::<u64>::new());

    assert_eq!(log.end_offset(), end);
    assert_eq!(all(log.replay(0)), recs);
    assert_eq!(log_files(dir.path()), before, "a refused append changed the files");

    // The log is still usable, and the next record lands at the old end.
    recs.extend(append_all(&mut log, 10, &[1000]));
    assert_eq!(recs.last().unwrap().offset, end);
    // A batch that exactly fills a fresh data region is accepted and starts one.
    let batch: Vec<Vec<u8>> = (0..4).map(|i| payload(20 + i, 1008 - 32)).collect();
    let base = log.end_offset();
    let offsets = log.append_batch(&batch).unwrap();
    assert_eq!(offsets, [base, base + 1008, base + 2016, base + 3024]);
    assert_eq!(segments(dir.path()).last().unwrap().0, base);
    for (o, p) in offsets.iter().zip(batch) {
        recs.push(Rec { offset: *o, payload: p });
    }
    log.close().unwrap();
    let log = Log::open_with(dir.path(), small(max)).unwrap();
    assert_eq!(all(log.replay(0)), recs);
}

#[test]
fn replay_bounds_at_every_boundary_through_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let max = 400usize;
    let lens = varied_lens(70, max);
    let mut log = Log::open_with(dir.path(), small(max as u64)).unwrap();
    let recs = append_all(&mut log, 0, &lens);
    assert!(segments(dir.path()).len() >= 4);
    check_reads(&log, &recs, 1);
    check_reads(&log.reader(), &recs, 4);
    // A read-only open next to the live writer sees the same.
    let ro = Log::open_read_only(dir.path()).unwrap();
    check_reads(&ro, &recs, 4);
    drop(ro);
    log.close().unwrap();
    let log = Log::open_with(dir.path(), small(max as u64)).unwrap();
    check_reads(&log, &recs, 3);
    // Read checks (`set_read_checks`) change no answer, through the log and its readers.
    log.set_read_checks(true);
    check_reads(&log, &recs, 3);
    check_reads(&log.reader(), &recs, 5);
    let ro = Log::open_read_only(dir.path()).unwrap();
    ro.set_read_checks(true);
    check_reads(&ro, &recs, 5);
}

/// Read checks read a segment into memory a MiB at a time, and a larger record whole: records
/// on both sides of those windows, some larger than a window, replay alike with and without.
#[test]
fn read_checks_replay_records_larger_than_their_window() {
    let dir = tempfile::tempdir().unwrap();
    let options = chronicle::Options { segment_bytes: 8 << 20, ..chronicle::Options::default() };
    let mut log = Log::open_with(dir.path(), options).unwrap();
    let lens = [100, 3 << 20, 5, (1 << 20) - 40, 1 << 20, 777, (3 << 20) + 3, 0, 4000];
    let mut expected = Vec::new();
    for round in 0..3u8 {
        for (i, &len) in lens.iter().enumerate() {
            let payload = vec![round.wrapping_mul(31).wrapping_add(i as u8); len];
            expected.push((log.append(&payload).unwrap(), payload));
        }
    }
    log.close().unwrap();
    let log = Log::open_read_only(dir.path()).unwrap();
    log.set_read_checks(true);
    assert!(segments(dir.path()).len() >= 3);
    for from in [0, 1, 4, 9, 13, 26] {
        let got: Vec<(u64, Vec<u8>)> = log
            .replay(expected[from].0)
            .map(|r| r.unwrap())
            .map(|r| (r.offset, r.payload.to_vec()))
            .collect();
        assert!(got == expected[from..], "replay from record {from} differs");
    }
    log.set_read_checks(false);
    assert_eq!(log.replay(0).count(), expected.len());
}

#[test]
fn empty_log_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let check = |src: &dyn Source| {
        assert_eq!(src.end(), 0);
        assert_eq!(all(src.replay(0)), vec![]);
        assert_eq!(all(src.replay_until(0, 0)), vec![]);
        assert_eq!(all(src.replay_until(0, u64::MAX)), vec![]);
        for p in [1, 4, 8, 16, 4096, u64::MAX] {
            assert_replay_invalid(src.replay(p), p);
            assert_replay_invalid(src.replay_until(p, u64::MAX), p);
            assert_invalid_offset(&src.read_at(p).unwrap_err(), p);
        }
        assert_invalid_offset(&src.read_at(0).unwrap_err(), 0);
    };
    // A read-only open of an existing directory that holds no segment yet is refused: it is
    // not a log.
    assert!(matches!(
        Log::open_read_only(dir.path()),
        Err(chronicle::StorageError::NotALogDirectory { .. })
    ));
    let log = Log::open_with(dir.path(), small(100)).unwrap();
    check(&log);
    check(&log.reader());
    check(&Log::open_read_only(dir.path()).unwrap());
    log.close().unwrap();
    check(&Log::open_with(dir.path(), small(100)).unwrap());
}

#[test]
fn a_replay_sees_the_records_published_when_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(300)).unwrap();
    let mut recs = append_all(&mut log, 0, &varied_lens(20, 300));
    let reader = log.reader();
    let early = reader.replay(0);
    let early_until = reader.replay_until(recs[3].offset, u64::MAX);
    let more = append_all(&mut log, 20, &varied_lens(30, 300));
    assert_eq!(all(early), recs);
    assert_eq!(all(early_until), recs[3..]);
    recs.extend(more);
    assert_eq!(all(reader.replay(0)), recs);
    assert_eq!(reader.end_offset(), log.end_offset());
}

#[test]
fn a_replay_moved_to_another_thread_outlives_its_log_and_reads_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small(300)).unwrap();
    let recs = append_all(&mut log, 0, &varied_lens(120, 300));
    let bases: Vec<u64> = segments(dir.path()).iter().map(|(base, _)| *base).collect();
    assert!(bases.len() > 3, "the records should span several segments: {bases:?}");
    // Read one record past the first segment on this thread, then close the log: the replay
    // keeps its segments, and reads the rest on another thread.
    let head_len = recs.iter().take_while(|r| r.offset < bases[1]).count() + 1;
    let mut replay = log.replay(0);
    let head: Vec<Rec> = (0..head_len)
        .map(|_| {
            let record = replay.next().unwrap().unwrap();
            Rec { offset: record.offset, payload: record.payload.to_vec() }
        })
        .collect();
    log.close().unwrap();
    let tail = std::thread::spawn(move || all(replay)).join().unwrap();
    assert_eq!(head, recs[..head_len]);
    assert_eq!(tail, recs[head_len..]);
}
