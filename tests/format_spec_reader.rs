//! An independent reader of Chronicle logs, written from `FORMAT.md` alone.
//!
//! It uses nothing of the crate's decoders: only the standard library and `crc32fast` (the
//! CRC-32/ISO-HDLC that FORMAT.md names). It follows the reading algorithm of FORMAT.md
//! section 5 and the recovery rules of section 6 (with a read-only open's semantics: it
//! changes nothing and stops at the end it finds). Each test builds a log with the library,
//! possibly damages it, and checks that this reader and `chronicle::Log` agree exactly: the
//! same records (offset, timestamp, payload), or corruption at the same offset.
//!
//! If one of these tests fails, either FORMAT.md no longer describes what the code does, or
//! the code broke the format: fix whichever is wrong.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use chronicle::{Event, EventLog, Log, Options, StorageError};

// ---------------------------------------------------------------------------------------------
// The reader. Every constant and rule below is quoted from FORMAT.md.
// ---------------------------------------------------------------------------------------------

/// Section 2: 64-byte header; section 3: 32-byte frame header; section 1: 8-byte alignment.
const HEADER_LEN: usize = 64;
const FRAME_HEADER_LEN: usize = 32;
const ALIGN: u64 = 8;
const BATCH_CONTINUES: u32 = 1;
const NEWEST_VERSION: u16 = 1;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One record as the reader returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SpecRecord {
    offset: u64,
    timestamp_ms: u64,
    payload: Vec<u8>,
}

/// Why the reader refused the log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpecError {
    NotALog(String),
    UnsupportedVersion(String),
    /// Bytes failed validation: the segment file's name and the logical offset.
    Corruption {
        segment: String,
        offset: u64,
    },
    /// The segments do not form one chain; the segment named is the one that does not follow.
    Broken {
        segment: String,
    },
}

#[derive(Debug, Clone)]
struct SpecHeader {
    base_offset: u64,
    prev_last_frame_offset: u64,
    prev_last_frame_crc: u32,
    durable_offset: u64,
    log_id: u64,
}

/// FORMAT.md 6.2: the durable record.
#[derive(Debug, Clone)]
struct SpecDurable {
    log_id: u64,
    durable_end: u64,
    last_frame_offset: u64,
    last_frame_crc: u32,
    /// Flags bit 0, `CLEAN_END`.
    clean_end: bool,
}

/// Reads `DURABLE`; `None` unless it is exactly 40 bytes with the right magic, version and CRC.
fn read_durable(dir: &Path) -> Option<SpecDurable> {
    let b = fs::read(dir.join("DURABLE")).ok()?;
    if b.len() != 40 || &b[0..4] != b"CHDR" || u16_at(&b, 4) != 1 {
        return None;
    }
    if u32_at(&b, 36) != crc32fast::hash(&b[0..36]) {
        return None;
    }
    Some(SpecDurable {
        log_id: u64_at(&b, 8),
        durable_end: u64_at(&b, 16),
        last_frame_offset: u64_at(&b, 24),
        last_frame_crc: u32_at(&b, 32),
        clean_end: u16_at(&b, 6) & 1 != 0,
    })
}

struct SpecSegment {
    name: String,
    header: SpecHeader,
    /// The data region: `(file length − 64)` rounded down to a multiple of 8.
    data: Vec<u8>,
}

impl SpecSegment {
    fn base(&self) -> u64 {
        self.header.base_offset
    }
}

/// A frame that passed every check of FORMAT.md section 3.
#[derive(Debug, Clone)]
struct SpecFrame {
    crc: u32,
    frame_len: u32,
    offset: u64,
    timestamp_ms: u64,
    unsynced_before: u32,
    flags: u32,
    payload: Vec<u8>,
}

impl SpecFrame {
    /// `(frame_len + 7) & ~7`.
    fn stride(&self) -> u64 {
        (u64::from(self.frame_len) + ALIGN - 1) & !(ALIGN - 1)
    }

    /// `offset − 8 × unsynced_before`, or 0 when the field is `0xFFFFFFFF`.
    fn durable_end(&self) -> u64 {
        if self.unsynced_before == u32::MAX {
            0
        } else {
            self.offset - 8 * u64::from(self.unsynced_before)
        }
    }

    fn continues_batch(&self) -> bool {
        self.flags & BATCH_CONTINUES != 0
    }

