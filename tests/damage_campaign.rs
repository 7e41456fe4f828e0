//! Damage campaigns: single-bit flips over every file of a closed event log, of one whose
//! front retention removed, and of a crashed ("live") one, and structural faults (missing,
//! truncated, reordered, stale and foreign files in every position). Each log has a consumer
//! position, and the trimmed ones a start record. Whatever the damage, the log either gives
//! back exactly what was written (records, index answers, tree head, the consumer's position)
//! or says something is wrong: a result that returns wrong, missing or extra records without
//! an error, or a consumer position past the one committed, is counted as silent and fails the
//! test. A consumer position read as older than committed, or absent (its file missing or
//! stale), is counted apart: the consumer sees records again and skips none.
//!
//! `CHRONICLE_FLIPS` sets the number of flips (default 10,000, split between the three logs);
//! `CHRONICLE_FLIP_SEED` the seed (printed on failure).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chronicle::rollup::TreeHead;
use chronicle::{Event, EventEnvelope, EventLog, Options};
use common::Rng;

const AGGREGATES: u64 = 7;

fn options() -> Options {
    Options { segment_bytes: 16 << 10, ..Options::default() }
}

fn event(i: u64) -> Event {
    let body: Vec<u8> = (0..(i * 13 % 90)).map(|k| (i + k) as u8).collect();
    Event::builder(if i.is_multiple_of(3) { "opened" } else { "changed" })
        .aggregate_id(i % AGGREGATES)
        .payload(body)
        .build()
}

/// The consumer every test log has.
const CONSUMER: &str = "projection";

/// What a log must give back: its events from its start, the tree head of every size a
/// reader may see, and its consumer's position.
struct Expected {
    events: Vec<EventEnvelope>,
    /// Events no crash may lose.
    acknowledged: usize,
    heads: BTreeMap<u64, TreeHead>,
    /// Where the log begins, and how many records retention removed before that.
    start_offset: u64,
    start_entry: u64,
    /// The position [`CONSUMER`] committed last.
    consumer: u64,
}

impl Expected {
    /// What `log`, a writer, holds from its start, of which the first `acknowledged` events
    /// (all if `None`) must survive, with the tree heads of the sizes a reader may see and the
    /// position of its consumer.
    fn of(log: &EventLog, acknowledged: Option<u64>) -> Expected {
        let reader = log.log().reader();
        let (start_offset, start_entry) = (reader.start_offset(), reader.start_entry());
        let events: Vec<EventEnvelope> = log.replay(start_offset).map(|e| e.unwrap()).collect();
        let first = acknowledged.unwrap_or(events.len() as u64);
        let heads = (first..=events.len() as u64)
            .map(|n| start_entry + n)
            .map(|size| (size, log.log().tree_head(Some(size)).unwrap()))
            .collect();
        let consumer = log.consumer(CONSUMER).unwrap().position().unwrap();
        Expected {
            acknowledged: first as usize,
            events,
            heads,
            start_offset,
            start_entry,
            consumer,
        }
    }
}

/// The shape of a log to damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Closed cleanly.
    Closed,
    /// Closed cleanly after retention removed its first half.
    Trimmed,
    /// Only the first `n / 2` events synced; the writer went away without closing.
    Crashed,
}

/// Writes `n` events, commits a consumer position, and leaves the log as `shape` says.
fn build(dir: &Path, n: u64, shape: Shape) -> Expected {
    let mut log = EventLog::open_with(dir, options()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..n {
        offsets.push(log.append(&event(i)).unwrap());
        if i == n / 2 {
            log.sync().unwrap();
            log.checkpoint().unwrap();
            log.consumer(CONSUMER).unwrap().commit(offsets[(n / 3) as usize]).unwrap();
        }
        if i % 300 == 0 {
            log.log().tree_head(None).unwrap();
        }
    }
    if shape == Shape::Trimmed {
        log.sync().unwrap();
        log.log().tree_head(None).unwrap();
        log.consumer(CONSUMER).unwrap().commit(offsets[(n * 3 / 4) as usize]).unwrap();
        let report = log.truncate_before(offsets[(n / 2) as usize]).unwrap();
        assert!(report.start_offset > 0, "retention removed nothing: {report:?}");
    }
    let expected = Expected::of(&log, (shape == Shape::Crashed).then_some(n / 2 + 1));
    if shape == Shape::Crashed {
        drop(log);
    } else {
        log.close().unwrap();
    }
    expected
}

/// How one damaged log behaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Everything given back, exactly.
    Intact,
    /// Unacknowledged events past a crash dropped; everything given back is right.
    ShorterAfterCrash,
    /// Everything given back is right, but the consumer's position reads as older than the
    /// one committed, or as absent: the consumer sees records again, and skips none.
    ConsumerRewound,
    /// An error said what was wrong; everything given back before it was right.
    Detected,
    /// Something wrong, missing or extra given back without an error.
    Silent,
}

