//! Power cuts through a real filesystem: the durability contract (README, FORMAT.md 6 and 11)
//! checked against a FUSE filesystem, mounted by this process, that loses everything not made
//! durable when the power goes (`tests/power_cut/`).
//!
//! Each *trial* mounts an empty filesystem and creates a log in it (a raw `Log` in one test,
//! an `EventLog` with small index checkpoints in the other), with random options (16 or 64 KiB
//! segments, write-behind, spare segments, zero-filled segments, Merkle pages). Each *round*
//! sets where the power goes: at the filesystem's `k`-th next write, sync, rename, create,
//! unlink, truncate or allocation (`k` small in a quarter of the rounds, so that cuts fall into
//! the creation of the log, its first sync, and the recovery of the first writer after a cut),
//! or at the `n`-th next operation of one kind (create, rename, allocate, directory sync,
//! unlink: the making of segments, `DURABLE` and `index.chx`). Then it opens the log and runs
//! random calls (`append`, `append_sync`, `append_batch`, `append_batch_sync`, `sync`,
//! `close` and reopen, `tree_head`, `checkpoint`, `read_at`) until the power goes, or the
//! round ends and it goes then. After the cut the filesystem either fails every later write
//! (`EIO`) or lets it succeed without effect, and what survives is either only what was
//! durable, or that plus a random part of what was written since (pages, a torn page, a
//! prefix of a directory's changes).
//!
//! After every cut the surviving state is mounted afresh and, through a read-only open (which
//! changes nothing, so that the next writer's open is the first after the cut):
//! - its records are a prefix of what was appended (plus, at most, the records of the call
//!   that failed), at the offsets their appends returned, byte for byte; batches are whole;
//! - every record an `append_sync`, `sync`, `append_batch_sync` or `close` acknowledged
//!   (before the power went) is there;
//! - for an event log, the index answers (by aggregate, type and namespace, and
//!   `load_aggregate`) equal the events filtered from a replay;
//! - `tree_head(None)` equals the RFC 9162 head computed here from the records.
//!
//! After half the cuts, and the last of each trial, the log is also opened as a writer,
//! which must keep exactly those records, give the same index answers, and the same tree head
//! with its pages as when opened with `merkle_rollup: false`. (After the other cuts, the
//! next round's writer is the first to open it, and it is checked there: it must open.)
//!
//! `CHRONICLE_POWER_CUTS` sets the number of cuts (default 3,000, half in each test),
//! `CHRONICLE_POWER_CUT_TRIAL_SEED` runs only the trial a failure names, and
//! `CHRONICLE_POWER_CUT_SEED` the seed (default from the clock, printed on failure; helper
//! threads make the filesystem's order of operations vary, so a seed replays the same
//! workloads and cut points, not always the same interleaving). Without `/dev/fuse` or the
//! right to mount, the tests print why and pass.

mod common;
#[path = "power_cut/mod.rs"]
mod power_cut;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chronicle::rollup::TreeHead;
use chronicle::{EventEnvelope, EventLog, IndexOptions, Log, Options, StorageError};
use common::Rng;
use power_cut::workload::{self, Handle, Model, Rec, AGGREGATES};
use power_cut::{check, note, AfterFreeze, CutMode, Op, PowerCutMount};

const CUTS_DEFAULT: u64 = 3000;

/// The operations a targeted cut chooses from, and the files they must be on (any if `None`).
const TARGETS: [(Op, Option<&str>); 8] = [
    (Op::Create, None),
    (Op::Rename, None),
    (Op::Fallocate, None),
    (Op::FsyncDir, None),
    (Op::Unlink, None),
    (Op::Write, Some("rollup-")),
    (Op::Rename, Some(".dropped")),
    (Op::Fsync, Some(".seg")),
];

#[test]
fn power_cuts_raw_log() {
    campaign(false);
}

