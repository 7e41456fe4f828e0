//! Continuous shipping: a child process that appends and ships to a loopback S3 server is
//! killed with SIGKILL at random moments and started again; after every kill the remote copy
//! restores to a prefix of the log that holds everything synced before the last shipment that
//! completed, and in the end everything. A second shipper for the same destination is refused;
//! a shipper that lost its lease to another is stopped rather than interleave with it; a
//! shipper that reads the log read-only, as `chronicle ship` does, keeps up with a writer.
//!
//! The child is this test binary run again with only [`ship_child`] selected and
//! `CHRONICLE_SHIP_CHILD_DIR` set. It opens the log (16 KiB segments), then loops: appends a
//! few records (buffered, or synced), and every few loops runs one shipping round and prints
//! `shipped <end_offset>`, where `end_offset` is the log's durable offset before the round.
//! `CHRONICLE_SHIP_CYCLES` sets the number of kills (default 8).

mod archive_common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use archive_common::{records, records_in, S3Server};
use chronicle::archive::{self, ArchiveError, BackupOptions, RestoreOptions, Shipper};
use chronicle::{Log, Options};

const CHILD_DIR_ENV: &str = "CHRONICLE_SHIP_CHILD_DIR";
const CHILD_URL_ENV: &str = "CHRONICLE_SHIP_CHILD_URL";
const CHILD_ENDPOINT_ENV: &str = "CHRONICLE_SHIP_CHILD_ENDPOINT";
const CHILD_SEED_ENV: &str = "CHRONICLE_SHIP_CHILD_SEED";

fn log_options() -> Options {
    Options { segment_bytes: 16 << 10, ..Options::default() }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The store options of the S3 server at `endpoint` (as `S3Server::options`).
fn options_for(endpoint: &str) -> Vec<(String, String)> {
    let server_options = [
        ("aws_endpoint", endpoint),
        ("aws_access_key_id", "chronicle-test"),
        ("aws_secret_access_key", "chronicle-test-secret"),
        ("aws_region", "us-east-1"),
        ("aws_allow_http", "true"),
    ];
    server_options.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

#[test]
fn ship_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let url = std::env::var(CHILD_URL_ENV).unwrap();
    let endpoint = std::env::var(CHILD_ENDPOINT_ENV).unwrap();
    let mut rng: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let mut log = Log::open_with(Path::new(&dir), log_options()).unwrap();
    let options = BackupOptions {
        store_options: options_for(&endpoint),
        pieces_max: 3,
        zstd_level: rng.is_multiple_of(2).then_some(1),
        ..BackupOptions::default()
    };
    let mut shipper = Shipper::new(&url, options).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nopened {}", log.end_offset()).unwrap();
    out.flush().unwrap();
    for round in 0u64.. {
        let payload = vec![(round % 251) as u8; 16 + (splitmix(&mut rng) % 600) as usize];
        match splitmix(&mut rng) % 3 {
            0 => drop(log.append_sync(&payload).unwrap()),
            1 => drop(log.append_batch(&[&payload[..], &payload[1..]]).unwrap()),
            _ => drop(log.append(&payload).unwrap()),
        }
        if round % 7 == 0 {
            let durable = log.reader().durable_offset();
            let report = shipper.ship(&log).unwrap();
            assert_eq!(report.end_offset, durable, "a round ships everything synced before it");
            writeln!(out, "shipped {}", report.end_offset).unwrap();
            out.flush().unwrap();
        }
    }
}

/// Runs the child until `delay` after it opened the log, kills it, and returns the end offset of
/// the last shipment it completed.
fn run_child(dir: &Path, server: &S3Server, url: &str, seed: u64, delay: Duration) -> Option<u64> {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ship_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_URL_ENV, url)
        .env(CHILD_ENDPOINT_ENV, &server.endpoint)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = scopeguard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut shipped = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("opened ") {
                let _ = opened_tx.send(());
            }
            if let Some(end) = line.strip_prefix("shipped ") {
                shipped = Some(end.parse::<u64>().unwrap());
            }
        }
        shipped
    });
    opened_rx.recv_timeout(Duration::from_secs(60)).expect("the child did not start");
    thread::sleep(delay);
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    // A child that ended on its own failed (a shipping round returned an error): its panic
    // message is on stderr, above.
    assert_eq!(status.signal(), Some(9), "the child ended on its own: {status}");
    reader.join().unwrap()
}

