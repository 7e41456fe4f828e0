//! Crash tests with real processes: a child process appends to a log and is killed with
//! SIGKILL at a random moment, over and over, and after each kill the parent reopens the log
//! and checks what survived.
//!
//! The child is this test binary run again with only [`crash_child`] selected and
//! `CHRONICLE_CRASH_CHILD_DIR` set (without it, `crash_child` does nothing). It opens the log
//! (64 KiB segments, so it rolls every few hundred records), finds the last sequence number by
//! replaying the last segment, and appends forever: single records or batches of 2 to 5,
//! either with `append_sync`/`append_batch_sync` or, in the buffered mode, with plain
//! `append`/`append_batch`. After every acknowledged call it prints `ack <first_seq> <count>
//! <offsets...>` and flushes.
//!
//! SIGKILL ends the process but not the machine: whatever was copied into the shared memory
//! map is in the page cache and survives. So after every kill, whatever the mode:
//! - every acknowledged record is present, at its acknowledged offset, byte for byte;
//! - the records are sequence numbers 0, 1, 2, ... with no hole and no duplicate: a prefix of
//!   what the children attempted, with at most the one operation in flight beyond the last
//!   acknowledgement;
//! - every batch is whole (each payload names its batch's first sequence number and size);
//! - `open_report` agrees with the log: its end, and a torn tail that ends where the log does.
//!
//! `CHRONICLE_CRASH_CYCLES` sets the number of kills (default 200) and
//! `CHRONICLE_CRASH_SEED` the random seed (default: from the clock, printed on failure).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chronicle::{Log, Options};

const CHILD_DIR_ENV: &str = "CHRONICLE_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "CHRONICLE_CRASH_CHILD_SEED";
const CHILD_MODE_ENV: &str = "CHRONICLE_CRASH_CHILD_MODE";
const CHILD_NEXT_SEQ_ENV: &str = "CHRONICLE_CRASH_CHILD_NEXT_SEQ";
const CHILD_TEST_NAME: &str = "crash_child";
const CYCLES_DEFAULT: u64 = 200;
/// The signal number of SIGKILL on every Unix.
const SIGKILL: i32 = 9;
/// Operations one child performs before it idles waiting for its kill; bounds the log's
/// growth when a kill comes late.
const CHILD_OPS_MAX: u64 = 1000;
/// How long the parent waits for a child to open the log before it gives up. Not a timing
/// assertion: only a guard against a hung child.
const CHILD_START_TIMEOUT: Duration = Duration::from_secs(120);
/// The parent re-reads the whole log every this many cycles (and after the last); in
/// between it checks only what the last child added.
const FULL_CHECK_EVERY: u64 = 20;
/// Cycles that share one log directory before a fresh one is started. A log grows by up to a
/// few hundred records a cycle, and every open maps every segment, so without this long runs
/// (a large `CHRONICLE_CRASH_CYCLES`) would slow down quadratically.
const CYCLES_PER_LOG: u64 = 250;

fn options() -> Options {
    // Small segments, so children roll often; room for the occasional large record.
    Options { segment_bytes: 256 << 10, record_bytes_max: Some(48 << 10), ..Options::default() }
}

fn stride(len: usize) -> u64 {
    (32 + len as u64 + 7) & !7
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What one record says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    seq: u64,
    /// Sequence number of the first record of the operation (batch or single) it belongs to.
    batch_first: u64,
    batch_len: u32,
    /// The seed of the child that wrote it; with `seq` it determines the filler bytes.
    seed: u64,
}

const FIELDS_LEN: usize = 8 + 8 + 4 + 8 + 2;

