//! Runs the fuzz targets' bodies on stable Rust: every file of the checked-in seed corpus
//! (`fuzz/corpus/<target>/`), then a few hundred deterministic mutations of it.
//!
//! The fuzzers themselves need nightly and run for minutes; this keeps the same invariants
//! checked on every CI run, and fails if a corpus directory goes missing or empty. The bodies
//! are built only with the `internals` feature, so run it with
//! `cargo test --release --features internals --test fuzz_corpus`.
//!
//! To rebuild the hand-made seeds after a format change:
//! `CHRONICLE_WRITE_CORPUS=1 cargo test --features internals --test fuzz_corpus write_seed_corpus -- --ignored`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use chronicle::fuzzing::{self, DirectoryOutcome};
use chronicle::{load_index, Log, Options, StorageError};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("frame_decoder", fuzzing::frame_decoder),
    ("segment_header_decoder", fuzzing::segment_header_decoder),
    ("event_decoder", fuzzing::event_decoder),
    ("open_directory", fuzzing::open_directory),
    ("index_file", fuzzing::index_file),
    ("merkle_proof", fuzzing::merkle_proof),
    ("rollup_pages", fuzzing::rollup_pages),
    ("crash_model", fuzzing::crash_model),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

/// Every file of a target's corpus, sorted by name; fails if there are none.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty; the fuzz seeds are missing", dir.display());
    files
}

/// Runs `target` on `input`, naming the input if it panics.
fn run_named(target_name: &str, input_name: &str, target: Target, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(input))) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        panic!(
            "{target_name} panicked on {input_name} ({} bytes: {}): {message}",
            input.len(),
            hex(input)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(256).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 256 {
        format!("{shown}...")
    } else {
        shown
    }
}

/// A xorshift64 generator: deterministic, so every run tries the same inputs.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Applies one to four random edits of the kinds a fuzzer makes.
fn mutate(seed: &[u8], other: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = rng.next() as u8;
            }
            2 if len >= 4 => {
                // An interesting 32-bit value, as length fields attract them.
                let at = rng.below(len - 3);
                let value: u32 =
                    [0, 1, 31, 32, 33, 0xffff_ffff, 0x8000_0000, len as u32][rng.below(8)];
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            5 => out.truncate(rng.below(len + 1)),
            6 if !other.is_empty() => {
                // Splice in a piece of another seed.
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(128));
                let at = rng.below(len + 1);
                out.splice(at..at, other[from..from + n].iter().copied());
            }
            _ if len > 0 => {
                let at = rng.below(len);
                out[at] = [0u8, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out
}

/// Runs every corpus file, then `rounds` mutations of the corpus, through a target.
fn run_target(name: &str, rounds: usize) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).unwrap().1;
    let seeds = corpus(name);
    for (file, bytes) in &seeds {
        run_named(name, file, target, bytes);
    }
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d ^ name.len() as u64);
    for round in 0..rounds {
        let (file, seed) = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())].1;
        let input = mutate(seed, other, &mut rng);
        run_named(name, &format!("mutation {round} of {file}"), target, &input);
    }
}

#[test]
fn merkle_proof_corpus_and_mutations() {
    run_target("merkle_proof", 3000);
}

#[test]
fn crash_model_corpus_and_mutations() {
    run_target("crash_model", 300);
}

#[test]
fn rollup_pages_corpus_and_mutations() {
    run_target("rollup_pages", 200);
}

#[test]
fn frame_decoder_corpus_and_mutations() {
    run_target("frame_decoder", 3000);
}

#[test]
fn segment_header_decoder_corpus_and_mutations() {
    run_target("segment_header_decoder", 3000);
}

#[test]
fn event_decoder_corpus_and_mutations() {
    run_target("event_decoder", 3000);
}

#[test]
fn open_directory_corpus_and_mutations() {
    run_target("open_directory", 300);
}