/// Opens `dir` (read-only, or as a writer) and compares everything it gives with `expected`.
fn observe(dir: &Path, writer: bool, expected: &Expected) -> (Outcome, String) {
    let opened = match writer {
        true => EventLog::open_with(dir, options()),
        false => EventLog::open_read_only(dir),
    };
    let log = match opened {
        Ok(log) => log,
        Err(e) => return (Outcome::Detected, format!("open: {e}")),
    };
    let mut got = Vec::new();
    let mut error = None;
    for item in log.replay(expected.start_offset) {
        match item {
            Ok(envelope) => got.push(envelope),
            Err(e) => {
                error = Some(format!("replay: {e}"));
                break;
            }
        }
    }
    if got.len() > expected.events.len() || got[..] != expected.events[..got.len()] {
        return (
            Outcome::Silent,
            format!("{} events, not a prefix of what was written", got.len()),
        );
    }
    if let Some(error) = error {
        return (Outcome::Detected, error);
    }
    if got.len() < expected.acknowledged {
        let what = format!("{} of {} acknowledged events", got.len(), expected.acknowledged);
        return (Outcome::Silent, what);
    }
    // The index answers for exactly the events the log holds.
    for id in 0..AGGREGATES {
        let want: Vec<&EventEnvelope> =
            got.iter().filter(|e| e.event.aggregate_id == Some(id)).collect();
        match log.load_aggregate(id) {
            Ok(found) if found.iter().eq(want.iter().copied()) => {}
            Ok(found) => {
                return (Outcome::Silent, format!("aggregate {id}: {} events", found.len()));
            }
            Err(e) => return (Outcome::Detected, format!("aggregate {id}: {e}")),
        }
    }
    let size = expected.start_entry + got.len() as u64;
    match (log.log().tree_head(None), expected.heads.get(&size)) {
        (Ok(head), Some(want)) if head == *want => {}
        (Ok(head), _) => return (Outcome::Silent, format!("tree head {head:?}")),
        (Err(e), _) => return (Outcome::Detected, format!("tree head: {e}")),
    }
    let rewound = match log.consumer(CONSUMER).map(|c| c.position()) {
        Ok(Some(position)) if position == expected.consumer => false,
        Ok(Some(position)) if position > expected.consumer => {
            return (Outcome::Silent, format!("consumer position {position}"));
        }
        Ok(_) => true,
        Err(e) => return (Outcome::Detected, format!("consumer: {e}")),
    };
    match (rewound, got.len() == expected.events.len()) {
        (true, _) => (Outcome::ConsumerRewound, String::new()),
        (false, true) => (Outcome::Intact, String::new()),
        (false, false) => (Outcome::ShorterAfterCrash, String::new()),
    }
}

/// Every file of `dir`, by name, with its length (empty files cannot be flipped).
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .filter(|(_, len)| *len > 0)
        .collect();
    files.sort();
    files
}

/// The kind of file `path` is, for the counts.
fn kind(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("seg") => "segment",
        Some("chx") => "index",
        Some("pages") => "rollup pages",
        Some("pos") => "consumer",
        _ if path.ends_with("START") => "START",
        _ => "DURABLE",
    }
}