    fn record(&self) -> SpecRecord {
        SpecRecord {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            payload: self.payload.clone(),
        }
    }
}

enum FrameAt {
    End,
    Invalid,
    Frame(SpecFrame),
}

/// Section 2: decode checks in order magic, version, CRC of `[0, 60)`, version ≠ 0, flags.
fn decode_header(name: &str, bytes: &[u8]) -> Result<SpecHeader, SpecError> {
    let corrupt = |offset| SpecError::Corruption { segment: name.to_string(), offset };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(0));
    }
    if &bytes[0..4] != b"CHRN" {
        return Err(SpecError::NotALog(name.to_string()));
    }
    let version = u16_at(bytes, 4);
    if version > NEWEST_VERSION {
        return Err(SpecError::UnsupportedVersion(name.to_string()));
    }
    let base_offset = u64_at(bytes, 16);
    if u32_at(bytes, 60) != crc32fast::hash(&bytes[0..60]) || version == 0 || u16_at(bytes, 6) != 0
    {
        return Err(corrupt(base_offset));
    }
    Ok(SpecHeader {
        base_offset,
        prev_last_frame_offset: u64_at(bytes, 24),
        prev_last_frame_crc: u32_at(bytes, 32),
        durable_offset: u64_at(bytes, 40),
        log_id: u64_at(bytes, 48),
    })
}

/// Section 3, "Validating a frame", steps 1 to 6, for a frame read at logical offset `o` from
/// `b`, which runs to the end of the segment's data.
fn validate_frame(b: &[u8], o: u64) -> FrameAt {
    if b.len() < 8 {
        return FrameAt::End;
    }
    let frame_len = u32_at(b, 4);
    if frame_len == 0 {
        return FrameAt::End;
    }
    let len = frame_len as usize;
    if len < FRAME_HEADER_LEN || len > b.len() {
        return FrameAt::Invalid;
    }
    let frame = SpecFrame {
        crc: u32_at(b, 0),
        frame_len,
        offset: u64_at(b, 8),
        timestamp_ms: u64_at(b, 16),
        unsynced_before: u32_at(b, 24),
        flags: u32_at(b, 28),
        payload: b[FRAME_HEADER_LEN..len].to_vec(),
    };
    if frame.crc != crc32fast::hash(&b[4..len])
        || frame.offset != o
        || frame.flags & !BATCH_CONTINUES != 0
        || 8 * u64::from(frame.unsynced_before) > frame.offset
    {
        return FrameAt::Invalid;
    }
    FrameAt::Frame(frame)
}

/// A walk over consecutive frames (FORMAT.md 6.3 step 3).
struct Walk {
    /// Complete records (incomplete batch members excluded).
    records: Vec<SpecRecord>,
    /// Position after the last frame without `BATCH_CONTINUES`.
    complete: u64,
    /// First position holding no valid frame (or the bound).
    chain_end: u64,
    /// Whether the walk stopped at an invalid frame (rather than a zero length or the bound).
    invalid: bool,
    /// The last complete frame.
    last_complete: Option<SpecFrame>,
    max_durable: u64,
}

/// Walks `data[start..bound]` of a segment based at `base`.
fn walk(data: &[u8], base: u64, start: u64, bound: u64) -> Walk {
    let mut walk = Walk {
        records: Vec::new(),
        complete: start,
        chain_end: start,
        invalid: false,
        last_complete: None,
        max_durable: 0,
    };
    let mut pending = Vec::new();
    while walk.chain_end < bound {
        let bytes = &data[walk.chain_end as usize..bound as usize];
        match validate_frame(bytes, base + walk.chain_end) {
            FrameAt::End => break,
            FrameAt::Invalid => {
                walk.invalid = true;
                break;
            }
            FrameAt::Frame(frame) => {
                walk.chain_end += frame.stride();
                walk.max_durable = walk.max_durable.max(frame.durable_end());
                pending.push(frame.record());
                if !frame.continues_batch() {
                    walk.records.append(&mut pending);
                    walk.complete = walk.chain_end;
                    walk.last_complete = Some(frame);
                }
            }
        }
    }
    walk
}

