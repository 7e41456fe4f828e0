//! Damage campaigns: single-bit flips over every file of a closed and of a crashed ("live")
//! event log, and structural faults (missing, truncated, reordered, stale and foreign files in
//! every position). Whatever the damage, the log either gives back exactly what was written
//! (records, index answers, tree head) or says something is wrong: a result that returns
//! wrong, missing or extra records without an error is counted as silent and fails the test.
//!
//! `CHRONICLE_FLIPS` sets the number of flips (default 10,000, split between the two logs);
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

/// What a log must give back: its events, and the tree head of every size a reader may see.
struct Expected {
    events: Vec<EventEnvelope>,
    /// Events no crash may lose.
    acknowledged: usize,
    heads: BTreeMap<u64, TreeHead>,
}

/// Writes `n` events and closes the log, or (if `crash`) syncs only the first `n / 2` and
/// leaves the rest unsynced when the writer goes away without closing.
fn build(dir: &Path, n: u64, crash: bool) -> Expected {
    let mut log = EventLog::open_with(dir, options()).unwrap();
    for i in 0..n {
        log.append(&event(i)).unwrap();
        if i == n / 2 {
            log.sync().unwrap();
            log.checkpoint().unwrap();
        }
        if i % 300 == 0 {
            log.log().tree_head(None).unwrap();
        }
    }
    let events: Vec<EventEnvelope> = log.replay(0).map(|e| e.unwrap()).collect();
    let first = if crash { n / 2 + 1 } else { n };
    let heads = (first..=n).map(|size| (size, log.log().tree_head(Some(size)).unwrap())).collect();
    if crash {
        drop(log);
    } else {
        log.close().unwrap();
    }
    Expected { events, acknowledged: first as usize, heads }
}

/// How one damaged log behaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Everything given back, exactly.
    Intact,
    /// Unacknowledged events past a crash dropped; everything given back is right.
    ShorterAfterCrash,
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
    for item in log.replay(0) {
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
    match (log.log().tree_head(None), expected.heads.get(&(got.len() as u64))) {
        (Ok(head), Some(want)) if head == *want => {}
        (Ok(head), _) => return (Outcome::Silent, format!("tree head {head:?}")),
        (Err(e), _) => return (Outcome::Detected, format!("tree head: {e}")),
    }
    match got.len() == expected.events.len() {
        true => (Outcome::Intact, String::new()),
        false => (Outcome::ShorterAfterCrash, String::new()),
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
    for (name, crash, share) in
        [("closed", false, flips * 6 / 10), ("crashed", true, flips * 4 / 10)]
    {
        let dir = tempfile::tempdir().unwrap();
        let expected = build(dir.path(), 1_200, crash);
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

fn fixture(n: u64, segment_bytes: u64) -> Fixture {
    let options = Options { segment_bytes, ..Options::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..n / 2 {
        log.append(&event(i)).unwrap();
    }
    log.log().tree_head(None).unwrap();
    log.close().unwrap();
    let stale = copy_dir(dir.path());
    let mut log = EventLog::open_with(dir.path(), options.clone()).unwrap();
    for i in n / 2..n {
        log.append(&event(i)).unwrap();
    }
    let events: Vec<EventEnvelope> = log.replay(0).map(|e| e.unwrap()).collect();
    let head = log.log().tree_head(None).unwrap();
    log.close().unwrap();
    let foreign = tempfile::tempdir().unwrap();
    let mut other = EventLog::open_with(foreign.path(), options).unwrap();
    for i in 0..n {
        other.append(&event(i)).unwrap();
    }
    other.log().tree_head(None).unwrap();
    other.close().unwrap();
    let heads = BTreeMap::from([(n, head)]);
    let expected = Expected { events, acknowledged: n as usize, heads };
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
        for cut in [0, 64.min(bytes.len()), bytes.len() / 2] {
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
    // Several segments, and a log of only one.
    for (n, segment_bytes) in [(1_200, 16 << 10), (300, 1 << 20)] {
        let f = fixture(n, segment_bytes);
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