fn flip(path: &Path, pos: u64, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[pos as usize] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

/// Where a flip in `path` lands: mostly in the bytes written, sometimes anywhere (a segment's
/// zero-filled tail included).
fn position(rng: &mut Rng, path: &Path, len: u64, written_end: u64) -> u64 {
    let is_segment = path.extension().is_some_and(|e| e == "seg");
    if is_segment && rng.below(5) != 0 {
        rng.below(written_end.clamp(1, len))
    } else {
        rng.below(len)
    }
}

/// Flips `flips` single bits, one at a time, round-robin over the files of the log in `dir`,
/// each undone before the next; every 25th is also opened by a writer, on a copy.
fn flip_campaign(
    dir: &Path,
    expected: &Expected,
    flips: u64,
    seed: u64,
) -> BTreeMap<(&'static str, Outcome), u64> {
    let mut rng = Rng(seed);
    let mut counts = BTreeMap::new();
    let mut silent = Vec::new();
    let files = files(dir);
    // How far each segment's data is written: up to the end of the log.
    let end = expected.events.last().map_or(0, |e| e.offset) + 4096;
    for n in 0..flips {
        let (path, len) = &files[(n % files.len() as u64) as usize];
        let base = path.file_stem().and_then(|s| s.to_str()?.parse::<u64>().ok()).unwrap_or(0);
        let pos = position(&mut rng, path, *len, 64 + end.saturating_sub(base));
        let bit = rng.below(8) as u8;
        flip(path, pos, bit);
        let mut results = vec![observe(dir, false, expected)];
        if n % 25 == 0 {
            let copy = tempfile::tempdir().unwrap();
            for (file, _) in &files {
                fs::copy(file, copy.path().join(file.file_name().unwrap())).unwrap();
            }
            results.push(observe(copy.path(), true, expected));
        }
        flip(path, pos, bit);
        for (outcome, what) in results {
            *counts.entry((kind(path), outcome)).or_insert(0) += 1;
            if outcome == Outcome::Silent {
                silent.push(format!("{} byte {pos} bit {bit}: {what}", path.display()));
            }
        }
    }
    assert!(silent.is_empty(), "silent results (seed {seed}): {silent:#?}");
    counts
}

fn flips_and_seed() -> (u64, u64) {
    let flips =
        std::env::var("CHRONICLE_FLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let seed = std::env::var("CHRONICLE_FLIP_SEED").ok().and_then(|v| v.parse().ok());
    (flips, seed.unwrap_or(0x5eed_f11e))
}

#[test]
fn single_bit_flips_in_every_file_are_never_silent() {
    let (flips, seed) = flips_and_seed();
    for (name, shape, share) in [
        ("closed", Shape::Closed, flips * 4 / 10),
        ("trimmed", Shape::Trimmed, flips * 2 / 10),
        ("crashed", Shape::Crashed, flips * 4 / 10),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let expected = build(dir.path(), 1_200, shape);
        let names: Vec<String> = files(dir.path())
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let counts = flip_campaign(dir.path(), &expected, share, seed);
        println!("{name} log, {share} flips over {names:?} (every 25th also opened by a writer):");
        for ((kind, outcome), count) in &counts {
            println!("  {kind:>12} {outcome:?}: {count}");
        }
        // The flips were undone: the log is whole again.
        assert_eq!(observe(dir.path(), false, &expected).0, Outcome::Intact);
    }
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for (file, _) in files(from) {
        fs::copy(&file, to.path().join(file.file_name().unwrap())).unwrap();
    }
    to
}

/// A closed log built in two steps, with a copy of its files after the first (the stale
/// versions), and another log of the same shape (the foreign versions).
struct Fixture {
    dir: tempfile::TempDir,
    stale: tempfile::TempDir,
    foreign: tempfile::TempDir,
    expected: Expected,
}

/// Appends events `range` to `log`, commits its consumer at the offset of the event a third
/// of the way into them, and, if `trim`, removes the segments before the event halfway.
fn fixture_step(log: &mut EventLog, range: std::ops::Range<u64>, trim: bool) {
    let offsets: Vec<u64> = range.map(|i| log.append(&event(i)).unwrap()).collect();
    log.sync().unwrap();
    log.log().tree_head(None).unwrap();
    log.consumer(CONSUMER).unwrap().commit(offsets[offsets.len() * 2 / 3]).unwrap();
    if trim {
        let report = log.truncate_before(offsets[offsets.len() / 2]).unwrap();
        assert!(!report.segments_removed.is_empty(), "retention removed nothing: {report:?}");
    }
}

fn fixture(n: u64, segment_bytes: u64, trim: bool) -> Fixture {
    let options = Options { segment_bytes, ..Options::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), options.clone()).unwrap();
    fixture_step(&mut log, 0..n / 2, trim);
    log.close().unwrap();
    let stale = copy_dir(dir.path());
    let mut log = EventLog::open_with(dir.path(), options.clone()).unwrap();
    fixture_step(&mut log, n / 2..n, trim);
    let expected = Expected::of(&log, None);
    log.close().unwrap();
    let foreign = tempfile::tempdir().unwrap();
    let mut other = EventLog::open_with(foreign.path(), options).unwrap();
    fixture_step(&mut other, 0..n / 2, trim);
    fixture_step(&mut other, n / 2..n, trim);
    other.close().unwrap();
    Fixture { dir, stale, foreign, expected }
}

/// One structural fault: a file replaced (`Some` bytes), or removed (`None`).
type Fault = (String, PathBuf, Option<Vec<u8>>);

/// Every structural fault of `fixture`, by name.
fn faults(f: &Fixture) -> Vec<Fault> {
    let mut faults = Vec::new();
    let read = |dir: &Path, name: &str| fs::read(dir.join(name)).ok();
    let names: Vec<String> = files(f.dir.path())
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".seg")).collect();
    for name in &names {
        let path = f.dir.path().join(name);
        let bytes = fs::read(&path).unwrap();
        let at = |what: &str| format!("{what} {}", kind(&path));
        faults.push((at("missing"), path.clone(), None));
        // Cuts shorter than the file (a consumer position or start record is under 64 bytes).
        for cut in [0, 64, bytes.len() / 2].into_iter().filter(|&cut| cut < bytes.len()) {
            faults.push((at("truncated"), path.clone(), Some(bytes[..cut].to_vec())));
        }
        if let Some(stale) = read(f.stale.path(), name).filter(|s| *s != bytes) {
            faults.push((at("stale"), path.clone(), Some(stale)));
        }
        if let Some(foreign) = read(f.foreign.path(), name) {
            faults.push((at("foreign"), path.clone(), Some(foreign)));
        }
    }
    // Neighbouring segments swapped.
    for pair in segments.windows(2) {
        let second = fs::read(f.dir.path().join(pair[1])).unwrap();
        faults.push(("reordered segment".to_string(), f.dir.path().join(pair[0]), Some(second)));
    }
    faults
}