/// FORMAT.md 6.3 step 3: the intact ("stray") frames at 8-aligned positions from `from` on;
/// returns the largest durable end they record.
fn stray_durable(data: &[u8], base: u64, from: u64) -> Option<u64> {
    let mut best = None;
    let mut pos = from;
    while pos < data.len() as u64 {
        match validate_frame(&data[pos as usize..], base + pos) {
            FrameAt::Frame(frame) => {
                best = Some(best.unwrap_or(0).max(frame.durable_end()));
                pos += frame.stride();
            }
            FrameAt::End | FrameAt::Invalid => pos += ALIGN,
        }
    }
    best
}

/// FORMAT.md 4 / 6.2 step 5: the frame `next`'s header names must be intact in `prev`, carry
/// the named CRC, complete its batch and end exactly at `next`'s base.
fn check_link(prev: &SpecSegment, next: &SpecSegment) -> Result<(), SpecError> {
    let broken = || SpecError::Broken { segment: next.name.clone() };
    let end = next.base() - prev.base();
    let named = next.header.prev_last_frame_offset;
    let Some(pos) = named.checked_sub(prev.base()).filter(|&p| p < end) else {
        return Err(broken());
    };
    match validate_frame(&prev.data[pos as usize..end as usize], named) {
        FrameAt::Frame(frame) => {
            if frame.crc != next.header.prev_last_frame_crc || pos + frame.stride() != end {
                return Err(broken());
            }
            if frame.continues_batch() {
                return Err(SpecError::Corruption { segment: prev.name.clone(), offset: named });
            }
            Ok(())
        }
        FrameAt::End | FrameAt::Invalid => {
            Err(SpecError::Corruption { segment: prev.name.clone(), offset: named })
        }
    }
}