/// The hand-made seeds do what their names say, so the corpus keeps covering each recovery
/// path (and a change in the engine's verdicts shows up here, not only as lost coverage).
#[test]
fn directory_seeds_reach_their_recovery_paths() {
    let seeds: Seeds = fuzzing::seed_directories();
    let outcome = |name: &str| -> DirectoryOutcome {
        let (_, input) =
            seeds.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no seed named {name}"));
        fuzzing::open_directory_outcome(input)
    };

    let clean = outcome("clean");
    assert_eq!(clean.writer, Ok(4));
    assert_eq!(clean.read_only, Ok(4));
    assert!(!clean.torn_tail);
    assert_eq!(clean.repaired, Ok(4));

    let torn = outcome("torn-tail");
    assert_eq!(torn.writer, Ok(2));
    assert!(torn.torn_tail);

    // A lost frame followed by one written before anything after the loss was durable.
    let lost = outcome("lost-frame-then-stray");
    assert_eq!(lost.writer, Ok(1));
    assert!(lost.torn_tail);

    // Garbage followed by a frame written when everything before it was durable: damage.
    let damaged = outcome("damage-before-synced-frame");
    assert!(damaged.writer.as_ref().is_err_and(|e| e.contains("corruption")), "{damaged:?}");
    assert!(damaged.read_only.is_err(), "{damaged:?}");
    // The garbage is shorter than a frame header, which no gap fits: a salvage refuses, and
    // a truncation keeps the record before it.
    assert_eq!(damaged.repaired, Ok(1));

    let batch = outcome("incomplete-batch");
    assert_eq!(batch.writer, Ok(1));
    assert!(batch.torn_tail);

    let three = outcome("three-segments");
    assert_eq!(three.writer, Ok(7));
    assert_eq!(three.repaired, Ok(7));

    let broken = outcome("broken-link");
    assert!(
        broken.writer.as_ref().is_err_and(|e| e.contains("broken segment chain")),
        "{broken:?}"
    );
    assert_eq!(broken.repaired, Ok(1));

    // The last segment file ends inside its only frame.
    let short = outcome("short-file");
    assert_eq!(short.writer, Ok(0));
    assert!(short.torn_tail);

    // The durable record says more was durable than the log holds: lost durable data.
    let lost = outcome("durable-record-past-torn-tail");
    assert!(lost.writer.as_ref().is_err_and(|e| e.contains("recorded as durable")), "{lost:?}");
    assert!(lost.read_only.is_err(), "{lost:?}");
    let at_end = outcome("durable-record-at-end");
    assert_eq!(at_end.writer, Ok(2));
    assert!(at_end.torn_tail);

    // The last frame of a sealed segment was lost and the next segment's frames were written
    // before it was durable: a torn tail that spans two segments.
    let across = outcome("torn-across-segments");
    assert_eq!(across.writer, Ok(1));
    assert!(across.torn_tail);
    assert_eq!(across.repaired, Ok(1));

    let late = outcome("late-base");
    assert_eq!(late.writer, Ok(2));

    let real = outcome("real-one-segment");
    assert_eq!(real.writer, Ok(4));
    let real = outcome("real-three-segments");
    assert_eq!(real.writer, Ok(37));
    assert_eq!(real.repaired, Ok(37));
}

/// Every hand-made seed is in the checked-in corpus, byte for byte (images of real logs only
/// by name: they hold wall-clock timestamps).
#[test]
fn corpus_holds_the_current_seeds() {
    for (target, seeds) in all_seeds() {
        let dir = corpus_dir(target);
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            let stored = fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}); rebuild the corpus (see the module docs)",
                    path.display()
                )
            });
            if !name.starts_with("real-") {
                assert_eq!(stored, bytes, "{} differs from its generator", path.display());
            }
        }
    }
}

/// Named inputs for one target.
type Seeds = Vec<(String, Vec<u8>)>;

fn all_seeds() -> Vec<(&'static str, Seeds)> {
    vec![
        ("frame_decoder", fuzzing::seed_frames()),
        ("segment_header_decoder", fuzzing::seed_headers()),
        ("event_decoder", fuzzing::seed_events()),
        ("open_directory", fuzzing::seed_directories()),
        ("index_file", fuzzing::seed_index_files()),
        ("merkle_proof", fuzzing::seed_proofs()),
        ("rollup_pages", fuzzing::seed_pages()),
        ("crash_model", fuzzing::seed_crash_models()),
    ]
}

