//! Crash tests for the rollup's stored pages: a child appends to a log that keeps them and is
//! killed with SIGKILL at a random moment, over and over, on the same directory, so pages
//! written (never synced) by the hashing thread or by a query pile up across crashes.
//!
//! The child is this test binary run again with only [`crash_child`] selected. It appends
//! [`record`]`(i)` for `i = next, next + 1, ...`, now and then with `append_sync` (printing
//! `ack <records>`), and now and then asks `tree_head(None)` (printing `head <size> <root>`).
//! One kill in three is also a power cut that lost records after the last sync but kept the
//! pages ([`lose_unsynced_tail`]). After every kill the parent reopens the log and checks
//! that the records are `record(0)`, `record(1)`, ..., with every acknowledged one; that the
//! pages kept on open cover those the previous check stored; that the head covers every
//! record, agrees with the child's last head (and a consistency proof from it), and equals
//! the head computed with stored pages off; that `verify_pages` is then clean with every full
//! page stored; and on one cycle in five, that an inclusion proof verifies against the head.
//!
//! `CHRONICLE_ROLLUP_CRASH_CYCLES` sets the number of kills (default 50) and
//! `CHRONICLE_ROLLUP_CRASH_SEED` the seed (default: from the clock, printed on failure).

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronicle::rollup::Hash;
use chronicle::{Log, Options};
use common::Rng;

const CHILD_DIR_ENV: &str = "CHRONICLE_ROLLUP_CRASH_DIR";
const CHILD_SEED_ENV: &str = "CHRONICLE_ROLLUP_CRASH_CHILD_SEED";
const CHILD_NEXT_ENV: &str = "CHRONICLE_ROLLUP_CRASH_NEXT";
const CYCLES_DEFAULT: u64 = 50;
const SIGKILL: i32 = 9;
/// Records one child appends before it idles waiting for its kill (bounds the log's growth).
const CHILD_RECORDS_MAX: u64 = 20_000;
/// Records the parent writes before the first child: 6 level-0 pages short of the first
/// level-1 page, so that a child seals it.
const PREFILL: u64 = 250 * 256;

fn options() -> Options {
    Options { segment_bytes: 1 << 20, ..Options::default() }
}

/// Record `i`: its index, then 0 to 96 bytes determined by it.
fn record(i: u64) -> Vec<u8> {
    let mut out = i.to_le_bytes().to_vec();
    out.extend(common::payload(i as usize, (i * 37 % 97) as usize));
    out
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
}

/// The child process's body; does nothing in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let mut rng = Rng(env_u64(CHILD_SEED_ENV).unwrap());
    let mut next = env_u64(CHILD_NEXT_ENV).unwrap();
    let mut log = Log::open_with(Path::new(&dir), options()).unwrap();
    // Stdout is line-buffered: each line reaches the parent when it is printed.
    println!("\nopened");
    for _ in 0..CHILD_RECORDS_MAX {
        if rng.below(1024) == 0 {
            log.append_sync(&record(next)).unwrap();
            println!("ack {}", next + 1);
        } else {
            log.append(&record(next)).unwrap();
        }
        next += 1;
        if rng.below(500) == 0 {
            let head = log.tree_head(None).unwrap();
            assert_eq!(head.tree_size, next, "the child's head does not cover its records");
            println!("head {} {}", head.tree_size, head.root);
        }
    }
    println!("idle");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What one child said before it was killed.
#[derive(Default)]
struct Said {
    opened: bool,
    idle: bool,
    acked: Option<u64>,
    head: Option<(u64, Hash)>,
}

/// Runs a child on `dir` from record `next` and kills it `delay` after it opened the log (or
/// after it started, if `early`).
fn run_child(dir: &Path, seed: u64, next: u64, delay: Duration, early: bool) -> Said {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_NEXT_ENV, next.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut said = Said::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["opened"] => {
                    said.opened = true;
                    let _ = opened_tx.send(());
                }
                ["idle"] => said.idle = true,
                ["ack", n] => said.acked = Some(n.parse().unwrap()),
                ["head", n, root] => said.head = Some((n.parse().unwrap(), root.parse().unwrap())),
                _ => {}
            }
        }
        said
    });
    // If the child dies before it opens, the sender is dropped and this returns at once.
    if early || opened_rx.recv_timeout(Duration::from_secs(120)).is_ok() {
        std::thread::sleep(delay);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGKILL), "the child ended on its own: {status:?}");
    reader.join().unwrap()
}

#[derive(Debug, Default)]
struct Stats {
    children_idle: u64,
    tails_lost: u64,
    opens_that_dropped_pages: u64,
    entries_rehashed_on_open: u64,
}