#[test]
fn power_cuts_event_log() {
    campaign(true);
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// Figures of one campaign.
#[derive(Default)]
struct Stats {
    cuts: u64,
    trials: u64,
    acked: u64,
    recovered: u64,
    unacked_lost: u64,
    /// Cuts after which the log's front had been removed by retention, and the records so
    /// removed, summed over those cuts.
    trimmed_cuts: u64,
    removed: u64,
    fs_ops: u64,
    /// Cuts by the call the writer was in when the power went.
    by_call: BTreeMap<&'static str, u64>,
    /// Cuts by the filesystem operation the power went at, and the kind of file.
    by_op: BTreeMap<String, u64>,
    by_mode: BTreeMap<&'static str, u64>,
}

fn campaign(events: bool) {
    let name = if events { "power_cuts_event_log" } else { "power_cuts_raw_log" };
    let total = env_u64("CHRONICLE_POWER_CUTS").unwrap_or(CUTS_DEFAULT);
    let cuts = if events { total / 2 } else { total - total / 2 };
    let seed = env_u64("CHRONICLE_POWER_CUT_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    if PowerCutMount::new(name).is_none() {
        return;
    }
    let started = Instant::now();
    let mut stats = Stats::default();
    if let Some(trial_seed) = env_u64("CHRONICLE_POWER_CUT_TRIAL_SEED") {
        // One trial, as a failure report names it.
        run_trial(events, trial_seed, cuts, &mut stats);
        return report(name, seed, &stats, started.elapsed().as_secs_f64());
    }
    while stats.cuts < cuts {
        let trial = stats.trials;
        let trial_seed = seed ^ trial.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(events);
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            run_trial(events, trial_seed, cuts, &mut stats);
        }));
        if let Err(panic) = ran {
            note(&format!(
                "{name} failed in trial {trial}: rerun with CHRONICLE_POWER_CUT_SEED={seed} \
                 (the trial's own seed is {trial_seed})"
            ));
            panic::resume_unwind(panic);
        }
        stats.trials += 1;
    }
    report(name, seed, &stats, started.elapsed().as_secs_f64());
}

fn report(name: &str, seed: u64, s: &Stats, secs: f64) {
    let by_call: Vec<String> = s.by_call.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let mut by_op: Vec<(&String, &u64)> = s.by_op.iter().collect();
    by_op.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let by_op: Vec<String> = by_op.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let by_mode: Vec<String> = s.by_mode.iter().map(|(k, v)| format!("{k} {v}")).collect();
    note(&format!(
        "{name}: {} cuts in {} trials, {secs:.1} s (seed {seed}); {} filesystem operations; \
         records acknowledged before the cuts {}, recovered {}, unacknowledged ones lost {}; \
         {} cuts of logs whose front retention had removed ({} records)\n  \
         cuts by call: {}\n  cuts by mode: {}\n  cuts by operation: {}",
        s.cuts,
        s.trials,
        s.fs_ops,
        s.acked,
        s.recovered,
        s.unacked_lost,
        s.trimmed_cuts,
        s.removed,
        by_call.join(", "),
        by_mode.join(", "),
        by_op.join(", "),
    ));
}

/// One log on one filesystem, cut and recovered round after round.
struct Trial {
    rng: Rng,
    events: bool,
    options: Options,
    index: IndexOptions,
    model: Model,
    /// Filesystem operations a round that the power did not interrupt took, on average.
    ops_per_round: u64,
    /// What failures print: the seed, the options, the round.
    context: String,
}