/// Reads every record of the log in `dir` as a read-only open followed by a full replay would.
fn read_log(dir: &Path) -> Result<Vec<SpecRecord>, SpecError> {
    // Section 1 and 5: segment files, sorted by base; headers; data regions.
    let mut names: Vec<(u64, String)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().ok()?;
            let stem = name.strip_suffix(".seg")?;
            if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((stem.parse().ok()?, name))
        })
        .collect();
    names.sort();
    let mut segments = Vec::new();
    for (base, name) in names {
        let bytes = fs::read(dir.join(&name)).unwrap();
        let header = decode_header(&name, &bytes)?;
        if header.base_offset != base {
            return Err(SpecError::Broken { segment: name });
        }
        let capacity = (bytes.len().saturating_sub(HEADER_LEN)) & !7;
        let data = bytes[HEADER_LEN..HEADER_LEN + capacity].to_vec();
        segments.push(SpecSegment { name, header, data });
    }
    let Some(last) = segments.last() else {
        return Ok(Vec::new());
    };

    // 6.3 step 2: bases.
    for pair in segments.windows(2) {
        let gap = pair[1].base().saturating_sub(pair[0].base());
        if pair[1].header.log_id != pair[0].header.log_id
            || gap == 0
            || gap > pair[0].data.len() as u64
        {
            return Err(SpecError::Broken { segment: pair[1].name.clone() });
        }
    }

    // 6.2: the durable record, if it is usable and belongs to this log.
    let durable = read_durable(dir).filter(|d| d.log_id == segments[0].header.log_id);
    let recorded = durable.as_ref().map_or(0, |d| d.durable_end);

    // 6.3 step 3: the last segment, from the recorded durable point if it lies inside it.
    let last_index = segments.len() - 1;
    let mut start = 0;
    if let Some(d) = durable.as_ref().filter(|d| d.durable_end > last.base()) {
        let end = d.durable_end - last.base();
        let named_here = d.last_frame_offset != u64::MAX && d.last_frame_offset >= last.base();
        let pos = if named_here { d.last_frame_offset - last.base() } else { 0 };
        let intact = named_here
            && pos < end
            && end <= last.data.len() as u64
            && matches!(
                validate_frame(&last.data[pos as usize..end as usize], d.last_frame_offset),
                FrameAt::Frame(f) if f.crc == d.last_frame_crc
                    && pos + f.stride() == end
                    && !f.continues_batch()
            );
        if !intact {
            return Err(SpecError::Corruption {
                segment: last.name.clone(),
                offset: last.base() + pos,
            });
        }
        start = end;
    }
    let last_walk = walk(&last.data, last.base(), start, last.data.len() as u64);
    // 6.3 step 3's exception: a clean end, and the walk found no frame and ends right there.
    let clean_end = durable.as_ref().is_some_and(|d| {
        d.clean_end
            && last_walk.chain_end == start
            && !last_walk.invalid
            && last.base() + last_walk.chain_end == d.durable_end
    });
    let last_stray =
        if clean_end { None } else { stray_durable(&last.data, last.base(), last_walk.chain_end) };
    // 6.3 step 4: the known durable point K.
    let known_durable = last
        .header
        .durable_offset
        .max(recorded)
        .max(last_walk.max_durable)
        .max(last_stray.unwrap_or(0));

    // 6.3 steps 5 and 6: sealed segments. `end` is (segment index, data position).
    let first_walked = segments.iter().rposition(|s| s.base() <= known_durable).unwrap_or(0);
    let mut end = None;
    for index in 0..last_index {
        let (segment, next) = (&segments[index], &segments[index + 1]);
        let data_end = next.base() - segment.base();
        if index < first_walked {
            check_link(segment, next)?;
            continue;
        }
        let start = if index == first_walked {
            known_durable.saturating_sub(segment.base()).min(data_end)
        } else {
            0
        };
        let sealed = walk(&segment.data, segment.base(), start, data_end);
        if !sealed.invalid && sealed.chain_end == data_end && sealed.complete == data_end {
            if let Some(last) = &sealed.last_complete {
                if next.header.prev_last_frame_offset != last.offset
                    || next.header.prev_last_frame_crc != last.crc
                {
                    return Err(SpecError::Broken { segment: next.name.clone() });
                }
            }
            continue;
        }
        let damage = segment.base() + sealed.chain_end;
        let mut proven = stray_durable(&segment.data, segment.base(), sealed.chain_end)
            .is_some_and(|d| d > damage);
        for later in &segments[index + 1..] {
            let later_walk = walk(&later.data, later.base(), 0, later.data.len() as u64);
            proven |= recorded > damage
                || later.header.durable_offset > damage
                || later_walk.max_durable > damage
                || stray_durable(&later.data, later.base(), later_walk.chain_end)
                    .is_some_and(|d| d > damage);
        }
        if proven {
            return Err(SpecError::Corruption { segment: segment.name.clone(), offset: damage });
        }
        end = Some((index, sealed.complete));
        break;
    }

    // 6.3 step 7: the chain reached the last segment.
    let (end_index, end_pos) = match end {
        Some(end) => end,
        None => {
            let damage = last.base() + last_walk.chain_end;
            if last_stray.is_some_and(|d| d > damage) || recorded > damage {
                return Err(SpecError::Corruption { segment: last.name.clone(), offset: damage });
            }
            (last_index, last_walk.complete)
        }
    };

    // Section 5: read the records up to the end; every frame on the way must be valid.
    let mut records = Vec::new();
    for (index, segment) in segments.iter().enumerate().take(end_index + 1) {
        let bound =
            if index == end_index { end_pos } else { segments[index + 1].base() - segment.base() };
        let found = walk(&segment.data, segment.base(), 0, bound);
        if found.complete != bound {
            return Err(SpecError::Corruption {
                segment: segment.name.clone(),
                offset: segment.base() + found.chain_end,
            });
        }
        records.extend(found.records);
    }
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// The library's view, in the same terms.
// ---------------------------------------------------------------------------------------------

fn library_read(dir: &Path) -> Result<Vec<SpecRecord>, SpecError> {
    let as_spec = |err: StorageError| match err {
        StorageError::Corruption { segment, offset, .. } => SpecError::Corruption {
            segment: segment.file_name().unwrap().to_string_lossy().into_owned(),
            offset,
        },
        StorageError::BrokenChain { segment, .. } => SpecError::Broken {
            segment: segment.file_name().unwrap().to_string_lossy().into_owned(),
        },
        StorageError::NotALog { path, .. } => {
            SpecError::NotALog(path.file_name().unwrap().to_string_lossy().into_owned())
        }
        StorageError::UnsupportedVersion { path, .. } => {
            SpecError::UnsupportedVersion(path.file_name().unwrap().to_string_lossy().into_owned())
        }
        other => panic!("unexpected error: {other}"),
    };
    let log = Log::open_read_only(dir).map_err(as_spec)?;
    log.replay(log.start_offset())
        .map(|record| {
            record.map_err(as_spec).map(|record| SpecRecord {
                offset: record.offset,
                timestamp_ms: record.write_timestamp_ms,
                payload: record.payload.to_vec(),
            })
        })
        .collect()
}