/// Writes the hand-made seeds into `fuzz/corpus/`. Only with `CHRONICLE_WRITE_CORPUS=1`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format change"]
fn write_seed_corpus() {
    if std::env::var_os("CHRONICLE_WRITE_CORPUS").is_none() {
        return;
    }
    for (target, seeds) in all_seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the `open_directory` fuzzer
// ---------------------------------------------------------------------------------------------

/// A segment named `18446744073709551360.seg` (base offset `0xffff_ffff_ffff_ff00`, a multiple
/// of 8, so the header and the name agree and every check on open passes) with one non-zero
/// byte in its data region. Recovery scanned that byte's neighbourhood at logical offsets
/// `base + pos`, which run past `u64::MAX` 256 bytes in: a debug build panicked with "attempt
/// to add with overflow" in the scan after the chain (`src/log/recovery.rs`), and a release
/// build wrapped around to offset 0. A base offset that leaves no room for the segment's data
/// in a `u64` is corruption, and must be reported as such.
#[test]
fn segment_base_near_u64_max_is_refused_not_overflowed() {
    let input = fuzzing::encode_directory_input(
        0,
        0,
        &[fuzzing::SegmentSpec {
            mode: fuzzing::HEADER_CHAINED_AT | fuzzing::MODE_SCRIPT,
            base: 0xffff_ffff_ffff_ff00,
            durable: 0,
            body: vec![fuzzing::OP_GARBAGE, 0, 0],
        }],
    );
    for writer in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        fuzzing::write_directory(&input, dir.path());
        let opened = catch_unwind(|| {
            if writer {
                Log::open_with(dir.path(), small_options()).map(|_| ())
            } else {
                Log::open_read_only(dir.path()).map(|_| ())
            }
        });
        match opened {
            Ok(Err(StorageError::Corruption { .. })) => {}
            Ok(other) => panic!("writer {writer}: expected a corruption error, got {other:?}"),
            Err(_) => panic!("writer {writer}: open panicked on a segment based near u64::MAX"),
        }
    }
}