fn run_trial(events: bool, seed: u64, cuts: u64, stats: &mut Stats) {
    let mut rng = Rng(seed);
    let segment_bytes = if rng.below(3) == 0 { 16 << 10 } else { 64 << 10 };
    let options = Options {
        segment_bytes,
        write_behind: rng.below(2) == 0,
        prepare_next_segment: rng.below(3) != 0,
        zero_fill_segments: rng.below(6) == 0,
        merkle_rollup: rng.below(6) != 0,
        ..Options::default()
    };
    let index = IndexOptions {
        checkpoint_bytes: [2 << 10, 8 << 10, 32 << 10][rng.below(3) as usize],
        ..IndexOptions::default()
    };
    let context = format!("trial seed {seed}, {options:?}, {index:?}");
    let mut s =
        Trial { rng, events, options, index, model: Model::default(), ops_per_round: 60, context };
    let mut fs = PowerCutMount::new("power-cut trial").expect("mounted before");
    let rounds = 1 + s.rng.below(6);
    for round in 0..rounds {
        if stats.cuts >= cuts {
            break;
        }
        let (after, after_name) = match s.rng.below(2) {
            0 => (AfterFreeze::Eio, "EIO after the cut"),
            _ => (AfterFreeze::Silent, "writes ignored after the cut"),
        };
        let (mode, mode_name) = match s.rng.below(5) {
            0..=2 => (CutMode::Strict, "strict"),
            _ => (CutMode::Partial { seed: s.rng.next() }, "partial"),
        };
        let start_ops = fs.control().ops();
        let target = match s.rng.below(8) {
            // Early: into the recovery of the first writer's open, the log's creation and its
            // first sync.
            0 | 1 => {
                let most = if s.rng.below(2) == 0 { 8 } else { 30 };
                let k = 1 + s.rng.below(most);
                fs.control().freeze_at(start_ops + k, after);
                format!("k = {k}")
            }
            // At a chosen kind of operation: the making of segments, `DURABLE`, `index.chx`,
            // pages, and the setting aside of a torn tail's segments.
            2 | 3 => {
                let (kind, name) = TARGETS[s.rng.below(TARGETS.len() as u64) as usize];
                let n = 1 + s.rng.below(3);
                fs.control().freeze_at_nth(kind, name, n, after);
                format!("{kind} number {n} (on {})", name.unwrap_or("any file"))
            }
            _ => {
                let k = 1 + s.rng.below(s.ops_per_round + s.ops_per_round / 4);
                fs.control().freeze_at(start_ops + k, after);
                format!("k = {k}")
            }
        };
        let steps = 5 + s.rng.below(150);
        let call = run_round(&fs, &mut s, round, steps);
        let ops = fs.control().ops() - start_ops;
        if call == "idle" {
            s.ops_per_round = (s.ops_per_round * 3 + ops) / 4;
        }
        stats.fs_ops += ops;
        let trace = fs.control().trace();
        let acked = s.model.acked;
        let point = fs.cut(mode);
        let op = match point.op {
            Some(op) => format!("{op} {}", file_kind(&point.name)),
            None => "after the workload".to_string(),
        };
        let cut_context = format!(
            "{}\nround {round}: power cut at filesystem operation #{} ({op}) during `{call}`, \
             {target}, {mode_name} ({mode:?}), {after_name}\nlast operations before and after \
             the cut:\n  {}\nwhat survived:\n{}",
            s.context,
            point.index,
            trace.join("\n  "),
            fs.tree().describe()
        );
        let appended = s.model.candidates().count();
        let (recovered, removed) = verify_read_only(&fs, &mut s, &cut_context);
        stats.trimmed_cuts += u64::from(removed > 0);
        stats.removed += removed as u64;
        if round + 1 == rounds || s.rng.below(2) == 0 {
            verify_writer(&fs, &mut s, &cut_context);
        }
        stats.unacked_lost += (appended - recovered) as u64;
        stats.cuts += 1;
        stats.acked += acked as u64;
        stats.recovered += recovered as u64;
        *stats.by_call.entry(call).or_default() += 1;
        *stats.by_op.entry(op).or_default() += 1;
        *stats.by_mode.entry(mode_name).or_default() += 1;
    }
}