/// Both readers, which must agree; returns the common answer.
fn agree(dir: &Path) -> Result<Vec<SpecRecord>, SpecError> {
    let spec = read_log(dir);
    let library = library_read(dir);
    if spec != library {
        panic!(
            "the FORMAT.md reader and the library disagree:\n  reader:  {}\n  library: {}",
            summary(&spec),
            summary(&library)
        );
    }
    spec
}

/// A short description of a result: the error, or the records' offsets and lengths.
fn summary(result: &Result<Vec<SpecRecord>, SpecError>) -> String {
    match result {
        Err(err) => format!("{err:?}"),
        Ok(records) => {
            let items: Vec<String> =
                records.iter().map(|r| format!("{}+{}", r.offset, r.payload.len())).collect();
            format!("{} records [{}]", records.len(), items.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs to read.
// ---------------------------------------------------------------------------------------------

fn small() -> Options {
    Options { segment_bytes: 4096, record_bytes_max: Some(1000), ..Options::default() }
}

fn payload(i: u32) -> Vec<u8> {
    (0..(i * 37 % 301)).map(|k| (i + k) as u8).collect()
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Flips one bit of the byte at logical offset `at`, in the segment based at `base`.
fn flip(dir: &Path, base: u64, at: u64) {
    let file =
        OpenOptions::new().read(true).write(true).open(dir.join(segment_name(base))).unwrap();
    let position = HEADER_LEN as u64 + (at - base);
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
}

/// Deletes the durable record that `close` wrote, leaving the directory as a crash before the
/// close would have (the frames and headers record the same durable points either way).
fn crash_before_close(dir: &Path) {
    fs::remove_file(dir.join("DURABLE")).unwrap();
}

/// The base of the segment holding `offset`.
fn base_of(dir: &Path, offset: u64) -> u64 {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    *bases.iter().rev().find(|&&b| b <= offset).unwrap()
}

fn segment_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count()
}

#[test]
fn crc_check_value_is_the_documented_one() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
}

#[test]
fn clean_log_with_several_segments_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    for i in 0..150u32 {
        let p = payload(i);
        let offset =
            if i % 17 == 0 { log.append_sync(&p).unwrap() } else { log.append(&p).unwrap() };
        expected.push((offset, p));
        if i % 40 == 39 {
            let batch: Vec<Vec<u8>> = (0..5).map(|k| payload(1000 + i + k)).collect();
            let offsets = log.append_batch(&batch).unwrap();
            expected.extend(offsets.into_iter().zip(batch));
        }
    }
    log.append(b"").unwrap(); // An empty payload is a 32-byte frame.
    expected.push((log.end_offset() - 32, Vec::new()));
    log.close().unwrap();
    assert!(segment_count(dir.path()) >= 5, "the test needs several segments");

    let records = agree(dir.path()).unwrap();
    let got: Vec<(u64, Vec<u8>)> = records.iter().map(|r| (r.offset, r.payload.clone())).collect();
    assert_eq!(got, expected);
    assert!(records.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
}

#[test]
fn torn_last_frame_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..40u32 {
        offsets.push(log.append_sync(&payload(i + 3)).unwrap());
    }
    log.close().unwrap();
    crash_before_close(dir.path());
    let last = *offsets.last().unwrap();
    flip(dir.path(), base_of(dir.path(), last), last + 40);

    let records = agree(dir.path()).unwrap();
    assert_eq!(records.len(), 39);
    assert_eq!(records.last().unwrap().offset, offsets[38]);
}

#[test]
fn durable_record_turns_the_same_damage_into_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..40u32 {
        offsets.push(log.append(&payload(i + 3)).unwrap());
    }
    log.close().unwrap();
    // `DURABLE` names the last frame as durable: its damage is not a torn write.
    let last = *offsets.last().unwrap();
    let base = base_of(dir.path(), last);
    flip(dir.path(), base, last + 40);

    assert_eq!(
        agree(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(base), offset: last })
    );
}

#[test]
fn damaged_durable_frame_followed_by_later_frame_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let synced = log.append_sync(b"made durable, then damaged").unwrap();
    log.append(b"written after that sync").unwrap();
    log.close().unwrap();
    flip(dir.path(), 0, synced + 33);

    assert_eq!(
        agree(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(0), offset: synced })
    );
}

