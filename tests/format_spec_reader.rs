//! An independent reader of Chronicle logs, written from `FORMAT.md` alone.
//!
//! It uses nothing of the crate's decoders: only the standard library and `crc32fast` (the
//! CRC-32/ISO-HDLC that FORMAT.md names). It follows FORMAT.md as every reader must: the
//! segment files and the recovery rules of section 6 decide where the log ends (with a
//! read-only open's semantics: it changes nothing), then section 5 reads the records and gaps
//! up to there. Each test builds a log with the library, possibly damages or repairs it, and
//! checks that this reader and `chronicle::Log` agree exactly: the same refusal of the log, or
//! the same records (offset, timestamp, payload) and gaps in the same order, ending with the
//! same error if reading meets damage.
//!
//! If one of these tests fails, either FORMAT.md no longer describes what the code does, or
//! the code broke the format: fix whichever is wrong.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use chronicle::{Event, EventLog, Log, Options, RecoveryMode, StorageError};

/// The checked-in logs of `tests/fixtures/`, which every build must keep reading.
#[path = "format_spec_reader/old_logs.rs"]
mod old_logs;

/// The Merkle tree's stored pages (section 12.3).
#[path = "format_spec_reader/pages.rs"]
mod pages;

// ---------------------------------------------------------------------------------------------
// The reader. Every constant and rule below is quoted from FORMAT.md.
// ---------------------------------------------------------------------------------------------

/// Section 2: 64-byte header; section 3: 32-byte frame header; section 1: 8-byte alignment.
const HEADER_LEN: usize = 64;
const FRAME_HEADER_LEN: usize = 32;
const ALIGN: u64 = 8;
/// Section 3: frame flags.
const BATCH_CONTINUES: u32 = 1;
const GAP: u32 = 2;
/// Section 2: the newest segment version this document describes.
const NEWEST_VERSION: u16 = 2;
/// Sections 1 and 2: the largest segment file, and the bound on base offsets.
const SEGMENT_FILE_MAX: u64 = 1 << 32;
const OFFSET_LIMIT: u64 = 1 << 63;
/// Section 2: `prev_last_frame_offset` of a segment that follows no frame.
const NO_PREVIOUS_FRAME: u64 = u64::MAX;

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

/// Why the reader refused the log, or stopped reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpecError {
    /// Section 1: the directory holds no segment file.
    NotALogDirectory,
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

/// What reading a log yields, in order (section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Record(SpecRecord),
    /// A gap frame's range `[start, end)`.
    Gap {
        start: u64,
        end: u64,
    },
    /// The damaged frame reading stopped at; always the last item.
    Damaged(SpecError),
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

/// A segment file without a header (FORMAT.md 6.3 step 1): its name's base and its data.
struct TornCreation {
    name: String,
    base: u64,
    data: Vec<u8>,
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

    fn is_gap(&self) -> bool {
        self.flags & GAP != 0
    }
}

/// Section 3: the stride of a frame with `payload_len` payload bytes, `(32 + n + 7) & ~7`.
fn frame_stride(payload_len: usize) -> u64 {
    (FRAME_HEADER_LEN as u64 + payload_len as u64 + ALIGN - 1) & !(ALIGN - 1)
}

enum FrameAt {
    End,
    Invalid,
    Frame(SpecFrame),
}

/// The data region of a file's bytes: what follows the 64 header bytes, rounded down to a
/// multiple of 8 (section 1; 6.3 step 1 for a file without a header).
fn data_region(bytes: &[u8]) -> Vec<u8> {
    let capacity = bytes.len().saturating_sub(HEADER_LEN) & !7;
    bytes.get(HEADER_LEN..HEADER_LEN + capacity).unwrap_or_default().to_vec()
}

/// Section 2, "Checks on a segment file", in order, for the file `name` whose name gives
/// `base`. `Ok(None)` for a torn creation (check 1).
fn check_segment_file(dir: &Path, name: &str, base: u64) -> Result<Option<SpecSegment>, SpecError> {
    let path = dir.join(name);
    let file = File::open(&path).unwrap();
    let file_len = file.metadata().unwrap().len();
    let mut bytes = vec![0u8; file_len.min(HEADER_LEN as u64) as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    let corrupt = || SpecError::Corruption { segment: name.to_string(), offset: base };
    if bytes.len() < HEADER_LEN || bytes.iter().all(|&b| b == 0) {
        if base < OFFSET_LIMIT && base.is_multiple_of(ALIGN) {
            return Ok(None);
        }
        if bytes.len() < HEADER_LEN {
            return Err(corrupt());
        }
    }
    if &bytes[0..4] != b"CHRN" {
        return Err(SpecError::NotALog(name.to_string()));
    }
    let version = u16_at(&bytes, 4);
    if version > NEWEST_VERSION {
        return Err(SpecError::UnsupportedVersion(name.to_string()));
    }
    if u32_at(&bytes, 60) != crc32fast::hash(&bytes[0..60]) {
        return Err(corrupt());
    }
    if version == 0 {
        return Err(SpecError::UnsupportedVersion(name.to_string()));
    }
    if u16_at(&bytes, 6) != 0 || file_len > SEGMENT_FILE_MAX {
        return Err(corrupt());
    }
    let header = SpecHeader {
        base_offset: u64_at(&bytes, 16),
        prev_last_frame_offset: u64_at(&bytes, 24),
        prev_last_frame_crc: u32_at(&bytes, 32),
        durable_offset: u64_at(&bytes, 40),
        log_id: u64_at(&bytes, 48),
    };
    if header.base_offset != base {
        return Err(SpecError::Broken { segment: name.to_string() });
    }
    if header.base_offset >= OFFSET_LIMIT
        || !header.base_offset.is_multiple_of(ALIGN)
        || header.durable_offset > header.base_offset
    {
        return Err(corrupt());
    }
    let data = data_region(&fs::read(&path).unwrap());
    Ok(Some(SpecSegment { name: name.to_string(), header, data }))
}

/// Section 3, "Validating a frame", steps 1 to 6, for a frame read at logical offset `o` from
/// `b`, which runs to the end of the segment's data (or to the bound the caller reads to).
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
        || ![0, BATCH_CONTINUES, GAP].contains(&frame.flags)
        || 8 * u64::from(frame.unsynced_before) > frame.offset
    {
        return FrameAt::Invalid;
    }
    FrameAt::Frame(frame)
}