/// The record for `fields`: the fields, a filler determined by the sequence number and seed
/// (0 to 199 bytes, or for one record in 32, 16 to 40 KiB: large records are written with
/// `pwritev` rather than through the map), and an FNV-1a checksum of everything before it.
fn encode(f: Fields) -> Vec<u8> {
    let mut state = f.seq ^ f.seed.rotate_left(17);
    let draw = splitmix(&mut state);
    let filler_len = if draw.is_multiple_of(32) {
        (16 << 10) + (draw >> 8) as usize % (24 << 10)
    } else {
        (draw % 200) as usize
    };
    let mut out = Vec::with_capacity(FIELDS_LEN + filler_len + 8);
    out.extend_from_slice(&f.seq.to_le_bytes());
    out.extend_from_slice(&f.batch_first.to_le_bytes());
    out.extend_from_slice(&f.batch_len.to_le_bytes());
    out.extend_from_slice(&f.seed.to_le_bytes());
    out.extend_from_slice(&(filler_len as u16).to_le_bytes());
    while out.len() < FIELDS_LEN + filler_len {
        out.push(splitmix(&mut state) as u8);
    }
    let checksum = fnv1a(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Reads a record's fields and checks that the record is exactly what [`encode`] makes of
/// them (so the filler and checksum are intact too).
fn decode(payload: &[u8]) -> Result<Fields, String> {
    let u64_at = |at: usize| -> Result<u64, String> {
        let bytes = payload
            .get(at..at + 8)
            .ok_or_else(|| format!("record of {} bytes is too short", payload.len()))?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap()))
    };
    let batch_len = payload
        .get(16..20)
        .ok_or_else(|| format!("record of {} bytes is too short", payload.len()))?;
    let fields = Fields {
        seq: u64_at(0)?,
        batch_first: u64_at(8)?,
        batch_len: u32::from_le_bytes(batch_len.try_into().unwrap()),
        seed: u64_at(20)?,
    };
    if encode(fields) != payload {
        return Err(format!(
            "record of {} bytes is not the encoding of its fields {fields:?}",
            payload.len()
        ));
    }
    Ok(fields)
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.parse().unwrap_or_else(|e| panic!("{name}={value:?} is not a number: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The child.
// ---------------------------------------------------------------------------------------------

/// The last sequence number in the log, found by replaying only the last segment that holds a
/// record (a segment's first record starts at its base offset).
fn last_seq(log: &Log, dir: &Path) -> Option<Fields> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    for &base in bases.iter().rev() {
        if base >= log.end_offset() {
            continue;
        }
        let last = log.replay(base).map(|r| decode(&r.unwrap().payload).unwrap()).last();
        if last.is_some() {
            return last;
        }
    }
    None
}

/// The child process's body; does nothing in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let seed = env_u64(CHILD_SEED_ENV).unwrap();
    let buffered = std::env::var(CHILD_MODE_ENV).unwrap() == "buffered";
    // Every other child zero-fills the segments it makes, so kills also land in the middle
    // of zero-filling a spare or a rolled segment, and logs mix both kinds.
    let options = Options { zero_fill_segments: seed % 2 == 1, ..options() };
    let mut log = Log::open_with(dir, options).unwrap();
    let mut next_seq = last_seq(&log, dir).map_or(0, |f| f.seq + 1);
    assert_eq!(
        Some(next_seq),
        env_u64(CHILD_NEXT_SEQ_ENV),
        "the child and the parent disagree on the next sequence number"
    );
    let mut out = std::io::stdout().lock();
    // Start on a fresh line, whatever the test harness printed.
    writeln!(out, "\nopened {next_seq} {}", log.end_offset()).unwrap();
    out.flush().unwrap();
    let mut rng = seed;
    let mut line = String::new();
    for _ in 0..CHILD_OPS_MAX {
        let count =
            if splitmix(&mut rng).is_multiple_of(2) { 1 } else { 2 + splitmix(&mut rng) % 4 };
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                encode(Fields {
                    seq: next_seq + i,
                    batch_first: next_seq,
                    batch_len: count as u32,
                    seed,
                })
            })
            .collect();
        let offsets = match (count, buffered) {
            (1, false) => vec![log.append_sync(&payloads[0]).unwrap()],
            (1, true) => vec![log.append(&payloads[0]).unwrap()],
            (_, false) => log.append_batch_sync(&payloads).unwrap(),
            (_, true) => log.append_batch(&payloads).unwrap(),
        };
        line.clear();
        line.push_str(&format!("ack {next_seq} {count}"));
        for offset in offsets {
            line.push_str(&format!(" {offset}"));
        }
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
        next_seq += count;
    }
    writeln!(out, "idle").unwrap();
    out.flush().unwrap();
    // Wait for the kill; exiting would not be a crash.
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------------------

/// Kills the child if the parent panics before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
struct Ack {
    first: u64,
    offsets: Vec<u64>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let mut next = || -> u64 { words.next().unwrap().parse().unwrap() };
    let first = next();
    let count = next();
    let offsets = (0..count).map(|_| next()).collect();
    Some(Ack { first, offsets })
}

/// What the parent knows about the log between cycles.
#[derive(Debug, Default)]
struct Verified {
    /// Records in the log, which are sequence numbers `0..records`.
    records: u64,
    end: u64,
}

#[derive(Debug, Default)]
struct Stats {
    cycles: u64,
    buffered_cycles: u64,
    early_kills: u64,
    acked_ops: u64,
    acked_records: u64,
    unacked_ops_survived: u64,
    torn_tails: u64,
    torn_bytes: u64,
    torn_frames_dropped: u64,
    temp_files_removed: u64,
    children_idle: u64,
}

