//! The directory target: opening a directory built from fuzz input in every mode and checking
//! what the opens agree on, and its seeds.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::directory_input::{
    build_segments, encode_directory_input, write_files, SegmentSpec, DIR_CLEAN_END,
    DIR_DURABLE_FILE, DIR_STRAY_FILE, DIR_TEMP_FILE, HEADER_CHAINED, HEADER_CHAINED_AT, HEADER_RAW,
    MODE_BAD_LINK, MODE_SCRIPT, MODE_SHORT_FILE, OP_BATCH, OP_FRAME, OP_GAP, OP_GARBAGE, OP_LOSE,
    OP_MISPLACED, OP_SYNC_OR_TORN, OP_UNKNOWN_FLAG, OP_UNSYNCED_SHIFT,
};
use super::{RECORD_BYTES_MAX, SEGMENT_BYTES};
use crate::error::StorageError;
use crate::format::{FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_FILE_SUFFIX};
use crate::log::{Log, Options, RecoveryMode, WithoutBackgroundThreads};

/// A directory under the system's temporary directory, removed when dropped.
pub(super) struct ScratchDir {
    pub(super) path: PathBuf,
}

impl ScratchDir {
    pub(super) fn new() -> ScratchDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("chronicle-fuzz-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return ScratchDir { path },
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => panic!("cannot create scratch directory {}: {err}", path.display()),
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// What a replay of a whole log produced: the intact records, then the error that ended it.
#[derive(Debug, PartialEq, Eq)]
struct Replayed {
    records: Vec<(u64, u64, Vec<u8>)>,
    /// Gaps a repair left, as `[start, end)`.
    gaps: Vec<(u64, u64)>,
    error: Option<String>,
    end: u64,
}

/// Replays `log` from its start and checks the replay invariants.
fn replay_all(log: &Log, what: &str) -> Replayed {
    let start = log.start_offset();
    let end = log.end_offset();
    assert!(start <= end, "{what}: start {start} after end {end}");
    let mut out = Replayed { records: Vec::new(), gaps: Vec::new(), error: None, end };
    let mut replay = log.replay(start);
    let mut previous: Option<u64> = None;
    // A frame takes at least 32 bytes, so a replay has a bounded number of items.
    let bound = (end - start) / FRAME_HEADER_LEN as u64 + 2;
    for item in replay.by_ref() {
        assert!(
            (out.records.len() as u64) < bound,
            "{what}: replay yields more records than fit in {start}..{end}"
        );
        match item {
            Ok(record) => {
                assert!(
                    previous.is_none_or(|p| record.offset > p),
                    "{what}: offsets not strictly increasing: {previous:?} then {}",
                    record.offset
                );
                assert!(
                    record.offset >= start && record.offset < end,
                    "{what}: record at {} outside the log {start}..{end}",
                    record.offset
                );
                assert_eq!(record.offset % FRAME_ALIGN as u64, 0, "{what}: unaligned record");
                previous = Some(record.offset);
                out.records.push((
                    record.offset,
                    record.write_timestamp_ms,
                    record.payload.to_vec(),
                ));
            }
            Err(StorageError::Gap { start: from, end: to, .. }) => {
                assert!(
                    previous.is_none_or(|p| from > p) && from < to && to <= end,
                    "{what}: gap [{from}, {to}) out of order or outside the log"
                );
                previous = Some(from);
                out.gaps.push((from, to));
            }
            Err(err) => {
                out.error = Some(err.to_string());
                break;
            }
        }
    }
    assert!(replay.next().is_none(), "{what}: replay goes on after an error or its end");
    out
}

/// Replays, verifies and, for a clean log, checks single-record reads against the replay.
fn check_log(log: &Log, what: &str) -> Replayed {
    let replayed = replay_all(log, what);
    let verified = log.verify();
    if replayed.error.is_none() {
        for (offset, ts, payload) in replayed.records.iter().take(64) {
            match log.read_at(*offset) {
                Ok(record) => {
                    assert_eq!(record.write_timestamp_ms, *ts, "{what}: read_at timestamp");
                    assert_eq!(&*record.payload, &payload[..], "{what}: read_at payload");
                }
                Err(err) => panic!("{what}: replayed record at {offset} cannot be read: {err}"),
            }
        }
        match verified {
            Ok(report) => assert_eq!(report.records, replayed.records.len() as u64, "{what}"),
            Err(err) => panic!("{what}: replay found no damage but verify did: {err}"),
        }
    } else {
        assert!(verified.is_err(), "{what}: replay failed but verify passed");
    }
    replayed
}

fn small_options(recovery: RecoveryMode) -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: Some(RECORD_BYTES_MAX),
        recovery,
        ..Options::default()
    }
}