/// The walk of FORMAT.md 6.3 ("Examining a segment"): frames one after the other.
struct Walk {
    /// Position after the last frame without `BATCH_CONTINUES` (gaps included).
    complete: u64,
    /// The chain end `C`: the first position holding no valid frame (or the bound).
    chain_end: u64,
    /// Whether the walk stopped at an invalid frame (rather than a zero length or the bound).
    invalid: bool,
    /// The last frame without `BATCH_CONTINUES`.
    last_complete: Option<SpecFrame>,
    /// The largest durable end of the walked frames (0 if none).
    max_durable: u64,
    frames: usize,
}

/// Walks `data` of a segment based at `base` from `start`, each frame validated with the slice
/// from it to `bound` (the end of the data region, or `s.end` in step 6).
fn walk(data: &[u8], base: u64, start: u64, bound: u64) -> Walk {
    let mut walk = Walk {
        complete: start,
        chain_end: start,
        invalid: false,
        last_complete: None,
        max_durable: 0,
        frames: 0,
    };
    while walk.chain_end < bound {
        let bytes = &data[walk.chain_end as usize..bound as usize];
        match validate_frame(bytes, base + walk.chain_end) {
            FrameAt::End => break,
            FrameAt::Invalid => {
                walk.invalid = true;
                break;
            }
            FrameAt::Frame(frame) => {
                walk.frames += 1;
                walk.chain_end += frame.stride();
                walk.max_durable = walk.max_durable.max(frame.durable_end());
                if !frame.continues_batch() {
                    walk.complete = walk.chain_end;
                    walk.last_complete = Some(frame);
                }
            }
        }
    }
    walk
}