/// One record as the parent read it back.
struct Read {
    offset: u64,
    len: usize,
    fields: Fields,
}

/// Reads the records from `from` to the end, checking each record's integrity, that the
/// sequence numbers continue from `first_seq` without a hole, and that every batch is whole.
fn read_checked(log: &Log, from: u64, first_seq: u64, what: &str) -> Vec<Read> {
    let mut out: Vec<Read> = Vec::new();
    for record in log.replay(from) {
        let record = record.unwrap_or_else(|e| panic!("{what}: replay({from}): {e}"));
        let fields = decode(&record.payload)
            .unwrap_or_else(|e| panic!("{what}: record at offset {}: {e}", record.offset));
        let seq = first_seq + out.len() as u64;
        assert_eq!(
            fields.seq, seq,
            "{what}: record at offset {} has sequence number {}, expected {seq} (hole or \
             duplicate)",
            record.offset, fields.seq
        );
        match out.last() {
            // A record continues the previous one's batch, or the previous batch is whole.
            Some(prev)
                if prev.fields.seq + 1
                    < prev.fields.batch_first + u64::from(prev.fields.batch_len) =>
            {
                assert_eq!(
                    (fields.batch_first, fields.batch_len),
                    (prev.fields.batch_first, prev.fields.batch_len),
                    "{what}: record {seq} at offset {} interrupts a batch",
                    record.offset
                );
            }
            _ => assert_eq!(
                fields.batch_first, seq,
                "{what}: record {seq} at offset {} starts in the middle of a batch",
                record.offset
            ),
        }
        if let Some(prev) = out.last() {
            assert_eq!(
                record.offset,
                prev.offset + stride(prev.len),
                "{what}: offsets are not contiguous"
            );
        }
        out.push(Read { offset: record.offset, len: record.payload.len(), fields });
    }
    if let Some(last) = out.last() {
        assert_eq!(
            last.fields.seq + 1,
            last.fields.batch_first + u64::from(last.fields.batch_len),
            "{what}: the log ends with part of a batch"
        );
        assert_eq!(
            log.end_offset(),
            last.offset + stride(last.len),
            "{what}: end offset is not right after the last record"
        );
    } else {
        assert_eq!(log.end_offset(), from, "{what}: end offset");
    }
    out
}

struct Cycle {
    lines: Vec<String>,
    stderr: String,
    killed: bool,
}

/// Runs one child on `dir` and kills it after `delay` (counted from when it opened the log,
/// or from its start if `early`).
fn run_child(
    dir: &Path,
    seed: u64,
    buffered: bool,
    next_seq: u64,
    delay: Duration,
    early: bool,
) -> Cycle {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", CHILD_TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_MODE_ENV, if buffered { "buffered" } else { "sync" })
        .env(CHILD_NEXT_SEQ_ENV, next_seq.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let out_thread = thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("opened ") {
                let _ = opened_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let err_thread = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // If the child dies before opening, the sender is dropped and this returns at once.
    let opened = early || opened_rx.recv_timeout(CHILD_START_TIMEOUT).is_ok();
    if opened {
        thread::sleep(delay);
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    let lines = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();
    Cycle { lines, stderr, killed: status.signal() == Some(SIGKILL) }
}

/// Checks one cycle's outcome: reopens the log and compares it with the acknowledgements.
fn check_cycle(
    dir: &Path,
    cycle: &Cycle,
    seed: u64,
    verified: &mut Verified,
    stats: &mut Stats,
    full: bool,
    what: &str,
) {
    let log = Log::open_with(dir, options())
        .unwrap_or_else(|e| panic!("{what}: reopening after the kill failed: {e}"));
    let report = log.open_report().clone();
    assert_eq!(report.end_offset, log.end_offset(), "{what}: {report:?}");
    assert_eq!(report.repair, None, "{what}: {report:?}");
    assert!(report.end_offset >= verified.end, "{what}: the log shrank: {report:?}");
    if let Some(torn) = &report.torn_tail {
        assert_eq!(torn.offset, report.end_offset, "{what}: {report:?}");
        assert!(torn.bytes > 0, "{what}: {report:?}");
        stats.torn_tails += 1;
        stats.torn_bytes += torn.bytes;
        stats.torn_frames_dropped += torn.frames_dropped;
    }
    stats.temp_files_removed += report.temp_files_removed as u64;

    let (from, first_seq) = if full { (0, 0) } else { (verified.end, verified.records) };
    let reads = read_checked(&log, from, first_seq, what);
    let new_records = first_seq + reads.len() as u64;
    assert!(new_records >= verified.records, "{what}: records were lost");

    // Every acknowledged record is there, at its offset, with exactly its bytes.
    let acks: Vec<Ack> = cycle.lines.iter().filter_map(|l| parse_ack(l)).collect();
    let mut expected_first = verified.records;
    for ack in &acks {
        assert_eq!(ack.first, expected_first, "{what}: acknowledgements skip: {ack:?}");
        for (i, &offset) in ack.offsets.iter().enumerate() {
            let seq = ack.first + i as u64;
            let read = seq
                .checked_sub(first_seq)
                .and_then(|i| reads.get(i as usize))
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: acknowledged record {seq} (offset {offset}) is lost; the log \
                         holds {new_records} records, report {report:?}"
                    )
                });
            assert_eq!(read.offset, offset, "{what}: record {seq} moved");
            let expected =
                Fields { seq, batch_first: ack.first, batch_len: ack.offsets.len() as u32, seed };
            assert_eq!(read.fields, expected, "{what}: record {seq}");
        }
        expected_first += ack.offsets.len() as u64;
        stats.acked_ops += 1;
        stats.acked_records += ack.offsets.len() as u64;
    }
    // Beyond the last acknowledgement, at most the one operation that was in flight.
    let beyond = new_records - expected_first;
    if beyond > 0 {
        let read = &reads[(expected_first - first_seq) as usize];
        assert_eq!(read.fields.batch_first, expected_first, "{what}");
        assert_eq!(
            u64::from(read.fields.batch_len),
            beyond,
            "{what}: more than the one operation in flight survived beyond the last ack"
        );
        assert_eq!(read.fields.seed, seed, "{what}");
        stats.unacked_ops_survived += 1;
    }
    if full {
        let report = log.verify().unwrap();
        assert_eq!(report.records, new_records, "{what}: verify");
    }
    verified.records = new_records;
    verified.end = log.end_offset();
    log.close().unwrap();
}