/// What kind of file a name is, for the figures.
fn file_kind(name: &str) -> &'static str {
    let name = name.rsplit(" -> ").next().unwrap_or(name);
    match name {
        "next.seg.tmp" => "spare segment",
        "DURABLE" => "DURABLE",
        "DURABLE.tmp" => "DURABLE.tmp",
        "index.chx" => "index.chx",
        "index.chx.tmp" => "index.chx.tmp",
        "LOCK" => "LOCK",
        "log" | "/" => "directory",
        n if n.ends_with(".seg.tmp") => "new segment (.tmp)",
        n if n.ends_with(".seg") => "segment",
        n if n.ends_with(".dropped") => "dropped segment",
        n if n.starts_with("rollup-") => "rollup pages",
        _ => "other",
    }
}

/// Opens the log and runs up to `steps` random calls, stopping once the power is cut. Returns
/// the call during which it was cut (`"idle"` if it was not: the caller then cuts it).
fn run_round(fs: &PowerCutMount, s: &mut Trial, round: u64, steps: u64) -> &'static str {
    let dir = fs.path().join("log");
    let control = fs.control();
    let opening = if round == 0 { "create log" } else { "open" };
    let mut handle = match Handle::open(&dir, s.events, &s.options, &s.index) {
        Ok(handle) => Some(handle),
        Err(e) => return failed(fs, s, opening, &e),
    };
    if control.frozen() {
        return opening;
    }
    let end = handle.as_ref().map(Handle::end_offset);
    if end != Some(s.model.checked_end) {
        panic!(
            "the first writer after the cut ends the log at {end:?}, the read-only open at {}\n{}",
            s.model.checked_end, s.context
        );
    }
    let capacity = s.options.segment_bytes as usize - 64 - 32 - 64;
    let large_max = capacity.min(40 << 10);
    for _ in 0..steps {
        let pick = s.rng.below(100);
        let h = handle.as_mut().expect("open between calls");
        let before = h.end_offset();
        let (call, outcome) = match pick {
            0..=46 => {
                let sync = pick >= 35;
                let len = record_len(&mut s.rng, large_max);
                let recs = s.model.plan(&[len]);
                let r = &recs[0];
                let result = h.append(r.seq, r.len, sync).map(|o| vec![o]);
                let call = if sync { "append_sync" } else { "append" };
                (call, settle(fs, &mut s.model, recs, result, sync, before))
            }
            47..=66 => {
                let sync = pick >= 60;
                // Mostly a few records, sometimes many (more records make more pages).
                let n = match s.rng.below(4) {
                    0 => 10 + s.rng.below(50) as usize,
                    _ => 2 + s.rng.below(5) as usize,
                };
                let lens: Vec<usize> = (0..n).map(|_| 1 + s.rng.below(300) as usize).collect();
                let recs = s.model.plan(&lens);
                let pairs: Vec<(u64, usize)> = recs.iter().map(|r| (r.seq, r.len)).collect();
                let result = h.append_batch(&pairs, sync);
                let call = if sync { "append_batch_sync" } else { "append_batch" };
                (call, settle(fs, &mut s.model, recs, result, sync, before))
            }
            67..=76 => ("sync", h.sync().map(|()| acknowledge(fs, &mut s.model))),
            77..=80 => {
                let closed = handle.take().expect("open").close();
                if let Err(e) = closed {
                    return failed(fs, s, "close", &e);
                }
                acknowledge(fs, &mut s.model);
                if control.frozen() {
                    return "close";
                }
                match Handle::open(&dir, s.events, &s.options, &s.index) {
                    Ok(reopened) => handle = Some(reopened),
                    Err(e) => return failed(fs, s, "reopen", &e),
                }
                ("reopen", Ok(()))
            }
            81..=84 => ("tree_head", h.tree_head().map(|_| ())),
            85..=86 => ("consumer_commit", commit_consumer(h, fs, &mut s.model, &mut s.rng)),
            // Retention of what an earlier round checked (its leaves are known, for the head).
            87..=88 => ("truncate_before", h.truncate_before(s.model.checked_end).map(|_| ())),
            _ if s.events => ("checkpoint", h.checkpoint()),
            _ => ("read_at", read_back(h, &s.model, &mut s.rng)),
        };
        if let Err(e) = outcome {
            return failed(fs, s, call, &e);
        }
        if control.frozen() {
            return call;
        }
    }
    drop(handle);
    if control.frozen() {
        // A helper thread's operation cut the power after the last call returned.
        "idle (helper thread)"
    } else {
        "idle"
    }
}