/// The scan of FORMAT.md 6.3 ("Examining a segment"): the stray frames at 8-aligned positions
/// from `from` to the end of the data region; returns the largest durable end they record.
fn scan(data: &[u8], base: u64, from: u64) -> Option<u64> {
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

/// The largest durable point recorded by a segment's walked and stray frames: examining it from
/// data position 0.
fn examined_durable(data: &[u8], base: u64) -> u64 {
    let walked = walk(data, base, 0, data.len() as u64);
    walked.max_durable.max(scan(data, base, walked.chain_end).unwrap_or(0))
}

/// FORMAT.md 6.3 step 5: the frame `next`'s header names must be a frame boundary of `prev`,
/// be valid, carry the named CRC, end exactly at `next`'s base and complete its batch.
fn check_link(prev: &SpecSegment, next: &SpecSegment) -> Result<(), SpecError> {
    let broken = || SpecError::Broken { segment: next.name.clone() };
    let end = next.base() - prev.base();
    let named = next.header.prev_last_frame_offset;
    let Some(pos) = named.checked_sub(prev.base()).filter(|&p| p < end && p.is_multiple_of(ALIGN))
    else {
        return Err(broken());
    };
    let corrupt = || SpecError::Corruption { segment: prev.name.clone(), offset: named };
    let FrameAt::Frame(frame) = validate_frame(&prev.data[pos as usize..end as usize], named)
    else {
        return Err(corrupt());
    };
    if frame.crc != next.header.prev_last_frame_crc || pos + frame.stride() != end {
        return Err(broken());
    }
    if frame.continues_batch() {
        return Err(corrupt());
    }
    Ok(())
}

/// The segment files of `dir` (section 1): names of 20 ASCII digits and `.seg`, with a number
/// that fits in 64 bits, sorted by it.
fn segment_names(dir: &Path) -> Vec<(u64, String)> {
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
    names
}

/// FORMAT.md 6.6: the start record, if there is one: (log_id, start_offset, start_entry).
fn read_start(dir: &Path) -> Result<Option<(u64, u64, u64)>, SpecError> {
    let Ok(b) = fs::read(dir.join("START")) else {
        return Ok(None);
    };
    let valid = b.len() == 36
        && &b[0..4] == b"CHST"
        && u16_at(&b, 4) == 1
        && b[6..8] == [0, 0]
        && u32_at(&b, 32) == crc32fast::hash(&b[..32])
        && u64_at(&b, 24) <= u64_at(&b, 16) / 32;
    if !valid {
        return Err(SpecError::Broken { segment: "START".to_string() });
    }
    Ok(Some((u64_at(&b, 8), u64_at(&b, 16), u64_at(&b, 24))))
}

/// Where the log ends: segment index and data position.
type End = (usize, u64);

/// FORMAT.md section 6.3: checks the segment files and finds where the log ends. Returns the
/// segments the log keeps (torn creations and what follows them left out) and the end.
fn recover(dir: &Path) -> Result<(Vec<SpecSegment>, End), SpecError> {
    let mut names = segment_names(dir);
    if names.is_empty() {
        return Err(SpecError::NotALogDirectory);
    }
    // 6.6: a start record; segment files below its offset are not part of the log.
    let start = read_start(dir)?;
    if let Some((_, start_offset, _)) = start {
        names.retain(|(base, _)| *base >= start_offset);
        if names.is_empty() {
            return Err(SpecError::Broken { segment: "START".to_string() });
        }
    }

    // Step 1: the segment files, in name order; torn creations and what follows them.
    let mut segments = Vec::new();
    let mut torn: Vec<TornCreation> = Vec::new();
    for (base, name) in names {
        match check_segment_file(dir, &name, base)? {
            Some(segment) => segments.push(segment),
            None => {
                let data = data_region(&fs::read(dir.join(&name)).unwrap());
                torn.push(TornCreation { name, base, data });
            }
        }
    }
    let log_id = segments.first().map(|s| s.header.log_id);
    // 6.2: the durable record, if it is usable; one of another log than the first segment's
    // refuses the log.
    let durable = read_durable(dir);
    if let (Some(first), Some(d)) = (segments.first(), &durable) {
        if Some(d.log_id) != log_id {
            return Err(SpecError::Broken { segment: first.name.clone() });
        }
    }
    let recorded = durable.as_ref().map_or(0, |d| d.durable_end);
    if let Some(first) = torn.first() {
        let kept = segments.iter().take_while(|s| s.base() < first.base).count();
        if kept == 0 {
            return Err(SpecError::Broken { segment: first.name.clone() });
        }
        let later = &segments[kept..];
        let evidence = [recorded]
            .into_iter()
            .chain(later.iter().map(|s| s.header.durable_offset))
            .chain(later.iter().map(|s| examined_durable(&s.data, s.base())))
            .chain(torn.iter().map(|t| examined_durable(&t.data, t.base)))
            .max()
            .unwrap_or(0);
        if evidence > first.base {
            return Err(SpecError::Corruption { segment: first.name.clone(), offset: first.base });
        }
        segments.truncate(kept);
    }

    // 6.6: where the log begins.
    if let Some(first) = segments.first() {
        let begins_right = match start {
            Some((log_id, start_offset, _)) => {
                first.base() == start_offset && first.header.log_id == log_id
            }
            None => first.header.prev_last_frame_offset == NO_PREVIOUS_FRAME,
        };
        if !begins_right {
            return Err(SpecError::Broken { segment: first.name.clone() });
        }
    }

    // Step 2: the chain of headers.
    for pair in segments.windows(2) {
        let distance = pair[1].base().saturating_sub(pair[0].base());
        if pair[1].header.log_id != pair[0].header.log_id
            || distance == 0
            || distance > pair[0].data.len() as u64
        {
            return Err(SpecError::Broken { segment: pair[1].name.clone() });
        }
    }

    // Step 3: the last segment, from the recorded durable point if it lies inside it.
    let last_index = segments.len() - 1;
    let last = &segments[last_index];
    let mut start = 0;
    if let Some(d) = durable.as_ref().filter(|d| d.durable_end > last.base()) {
        let end = d.durable_end - last.base();
        let named_here =
            d.last_frame_offset != NO_PREVIOUS_FRAME && d.last_frame_offset >= last.base();
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
    // Step 3's exception: a clean end, and the walk found no frame and ends right there.
    let clean_end = durable.as_ref().is_some_and(|d| {
        d.clean_end
            && last_walk.frames == 0
            && !last_walk.invalid
            && last.base() + last_walk.chain_end == d.durable_end
    });
    let last_stray =
        if clean_end { None } else { scan(&last.data, last.base(), last_walk.chain_end) };

    // Step 4: the known durable point K.
    let known_durable = last
        .header
        .durable_offset
        .max(recorded)
        .max(last_walk.max_durable)
        .max(last_stray.unwrap_or(0));

    // Steps 5 and 6: sealed segments, link-checked before the one holding K, walked from it on.
    let first_walked = segments.iter().rposition(|s| s.base() <= known_durable).unwrap_or(0);
    for index in 0..last_index {
        let (segment, next) = (&segments[index], &segments[index + 1]);
        if index < first_walked {
            check_link(segment, next)?;
            continue;
        }
        let data_end = next.base() - segment.base();
        let sealed = walk(&segment.data, segment.base(), 0, data_end);
        if !sealed.invalid && sealed.complete == data_end {
            let last = sealed.last_complete.as_ref().unwrap();
            if next.header.prev_last_frame_offset != last.offset
                || next.header.prev_last_frame_crc != last.crc
            {
                return Err(SpecError::Broken { segment: next.name.clone() });
            }
            continue;
        }
        // The chain breaks at D: the link must still not be broken, then the evidence decides.
        if let Err(broken @ SpecError::Broken { .. }) = check_link(segment, next) {
            return Err(broken);
        }
        let damage = segment.base() + sealed.chain_end;
        let later = &segments[index + 1..];
        let proven = scan(&segment.data, segment.base(), sealed.chain_end).unwrap_or(0) > damage
            || recorded > damage
            || later.iter().any(|s| s.header.durable_offset > damage)
            || later.iter().any(|s| examined_durable(&s.data, s.base()) > damage);
        if proven {
            return Err(SpecError::Corruption { segment: segment.name.clone(), offset: damage });
        }
        segments.truncate(index + 1);
        return Ok((segments, (index, sealed.complete)));
    }

    // Step 7: the chain reached the last segment.
    let damage = last.base() + last_walk.chain_end;
    if last_stray.is_some_and(|d| d > damage) || recorded > damage {
        return Err(SpecError::Corruption { segment: last.name.clone(), offset: damage });
    }
    let end = last_walk.complete;
    Ok((segments, (last_index, end)))
}

/// Reads the log in `dir` as FORMAT.md section 5 says: section 6 first, then every record and
/// gap up to the end, stopping at the first frame that fails.
fn read_log(dir: &Path) -> Result<Vec<Item>, SpecError> {
    let (segments, (end_index, end_pos)) = recover(dir)?;
    let mut items = Vec::new();
    for (index, segment) in segments.iter().enumerate().take(end_index + 1) {
        let data_end =
            if index == end_index { end_pos } else { segments[index + 1].base() - segment.base() };
        let mut pos = 0;
        while pos < data_end {
            let offset = segment.base() + pos;
            let frame = match validate_frame(&segment.data[pos as usize..data_end as usize], offset)
            {
                FrameAt::Frame(frame) => frame,
                FrameAt::End | FrameAt::Invalid => {
                    let segment = segment.name.clone();
                    items.push(Item::Damaged(SpecError::Corruption { segment, offset }));
                    return Ok(items);
                }
            };
            pos += frame.stride();
            items.push(if frame.is_gap() {
                Item::Gap { start: offset, end: offset + frame.stride() }
            } else {
                Item::Record(SpecRecord {
                    offset,
                    timestamp_ms: frame.timestamp_ms,
                    payload: frame.payload,
                })
            });
        }
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// The library's view, in the same terms.
// ---------------------------------------------------------------------------------------------

fn as_spec(err: StorageError) -> SpecError {
    let name = |path: &Path| path.file_name().unwrap().to_string_lossy().into_owned();
    match err {
        StorageError::Corruption { segment, offset, .. } => {
            SpecError::Corruption { segment: name(&segment), offset }
        }
        StorageError::BrokenChain { segment, .. } => SpecError::Broken { segment: name(&segment) },
        StorageError::NotALog { path, .. } => SpecError::NotALog(name(&path)),
        StorageError::UnsupportedVersion { path, .. } => SpecError::UnsupportedVersion(name(&path)),
        StorageError::NotALogDirectory { .. } => SpecError::NotALogDirectory,
        other => panic!("unexpected error: {other}"),
    }
}

/// What a read-only open and a replay from the log's start give, as items.
fn library_read(dir: &Path) -> Result<Vec<Item>, SpecError> {
    let log = Log::open_read_only(dir).map_err(as_spec)?;
    let mut items = Vec::new();
    for item in log.replay(log.start_offset()) {
        items.push(match item {
            Ok(record) => Item::Record(SpecRecord {
                offset: record.offset,
                timestamp_ms: record.write_timestamp_ms,
                payload: record.payload.to_vec(),
            }),
            Err(StorageError::Gap { start, end, .. }) => Item::Gap { start, end },
            Err(other) => Item::Damaged(as_spec(other)),
        });
    }
    Ok(items)
}

/// Both readers, which must agree; returns the common answer.
fn agree(dir: &Path) -> Result<Vec<Item>, SpecError> {
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

/// [`agree`] for a log without gaps: its records, or the error that refused the log or
/// stopped reading it.
fn agree_records(dir: &Path) -> Result<Vec<SpecRecord>, SpecError> {
    let mut records = Vec::new();
    for item in agree(dir)? {
        match item {
            Item::Record(record) => records.push(record),
            Item::Damaged(err) => return Err(err),
            Item::Gap { start, end } => panic!("unexpected gap [{start}, {end})"),
        }
    }
    Ok(records)
}

/// A short description of a result: the error, or the items' offsets and lengths.
fn summary(result: &Result<Vec<Item>, SpecError>) -> String {
    match result {
        Err(err) => format!("{err:?}"),
        Ok(items) => {
            let shown: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Item::Record(r) => format!("{}+{}", r.offset, r.payload.len()),
                    Item::Gap { start, end } => format!("gap[{start},{end})"),
                    Item::Damaged(err) => format!("{err:?}"),
                })
                .collect();
            format!("{} items [{}]", items.len(), shown.join(", "))
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

    let records = agree_records(dir.path()).unwrap();
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

    let records = agree_records(dir.path()).unwrap();
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
        agree_records(dir.path()),
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
        agree_records(dir.path()),
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

    let records = agree_records(dir.path()).unwrap();
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

    let records = agree_records(dir.path()).unwrap();
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

    // The durable record lies in the last segment: segment 0 is only link-checked on open,
    // and reading finds the damage, after the records before it.
    let items = agree(dir.path()).unwrap();
    let offsets_read: Vec<u64> = items
        .iter()
        .filter_map(|item| match item {
            Item::Record(r) => Some(r.offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets_read, offsets[..3]);
    assert_eq!(
        items.last(),
        Some(&Item::Damaged(SpecError::Corruption { segment: segment_name(0), offset: damaged }))
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

    let records = agree_records(dir.path()).unwrap();
    let expected = vec![
        SpecRecord {
            offset: 0,
            timestamp_ms: 1_795_305_612_087,
            payload: b"hello, chronicle".to_vec(),
        },
        SpecRecord { offset: 48, timestamp_ms: 1_795_305_612_087, payload: b"second".to_vec() },
    ];
    assert_eq!(records, expected);
    let header = check_segment_file(dir.path(), &segment_name(0), 0).unwrap().unwrap().header;
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
    log.append(&Event::builder("a").namespace("n").payload(vec![1, 2]).build()).unwrap();
    log.close().unwrap();
    let records = agree_records(dir.path()).unwrap();
    // The aggregate's first event: version 0 as the seventh element.
    let expected = [0x97, 0xa1, 0x61, 0xa1, 0x6e, 0xa0, 0x01, 0x07, 0xc4, 0x02, 0x01, 0x02, 0x00];
    assert_eq!(records[0].payload, expected);
    // Without an aggregate: six elements, a nil aggregate id, no version.
    let expected = [0x96, 0xa1, 0x61, 0xa1, 0x6e, 0xa0, 0x01, 0xc0, 0xc4, 0x02, 0x01, 0x02];
    assert_eq!(records[1].payload, expected);
}

// ---------------------------------------------------------------------------------------------
// Segment files, headers and links (FORMAT.md sections 1, 2 and 6.3 steps 1, 2 and 5).
// ---------------------------------------------------------------------------------------------

/// The base offsets of the segment files of `dir`, in order.
fn bases(dir: &Path) -> Vec<u64> {
    segment_names(dir).into_iter().map(|(base, _)| base).collect()
}

/// Rewrites the header of the segment based at `base` through `edit`, then stores a valid CRC.
fn rewrite_header(dir: &Path, base: u64, edit: impl FnOnce(&mut [u8])) {
    let path = dir.join(segment_name(base));
    let mut header = [0u8; HEADER_LEN];
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    file.read_exact_at(&mut header, 0).unwrap();
    edit(&mut header);
    let crc = crc32fast::hash(&header[..60]);
    header[60..].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&header, 0).unwrap();
}

#[test]
fn a_directory_without_segment_files_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(agree_records(dir.path()), Err(SpecError::NotALogDirectory));
    // Chronicle's own files do not make a log, and neither do names that only look like
    // segments: 19 digits, or 20 digits above 2^64 − 1.
    fs::write(dir.path().join("DURABLE"), [0u8; 40]).unwrap();
    fs::write(dir.path().join("0000000000000000000.seg"), b"CHRN").unwrap();
    fs::write(dir.path().join("99999999999999999999.seg"), b"CHRN").unwrap();
    assert_eq!(agree_records(dir.path()), Err(SpecError::NotALogDirectory));
}

#[test]
fn names_that_are_not_segments_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    for i in 0..40u32 {
        log.append(&payload(i)).unwrap();
    }
    log.close().unwrap();
    let before = agree_records(dir.path()).unwrap();
    for name in [
        "99999999999999999999.seg",
        "18446744073709551616.seg",
        "0000000000000000000.seg",
        "00000000000000000000.seg.dropped",
        "00000000000000000000.seg.damaged-00000000000000000000",
        "next.seg.tmp",
        "notes.txt",
    ] {
        fs::write(dir.path().join(name), b"not a segment").unwrap();
    }
    assert_eq!(agree_records(dir.path()), Ok(before));
}

/// Every header check of section 2 and every link check of 6.3 steps 2 and 5, one edit at a
/// time, over a log whose sealed segments are durable (link-checked) and over one where
/// nothing was synced (walked).
#[test]
fn header_and_link_checks_agree() {
    for synced in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open_with(dir.path(), small()).unwrap();
        for i in 0..100u32 {
            if synced {
                log.append_sync(&payload(i)).unwrap();
            } else {
                log.append(&payload(i)).unwrap();
            }
        }
        log.close().unwrap();
        if !synced {
            crash_before_close(dir.path());
        }
        let all = bases(dir.path());
        assert!(all.len() >= 4, "the test needs several segments");
        let pristine: Vec<(u64, Vec<u8>)> =
            all.iter().map(|&b| (b, fs::read(dir.path().join(segment_name(b))).unwrap())).collect();
        let records = agree_records(dir.path()).unwrap();
        let (b1, b2) = (all[1], all[2]);
        let (n1, n2) = (segment_name(b1), segment_name(b2));
        let corrupt = |segment: &str, offset| {
            Err(SpecError::Corruption { segment: segment.to_string(), offset })
        };
        let broken = |segment: &str| Err(SpecError::Broken { segment: segment.to_string() });
        type Edit = Box<dyn Fn(&mut [u8])>;
        type Expected = Result<Vec<SpecRecord>, SpecError>;
        let last_of_1 = u64_at(&pristine[2].1, 24);
        let cases: Vec<(&str, u64, Edit, Expected)> = vec![
            (
                "version 0",
                b1,
                Box::new(|h| h[4] = 0),
                Err(SpecError::UnsupportedVersion(n1.clone())),
            ),
            (
                "version 3",
                b1,
                Box::new(|h| h[4] = 3),
                Err(SpecError::UnsupportedVersion(n1.clone())),
            ),
            ("magic", b1, Box::new(|h| h[0] = b'X'), Err(SpecError::NotALog(n1.clone()))),
            ("header flags", b1, Box::new(|h| h[6] = 1), corrupt(&n1, b1)),
            (
                "base not the name's",
                b1,
                Box::new(move |h| h[16..24].copy_from_slice(&(b1 + 8).to_le_bytes())),
                broken(&n1),
            ),
            (
                "durable past the base",
                b1,
                Box::new(move |h| h[40..48].copy_from_slice(&(b1 + 8).to_le_bytes())),
                corrupt(&n1, b1),
            ),
            ("another log", b2, Box::new(|h| h[48] ^= 1), broken(&n2)),
            (
                "no previous frame",
                b2,
                Box::new(|h| h[24..32].copy_from_slice(&NO_PREVIOUS_FRAME.to_le_bytes())),
                broken(&n2),
            ),
            (
                "previous frame between boundaries",
                b2,
                Box::new(move |h| h[24..32].copy_from_slice(&(last_of_1 + 4).to_le_bytes())),
                broken(&n2),
            ),
            ("previous frame's crc", b2, Box::new(|h| h[32] ^= 1), broken(&n2)),
            // Without a start record the first segment must follow no frame (6.6): one that
            // names a previous frame means segment files are missing at the front.
            (
                "first segment's previous frame",
                0,
                Box::new(|h| h[24..36].fill(0x5a)),
                broken(&segment_name(0)),
            ),
            // Not checked: the first segment's previous-frame CRC, and reserved bytes.
            ("first segment's previous crc", 0, Box::new(|h| h[32] ^= 1), Ok(records.clone())),
            ("reserved bytes", b1, Box::new(|h| h[36] = 1), Ok(records.clone())),
        ];
        for (what, base, edit, expected) in cases {
            rewrite_header(dir.path(), base, edit);
            assert_eq!(agree_records(dir.path()), expected, "{what}, synced {synced}");
            for (b, bytes) in &pristine {
                fs::write(dir.path().join(segment_name(*b)), bytes).unwrap();
            }
        }
        // A damaged header (its CRC fails) is corruption at the base its name gives.
        let file = OpenOptions::new().read(true).write(true).open(dir.path().join(&n1));
        let file = file.unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, 20).unwrap();
        file.write_all_at(&[byte[0] ^ 1], 20).unwrap();
        assert_eq!(agree_records(dir.path()), corrupt(&n1, b1), "synced {synced}");
    }
}

/// A durable sealed segment is only link-checked on open; if its data starts with zeros,
/// reading reports that its data ends early, even when the replay starts right there.
#[test]
fn a_sealed_segment_that_starts_with_zeros_is_corruption_where_reading_meets_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    for i in 0..60u32 {
        log.append_sync(&payload(i)).unwrap();
    }
    log.close().unwrap();
    let all = bases(dir.path());
    assert!(all.len() >= 3, "the test needs several segments");
    for base in [all[1], 0] {
        let file = OpenOptions::new().write(true).open(dir.path().join(segment_name(base)));
        file.unwrap().write_all_at(&[0u8; 8], HEADER_LEN as u64).unwrap();
        let items = agree(dir.path()).unwrap();
        let expected = SpecError::Corruption { segment: segment_name(base), offset: base };
        assert_eq!(items.last(), Some(&Item::Damaged(expected)));
    }
}

#[test]
fn a_segment_file_over_4_gib_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    log.append_sync(b"one record").unwrap();
    log.close().unwrap();
    let file = OpenOptions::new().write(true).open(dir.path().join(segment_name(0))).unwrap();
    file.set_len(SEGMENT_FILE_MAX + 8).unwrap(); // sparse: no disk space used
    assert_eq!(
        agree_records(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(0), offset: 0 })
    );
}