#[test]
fn crash_cycles() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let cycles = env_u64("CHRONICLE_CRASH_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let master_seed = env_u64("CHRONICLE_CRASH_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    let mut dir = tempfile::tempdir().unwrap();
    let mut rng = master_seed;
    let mut verified = Verified::default();
    let mut stats = Stats::default();
    let mut records_in_earlier_logs = 0;
    for cycle_index in 0..cycles {
        if cycle_index > 0 && cycle_index % CYCLES_PER_LOG == 0 {
            records_in_earlier_logs += verified.records;
            dir = tempfile::tempdir().unwrap();
            verified = Verified::default();
        }
        let seed = splitmix(&mut rng);
        let buffered = splitmix(&mut rng).is_multiple_of(2);
        let early = splitmix(&mut rng).is_multiple_of(10);
        let delay = Duration::from_micros(splitmix(&mut rng) % 30_000);
        let cycle = run_child(dir.path(), seed, buffered, verified.records, delay, early);
        let what = format!(
            "cycle {cycle_index} (CHRONICLE_CRASH_SEED={master_seed}, {} mode, {}kill after \
             {delay:?})",
            if buffered { "buffered" } else { "sync" },
            if early { "early " } else { "" }
        );
        assert!(
            cycle.killed,
            "{what}: the child was not killed by SIGKILL but ended on its own; its stderr:\n{}",
            cycle.stderr
        );
        if !early {
            assert!(
                cycle.lines.iter().any(|l| l.starts_with("opened ")),
                "{what}: the child never opened the log; its stderr:\n{}",
                cycle.stderr
            );
        }
        let full = (cycle_index + 1) % FULL_CHECK_EVERY == 0
            || (cycle_index + 1) % CYCLES_PER_LOG == 0
            || cycle_index + 1 == cycles;
        check_cycle(dir.path(), &cycle, seed, &mut verified, &mut stats, full, &what);
        stats.cycles += 1;
        stats.buffered_cycles += u64::from(buffered);
        stats.early_kills += u64::from(early);
        stats.children_idle += u64::from(cycle.lines.iter().any(|l| l == "idle"));
    }
    eprintln!(
        "crash_cycles: seed {master_seed}, {} records in {} log(s), the last holding {} \
         records ({} bytes); {stats:?}",
        records_in_earlier_logs + verified.records,
        cycles.div_ceil(CYCLES_PER_LOG),
        verified.records,
        verified.end
    );
    assert!(stats.acked_records > 0, "no child acknowledged anything: {stats:?}");
}