/// Commits the consumer's position at a random acknowledged record still in the log: durable
/// once the call returns with the power on, else perhaps.
fn commit_consumer(
    h: &Handle,
    fs: &PowerCutMount,
    model: &mut Model,
    rng: &mut Rng,
) -> chronicle::Result<()> {
    if model.acked == 0 {
        return Ok(());
    }
    let rec = model.recs[rng.below(model.acked as u64) as usize];
    let position = rec.offset.expect("appended records have offsets").max(h.log().start_offset());
    model.consumer_pending = Some(position);
    h.log().consumer(workload::CONSUMER)?.commit(position)?;
    if !fs.control().frozen() {
        model.consumer = Some(position);
        model.consumer_pending = None;
    }
    Ok(())
}

/// Reads a random appended record back through the writer (a raw log's).
fn read_back(h: &Handle, model: &Model, rng: &mut Rng) -> chronicle::Result<()> {
    let start = h.log().start_offset();
    let first = model.recs.iter().take_while(|r| r.offset.is_some_and(|o| o < start)).count();
    if model.recs.len() == first {
        return Ok(());
    }
    let rec = model.recs[first + rng.below((model.recs.len() - first) as u64) as usize];
    let offset = rec.offset.expect("appended records have offsets");
    let record = h.log().read_at(offset)?;
    assert!(*record.payload == workload::payload(rec.seq, rec.len)[..], "read_at({offset})");
    Ok(())
}

/// A payload length: mostly small (copied through the map), sometimes large (written with
/// `pwritev` once 16 KiB or more).
fn record_len(rng: &mut Rng, large_max: usize) -> usize {
    if rng.below(25) == 0 {
        (large_max / 2) + rng.below((large_max / 2) as u64) as usize
    } else {
        1 + rng.below(400) as usize
    }
}