#[test]
fn incomplete_batch_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let before = log.append_sync(b"before the batch").unwrap();
    let batch = log.append_batch(&[b"b0", b"b1", b"b2", b"b3"]).unwrap();
    log.close().unwrap();
    crash_before_close(dir.path());
    // Damage the batch's last frame: its other frames are intact but incomplete.
    flip(dir.path(), 0, batch[3] + 20);

    let records = agree(dir.path()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, before);
}

#[test]
fn torn_tail_can_span_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let mut offsets = vec![log.append_sync(&payload(1)).unwrap()];
    // Buffered appends over several segments: no frame or header records a durable point
    // past the first record.
    for i in 2..120u32 {
        offsets.push(log.append(&payload(i)).unwrap());
    }
    log.close().unwrap();
    crash_before_close(dir.path());
    assert!(segment_count(dir.path()) >= 3, "the test needs several segments");
    let damaged = offsets[5];
    assert_eq!(base_of(dir.path(), damaged), 0);
    flip(dir.path(), 0, damaged + 4);

    let records = agree(dir.path()).unwrap();
    let got: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(got, offsets[..5]);
}

#[test]
fn damage_before_the_durable_point_in_a_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let mut offsets = Vec::new();
    for i in 0..100u32 {
        offsets.push(log.append_sync(&payload(i)).unwrap());
    }
    log.close().unwrap();
    assert!(segment_count(dir.path()) >= 3, "the test needs several segments");
    let damaged = offsets[3];
    flip(dir.path(), 0, damaged + 36);

    assert_eq!(
        agree(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(0), offset: damaged })
    );
}

/// The `xxd`-style rows of the fenced block that follows `marker` in FORMAT.md.
fn hex_rows_after(marker: &str) -> Vec<u8> {
    let doc = include_str!("../FORMAT.md");
    let rest = doc.split(marker).nth(1).expect("marker in FORMAT.md");
    let block = rest.split("```").nth(1).expect("a fenced block after the marker");
    let mut bytes = Vec::new();
    for line in block.lines().filter(|l| l.contains(": ")) {
        let (at, hex) = line.split_once(": ").unwrap();
        assert_eq!(usize::from_str_radix(at, 16).unwrap(), bytes.len(), "{line}");
        bytes.extend(hex.split(' ').map(|h| u8::from_str_radix(h, 16).unwrap()));
    }
    bytes
}

#[test]
fn worked_example_of_format_md_decodes() {
    let mut segment = hex_rows_after("<!-- hex-example:begin -->");
    assert_eq!(segment.len(), 160);
    segment.resize(4096, 0);
    let durable = hex_rows_after("that `close` wrote to `DURABLE`");
    assert_eq!(durable.len(), 40);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(0)), &segment).unwrap();
    fs::write(dir.path().join("DURABLE"), &durable).unwrap();

    let records = agree(dir.path()).unwrap();
    let expected = vec![
        SpecRecord {
            offset: 0,
            timestamp_ms: 1_795_305_612_087,
            payload: b"hello, chronicle".to_vec(),
        },
        SpecRecord { offset: 48, timestamp_ms: 1_795_305_612_087, payload: b"second".to_vec() },
    ];
    assert_eq!(records, expected);
    let header = decode_header("example", &segment).unwrap();
    assert_eq!(header.prev_last_frame_offset, u64::MAX);
    assert_eq!(header.log_id, 0x2e68_daaf_075b_1770);
    assert_eq!(u64_at(&segment, 8), 1_795_305_612_075);
    let record = read_durable(dir.path()).expect("the example's durable record decodes");
    assert_eq!(record.log_id, header.log_id);
    assert_eq!((record.durable_end, record.last_frame_offset), (88, 48));
    assert_eq!(record.last_frame_crc, 0x8910_6208);
    assert!(record.clean_end, "the example was closed cleanly");
    assert_eq!(Log::open_read_only(dir.path()).unwrap().end_offset(), 88);
}

#[test]
fn event_record_example_of_format_md() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), small()).unwrap();
    let event = Event::builder("a").namespace("n").aggregate_id(7).payload(vec![1, 2]).build();
    log.append(&event).unwrap();
    log.close().unwrap();
    let records = agree(dir.path()).unwrap();
    let expected = [0x96, 0xa1, 0x61, 0xa1, 0x6e, 0xa0, 0x01, 0x07, 0xc4, 0x02, 0x01, 0x02];
    assert_eq!(records[0].payload, expected);
}