/// A log whose last three segments were created by buffered appends after its last sync, and
/// the writer gone without a close. Returns the offset the last sync covered.
fn crashed_after_rolling(dir: &Path) -> u64 {
    let mut log = Log::open_with(dir, small()).unwrap();
    for i in 0..20u32 {
        log.append_sync(&[i as u8; 300]).unwrap();
    }
    let synced_end = log.end_offset();
    let before = segment_count(dir);
    while segment_count(dir) < before + 3 {
        log.append(&[0xee; 900]).unwrap();
    }
    drop(log);
    synced_end
}

fn zero_header(dir: &Path, base: u64) {
    let path = dir.join(segment_name(base));
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[0u8; HEADER_LEN], 0).unwrap();
}

/// 6.3 step 1: segment files that a power loss left without a header.
#[test]
fn torn_creations_agree() {
    // One, then two, torn creations after the last sync: a torn tail.
    for torn in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let synced_end = crashed_after_rolling(dir.path());
        let all = bases(dir.path());
        let first_torn = all[all.len() - torn];
        for &base in &all[all.len() - torn..] {
            zero_header(dir.path(), base);
        }
        let records = agree_records(dir.path()).unwrap();
        let end = records.last().map_or(0, |r| r.offset + frame_stride(r.payload.len()));
        assert!(end >= synced_end && end <= first_torn, "{torn}: end {end}");
    }
    // A torn creation followed by an empty file: the same.
    let dir = tempfile::tempdir().unwrap();
    crashed_after_rolling(dir.path());
    let all = bases(dir.path());
    zero_header(dir.path(), all[all.len() - 2]);
    fs::write(dir.path().join(segment_name(all[all.len() - 1])), b"").unwrap();
    agree_records(dir.path()).unwrap();
    // A later header that is damaged, not missing, is reported as in any segment.
    let dir = tempfile::tempdir().unwrap();
    crashed_after_rolling(dir.path());
    let all = bases(dir.path());
    let (torn, later) = (all[all.len() - 2], all[all.len() - 1]);
    zero_header(dir.path(), torn);
    rewrite_header(dir.path(), later, |h| h[6] = 1);
    assert_eq!(
        agree_records(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(later), offset: later })
    );
    // A sync after the torn segment was created made its header durable: corruption.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    for i in 0..40u32 {
        log.append(&[i as u8; 300]).unwrap();
    }
    log.sync().unwrap();
    log.append(&[1; 10]).unwrap();
    drop(log);
    let newest = *bases(dir.path()).last().unwrap();
    zero_header(dir.path(), newest);
    assert_eq!(
        agree_records(dir.path()),
        Err(SpecError::Corruption { segment: segment_name(newest), offset: newest })
    );
    // Only a name a segment can have makes a torn creation: otherwise a short file is
    // corruption, and a header of zeros is not a Chronicle header.
    let dir = tempfile::tempdir().unwrap();
    crashed_after_rolling(dir.path());
    let mut garbage = vec![0u8; 4096];
    garbage[64..].fill(0x5a);
    let high = (1u64 << 63) + 4096;
    for (base, bytes, expected) in [
        (u64::MAX - 7, garbage.clone(), SpecError::NotALog(segment_name(u64::MAX - 7))),
        (
            high,
            garbage[..40].to_vec(),
            SpecError::Corruption { segment: segment_name(high), offset: high },
        ),
        (4, garbage.clone(), SpecError::NotALog(segment_name(4))),
    ] {
        fs::write(dir.path().join(segment_name(base)), bytes).unwrap();
        assert_eq!(agree_records(dir.path()), Err(expected));
        fs::remove_file(dir.path().join(segment_name(base))).unwrap();
    }
    // The first segment is created synced: without it, the chain is broken.
    zero_header(dir.path(), 0);
    assert_eq!(agree_records(dir.path()), Err(SpecError::Broken { segment: segment_name(0) }));
}