/// Opens a directory built from fuzz input in every mode and checks what the opens agree on.
///
/// Input: a flags byte (bits 0–1: number of segments, 1 + value % 3; [`DIR_TEMP_FILE`],
/// [`DIR_STRAY_FILE`], [`DIR_DURABLE_FILE`]), the durable end (`u64`) if that flag is set, then
/// per segment a mode byte (see [`SegmentSpec::mode`] and the
/// `MODE_*` constants), a body length (`u16`, little-endian, at most 8192), for header kind 3
/// the base offset and the durable offset (`u64` each), and the body. Missing bytes read as zero. A frame script is a
/// sequence of three-byte operations `[kind, a, b]` (see the `OP_*` constants): a frame with
/// `a` payload bytes, a gap, garbage, a sync point or a torn frame. Files are padded with zeros
/// to their size (4096 bytes unless the mode says otherwise) and named after their header's
/// base offset.
///
/// Invariants checked: nothing panics; a replay's offsets increase strictly and stay below the
/// end offset; replay and verify agree; a read-only open (with read checks on) and a writer
/// open of the same files see the same records; after a writer open, a second open finds nothing to cut and replays
/// the same records (recovery is idempotent); an append after recovery lands at the end and
/// survives a reopen; after a successful repair every frame verifies and a strict open agrees.
pub fn open_directory(data: &[u8]) {
    let _ = open_directory_outcome(data);
}

/// What [`open_directory`] saw, so tests can check that an input does what it is meant to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryOutcome {
    /// Records a read-only open replayed, or its error.
    pub read_only: Result<usize, String>,
    /// Records a strict writer open replayed, or its error.
    pub writer: Result<usize, String>,
    /// Whether the writer open reported a torn tail.
    pub torn_tail: bool,
    /// Whether a replay after the writer open ended in an error (damage in a sealed segment,
    /// which a strict open does not read).
    pub replay_error: bool,
    /// Records left after a repair open of the same files, or its error.
    pub repaired: Result<usize, String>,
}

/// The body of [`open_directory`], returning what it saw.
#[must_use]
pub fn open_directory_outcome(data: &[u8]) -> DirectoryOutcome {
    let _threads = WithoutBackgroundThreads::new();
    let image = build_segments(data);
    let scratch = ScratchDir::new();
    let dir = scratch.path.join("log");
    let copy = scratch.path.join("copy");
    for path in [&dir, &copy] {
        if let Err(err) = fs::create_dir(path) {
            panic!("cannot create {}: {err}", path.display());
        }
        write_files(path, &image);
    }

    let read_only = Log::open_read_only(&dir).map(|log| {
        // Read checks change no answer: this open has them, the writer's below has not.
        log.set_read_checks(true);
        check_log(&log, "read-only open")
    });

    let strict = small_options(RecoveryMode::Strict);
    let first = Log::open_with(&dir, strict.clone()).map(|log| {
        let replayed = check_log(&log, "writer open");
        (replayed, log.open_report().clone())
    });
    if let (Ok(seen), Ok((replayed, _))) = (&read_only, &first) {
        assert_eq!(seen, replayed, "read-only and writer opens disagree");
    }
    if let Ok((replayed, report)) = &first {
        assert_eq!(report.end_offset, replayed.end);
        let second = match Log::open_with(&dir, strict.clone()) {
            Ok(log) => log,
            Err(err) => panic!("reopen after a successful open failed: {err}"),
        };
        let report = second.open_report().clone();
        assert_eq!(report.torn_tail, None, "second recovery cut more: {report:?}");
        assert_eq!(report.temp_files_removed, 0);
        let again = check_log(&second, "reopen");
        assert_eq!(&again, replayed, "reopen replays different records");
        append_and_reopen(second, &dir, &strict, &again);
    }

    // A salvage works on a pristine copy of the same files; where it refuses (what no gap can
    // mend), a truncation works on another.
    let salvaged = repair_copy(&copy, RecoveryMode::Salvage, &strict);
    let repaired = match salvaged {
        Ok(records) => Ok(records),
        Err(refused) => {
            let again = scratch.path.join("copy-truncated");
            if let Err(err) = fs::create_dir(&again) {
                panic!("cannot create {}: {err}", again.display());
            }
            write_files(&again, &image);
            repair_copy(&again, RecoveryMode::Truncate, &strict).map_err(|_| refused)
        }
    };

    DirectoryOutcome {
        read_only: read_only.map(|r| r.records.len()).map_err(|e| e.to_string()),
        torn_tail: first.as_ref().is_ok_and(|(_, report)| report.torn_tail.is_some()),
        replay_error: first.as_ref().is_ok_and(|(r, _)| r.error.is_some()),
        writer: first.map(|(r, _)| r.records.len()).map_err(|e| e.to_string()),
        repaired: repaired.map_err(|e| e.to_string()),
    }
}

