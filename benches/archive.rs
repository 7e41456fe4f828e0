//! Backup, restore and shipping against the S3-compatible server of the archive tests (s3s over
//! a temporary directory, on loopback, in this process). One run, no criterion: the figures are
//! single measurements of large operations.
//!
//! 1. Backup of a log of `CHRONICLE_ARCHIVE_BENCH_MIB` MiB (default 1024; 1 KiB records of
//!    pseudo-random bytes, 64 MiB segments) to S3, uncompressed: throughput, and the time that
//!    SHA-256 alone takes over the same data (each image, and each record's leaf hash).
//! 2. Restore of it: throughput, and the hashing it does (the pieces, the leaves, and the leaves
//!    again when the restored log computes its own tree head).
//! 3. Shipping lag: a writer appends 1 KiB records at 50 MB/s, syncing every 10 ms, for
//!    `CHRONICLE_ARCHIVE_BENCH_LAG_S` seconds (default 20) while a shipper thread ships every
//!    `CHRONICLE_ARCHIVE_BENCH_INTERVAL_MS` (default 500) ms, reopening the log read-only each
//!    round as `chronicle ship` does; for each sync, the delay until a completed shipment
//!    covers it.
//!
//! Run: `flock /tmp/bench.lock cargo bench --features archive --bench archive`.

#[path = "../tests/archive_common/mod.rs"]
mod archive_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use archive_common::S3Server;
use chronicle::archive::{self, BackupOptions, RestoreOptions, Shipper};
use chronicle::rollup::leaf_hash;
use chronicle::Log;
use sha2::{Digest as _, Sha256};

const RECORD: usize = 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// Pseudo-random bytes (xorshift), so that nothing compresses them.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// SHA-256 of every segment file's image and every record's leaf hash: the hashing a backup
/// does, alone.
fn hash_alone(log: &Log) -> (Duration, Duration) {
    let started = Instant::now();
    let mut segments: Vec<_> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let end = log.end_offset();
    for (i, path) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let base: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let next = segments
            .get(i + 1)
            .map_or(end, |p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap());
        let image = &bytes[..(64 + next - base) as usize];
        std::hint::black_box(Sha256::digest(image));
    }
    let images = started.elapsed();
    let started = Instant::now();
    for record in log.replay(log.start_offset()) {
        let record = record.unwrap();
        std::hint::black_box(leaf_hash(record.offset, record.write_timestamp_ms, &record.payload));
    }
    (images, started.elapsed())
}

fn backup_and_restore(server: &S3Server, mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = make_log(dir.path(), mib);
    let log = Log::open_read_only(&log_dir).unwrap();
    let (images, leaves) = hash_alone(&log);
    let s3 = (server.url("bench"), server.options());
    let file = (format!("file://{}", dir.path().join("backup").display()), Vec::new());
    for (name, (url, store)) in [("S3", s3), ("file://", file)] {
        println!("{name}:");
        backup_and_restore_to(&log, dir.path(), &url, &store, images, leaves);
    }
}

/// A log of `mib` MiB of 1 KiB records in `dir/log`.
fn make_log(dir: &std::path::Path, mib: u64) -> std::path::PathBuf {
    let log_dir = dir.join("log");
    let mut log = Log::open(&log_dir).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut payload = vec![0u8; RECORD];
    while log.end_offset() < mib << 20 {
        fill(&mut payload, &mut state);
        log.append(&payload).unwrap();
    }
    log.close().unwrap();
    let log = Log::open_read_only(&log_dir).unwrap();
    let records = log.verify().unwrap().records;
    log.tree_head(None).unwrap();
    println!(
        "log: {} MiB, {records} records of {RECORD} B, 64 MiB segments",
        log.end_offset() >> 20
    );
    log_dir
}

fn backup_and_restore_to(
    log: &Log,
    dir: &std::path::Path,
    url: &str,
    store: &[(String, String)],
    images: Duration,
    leaves: Duration,
) {
    let bytes = log.end_offset();
    let options = BackupOptions { store_options: store.to_vec(), ..BackupOptions::default() };
    let started = Instant::now();
    let report = archive::backup(log, url, options).unwrap();
    let backup = started.elapsed();
    assert_eq!(report.end_offset, bytes);
    let hashing = images + leaves;
    println!(
        "backup:  {:>6.2} s  {:>6.0} MiB/s  hashing alone {:.2} s (images {:.2} s, leaves {:.2} s) = {:.0} % of it",
        backup.as_secs_f64(),
        mib_per_s(bytes, backup),
        hashing.as_secs_f64(),
        images.as_secs_f64(),
        leaves.as_secs_f64(),
        100.0 * hashing.as_secs_f64() / backup.as_secs_f64()
    );

    let target = dir.join("restored");
    let restore = RestoreOptions { store_options: store.to_vec(), ..RestoreOptions::default() };
    let started = Instant::now();
    let report = archive::restore(url, &target, &restore).unwrap();
    let restored = started.elapsed();
    assert_eq!(report.end_offset, bytes);
    // Restore hashes each piece once, the leaves once while checking, and the leaves again
    // when the restored log computes its own tree head.
    let restore_hashing = images + leaves * 2;
    println!(
        "restore: {:>6.2} s  {:>6.0} MiB/s  hashing alone {:.2} s (pieces {:.2} s, leaves 2 x {:.2} s) = {:.0} % of it",
        restored.as_secs_f64(),
        mib_per_s(bytes, restored),
        restore_hashing.as_secs_f64(),
        images.as_secs_f64(),
        leaves.as_secs_f64(),
        100.0 * restore_hashing.as_secs_f64() / restored.as_secs_f64()
    );
    let target = dir.join("restored-unchecked");
    let restore = RestoreOptions { check_log: false, ..restore };
    let started = Instant::now();
    archive::restore(url, &target, &restore).unwrap();
    let unchecked = started.elapsed();
    std::fs::remove_dir_all(dir.join("restored")).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    println!(
        "restore without reopening the log to compare its head: {:.2} s, {:.0} MiB/s",
        unchecked.as_secs_f64(),
        mib_per_s(bytes, unchecked)
    );
}