// ---------------------------------------------------------------------------------------------
// Gaps (FORMAT.md section 3, "Gaps", and 6.5).
// ---------------------------------------------------------------------------------------------

/// What a log of `records` (offset, payload) reads as after a salvage made gaps of the records
/// at `damaged` (indexes, no two adjacent in one segment): every other record, and a gap from
/// each damaged record to the next record or the end of its segment's data.
fn expected_after_salvage(
    dir: &Path,
    records: &[(u64, Vec<u8>)],
    damaged: &[usize],
    end: u64,
) -> Vec<(u64, Option<Vec<u8>>, u64)> {
    let all = bases(dir);
    records
        .iter()
        .enumerate()
        .map(|(i, (offset, payload))| {
            let next = records.get(i + 1).map_or(end, |r| r.0);
            let segment_end = all.iter().copied().find(|&b| b > *offset).unwrap_or(end);
            if damaged.contains(&i) {
                (*offset, None, next.min(segment_end))
            } else {
                (*offset, Some(payload.clone()), 0)
            }
        })
        .collect()
}

/// The items as (offset, payload, 0) for a record and (start, None, end) for a gap.
fn item_view(items: &[Item]) -> Vec<(u64, Option<Vec<u8>>, u64)> {
    items
        .iter()
        .map(|item| match item {
            Item::Record(r) => (r.offset, Some(r.payload.clone()), 0),
            Item::Gap { start, end } => (*start, None, *end),
            Item::Damaged(err) => panic!("reading a salvaged log failed: {err:?}"),
        })
        .collect()
}