/// Repairs the log in `dir` with `mode` and checks the result: every damaged span reported is
/// a gap, `verify` agrees, and a strict open afterwards finds nothing to do and the same
/// records. Returns the number of records kept.
fn repair_copy(dir: &Path, mode: RecoveryMode, strict: &Options) -> Result<usize, String> {
    let log = Log::open_with(dir, small_options(mode)).map_err(|e| e.to_string())?;
    let replayed = check_log(&log, "repair open");
    assert_eq!(replayed.error, None, "records fail to replay after a repair");
    let spans: Vec<(u64, u64)> = log
        .open_report()
        .repair
        .iter()
        .flat_map(|r| r.damaged.iter().map(|d| (d.start, d.end)))
        .collect();
    if mode == RecoveryMode::Salvage {
        // Every damaged span became a gap (the log may have held gaps before).
        for span in &spans {
            assert!(replayed.gaps.contains(span), "damaged span {span:?} is not a gap");
        }
    }
    let verified = log.verify().map(|v| v.gaps).ok();
    assert_eq!(verified.as_ref(), Some(&replayed.gaps), "verify disagrees on the gaps");
    drop(log);
    match Log::open_with(dir, strict.clone()) {
        Ok(log) => {
            assert_eq!(log.open_report().torn_tail, None, "repair left a torn tail");
            assert_eq!(log.open_report().repair, None, "repair left damage");
            let again = check_log(&log, "open after repair");
            assert_eq!(again, replayed, "strict open after repair disagrees");
        }
        Err(err) => panic!("strict open after a successful repair failed: {err}"),
    }
    Ok(replayed.records.len())
}

/// Appends one record to a recovered log and checks that it lands at the end and survives a
/// reopen along with everything before it.
fn append_and_reopen(mut log: Log, dir: &Path, options: &Options, before: &Replayed) {
    let end = log.end_offset();
    let payload = b"appended after recovery";
    let Ok(offset) = log.append_sync(payload) else {
        return;
    };
    assert_eq!(offset, end, "append after recovery did not land at the end");
    drop(log);
    let log = match Log::open_with(dir, options.clone()) {
        Ok(log) => log,
        Err(err) => panic!("reopen after an append failed: {err}"),
    };
    let after = replay_all(&log, "reopen after append");
    if before.error.is_none() {
        assert_eq!(after.error, None, "the appended log fails to replay");
        assert_eq!(after.records.get(..before.records.len()), Some(&before.records[..]));
        let last = after.records.last().map(|(o, _, p)| (*o, p.as_slice()));
        assert_eq!(last, Some((offset, &payload[..])), "the appended record is lost");
    }
}