fn quantile(samples: &[f64], q: f64) -> f64 {
    samples.get(((samples.len() - 1) as f64 * q) as usize).copied().unwrap_or(0.0)
}

fn shipping_lag(server: &S3Server, seconds: u64, interval: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = Log::open(&log_dir).unwrap();
    log.append_sync(b"start").unwrap();
    let url = server.url("lag");
    let options = BackupOptions { store_options: server.options(), ..BackupOptions::default() };
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // (end offset, seconds since epoch) of each completed shipment.
    let shipped = Arc::new(Mutex::new(Vec::<(u64, f64)>::new()));
    let shipper = {
        let (stop, shipped, log_dir) = (Arc::clone(&stop), Arc::clone(&shipped), log_dir.clone());
        thread::spawn(move || {
            let mut shipper = Shipper::new(&url, options).unwrap();
            let mut rounds = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let log = Log::open_read_only(&log_dir).unwrap();
                let report = shipper.ship(&log).unwrap();
                let done = epoch.elapsed().as_secs_f64();
                shipped.lock().unwrap().push((report.end_offset, done));
                rounds.push((started.elapsed().as_secs_f64(), report.bytes_shipped));
                if let Some(rest) = interval.checked_sub(started.elapsed()) {
                    thread::sleep(rest);
                }
            }
            shipper.release().unwrap();
            rounds
        })
    };
    // 50 MB/s: every 10 ms, 500 KB of 1 KiB records, then a sync.
    let mut syncs = Vec::new();
    let mut state = 1u64;
    let mut payload = vec![0u8; RECORD];
    let tick = Duration::from_millis(10);
    let per_tick = 500_000 / RECORD;
    let mut next = Instant::now();
    let mut behind = 0u64;
    while epoch.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..per_tick {
            fill(&mut payload, &mut state);
            log.append(&payload).unwrap();
        }
        log.sync().unwrap();
        syncs.push((log.end_offset(), epoch.elapsed().as_secs_f64()));
        next += tick;
        match next.checked_duration_since(Instant::now()) {
            Some(rest) => thread::sleep(rest),
            None => behind += 1,
        }
    }
    let written = log.end_offset();
    let elapsed = epoch.elapsed();
    // A read-only open knows the last sync only once a later frame records it, or the close
    // does. Let the shipper catch up, then stop it.
    log.close().unwrap();
    while shipped.lock().unwrap().last().is_none_or(|s| s.0 < written) {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Release);
    let rounds = shipper.join().unwrap();
    let shipped = shipped.lock().unwrap().clone();
    let mut lags: Vec<f64> = syncs
        .iter()
        .map(|&(end, at)| {
            let done = shipped.iter().find(|s| s.0 >= end).map_or(f64::NAN, |s| s.1);
            (done - at) * 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let round_times: Vec<f64> = rounds.iter().map(|r| r.0 * 1000.0).collect();
    let mut sorted_rounds = round_times.clone();
    sorted_rounds.sort_by(f64::total_cmp);
    println!(
        "shipping lag at {:.0} MB/s for {:.0} s (interval {} ms, {} late ticks of 10 ms): median {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} rounds, median round {:.0} ms, p99 round {:.0} ms",
        written as f64 / 1e6 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        interval.as_millis(),
        behind,
        quantile(&lags, 0.5),
        quantile(&lags, 0.99),
        lags.last().copied().unwrap_or(0.0),
        rounds.len(),
        quantile(&sorted_rounds, 0.5),
        quantile(&sorted_rounds, 0.99),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("archive: bench");
        return;
    }
    let server = S3Server::start();
    let mib = env_u64("CHRONICLE_ARCHIVE_BENCH_MIB", 1024);
    backup_and_restore(&server, mib);
    let seconds = env_u64("CHRONICLE_ARCHIVE_BENCH_LAG_S", 20);
    if seconds == 0 {
        return;
    }
    let interval = Duration::from_millis(env_u64("CHRONICLE_ARCHIVE_BENCH_INTERVAL_MS", 500));
    shipping_lag(&server, seconds, interval);
}