#[test]
fn structural_faults_in_every_position_are_never_silent() {
    let mut counts: BTreeMap<(String, Outcome), u64> = BTreeMap::new();
    let mut silent = Vec::new();
    // Several segments, the same after retention removed the front ones, and a log of only
    // one segment.
    for (n, segment_bytes, trim) in
        [(1_200, 16 << 10, false), (1_200, 16 << 10, true), (300, 1 << 20, false)]
    {
        let f = fixture(n, segment_bytes, trim);
        for (what, path, bytes) in faults(&f) {
            for writer in [false, true] {
                let copy = copy_dir(f.dir.path());
                let target = copy.path().join(path.file_name().unwrap());
                match &bytes {
                    Some(bytes) => fs::write(&target, bytes).unwrap(),
                    None => fs::remove_file(&target).unwrap(),
                }
                let (outcome, detail) = observe(copy.path(), writer, &f.expected);
                *counts.entry((what.clone(), outcome)).or_insert(0) += 1;
                if outcome == Outcome::Silent {
                    silent.push(format!("{what} {}: {detail}", path.display()));
                }
            }
        }
    }
    println!("structural faults (each opened read-only and by a writer):");
    for ((what, outcome), count) in &counts {
        println!("  {what:>26} {outcome:?}: {count}");
    }
    assert!(silent.is_empty(), "silent results: {silent:#?}");
}