/// A salvage turns damage in sealed segments and in the last one into gaps: damage in the
/// middle of a segment, at the end of a sealed one (the next header then names the gap), inside
/// a batch, and at the very end of the log. The FORMAT.md reader must read the same records and
/// gaps as the library, with the durable record the salvage's close wrote and without it.
#[test]
fn salvaged_logs_read_the_same_records_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut batch_middle = 0;
    for i in 0..90u32 {
        let p = payload(i * 7 + 1);
        records.push((log.append(&p).unwrap(), p));
        if i == 30 {
            let batch: Vec<Vec<u8>> = (0..5).map(|k| payload(500 + k)).collect();
            let offsets = log.append_batch(&batch).unwrap();
            batch_middle = records.len() + 2;
            records.extend(offsets.into_iter().zip(batch));
        }
    }
    let end = log.end_offset();
    log.close().unwrap();
    let all = bases(dir.path());
    assert!(all.len() >= 5, "the test needs several segments");
    // The indexes of the records in segment `k`.
    let in_segment = |k: usize| {
        let next = all.get(k + 1).copied().unwrap_or(end);
        let inside = records.iter().positions(|r| r.0 >= all[k] && r.0 < next);
        inside[0]..inside[inside.len() - 1] + 1
    };
    let first = in_segment(0);
    let second = in_segment(1);
    let last = in_segment(all.len() - 1);
    let mut damaged = vec![
        first.start + 2,   // the middle of a sealed segment
        second.end - 1,    // the last frame of a sealed segment
        batch_middle,      // inside a batch
        last.start + 1,    // the middle of the last segment
        records.len() - 1, // the very last record
    ];
    damaged.sort_unstable();
    damaged.dedup();
    assert!(damaged.windows(2).all(|w| w[1] > w[0] + 1), "{damaged:?}");
    for &i in &damaged {
        let offset = records[i].0;
        flip(dir.path(), base_of(dir.path(), offset), offset + 9);
    }
    let expected = expected_after_salvage(dir.path(), &records, &damaged, end);

    // Before the repair the log is refused; the salvage keeps the rest.
    assert!(matches!(agree_records(dir.path()), Err(SpecError::Corruption { .. })));
    let salvage = Options { recovery: RecoveryMode::Salvage, ..small() };
    let log = Log::open_with(dir.path(), salvage).unwrap();
    let repair = log.open_report().repair.clone().unwrap();
    assert_eq!(repair.damaged.len(), damaged.len(), "{repair:?}");
    log.close().unwrap();

    assert_eq!(item_view(&agree(dir.path()).unwrap()), expected);
    crash_before_close(dir.path());
    assert_eq!(item_view(&agree(dir.path()).unwrap()), expected);
    // The segments that hold a gap have version 2, the others version 1.
    for base in bases(dir.path()) {
        let bytes = fs::read(dir.path().join(segment_name(base))).unwrap();
        let holds_gap = expected.iter().any(|e| e.1.is_none() && base_of(dir.path(), e.0) == base);
        assert_eq!(u16_at(&bytes, 4), if holds_gap { 2 } else { 1 }, "segment {base}");
    }
}

