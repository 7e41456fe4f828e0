//! Helpers shared by the integration tests of the log's on-disk behaviour.
//!
//! The tests reach the files directly, so this module restates the few layout facts they need
//! (from `FORMAT.md`): a 64-byte segment header whose data region follows it, 32-byte frame
//! headers, frames aligned to 8 bytes, and logical offsets that count data-region bytes only.
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use chronicle::{FormatError, Log, LogReader, Options, Replay, StorageError};

/// Bytes of a segment header; a segment's data region starts at this file position.
pub const HEADER_LEN: u64 = 64;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: u64 = 32;
/// Segment file size used by every test: small, so a few kilobytes of records roll often.
pub const SEGMENT_BYTES: u64 = 4096;
/// Data bytes of one small segment.
pub const CAPACITY: u64 = SEGMENT_BYTES - HEADER_LEN;

/// Options with 4 KiB segments and the given record limit.
pub fn small(record_bytes_max: u64) -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: Some(record_bytes_max),
        ..Options::default()
    }
}

/// Bytes a frame with `payload_len` payload bytes occupies, padding included.
pub fn stride(payload_len: usize) -> u64 {
    (FRAME_HEADER_LEN + payload_len as u64 + 7) & !7
}

/// Bytes of a frame without its padding (its length field).
pub fn frame_len(payload_len: usize) -> u64 {
    FRAME_HEADER_LEN + payload_len as u64
}

/// A deterministic payload of `len` bytes for record `i`, with no zero byte, so that zeroing
/// any part of it always changes it.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| 1 + ((i * 31 + j * 7 + (j >> 3)) % 255) as u8).collect()
}

/// A record as the tests expect to read it back.
#[derive(Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Rec {
    // Offsets and lengths keep failure messages readable; a checksum tells payloads apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crc = crc32fast::hash(&self.payload);
        write!(f, "Rec@{}({}B {crc:08x})", self.offset, self.payload.len())
    }
}

/// Appends `payload(i, len)` for each length, checking that offsets are contiguous.
pub fn append_all(log: &mut Log, first_index: usize, lens: &[usize]) -> Vec<Rec> {
    let mut out = Vec::with_capacity(lens.len());
    for (k, &len) in lens.iter().enumerate() {
        let p = payload(first_index + k, len);
        let expected = log.end_offset();
        let offset = log.append(&p).unwrap();
        assert_eq!(offset, expected, "append returned a non-contiguous offset");
        assert_eq!(log.end_offset(), offset + stride(len));
        out.push(Rec { offset, payload: p });
    }
    out
}

/// Drains a replay: the records read before the first error, the error, and a check that the
/// iterator ends after the error (it must never yield more after one).
pub fn drain(mut replay: Replay) -> (Vec<Rec>, Option<StorageError>) {
    let mut recs = Vec::new();
    for item in replay.by_ref() {
        match item {
            Ok(r) => recs.push(Rec { offset: r.offset, payload: r.payload.to_vec() }),
            Err(e) => {
                assert!(replay.next().is_none(), "replay yielded more after an error");
                assert!(replay.next().is_none(), "replay yielded more after an error");
                return (recs, Some(e));
            }
        }
    }
    assert!(replay.next().is_none(), "replay resumed after ending");
    (recs, None)
}

/// Drains a replay that must not fail.
pub fn all(replay: Replay) -> Vec<Rec> {
    let (recs, err) = drain(replay);
    assert!(err.is_none(), "unexpected replay error: {err:?}");
    recs
}

/// The segment files of a log directory, sorted by base offset.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".seg")?;
            if stem.len() != 20 {
                return None;
            }
            Some((stem.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The file name of the segment with this base offset.
pub fn seg_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The segment (base, path) that holds logical `offset`.
pub fn segment_of(dir: &Path, offset: u64) -> (u64, PathBuf) {
    segments(dir).into_iter().rev().find(|(base, _)| *base <= offset).unwrap()
}

/// The file position of logical `offset` in the segment whose base is `base`.
pub fn file_pos(base: u64, offset: u64) -> u64 {
    HEADER_LEN + offset - base
}

pub fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

pub fn read_at(path: &Path, pos: u64, len: usize) -> Vec<u8> {
    let f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, pos).unwrap();
    buf
}

pub fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, pos).unwrap();
}

/// XORs one bit of the byte at `pos` (calling it twice restores the file).
pub fn flip_bit(path: &Path, pos: u64, bit: u8) {
    let mut b = read_at(path, pos, 1);
    b[0] ^= 1 << bit;
    write_at(path, pos, &b);
}

/// Zero-fills the file from `pos` to its end: a "cut" of a preallocated segment.
pub fn zero_from(path: &Path, pos: u64) {
    let len = fs::metadata(path).unwrap().len();
    if pos < len {
        write_at(path, pos, &vec![0u8; (len - pos) as usize]);
    }
}

/// Copies every regular file of `src` into `dst` (created if needed).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Every file of a directory by name, with its bytes.
pub fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap()))
        .collect()
}

/// The segment files of a directory by name, with their bytes.
pub fn segment_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = dir_bytes(dir);
    all.retain(|name, _| name.ends_with(".seg"));
    all
}