struct KillOnDrop(std::process::Child);
fn scopeguard(child: std::process::Child) -> KillOnDrop {
    KillOnDrop(child)
}
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Restores `url` and checks that it is a prefix of the log in `dir` reaching at least
/// `at_least`; returns its end.
fn check_remote_prefix(url: &str, server: &S3Server, dir: &Path, at_least: u64, what: &str) -> u64 {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("restored");
    let options = RestoreOptions { store_options: server.options(), ..RestoreOptions::default() };
    let report = archive::restore(url, &target, &options).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        report.end_offset >= at_least,
        "{what}: restored to {}, shipped {at_least}",
        report.end_offset
    );
    let local: Vec<_> = records_in(dir).into_iter().filter(|r| r.0 < report.end_offset).collect();
    assert!(local == records_in(&target), "{what}: the restored log is not a prefix of the log");
    report.end_offset
}

#[test]
fn shipping_killed_at_random_points_resumes() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let cycles: u64 =
        std::env::var("CHRONICLE_SHIP_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let seed = std::env::var("CHRONICLE_SHIP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    let server = S3Server::start();
    let url = server.url("shipped");
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut rng = seed;
    let mut last_shipped = 0;
    for cycle in 0..cycles {
        let delay = Duration::from_millis(20 + splitmix(&mut rng) % 300);
        let what = format!("cycle {cycle} (CHRONICLE_SHIP_SEED={seed}, kill after {delay:?})");
        if let Some(end) = run_child(&log_dir, &server, &url, splitmix(&mut rng), delay) {
            last_shipped = end;
        }
        if last_shipped > 0 {
            check_remote_prefix(&url, &server, &log_dir, last_shipped, &what);
        }
    }
    // The last shipper's lease names a dead process of this host: a new one takes it over and
    // ships the rest.
    let log = Log::open_with(&log_dir, log_options()).unwrap();
    let options = BackupOptions { store_options: server.options(), ..BackupOptions::default() };
    let report = archive::backup(&log, &url, options).unwrap();
    assert_eq!(report.end_offset, log.end_offset());
    let end =
        check_remote_prefix(&url, &server, &log_dir, log.end_offset(), "after the last cycle");
    assert_eq!(end, log.end_offset());
    let check = archive::verify_backup(&url, &server.options()).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert!(records(&log).len() > 10);
    eprintln!(
        "shipping_killed_at_random_points_resumes: seed {seed}, {cycles} kills, log of {} bytes",
        log.end_offset()
    );
}

#[test]
fn a_second_shipper_is_refused() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file_url = format!("file://{}", dir.path().join("backup").display());
    for (url, store) in [(server.url("leased"), server.options()), (file_url, Vec::new())] {
        let options = BackupOptions { store_options: store, ..BackupOptions::default() };
        let first = Shipper::new(&url, options.clone()).unwrap();
        let err = Shipper::new(&url, options.clone()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Leased { owner, .. } if owner == first.run_id()),
            "{err}"
        );
        let log = Log::open(dir.path().join(format!("log-{}", url.len()))).unwrap();
        let err = archive::backup(&log, &url, options.clone()).unwrap_err();
        assert!(matches!(err, ArchiveError::Leased { .. }), "{err}");
        first.release().unwrap();
        archive::backup(&log, &url, options).unwrap();
    }
}