/// Inputs for [`open_directory`]: frame scripts for the interesting recovery cases, and images
/// of real logs written through [`Log`] (which is why this does I/O in a scratch directory).
#[must_use]
pub fn seed_directories() -> Vec<(String, Vec<u8>)> {
    let frame = |len: u8, seed: u8| [OP_FRAME, len, seed];
    let frame_with = |bits: u8, len: u8, b: u8| [OP_FRAME | bits, len, b];
    let sync = [OP_SYNC_OR_TORN, 0, 0];
    let script = |ops: &[[u8; 3]]| ops.concat();
    let chained = |body: Vec<u8>| SegmentSpec {
        mode: HEADER_CHAINED | MODE_SCRIPT,
        base: 0,
        durable: 0,
        body,
    };
    let mut seeds = vec![
        (
            // Closed cleanly at 112, the end of its two frames (strides 40 and 72).
            "clean-end".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE | DIR_CLEAN_END,
                112,
                &[chained(script(&[frame(5, 1), frame(40, 2)]))],
            ),
        ),
        (
            // A clean end that lags: a third frame was written after it.
            "clean-end-lagging".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE | DIR_CLEAN_END,
                112,
                &[chained(script(&[frame(5, 1), frame(40, 2), frame(9, 3)]))],
            ),
        ),
        (
            "clean".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), frame(0, 0), frame(40, 2), sync, frame(9, 3)]))],
            ),
        ),
        (
            "torn-tail".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "lost-frame-then-stray".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), sync, [OP_GAP, 4, 0], frame(16, 2)]))],
            ),
        ),
        (
            "damage-before-synced-frame".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[
                    frame(5, 1),
                    sync,
                    [OP_GARBAGE, 20, 0x55],
                    frame_with(1 << OP_UNSYNCED_SHIFT, 16, 2),
                ]))],
            ),
        ),
        (
            "incomplete-batch".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[
                    frame(3, 1),
                    frame_with(OP_BATCH, 3, 2),
                    frame_with(OP_BATCH, 3, 3),
                ]))],
            ),
        ),
        (
            "three-segments".to_string(),
            encode_directory_input(
                2,
                0,
                &[
                    chained(script(&[frame(200, 1), frame(100, 2)])),
                    chained(script(&[frame(10, 3), frame_with(OP_BATCH, 1, 4), frame(2, 5)])),
                    chained(script(&[frame(7, 6), sync, frame(7, 7)])),
                ],
            ),
        ),
        (
            "broken-link".to_string(),
            encode_directory_input(
                1,
                0,
                &[
                    chained(script(&[frame(20, 1)])),
                    SegmentSpec {
                        mode: HEADER_CHAINED | MODE_SCRIPT | MODE_BAD_LINK,
                        base: 0,
                        durable: 0,
                        body: script(&[frame(20, 2)]),
                    },
                ],
            ),
        ),
        (
            "misplaced-and-unknown-flags".to_string(),
            encode_directory_input(
                DIR_TEMP_FILE | DIR_STRAY_FILE,
                0,
                &[chained(script(&[
                    frame(4, 1),
                    sync,
                    frame_with(OP_MISPLACED, 4, 2),
                    frame_with(OP_UNKNOWN_FLAG, 4, 3),
                ]))],
            ),
        ),
        (
            "late-base".to_string(),
            encode_directory_input(
                0,
                0,
                &[SegmentSpec {
                    mode: HEADER_CHAINED_AT | MODE_SCRIPT,
                    base: 1 << 40,
                    durable: 0,
                    body: script(&[frame(12, 1), frame(12, 2)]),
                }],
            ),
        ),
        (
            "short-file".to_string(),
            encode_directory_input(
                0,
                0,
                &[SegmentSpec {
                    mode: HEADER_CHAINED | MODE_SCRIPT | MODE_SHORT_FILE,
                    base: 0,
                    durable: 0,
                    body: script(&[frame(12, 1)]),
                }],
            ),
        ),
        (
            "durable-record-past-torn-tail".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE,
                200,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "durable-record-at-end".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE,
                40,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "torn-across-segments".to_string(),
            encode_directory_input(
                1,
                0,
                &[
                    chained(script(&[
                        frame(200, 1),
                        sync,
                        frame(100, 2),
                        [OP_GAP | OP_LOSE, 0, 0],
                    ])),
                    chained(script(&[frame(10, 3), frame(20, 4)])),
                ],
            ),
        ),
    ];
    seeds.extend(real_log_seeds());
    seeds
}

/// Appends to a freshly created log.
type WriteScenario = fn(&mut Log) -> crate::error::Result<()>;

fn write_one_segment(log: &mut Log) -> crate::error::Result<()> {
    log.append_sync(b"alpha")?;
    log.append_batch(&[&b"batch one"[..], b"batch two"])?;
    log.append(b"unsynced tail")?;
    Ok(())
}

fn write_three_segments(log: &mut Log) -> crate::error::Result<()> {
    for i in 0..36u8 {
        log.append(&vec![i; 200 + usize::from(i)])?;
    }
    log.sync()?;
    log.append(b"last")?;
    Ok(())
}

/// Images of logs written through the real writer, as raw segment bodies.
fn real_log_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let scenarios: [(&str, WriteScenario); 2] =
        [("real-one-segment", write_one_segment), ("real-three-segments", write_three_segments)];
    for (name, write) in scenarios {
        let scratch = ScratchDir::new();
        let Ok(mut log) = Log::open_with(&scratch.path, small_options(RecoveryMode::Strict)) else {
            continue;
        };
        if write(&mut log).is_err() {
            continue;
        }
        drop(log);
        let Ok(entries) = fs::read_dir(&scratch.path) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(SEGMENT_FILE_SUFFIX))
            .collect();
        names.sort();
        let mut specs = Vec::new();
        for file in names.iter().rev().take(3).rev() {
            let Ok(mut contents) = fs::read(scratch.path.join(file)) else {
                continue;
            };
            let used = contents.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            contents.truncate(used);
            specs.push(SegmentSpec { mode: HEADER_RAW, base: 0, durable: 0, body: contents });
        }
        seeds.push((name.to_string(), encode_directory_input(0, 0, &specs)));
    }
    seeds
}