/// The indexes of the items an iterator yields that satisfy a predicate.
trait Positions: Iterator + Sized {
    fn positions(self, mut keep: impl FnMut(&Self::Item) -> bool) -> Vec<usize> {
        self.enumerate().filter(|(_, item)| keep(item)).map(|(i, _)| i).collect()
    }
}

impl<I: Iterator> Positions for I {}

/// The directories the `open_directory` fuzz target builds from its seed corpus (torn tails,
/// damage, gaps, garbage, broken links, short files, durable records), and a few thousand
/// mutations of them (a run of 60,000 found the same): the FORMAT.md reader and the library must agree on every one.
#[cfg(feature = "internals")]
#[test]
fn fuzz_corpus_directories_agree() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/open_directory");
    let mut inputs: Vec<Vec<u8>> =
        fs::read_dir(corpus).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    inputs.sort();
    assert!(!inputs.is_empty());
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = inputs.len();
    for round in 0..4000 {
        let mut input = inputs[round % seeds].clone();
        if round >= seeds && !input.is_empty() {
            for _ in 0..=next() % 4 {
                let at = (next() % input.len() as u64) as usize;
                input[at] ^= 1 << (next() % 8);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        chronicle::fuzzing::write_directory(&input, dir.path());
        let spec = read_log(dir.path());
        let library = library_read(dir.path());
        assert_eq!(spec, library, "round {round}, input {input:02x?}");
    }
}

/// FORMAT.md 6.6: a log whose front retention removed, a crash's leftovers below its start,
/// a damaged start record, and a missing first segment without one.
#[test]
fn start_records_and_missing_front_segments_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), small()).unwrap();
    let offsets: Vec<u64> = (0..2000).map(|i| log.append(&payload(i)).unwrap()).collect();
    let report = log.truncate_before(offsets[1500]).unwrap();
    assert!(!report.segments_removed.is_empty(), "{report:?}");
    log.close().unwrap();
    let records = agree_records(dir.path()).unwrap();
    assert_eq!(records[0].offset, report.start_offset);
    // A segment file below the start (a removal a crash interrupted) is not read.
    fs::write(
        dir.path().join(segment_name(0)),
        fs::read(dir.path().join(segment_name(report.start_offset))).unwrap(),
    )
    .unwrap();
    assert_eq!(agree_records(dir.path()).unwrap().len(), records.len());
    fs::remove_file(dir.path().join(segment_name(0))).unwrap();
    // A damaged start record refuses the log.
    let start = dir.path().join("START");
    let good = fs::read(&start).unwrap();
    let mut bad = good.clone();
    bad[17] ^= 4;
    fs::write(&start, &bad).unwrap();
    assert!(matches!(agree(dir.path()), Err(SpecError::Broken { .. })));
    // Without the record, the first segment follows another: segments are missing.
    fs::remove_file(&start).unwrap();
    assert!(matches!(agree(dir.path()), Err(SpecError::Broken { .. })));
    fs::write(&start, &good).unwrap();
    assert_eq!(agree_records(dir.path()).unwrap().len(), records.len());
}