/// Rewrites a segment header through `edit` (which sees all 64 bytes) and stores a valid
/// header checksum: CRC-32 of bytes `[0, 60)`, little-endian at 60.
pub fn rewrite_header(path: &Path, edit: impl FnOnce(&mut [u8; 64])) {
    let mut h: [u8; 64] = read_at(path, 0, 64).try_into().unwrap();
    edit(&mut h);
    let crc = crc32fast::hash(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    write_at(path, 0, &h);
}

/// The two frame-header layouts: the checksum at 4 covering `[0, 4)` and `[8, len)` (format
/// as first committed), or at 0 covering `[4, len)`. The other fields (offset at 8, timestamp
/// at 16, unsynced distance at 24, flags at 28) are the same in both; the length is at 0 or 4.
fn crc_layouts(frame: &[u8]) -> [(usize, u32); 2] {
    let mut old = crc32fast::Hasher::new();
    old.update(&frame[..4]);
    old.update(&frame[8..]);
    [(4, old.finalize()), (0, crc32fast::hash(&frame[4..]))]
}

/// Recomputes the checksum of an intact frame (header plus payload, no padding) after a
/// field was edited, in whichever layout `original` (the unedited frame) validates under.
/// Returns the new checksum.
pub fn reseal_frame(original: &[u8], edited: &mut [u8]) -> u32 {
    let at = crc_layouts(original)
        .into_iter()
        .find(|&(at, crc)| original[at..at + 4] == crc.to_le_bytes())
        .map(|(at, _)| at)
        .expect("the original frame is not intact in any known layout");
    let crc = crc_layouts(edited).into_iter().find(|&(a, _)| a == at).unwrap().1;
    edited[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// A torn tail as `(offset, bytes, frames_dropped)`, the fields these tests check.
pub fn torn_of(report: &chronicle::OpenReport) -> Option<(u64, u64, u64)> {
    report.torn_tail.as_ref().map(|t| (t.offset, t.bytes, t.frames_dropped))
}

/// The fields of a `Corruption` error, or a panic naming what came instead.
pub fn corruption(err: &StorageError) -> (PathBuf, u64, FormatError) {
    match err {
        StorageError::Corruption { segment, offset, kind } => {
            (segment.clone(), *offset, kind.clone())
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}

/// Asserts that `err` is `InvalidOffset` for `offset`.
pub fn assert_invalid_offset(err: &StorageError, offset: u64) {
    match err {
        StorageError::InvalidOffset { offset: o, .. } => {
            assert_eq!(*o, offset, "InvalidOffset names the wrong offset")
        }
        other => panic!("expected InvalidOffset for {offset}, got {other:?}"),
    }
}

/// Record lengths that fill several segments, varied from 0 to `max`, with both extremes.
pub fn varied_lens(count: usize, max: usize) -> Vec<usize> {
    (0..count)
        .map(|i| match i % 9 {
            0 => 0,
            4 => max,
            _ => (i * 37 + i * i * 11) % (max + 1),
        })
        .collect()
}

/// Builds a closed log in `dir` holding records with the given lengths; returns them.
pub fn build_log(dir: &Path, record_bytes_max: u64, lens: &[usize]) -> Vec<Rec> {
    let mut log = Log::open_with(dir, small(record_bytes_max)).unwrap();
    let recs = append_all(&mut log, 0, lens);
    log.close().unwrap();
    recs
}

/// A thread that replays a log from its start, over and over, while a test appends to it,
/// and checks that record `n` always holds `expected(n)`: a concurrent reader must only ever
/// see intact records, in order. Passes alternate between `next_ref` and the `Iterator`.
pub struct ReplayWatcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u32>,
}

impl ReplayWatcher {
    pub fn start(reader: LogReader, expected: fn(usize) -> Vec<u8>) -> ReplayWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut passes = 0u32;
            while !flag.load(Ordering::Acquire) || passes == 0 {
                if passes.is_multiple_of(2) {
                    let mut replay = reader.replay(0);
                    let mut n = 0;
                    while let Some(record) = replay.next_ref() {
                        let record = record.expect("a published record failed to read");
                        assert_eq!(record.payload, &expected(n)[..], "record {n} differs");
                        n += 1;
                    }
                } else {
                    for (n, record) in reader.replay(0).enumerate() {
                        let record = record.expect("a published record failed to read");
                        assert_eq!(&*record.payload, &expected(n)[..], "record {n} differs");
                    }
                }
                passes += 1;
            }
            passes
        });
        ReplayWatcher { stop, thread }
    }

    /// Stops the watcher after its current pass (at least one full pass is made) and
    /// re-raises any assertion it failed; returns how many passes it made.
    pub fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(passes) => passes,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (at least 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The base offsets of the segment files in `dir`, in order.
pub fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .strip_suffix(".seg")
                .map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Bytes of one Merkle page record (`FORMAT.md` 12.3), where its children start, and where its
/// CRC-32 is.
pub const PAGE_RECORD_LEN: usize = 9328;
pub const PAGE_CHILDREN_AT: usize = 168;
pub const PAGE_CRC_AT: usize = 9320;

/// The page file of Merkle `level` in a log directory.
pub fn page_file(dir: &Path, level: u8) -> PathBuf {
    dir.join(format!("rollup-{level}.pages"))
}

/// Rewrites page `index` of level 0 with `edit` applied, then its header hash and CRC-32
/// recomputed, so that only a comparison with the log can tell.
pub fn forge_page(dir: &Path, index: usize, edit: impl FnOnce(&mut [u8])) {
    use sha2::Digest as _;
    let path = page_file(dir, 0);
    let mut bytes = fs::read(&path).unwrap();
    let record = &mut bytes[index * PAGE_RECORD_LEN..(index + 1) * PAGE_RECORD_LEN];
    edit(record);
    let hash = sha2::Sha256::digest(&record[..136]);
    record[136..168].copy_from_slice(&hash);
    let crc = crc32fast::hash(&record[..PAGE_CRC_AT]);
    record[PAGE_CRC_AT..PAGE_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, bytes).unwrap();
}