/// A torn tail that spans two segments, over a segment whose start is garbage.
///
/// Segment 0 holds nine garbage bytes where its first frame should be, then a frame at
/// offset 16 written just after a sync to offset 16 and then lost (zeroed); segment 1
/// (base 152) was created with `durable_offset` 16 and holds one frame. The first writer open
/// starts its scan of segment 0 at the durable point 16 (the bytes before it are "verified by
/// replay, not here"), finds the lost frame, calls everything from 16 on a torn tail, sets
/// segment 1 aside and ends the log at 16 -- over garbage at offset 0 that it never read, so a
/// replay from the start fails at once. With segment 1 gone, nothing records the durable
/// point any more, so the second open scans segment 0 from 0, finds the garbage and moves the
/// end back to 0: recovery is not idempotent, and a record appended in between at offset 16
/// (acknowledged by `append_sync`) can no longer be reached by a replay from the start.
///
/// Either verdict can be defended for the first open (a corruption error, because segment 1's
/// header proves offset 16 was durable; or a torn tail at 0 after reading the garbage), but
/// both opens must agree, and every acknowledged record must replay.
#[test]
fn torn_tail_across_segments_over_unread_garbage_is_recovered_once() {
    let input = fuzzing::encode_directory_input(
        1,
        0,
        &[
            fuzzing::SegmentSpec {
                mode: fuzzing::HEADER_CHAINED | fuzzing::MODE_SCRIPT,
                base: 0,
                durable: 0,
                body: [
                    [fuzzing::OP_GARBAGE, 8, 1],                // 9 garbage bytes at 0
                    [fuzzing::OP_SYNC_OR_TORN, 0, 0],           // durable up to 16
                    [fuzzing::OP_FRAME, 100, 2],                // a frame at 16 ...
                    [fuzzing::OP_GAP | fuzzing::OP_LOSE, 0, 0], // ... lost in the crash
                ]
                .concat(),
            },
            fuzzing::SegmentSpec {
                mode: fuzzing::HEADER_CHAINED | fuzzing::MODE_SCRIPT,
                base: 0,
                durable: 0,
                body: vec![fuzzing::OP_FRAME, 0, 10],
            },
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    fuzzing::write_directory(&input, dir.path());
    let first = match Log::open_with(dir.path(), small_options()) {
        // Refusing to open is a consistent verdict: offset 16 was durable.
        Err(StorageError::Corruption { .. }) => return,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(log) => log,
    };
    let end = first.end_offset();
    let first_replay: Vec<_> = first.replay(first.start_offset()).collect();
    drop(first);
    let second = Log::open_with(dir.path(), small_options()).unwrap();
    assert_eq!(
        second.end_offset(),
        end,
        "the second open moved the end: {:?}",
        second.open_report()
    );
    assert_eq!(second.open_report().torn_tail, None);
    assert!(
        first_replay.iter().all(Result::is_ok),
        "the first open published a log that fails to replay: {first_replay:?}"
    );
    drop(second);

    let mut log = Log::open_with(dir.path(), small_options()).unwrap();
    let offset = log.append_sync(b"acknowledged").unwrap();
    log.close().unwrap();
    let log = Log::open_with(dir.path(), small_options()).unwrap();
    let replayed: Vec<_> = log.replay(log.start_offset()).collect::<Result<_, _>>().unwrap();
    let last = replayed.last().unwrap();
    assert_eq!((last.offset, &*last.payload), (offset, &b"acknowledged"[..]));
}

/// A frame whose unsynced distance points into the middle of an earlier frame.
///
/// Three segments written without a sync; the last one holds a frame (with a valid checksum)
/// whose `unsynced_before` says the log was durable up to offset 424, which lies inside the
/// frame at 400 of segment 1 (base 368), whose first frame records the wrong offset. The first
/// writer open trusts 424 as a frame boundary ("durable points are where a sync ended"), starts
/// its scan of segment 1 there, finds no frame, calls the rest a torn tail, sets segment 2
/// aside, zeroes the second half of the frame at 400 and ends the log at 424, in the middle of
/// a frame and after a misplaced one it never read. A replay from the start then fails at 368,
/// and the second open scans segment 1 from its start and ends the log at 368 instead.
/// Distances come from the disk, so a durable point derived from one must be checked to be a
/// frame boundary reached by an intact chain before a scan starts there.
#[test]
fn durable_point_inside_a_frame_is_not_a_scan_start() {
    let spec = |ops: &[[u8; 3]]| fuzzing::SegmentSpec {
        mode: fuzzing::HEADER_CHAINED | fuzzing::MODE_SCRIPT,
        base: 0,
        durable: 0,
        body: ops.concat(),
    };
    let input = fuzzing::encode_directory_input(
        2,
        0,
        &[
            spec(&[[fuzzing::OP_FRAME, 200, 1], [fuzzing::OP_FRAME, 100, 2]]),
            spec(&[
                [fuzzing::OP_FRAME | fuzzing::OP_MISPLACED, 0, 0],
                [fuzzing::OP_FRAME, 1, 4],
                [fuzzing::OP_FRAME, 2, 5],
            ]),
            // Distance 7 units (56 bytes) back from offset 480: offset 424.
            spec(&[[fuzzing::OP_FRAME | (2 << fuzzing::OP_UNSYNCED_SHIFT), 43, 7]]),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    fuzzing::write_directory(&input, dir.path());
    let first = match Log::open_with(dir.path(), small_options()) {
        Err(StorageError::Corruption { .. }) => return,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(log) => log,
    };
    let end = first.end_offset();
    let replayed: Vec<_> = first.replay(first.start_offset()).collect();
    drop(first);
    assert!(
        replayed.iter().all(Result::is_ok),
        "the first open published a log that fails to replay (end {end}): {replayed:?}"
    );
    let second = Log::open_with(dir.path(), small_options()).unwrap();
    assert_eq!(second.end_offset(), end, "the second open moved the end");
}

#[test]
fn fuzz_body_holds_on_seeds_and_their_mutations() {
    let seeds = chronicle::fuzzing::seed_index_files();
    assert_eq!(seeds.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &seeds {
        chronicle::fuzzing::index_file(bytes);
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let index = load_index(&path).unwrap();
        assert!(index.records() <= 40, "{name}");
        for i in (0..bytes.len()).step_by(3) {
            let mut bad = bytes.clone();
            bad[i] = bad[i].wrapping_add((i as u8).wrapping_add(1));
            chronicle::fuzzing::index_file(&bad);
            chronicle::fuzzing::index_file(&bad[..i]);
        }
    }
}

fn small_options() -> Options {
    Options { segment_bytes: 4096, record_bytes_max: Some(1024), ..Options::default() }
}