/// Reopens the log after a kill and checks it, its pages and its head (see the module docs);
/// `stored` is the entries the pages covered at the previous check. Returns the records.
fn check(dir: &Path, said: &Said, stored: u64, rng: &mut Rng, st: &mut Stats, what: &str) -> u64 {
    let log = Log::open_with(dir, options()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    let on_open = log.rollup_report();
    assert!(
        on_open.entries_kept_on_open >= stored,
        "{what}: pages over {stored} entries were stored before the kill, {} kept: {on_open:?}",
        on_open.entries_kept_on_open
    );
    st.opens_that_dropped_pages += u64::from(on_open.dropped.is_some());

    let mut offsets = Vec::new();
    for (i, r) in log.replay(0).enumerate() {
        let r = r.unwrap_or_else(|e| panic!("{what}: replay: {e}"));
        assert!(r.payload[..] == record(i as u64)[..], "{what}: record {i} is not record({i})");
        offsets.push(r.offset);
    }
    let n = offsets.len() as u64;
    if let Some(acked) = said.acked {
        assert!(n >= acked, "{what}: {acked} records acknowledged, {n} in the log");
    }
    st.entries_rehashed_on_open += n.saturating_sub(on_open.entries_kept_on_open);

    let head = log.tree_head(None).unwrap();
    assert_eq!((head.tree_size, head.end_offset), (n, log.end_offset()), "{what}: {head:?}");
    if let Some((size, root)) = said.head {
        assert!(size <= n, "{what}: the child reported a head of {size}, the log has {n}");
        assert_eq!(log.tree_head(Some(size)).unwrap().root, root, "{what}: head of {size}");
        let proof = log.consistency_proof(size, None).unwrap();
        proof.verify(Some((&root, &head.root))).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let pages = log.verify_pages(None, None).unwrap();
    assert!(pages.is_clean(), "{what}: {:?}", pages.problems);
    assert_eq!(pages.entries, n, "{what}");
    assert!(pages.levels.iter().all(|l| l.stored == l.expected), "{what}: {:?}", pages.levels);
    let report = log.rollup_report();
    assert_eq!((report.entries_hashed, report.error.as_deref()), (n, None), "{what}: {report:?}");
    assert!(report.pages.iter().all(|&(_, in_memory)| in_memory == 0), "{what}: {report:?}");
    if n > 0 && rng.below(5) == 0 {
        let i = rng.below(n);
        let proof = log.inclusion_proof(offsets[i as usize], None).unwrap();
        proof.verify(Some(&head.root)).unwrap_or_else(|e| panic!("{what}: record {i}: {e}"));
        assert_eq!((proof.leaf_index, proof.tree_size), (i, n), "{what}");
        assert_eq!(proof.payload_hex, record(i), "{what}");
    }
    drop(log);
    let no_pages = Log::open_with(dir, Options { merkle_rollup: false, ..options() }).unwrap();
    assert_eq!(no_pages.tree_head(None).unwrap(), head, "{what}: the heads from pages differ");
    n
}

/// Simulates a power cut that kept the page files but lost the records after a random point
/// at or after the first `durable` (synced): zeroes them in the last segment (if they reach
/// into an earlier one, does nothing), then appends up to 2,000 anew with stored pages off.
/// Pages over the lost records then cover records the log no longer has, or others at the
/// same offsets (other write times). Returns the records kept and the records now.
fn lose_unsynced_tail(dir: &Path, durable: u64, rng: &mut Rng) -> Option<(u64, u64)> {
    let n = Log::open_read_only(dir).unwrap().replay(0).count() as u64;
    // Half the time, everything after the last sync is lost.
    let kept = durable + rng.below(n.checked_sub(durable)? + 1) * rng.below(2);
    // Records are contiguous from offset 0, across segments too.
    let cut: u64 = (0..kept).map(|i| common::stride(record(i).len())).sum();
    let (base, path) = common::segment_of(dir, cut);
    if base != common::segments(dir).last()?.0 {
        return None;
    }
    common::zero_from(&path, common::file_pos(base, cut));
    let mut log = Log::open_with(dir, Options { merkle_rollup: false, ..options() }).unwrap();
    assert_eq!(log.end_offset(), cut, "the log does not end where its tail was zeroed");
    let now = kept + rng.below(2_000);
    for i in kept..now {
        log.append(&record(i)).unwrap();
    }
    log.close().unwrap();
    Some((kept, now))
}

#[test]
fn pages_survive_sigkill() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let cycles = env_u64("CHRONICLE_ROLLUP_CRASH_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let seed = env_u64("CHRONICLE_ROLLUP_CRASH_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    let (started, mut rng, dir) = (Instant::now(), Rng(seed), tempfile::tempdir().unwrap());
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..PREFILL {
        log.append(&record(i)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let mut st = Stats::default();
    let mut records = check(dir.path(), &Said::default(), 0, &mut rng, &mut st, "prefill");
    for cycle in 0..cycles {
        let early = rng.below(10) == 0;
        let delay = Duration::from_micros(rng.below(10_000));
        let child_seed = rng.next();
        let mut said = run_child(dir.path(), child_seed, records, delay, early);
        let mut what = format!(
            "cycle {cycle} (CHRONICLE_ROLLUP_CRASH_SEED={seed}, {}kill after {delay:?})",
            if early { "early " } else { "" }
        );
        assert!(early || said.opened, "{what}: the child never opened the log");
        // The records the previous check closed the log on, and those synced since, stay.
        let durable = said.acked.unwrap_or(records).max(records);
        let power_cut = rng.below(3) == 0;
        if let Some((kept, now)) =
            power_cut.then(|| lose_unsynced_tail(dir.path(), durable, &mut rng)).flatten()
        {
            st.tails_lost += 1;
            said.head = said.head.filter(|&(size, _)| size <= kept);
            what.push_str(&format!(", lost the records after {kept}, appended to {now}"));
        }
        st.children_idle += u64::from(said.idle);
        records = check(dir.path(), &said, records / 256 * 256, &mut rng, &mut st, &what);
    }
    eprintln!(
        "pages_survive_sigkill: seed {seed}, {cycles} cycles, {records} records, {:?}; {st:?}",
        started.elapsed()
    );
    assert!(records > PREFILL + 256, "the children appended too little: {records}");
}
