//! Helpers shared by the benchmarks: scratch directories on the bench disk, pre-built logs,
//! and the naive baselines every Chronicle number is compared with.
//!
//! The baselines are deliberately plain, the way an application would write a log without a
//! storage engine: `std::fs::File` behind a `BufWriter`, frames `[len u32][crc u32][data]`
//! (little-endian, CRC-32 of the data), one `fdatasync` at the end; a `BufReader` that checks
//! every CRC; and, for durable appends, `pwrite` + `fdatasync` per record into a preallocated
//! file.

// Each bench target compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chronicle::{Event, EventLog, Log};
use criterion::Throughput;
use fs4::fs_std::FileExt as _;
use tempfile::TempDir;

/// Records per run in the "1M records" benchmarks.
pub const RECORDS: u64 = 1_000_000;

/// Payload size of the small-record benchmarks.
pub const PAYLOAD_LEN: usize = 128;

/// Bytes Chronicle writes per 128-byte record: a 32-byte frame header plus the payload
/// (already a multiple of the 8-byte frame alignment). The per-record `pwrite` baseline writes
/// this many bytes so both sides move the same data to disk.
pub const FRAME_LEN_128: usize = 32 + PAYLOAD_LEN;

/// Size of the preallocated file of the `pwrite` + `fdatasync` baselines: the default segment
/// size, like the segment an `append_sync` writes into.
pub const SYNC_FILE_BYTES: u64 = 64 << 20;

/// The throughput of `records` records of `payload_len` payload bytes each, so criterion
/// reports both records/s and bytes/s. Bytes are payload bytes (what a caller appends or a
/// replay returns), not the frame bytes on disk.
pub fn records(records: u64, payload_len: usize) -> Throughput {
    Throughput::ElementsAndBytes { elements: records, bytes: records * payload_len as u64 }
}

/// A fresh scratch directory on the same disk as the build (`target/tmp`), removed on drop.
pub fn scratch_dir(prefix: &str) -> TempDir {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&root).expect("create target/tmp");
    tempfile::Builder::new().prefix(prefix).tempdir_in(root).expect("create scratch dir")
}

/// A deterministic, non-constant payload (so nothing compresses or short-circuits).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The typed event the event benchmarks append: a short type, the default namespace, an
/// aggregate id and a 128-byte payload.
pub fn bench_event(i: u64, body: &[u8]) -> Event {
    Event::builder("bench.event").aggregate_id(i % 1024).payload(body.to_vec()).build()
}

/// Writes a closed log of `count` records of `payload_len` bytes into `dir`.
pub fn build_log(dir: &Path, count: u64, payload_len: usize) {
    let data = payload(payload_len, 7);
    let mut log = Log::open(dir).expect("open log");
    for _ in 0..count {
        log.append(&data).expect("append");
    }
    log.close().expect("close log");
}

/// Writes a closed event log of `count` events with 128-byte payloads into `dir`.
pub fn build_event_log(dir: &Path, count: u64) {
    let body = payload(PAYLOAD_LEN, 11);
    let mut log = EventLog::open(dir).expect("open event log");
    for i in 0..count {
        log.append(&bench_event(i, &body)).expect("append event");
    }
    log.close().expect("close event log");
}

/// Naive baseline writer: `BufWriter<File>` (default 8 KiB buffer), frames
/// `[len u32][crc u32][data]`, `fdatasync` at the end when `sync` is set.
pub fn baseline_write(path: &Path, count: u64, data: &[u8], sync: bool) {
    let file = File::create(path).expect("create baseline file");
    let mut out = BufWriter::new(file);
    let len = u32::try_from(data.len()).expect("record fits u32");
    for _ in 0..count {
        let crc = crc32fast::hash(data);
        out.write_all(&len.to_le_bytes()).expect("write");
        out.write_all(&crc.to_le_bytes()).expect("write");
        out.write_all(data).expect("write");
    }
    let file = out.into_inner().expect("flush baseline");
    if sync {
        file.sync_data().expect("fdatasync baseline");
    }
}

/// Writes `bytes` bytes into a new file at `path` with `write` calls of `chunk.len()` bytes
/// (the last one shorter), no sync: the cheapest way to put that much new data in the page
/// cache.
pub fn write_bytes(path: &Path, bytes: u64, chunk: &[u8]) {
    let mut file = File::create(path).expect("create floor file");
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).expect("chunk fits usize");
        file.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
}

/// Naive baseline reader: `BufReader<File>` (default 8 KiB buffer), reads every frame into
/// one reused buffer and checks its CRC. Returns (records, payload bytes).
pub fn baseline_read(path: &Path) -> (u64, u64) {
    let file = File::open(path).expect("open baseline file");
    let mut input = BufReader::new(file);
    let mut header = [0u8; 8];
    let mut buf = Vec::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read baseline: {e}"),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        buf.resize(len, 0);
        input.read_exact(&mut buf).expect("read baseline payload");
        assert_eq!(crc32fast::hash(&buf), crc, "baseline CRC mismatch");
        records += 1;
        bytes += len as u64;
    }
    (records, bytes)
}

/// How the file of a `pwrite` + `fdatasync` baseline is prepared.
#[derive(Clone, Copy, Debug)]
pub enum Prealloc {
    /// `fallocate` (fs4's `FileExt::allocate`), as Chronicle does for its segments: the
    /// extents are allocated but unwritten, so each first write into them also changes
    /// metadata that `fdatasync` must commit.
    Fallocate,
    /// Every byte written with zeros and synced first: later writes overwrite initialised
    /// blocks, so `fdatasync` flushes data only.
    Zeroed,
}

/// A preallocated file for the per-record durable-write baseline.
pub struct SyncFile {
    _dir: TempDir,
    path: PathBuf,
    file: File,
    pos: u64,
    mode: Prealloc,
    generation: u64,
}

impl SyncFile {
    pub fn new(mode: Prealloc) -> SyncFile {
        let dir = scratch_dir("sync-baseline");
        let path = dir.path().join("baseline.dat");
        let file = Self::prepare(&path, mode);
        SyncFile { _dir: dir, path, file, pos: 0, mode, generation: 0 }
    }

    fn prepare(path: &Path, mode: Prealloc) -> File {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("create sync baseline file");
        match mode {
            Prealloc::Fallocate => file.allocate(SYNC_FILE_BYTES).expect("fallocate"),
            Prealloc::Zeroed => {
                let zeros = vec![0u8; 1 << 20];
                for i in 0..SYNC_FILE_BYTES / (1 << 20) {
                    file.write_all_at(&zeros, i << 20).expect("write zeros");
                }
            }
        }
        file.sync_all().expect("sync prepared file");
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).expect("sync dir");
        }
        file
    }

    /// Timed: `iters` times, `pwrite` `data` at the next offset and `fdatasync`. When the file
    /// is full a fresh one is prepared outside the timed region.
    pub fn write_sync(&mut self, iters: u64, data: &[u8]) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let room = (SYNC_FILE_BYTES - self.pos) / data.len() as u64;
            if room == 0 {
                self.generation += 1;
                self.path = self.path.with_extension(format!("{}", self.generation));
                self.file = Self::prepare(&self.path, self.mode);
                self.pos = 0;
                continue;
            }
            let n = room.min(left);
            let start = Instant::now();
            for _ in 0..n {
                self.file.write_all_at(data, self.pos).expect("pwrite");
                self.file.sync_data().expect("fdatasync");
                self.pos += data.len() as u64;
            }
            total += start.elapsed();
            left -= n;
        }
        total
    }
}