#[test]
fn a_shipper_that_lost_its_lease_does_not_interleave() {
    let server = S3Server::start();
    let url = server.url("interleave");
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path().join("log"), log_options()).unwrap();
    let options = BackupOptions {
        store_options: server.options(),
        lease_duration: Duration::from_secs(1),
        ..BackupOptions::default()
    };
    let mut first = Shipper::new(&url, options.clone()).unwrap();
    log.append_sync(b"one").unwrap();
    first.ship(&log).unwrap();
    // The first shipper stalls past its lease; a second one takes the destination over.
    thread::sleep(Duration::from_millis(1100));
    let mut second = Shipper::new(&url, options).unwrap();
    log.append_sync(b"two").unwrap();
    second.ship(&log).unwrap();
    log.append_sync(b"three").unwrap();
    let err = first.ship(&log).unwrap_err();
    assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
    second.ship(&log).unwrap();
    let check = archive::verify_backup(&url, &server.options()).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.end_offset, log.end_offset());
}

#[test]
fn a_read_only_shipper_keeps_up_with_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let url = format!("file://{}", dir.path().join("backup").display());
    let mut log = Log::open_with(&log_dir, log_options()).unwrap();
    log.append_sync(b"first").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let shipper = {
        let (stop, log_dir, url) = (Arc::clone(&stop), log_dir.clone(), url.clone());
        thread::spawn(move || {
            let mut shipper = Shipper::new(&url, BackupOptions::default()).unwrap();
            let mut rounds = 0;
            while !stop.load(Ordering::Acquire) {
                let log = Log::open_read_only(&log_dir).unwrap();
                shipper.ship(&log).unwrap();
                rounds += 1;
                thread::sleep(Duration::from_millis(5));
            }
            shipper.release().unwrap();
            rounds
        })
    };
    for i in 0..3000u32 {
        log.append(&i.to_le_bytes().repeat(1 + i as usize % 20)).unwrap();
        if i % 50 == 0 {
            log.sync().unwrap();
        }
    }
    log.close().unwrap();
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Release);
    let rounds = shipper.join().unwrap();
    assert!(rounds > 1);
    let log = Log::open_read_only(&log_dir).unwrap();
    let report = archive::backup(&log, &url, BackupOptions::default()).unwrap();
    assert_eq!(report.end_offset, log.end_offset());
    let target = dir.path().join("restored");
    archive::restore(&url, &target, &RestoreOptions::default()).unwrap();
    assert!(records_in(&target) == records(&log));
}

#[test]
fn a_round_that_fails_half_way_is_shipped_again_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let url = format!("file://{}", dir.path().join("backup").display());
    let mut log = Log::open_with(&log_dir, log_options()).unwrap();
    for i in 0..400u32 {
        log.append(&i.to_le_bytes().repeat(30)).unwrap();
    }
    log.sync().unwrap();
    // Hashed now, so that the log's own tree never reads the damage below.
    log.tree_head(None).unwrap();
    // Damage a frame of the third segment on disk after the log was opened: the round ships
    // the first two segments' objects, then fails before its catalog.
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4);
    let third = std::fs::read(&segments[2]).unwrap();
    let mut damaged = third.clone();
    damaged[64 + 40] ^= 1;
    std::fs::write(&segments[2], &damaged).unwrap();
    let mut shipper = Shipper::new(&url, BackupOptions::default()).unwrap();
    let err = shipper.ship(&log).unwrap_err();
    assert!(matches!(err, ArchiveError::LocalDamage { .. }), "{err}");
    std::fs::write(&segments[2], &third).unwrap();
    let report = shipper.ship(&log).unwrap();
    assert_eq!(report.end_offset, log.end_offset());
    shipper.release().unwrap();
    let check = archive::verify_backup(&url, &[]).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let target = dir.path().join("restored");
    archive::restore(&url, &target, &RestoreOptions::default()).unwrap();
    assert!(records_in(&target) == records(&log));
}