/// After a failed call: the power must have been cut (nothing else fails here).
fn failed(fs: &PowerCutMount, s: &Trial, call: &'static str, e: &StorageError) -> &'static str {
    assert!(
        fs.control().frozen(),
        "`{call}` failed with the power on: {e}\n{}\nlast operations:\n  {}",
        s.context,
        fs.control().trace().join("\n  ")
    );
    call
}

/// Records what an append call returned: the records it appended, acknowledged if `sync` and
/// the power was still on when it returned; or, if it failed, records that may be there.
fn settle(
    fs: &PowerCutMount,
    model: &mut Model,
    mut recs: Vec<Rec>,
    result: chronicle::Result<Vec<u64>>,
    sync: bool,
    before: u64,
) -> chronicle::Result<()> {
    match result {
        Ok(offsets) => {
            assert_eq!(offsets.len(), recs.len());
            assert_eq!(offsets[0], before, "an append did not start at the end of the log");
            for (rec, offset) in recs.iter_mut().zip(offsets) {
                rec.offset = Some(offset);
            }
            model.recs.extend(recs);
            if sync {
                acknowledge(fs, model);
            }
            Ok(())
        }
        Err(e) => {
            model.maybe = recs;
            Err(e)
        }
    }
}

/// A sync returned: everything appended so far is acknowledged, unless the power was cut
/// before it returned (then its syncs may have been ignored).
fn acknowledge(fs: &PowerCutMount, model: &mut Model) {
    if !fs.control().frozen() {
        model.acked = model.recs.len();
    }
}

/// Checks the log after a cut with a read-only open (which changes nothing, so that the next
/// writer's open is the first after the cut and does the recovery's writes), and makes the
/// model what survived. Returns how many records did.
fn verify_read_only(fs: &PowerCutMount, s: &mut Trial, context: &str) -> (usize, usize) {
    let dir = fs.path().join("log");
    let fail = |what: String| -> ! { panic!("{what}\n{context}") };
    let opened = if s.events {
        EventLog::open_read_only(&dir).map(|ev| Handle::Events(Box::new(ev)))
    } else {
        Log::open_read_only(&dir).map(|log| Handle::Raw(Box::new(log)))
    };
    let handle = match opened {
        Ok(handle) => handle,
        // The power went before the log's first segment was durable: nothing was acknowledged.
        Err(StorageError::NotALogDirectory { .. }) if s.model.acked == 0 => return no_log(s),
        Err(StorageError::Io { source, .. })
            if s.model.acked == 0 && source.kind() == std::io::ErrorKind::NotFound =>
        {
            return no_log(s)
        }
        Err(e) => fail(format!("the log does not open read-only after the cut: {e}")),
    };
    let checked = check_records(&handle, s).unwrap_or_else(|e| fail(e));
    let (found, envelopes, head, removed) =
        (checked.found, checked.envelopes, checked.head, checked.removed);
    if removed + found.len() < s.model.acked {
        fail(format!(
            "acknowledged records lost: {} of {} acknowledged records survived ({} removed by \
             retention, {} appended)",
            found.len(),
            s.model.acked,
            removed,
            s.model.recs.len()
        ));
    }
    let candidates: Vec<&Rec> = s.model.candidates().collect();
    if let (Some(last), Some(next)) = (found.last(), candidates.get(removed + found.len())) {
        if last.call == next.call {
            fail(format!(
                "a batch survived in part: record {} survived, not the next",
                found.len()
            ));
        }
    }
    if let Handle::Events(ev) = &handle {
        check::index_matches(ev, &envelopes, s.rng.below(AGGREGATES)).unwrap_or_else(|e| fail(e));
    }
    let read_only_head = handle.tree_head().unwrap_or_else(|e| fail(format!("tree_head: {e}")));
    if read_only_head != head {
        fail(format!("read-only tree head {read_only_head:?}, computed {head:?}"));
    }
    // The consumer's position is the last one committed, or one the power cut mid-commit.
    let position = handle.log().consumer(workload::CONSUMER).map(|c| c.position());
    match position {
        Ok(p) if p == s.model.consumer || (p.is_some() && p == s.model.consumer_pending) => {
            s.model.consumer = p;
            s.model.consumer_pending = None;
        }
        Ok(p) => fail(format!(
            "consumer position {p:?}, committed {:?}, perhaps {:?}",
            s.model.consumer, s.model.consumer_pending
        )),
        Err(e) => fail(format!("the consumer's position does not read after the cut: {e}")),
    }
    // What survived is on the disk now, so the next writer must keep all of it.
    s.model.checked_end = head.end_offset;
    s.model.recs.truncate(removed);
    s.model.recs.extend(found);
    s.model.verified = checked.verified;
    s.model.maybe.clear();
    s.model.acked = s.model.recs.len();
    (s.model.recs.len(), removed)
}

fn no_log(s: &mut Trial) -> (usize, usize) {
    s.model =
        Model { next_seq: s.model.next_seq, next_call: s.model.next_call, ..Model::default() };
    (0, 0)
}

/// Checks the log as a writer sees it after `verify_read_only`: the same records, the same
/// index answers, and the same tree head with pages and without.
fn verify_writer(fs: &PowerCutMount, s: &mut Trial, context: &str) {
    let dir = fs.path().join("log");
    let fail = |what: String| -> ! { panic!("{what}\n{context}") };
    let handle = Handle::open(&dir, s.events, &s.options, &s.index)
        .unwrap_or_else(|e| fail(format!("the log does not open as a writer after the cut: {e}")));
    let checked = check_records(&handle, s).unwrap_or_else(|e| fail(e));
    let (found, envelopes, head) = (checked.found, checked.envelopes, checked.head);
    if checked.removed + found.len() != s.model.recs.len() {
        fail(format!(
            "the writer's open kept {} records after {} removed, the read-only open saw {}",
            found.len(),
            checked.removed,
            s.model.recs.len()
        ));
    }
    if let Handle::Events(ev) = &handle {
        check::index_matches(ev, &envelopes, s.rng.below(AGGREGATES)).unwrap_or_else(|e| fail(e));
    }
    let paged = handle.tree_head().unwrap_or_else(|e| fail(format!("tree_head: {e}")));
    drop(handle);
    if checked.removed > 0 {
        // Without pages the tree of a log whose front was removed is not computed (by design).
        if paged != head {
            fail(format!("tree heads differ: pages {paged:?}, computed {head:?}"));
        }
        return;
    }
    let plain = Options { merkle_rollup: false, ..s.options.clone() };
    let log = Log::open_with(&dir, plain)
        .unwrap_or_else(|e| fail(format!("the log does not reopen without pages: {e}")));
    let plain_head = log.tree_head(None).unwrap_or_else(|e| fail(format!("tree_head: {e}")));
    if paged != plain_head || plain_head != head {
        fail(format!("tree heads differ: pages {paged:?}, none {plain_head:?}, computed {head:?}"));
    }
}

/// Replays the whole log and checks its records against the model: a prefix of the
/// candidates, at the offsets their appends returned, with the right bytes. Returns them, the
/// events of an event log, and the tree head computed from them.
fn check_records(handle: &Handle, s: &Trial) -> Result<Checked, String> {
    let log = handle.log();
    // Retention may have removed a prefix of the records, all of them checked after an earlier
    // cut (`truncate_before` is asked only up to there), whose leaves the model kept.
    let start = log.start_offset();
    let removed = s.model.recs.iter().take_while(|r| r.offset.is_some_and(|o| o < start)).count();
    let Some(kept) = s.model.verified.get(..removed) else {
        return Err(format!("retention removed {removed} records, not all of them checked"));
    };
    let last_ms = kept.last().map_or(0, |&(_, ms)| ms);
    let mut verified: Vec<([u8; 32], u64)> = kept.to_vec();
    let candidates: Vec<&Rec> = s.model.candidates().skip(removed).collect();
    let (mut found, mut envelopes) = (Vec::new(), Vec::new());
    let mut head =
        check::HeadBuilder::resume(start, kept.iter().map(|&(leaf, _)| leaf).collect(), last_ms);
    for (i, item) in log.replay(start).enumerate() {
        let record = item.map_err(|e| format!("replay failed after {i} records: {e}"))?;
        let Some(want) = candidates.get(i) else {
            return Err(format!("record {i} at {} was never appended", record.offset));
        };
        let expected_at = head.head().end_offset;
        if record.offset != expected_at || want.offset.is_some_and(|o| o != record.offset) {
            return Err(format!("record {i} is at {}, expected {:?}", record.offset, want.offset));
        }
        let same = if s.events {
            let envelope = EventEnvelope::from_record(&record)
                .map_err(|e| format!("record {i} is not an event: {e}"))?;
            let same = envelope.event == workload::event(want.seq, want.len);
            envelopes.push(envelope);
            same
        } else {
            *record.payload == workload::payload(want.seq, want.len)[..]
        };
        if !same {
            return Err(format!(
                "record {i} at {} holds the wrong bytes (expected seq {})",
                record.offset, want.seq
            ));
        }
        head.push(&record);
        let leaf = *head.leaves().last().expect("just pushed");
        verified.push((leaf, record.write_timestamp_ms));
        found.push(Rec { offset: Some(record.offset), ..**want });
    }
    Ok(Checked { found, envelopes, head: head.head(), removed, verified })
}

/// What `check_records` found after a cut.
struct Checked {
    /// The records in the log, from its start.
    found: Vec<Rec>,
    /// Their events, for an event log.
    envelopes: Vec<EventEnvelope>,
    /// The tree head over every record the log ever held (removed ones included).
    head: TreeHead,
    /// How many of the model's records retention removed.
    removed: usize,
    /// The leaf hash and write time of every record, removed ones included.
    verified: Vec<([u8; 32], u64)>,
}
