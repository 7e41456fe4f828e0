//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/` and by the stable test
//! `tests/fuzz_corpus.rs` that runs the checked-in corpus.
//!
//! **Not a stable API.** This module exists for fuzzers and tests only; it is hidden from the
//! docs and may change in any release.
//!
//! Every function accepts any byte slice, does a bounded amount of work, and panics only when
//! an invariant of the engine is broken (a panic inside the engine counts too). Each one
//! documents how it reads its input, so that a crashing input can be understood by hand; the
//! `seed_*` functions build well-formed inputs in those layouts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StorageError;
use crate::event::{decode_event, encode_event_into, Event};
use crate::format::{
    decode_frame, encode_frame_header, frame_crc, frame_stride, header_crc, probe_frame,
    segment_file_name, unsynced_field, DurableRecord, FrameRead, SegmentHeader, DURABLE_FILE_NAME,
    FLAG_BATCH_CONTINUES, FORMAT_VERSION, FRAME_ALIGN, FRAME_FLAGS_KNOWN, FRAME_HEADER_LEN,
    NO_PREVIOUS_FRAME, SEGMENT_FILE_SUFFIX, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, TEMP_FILE_SUFFIX,
};
use crate::log::{Log, Options, RecoveryMode};

/// Segment size the directory target opens logs with (the smallest allowed).
const SEGMENT_BYTES: u64 = 4096;

/// Record size limit the directory target opens logs with.
const RECORD_BYTES_MAX: u64 = 1024;

/// Largest body one segment of a directory input may take, so every input stays cheap.
const SEGMENT_BODY_MAX: usize = 8192;

/// Log identifier written into generated headers that follow no decodable header.
const LOG_ID: u64 = 0x0c4e_0f1c_2a5e_ed01;

/// Creation time written into generated headers.
const CREATED_AT_MS: u64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Frame decoder
// ---------------------------------------------------------------------------------------------

/// Decodes a chain of frames.
///
/// Input: a `selector` byte, then the data region. Selector bit 1 (structured mode): the first
/// frame is built by `encode_frame_header`, with a valid checksum, from the fields that follow
/// (offset `u64`, timestamp `u64`, unsynced distance `u32`, flags `u32`, payload length `u8`,
/// payload), and the rest of the input follows it; the fuzzer then reaches the checks behind
/// the checksum (offset, flags, distance) and the frames after it. Otherwise the region is the
/// raw input. The first frame is expected at the offset in bytes `[8, 16)` of the region (its
/// own offset field) when bit 0 is set, else at `(selector >> 2) * 8`.
///
/// Checks that every decoded frame lies inside the slice, has the expected offset, known flags
/// and a plausible distance, that `encode_frame_header` reproduces its header byte for byte,
/// and that `probe_frame` agrees with `decode_frame` at every position. Also checks the frame
/// checksum's fast path against crc32fast, taking the whole region as one frame.
pub fn frame_decoder(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let bytes = if selector & 2 != 0 { structured_frame(rest) } else { rest.to_vec() };
    assert_eq!(
        frame_crc(&bytes),
        crc32fast::hash(bytes.get(4..).unwrap_or_default()),
        "the frame checksum differs from crc32fast for {} bytes",
        bytes.len()
    );
    let mut expected = if selector & 1 != 0 {
        bytes.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    } else {
        u64::from(selector >> 2) * FRAME_ALIGN as u64
    };
    let mut pos = 0usize;
    while let Some(region) = bytes.get(pos..) {
        let decoded = decode_frame(region, expected);
        let probed = probe_frame(region, expected);
        let frame = match decoded {
            Ok(FrameRead::Frame(frame)) => frame,
            Ok(FrameRead::End) | Err(_) => {
                assert_eq!(probed, None, "probe found a frame that decode rejects");
                return;
            }
        };
        assert_eq!(probed, Some(frame), "probe disagrees with decode");
        let header = frame.header;
        let frame_len = header.frame_len as usize;
        assert!(frame_len >= FRAME_HEADER_LEN && frame_len <= region.len());
        assert_eq!(header.offset, expected);
        assert_eq!(header.flags & !FRAME_FLAGS_KNOWN, 0);
        assert!(header.durable_end() <= header.offset);
        assert_eq!(Some(frame.payload), region.get(FRAME_HEADER_LEN..frame_len));
        let again = encode_frame_header(
            header.offset,
            header.write_timestamp_ms,
            header.unsynced_before,
            header.flags,
            frame.payload,
        );
        assert_eq!(Some(&again[..]), region.get(..FRAME_HEADER_LEN));
        // The frame decodes the same from a slice that ends right after it.
        let tight = region.get(..frame_len).unwrap_or_default();
        assert_eq!(decode_frame(tight, expected), Ok(FrameRead::Frame(frame)));
        let stride = usize::try_from(header.stride()).unwrap_or(usize::MAX);
        let Some(next) = expected.checked_add(header.stride()) else {
            return;
        };
        expected = next;
        pos = pos.saturating_add(stride);
    }
}

/// Builds a frame with a valid checksum from the fields at the start of `input`, followed by
/// the rest of `input`.
fn structured_frame(input: &[u8]) -> Vec<u8> {
    let mut input = Input { bytes: input };
    let offset = input.u64();
    let timestamp = input.u64();
    let unsynced = u32::from_le_bytes([input.byte(), input.byte(), input.byte(), input.byte()]);
    let flags = u32::from_le_bytes([input.byte(), input.byte(), input.byte(), input.byte()]);
    let len = usize::from(input.byte());
    let payload = input.take(len);
    let mut out = encode_frame_header(offset, timestamp, unsynced, flags, payload).to_vec();
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(FRAME_ALIGN), 0);
    out.extend_from_slice(input.bytes);
    out
}

// ---------------------------------------------------------------------------------------------
// Segment header decoder
// ---------------------------------------------------------------------------------------------

/// Decodes a segment header.
///
/// Input: `selector` byte, then the header bytes. Selector bit 0: recompute the header's
/// checksum first (when there are 64 bytes), so the fuzzer reaches the version and flag checks.
///
/// Checks that a decoded header has a supported version and no flags, that its fields are the
/// bytes that were read, and that it re-encodes to a header that decodes to itself; and that
/// the errors describe the input truthfully.
pub fn segment_header_decoder(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if selector & 1 != 0 {
        if let Some(h) = bytes.first_chunk_mut::<SEGMENT_HEADER_LEN>() {
            let crc = crc32fast::hash(&h[..SEGMENT_HEADER_LEN - 4]);
            h[SEGMENT_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        }
    }
    match SegmentHeader::decode(&bytes) {
        Ok(header) => {
            assert!((1..=FORMAT_VERSION).contains(&header.version));
            assert_eq!(header.flags, 0);
            let encoded = header.encode();
            // Everything before the reserved bytes is reproduced exactly; the reserved bytes
            // are not interpreted (a writer sets them to zero).
            assert_eq!(encoded.get(..36), bytes.get(..36));
            assert_eq!(SegmentHeader::decode(&encoded), Ok(header));
        }
        Err(crate::format::FormatError::Truncated { needed, available }) => {
            assert_eq!(needed, SEGMENT_HEADER_LEN as u64);
            assert_eq!(available, bytes.len() as u64);
            assert!(bytes.len() < SEGMENT_HEADER_LEN);
        }
        Err(crate::format::FormatError::BadMagic { found }) => {
            assert_ne!(found, SEGMENT_MAGIC);
            assert_eq!(bytes.get(..4), Some(&found[..]));
        }
        Err(crate::format::FormatError::UnsupportedVersion { found }) => {
            assert!(found == 0 || found > FORMAT_VERSION);
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Event decoder
// ---------------------------------------------------------------------------------------------

/// Decodes an event record.
///
/// Input: the record bytes. Checks that a decoded event re-encodes (in the shortest form, so
/// never longer than the input) to bytes that decode to the same event, and that errors are
/// decode errors carrying the offset given.
pub fn event_decoder(data: &[u8]) {
    match decode_event(data, 8) {
        Ok(event) => {
            let mut again = Vec::new();
            if let Err(err) = encode_event_into(&event, &mut again) {
                panic!("a decoded event must re-encode: {err}");
            }
            assert!(again.len() <= data.len(), "re-encoding grew the record");
            match decode_event(&again, 8) {
                Ok(decoded) => assert_eq!(decoded, event),
                Err(err) => panic!("a re-encoded event must decode: {err}"),
            }
        }
        Err(StorageError::Decode { offset, .. }) => assert_eq!(offset, 8),
        Err(other) => panic!("unexpected error kind from decode_event: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Opening a directory
// ---------------------------------------------------------------------------------------------

// The header of a segment in a directory input: the low two bits of its mode byte.

/// Header kind: the body's first 64 bytes, as they are.
pub const HEADER_RAW: u8 = 0;
/// Header kind: the body's first 64 bytes with the checksum recomputed.
pub const HEADER_RAW_RESEALED: u8 = 1;
/// Header kind: generated, continuing the previous segment as the writer would.
pub const HEADER_CHAINED: u8 = 2;
/// Header kind: generated at the base and durable offset that follow the body length.
pub const HEADER_CHAINED_AT: u8 = 3;

/// Mode bit: write the file exactly as built, without padding it to a segment's size.
pub const MODE_SHORT_FILE: u8 = 1 << 2;
/// Mode bit: name the file 8 bytes past the base offset its header records.
pub const MODE_NAME_MISMATCH: u8 = 1 << 3;
/// Mode bit: the data region is a frame script (see [`open_directory`]), not raw bytes.
pub const MODE_SCRIPT: u8 = 1 << 4;
/// Mode bit: a generated header names the wrong checksum for the previous segment's last frame.
pub const MODE_BAD_LINK: u8 = 1 << 5;
/// Mode bits 6–7: the file's size before the image is laid in: 4096, 4100, 8192 or 2048 bytes.
pub const MODE_SIZE_SHIFT: u8 = 6;

/// Directory flag bit (in the first byte): also leave an interrupted segment creation behind.
pub const DIR_TEMP_FILE: u8 = 1 << 7;
/// Directory flag bit: also leave an unrelated file in the directory.
pub const DIR_STRAY_FILE: u8 = 1 << 6;
/// Directory flag bit: also write a durable record (`DURABLE`) for the first segment's log,
/// with the durable end in the eight bytes after the flags.
pub const DIR_DURABLE_FILE: u8 = 1 << 5;
/// Directory flag bit: the durable record (if any) says the log was closed cleanly at its
/// durable end (the `CLEAN_END` flag of `FORMAT.md` 6.2).
pub const DIR_CLEAN_END: u8 = 1 << 4;

/// Frame-script operations: the low two bits of an operation's first byte.
pub const OP_FRAME: u8 = 0;
/// Leaves `(a % 32 + 1) * 8` zero bytes; with [`OP_LOSE`], zeroes the last frame written.
pub const OP_GAP: u8 = 1;
/// Gap operation bit: instead of a gap, the last frame's write is lost (zeroed), while the
/// writer goes on as if it were there.
pub const OP_LOSE: u8 = 1 << 2;
/// Writes `a % 32 + 1` bytes of `b | 1` and skips to the next aligned position.
pub const OP_GARBAGE: u8 = 2;
/// `a` even: marks everything so far durable (in this segment and every one before it). `a`
/// odd: a torn frame of `a >> 1` payload bytes of which only the first `b % frame_len` bytes
/// were written.
pub const OP_SYNC_OR_TORN: u8 = 3;
/// Frame operation bit: the frame continues a batch.
pub const OP_BATCH: u8 = 1 << 2;
/// Frame operation bit: the frame carries an unknown flag (with a valid checksum).
pub const OP_UNKNOWN_FLAG: u8 = 1 << 3;
/// Frame operation bit: the frame records an offset 8 bytes past where it lies.
pub const OP_MISPLACED: u8 = 1 << 4;
/// Frame operation bits 5–7: its unsynced distance: 0 as a writer would compute it from the
/// last sync point, 1 zero, 2 `b` units of 8 bytes, 3 `u32::MAX` ("unknown"), 4–7 as a writer
/// would.
pub const OP_UNSYNCED_SHIFT: u8 = 5;

/// One segment file of a directory input, for building inputs in [`encode_directory_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// The mode byte: header kind in bits 0–1 (0 raw, 1 raw with the checksum recomputed,
    /// 2 generated and chained to the previous segment, 3 generated at `base`), then the
    /// `MODE_*` bits.
    pub mode: u8,
    /// Base offset for header kind 3.
    pub base: u64,
    /// Durable offset for header kind 3 (kind 2 records the simulated writer's sync point).
    pub durable: u64,
    /// Raw header and data (kinds 0 and 1), or the data region or frame script (kinds 2, 3).
    pub body: Vec<u8>,
}

/// Encodes a directory input for [`open_directory`].
/// `durable_end` is written only when `dir_flags` has [`DIR_DURABLE_FILE`].
#[must_use]
pub fn encode_directory_input(
    dir_flags: u8,
    durable_end: u64,
    segments: &[SegmentSpec],
) -> Vec<u8> {
    let count = u8::try_from(segments.len().clamp(1, 3) - 1).unwrap_or(0);
    let mut out = vec![(dir_flags & !3) | count];
    if dir_flags & DIR_DURABLE_FILE != 0 {
        out.extend_from_slice(&durable_end.to_le_bytes());
    }
    for spec in segments.iter().take(3) {
        out.push(spec.mode);
        let len = u16::try_from(spec.body.len().min(SEGMENT_BODY_MAX)).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        if spec.mode & 3 == HEADER_CHAINED_AT {
            out.extend_from_slice(&spec.base.to_le_bytes());
            out.extend_from_slice(&spec.durable.to_le_bytes());
        }
        out.extend_from_slice(spec.body.get(..usize::from(len)).unwrap_or(&spec.body));
    }
    out
}

/// A cursor over fuzz input that yields zeros once the input runs out.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        first
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        let taken = self.take(8);
        out[..taken.len()].copy_from_slice(taken);
        u64::from_le_bytes(out)
    }
}

/// Where a built segment's frames end and what its last frame is, for chaining the next one.
#[derive(Debug, Clone, Copy)]
struct ChainEnd {
    base: u64,
    data_end: u64,
    last_frame: Option<(u64, u32)>,
}

/// Walks the valid frames of a built data region.
fn chain_end(base: u64, data: &[u8]) -> ChainEnd {
    let mut pos = 0u64;
    let mut last_frame = None;
    while let Some(region) = data.get(usize::try_from(pos).unwrap_or(usize::MAX)..) {
        let Some(expected) = base.checked_add(pos) else {
            break;
        };
        match decode_frame(region, expected) {
            Ok(FrameRead::Frame(frame)) => {
                last_frame = Some((frame.header.offset, frame.header.crc));
                pos += frame.header.stride();
            }
            Ok(FrameRead::End) | Err(_) => break,
        }
    }
    ChainEnd { base, data_end: pos, last_frame }
}

/// Writes the frames a script describes into `data`, whose first byte is at logical `base`,
/// and returns the writer's view of the segment: where its frames end and its last complete
/// frame, whatever was lost or damaged afterwards.
///
/// `synced_end` is the logical offset up to which the log is durable; a sync operation moves it
/// and it carries over to the next segment, as the writer's does.
fn run_script(script: &[u8], base: u64, data: &mut [u8], synced_end: &mut u64) -> ChainEnd {
    let mut pos = 0usize;
    let mut last_frame = None;
    let mut last_start = None;
    let mut payload_buf = [0u8; 256];
    for op in script.chunks(3) {
        let [kind, a, b] = [
            op.first().copied().unwrap_or(0),
            op.get(1).copied().unwrap_or(0),
            op.get(2).copied().unwrap_or(0),
        ];
        if pos >= data.len() {
            break;
        }
        match kind & 3 {
            OP_FRAME => {
                let payload = fill_payload(&mut payload_buf, usize::from(a), b);
                let mut flags = 0;
                if kind & OP_BATCH != 0 {
                    flags |= FLAG_BATCH_CONTINUES;
                }
                if kind & OP_UNKNOWN_FLAG != 0 {
                    flags |= 2;
                }
                let mut offset = base.wrapping_add(pos as u64);
                if kind & OP_MISPLACED != 0 {
                    offset = offset.wrapping_add(FRAME_ALIGN as u64);
                }
                let writer_distance = unsynced_field(offset, *synced_end);
                let unsynced = match kind >> OP_UNSYNCED_SHIFT {
                    1 => 0,
                    2 => u32::from(b),
                    3 => u32::MAX,
                    _ => writer_distance,
                };
                let header = encode_frame_header(offset, CREATED_AT_MS, unsynced, flags, payload);
                put(data, pos, &header);
                put(data, pos + FRAME_HEADER_LEN, payload);
                if flags & FLAG_BATCH_CONTINUES == 0 {
                    last_frame = Some((offset, header_crc(&header)));
                }
                last_start = Some(pos);
                pos += stride_of(payload.len());
            }
            OP_GAP if kind & OP_LOSE != 0 => {
                // The last frame's write is lost in a crash: its bytes read as zeros.
                if let Some(dest) = last_start.and_then(|start| data.get_mut(start..pos)) {
                    dest.fill(0);
                }
            }
            OP_GAP => pos += (usize::from(a) % 32 + 1) * FRAME_ALIGN,
            OP_GARBAGE => {
                let len = usize::from(a) % 32 + 1;
                let junk = [b | 1; 32];
                put(data, pos, junk.get(..len).unwrap_or_default());
                pos += len.next_multiple_of(FRAME_ALIGN);
            }
            _ => {
                let offset = base.wrapping_add(pos as u64);
                if a & 1 == 0 {
                    *synced_end = offset;
                } else {
                    let payload = fill_payload(&mut payload_buf, usize::from(a >> 1), b);
                    let distance = unsynced_field(offset, *synced_end);
                    let header = encode_frame_header(offset, CREATED_AT_MS, distance, 0, payload);
                    let mut frame = header.to_vec();
                    frame.extend_from_slice(payload);
                    let written = usize::from(b) % frame.len();
                    put(data, pos, frame.get(..written).unwrap_or_default());
                    pos += stride_of(payload.len());
                }
            }
        }
    }
    ChainEnd { base, data_end: pos.min(data.len()) as u64, last_frame }
}

fn fill_payload(buf: &mut [u8; 256], len: usize, seed: u8) -> &[u8] {
    for (byte, i) in buf.iter_mut().zip(0u8..=255) {
        *byte = seed.wrapping_add(i);
    }
    buf.get(..len).unwrap_or_default()
}

fn stride_of(payload_len: usize) -> usize {
    usize::try_from(frame_stride(payload_len)).unwrap_or(usize::MAX)
}

/// Copies `bytes` into `data` at `pos`, dropping whatever would fall past its end (a frame cut
/// off by the end of the segment).
fn put(data: &mut [u8], pos: usize, bytes: &[u8]) {
    if let Some(dest) = data.get_mut(pos..) {
        let n = dest.len().min(bytes.len());
        if let (Some(dest), Some(src)) = (dest.get_mut(..n), bytes.get(..n)) {
            dest.copy_from_slice(src);
        }
    }
}

/// One file to write: its name and contents.
struct SegmentFile {
    name: String,
    contents: Vec<u8>,
}

/// Builds the segment files a directory input describes.
fn build_segments(data: &[u8]) -> DirectoryImage {
    let mut input = Input { bytes: data };
    let dir_flags = input.byte();
    let durable_end = if dir_flags & DIR_DURABLE_FILE != 0 { Some(input.u64()) } else { None };
    let mut first_log_id = None;
    let count = usize::from(dir_flags & 3) % 3 + 1;
    let mut files = Vec::with_capacity(count);
    let mut previous: Option<ChainEnd> = None;
    // The offset up to which the simulated writer has synced, carried across segments.
    let mut synced_end = 0u64;
    // Generated headers carry the log id of the last header that decoded.
    let mut log_id = LOG_ID;
    for _ in 0..count {
        let mode = input.byte();
        let len = usize::from(input.u16()).min(SEGMENT_BODY_MAX);
        let kind = mode & 3;
        let (at, durable_at) =
            if kind == HEADER_CHAINED_AT { (input.u64(), input.u64()) } else { (0, 0) };
        let body = input.take(len);
        let size = match mode >> MODE_SIZE_SHIFT {
            0 => 4096,
            1 => 4100,
            2 => 8192,
            _ => 2048,
        };

        // The header: taken from the body, or generated to continue the previous segment.
        let (mut header, data_spec): (Vec<u8>, &[u8]) = match kind {
            HEADER_RAW | HEADER_RAW_RESEALED => {
                let split = body.len().min(SEGMENT_HEADER_LEN);
                let (header, rest) = body.split_at(split);
                (header.to_vec(), rest)
            }
            _ => {
                let (base, prev) = match previous {
                    Some(p) => (
                        p.base.wrapping_add(p.data_end),
                        p.last_frame.unwrap_or((NO_PREVIOUS_FRAME, 0)),
                    ),
                    None => (0, (NO_PREVIOUS_FRAME, 0)),
                };
                let (base, durable_offset) =
                    if kind == HEADER_CHAINED_AT { (at, durable_at) } else { (base, synced_end) };
                let mut prev_crc = prev.1;
                if mode & MODE_BAD_LINK != 0 {
                    prev_crc ^= 1;
                }
                let header = SegmentHeader {
                    version: FORMAT_VERSION,
                    flags: 0,
                    created_at_ms: CREATED_AT_MS,
                    base_offset: base,
                    prev_last_frame_offset: prev.0,
                    prev_last_frame_crc: prev_crc,
                    durable_offset,
                    log_id,
                };
                (header.encode().to_vec(), body)
            }
        };
        if kind == HEADER_RAW_RESEALED {
            if let Some(h) = header.first_chunk_mut::<SEGMENT_HEADER_LEN>() {
                let crc = crc32fast::hash(&h[..SEGMENT_HEADER_LEN - 4]);
                h[SEGMENT_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
            }
        }
        if let Ok(decoded) = SegmentHeader::decode(&header) {
            log_id = decoded.log_id;
            first_log_id.get_or_insert(log_id);
        }
        let base =
            header.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));

        // The data region: raw bytes, or frames written by a script.
        let (mut region, writer_view) = if mode & MODE_SCRIPT != 0 {
            let capacity = (size.max(SEGMENT_HEADER_LEN) - SEGMENT_HEADER_LEN) & !(FRAME_ALIGN - 1);
            let mut region = vec![0u8; capacity];
            let view = run_script(data_spec, base, &mut region, &mut synced_end);
            (region, Some(view))
        } else {
            (data_spec.to_vec(), None)
        };
        if mode & MODE_SHORT_FILE != 0 {
            // Keep only what was written: drop trailing zeros of a script's region.
            let used = region.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            region.truncate(used);
        }
        previous = Some(writer_view.unwrap_or_else(|| chain_end(base, &region)));

        let mut contents = header;
        if contents.len() == SEGMENT_HEADER_LEN {
            contents.extend_from_slice(&region);
        }
        if mode & MODE_SHORT_FILE == 0 && contents.len() < size {
            contents.resize(size, 0);
        }
        let name_base = if mode & MODE_NAME_MISMATCH != 0 {
            base.wrapping_add(FRAME_ALIGN as u64)
        } else {
            base
        };
        files.push(SegmentFile { name: segment_file_name(name_base), contents });
    }
    let durable = durable_end.map(|durable_end| {
        let (last_frame_offset, last_frame_crc) =
            last_frame_before(&files, durable_end).unwrap_or((NO_PREVIOUS_FRAME, 0));
        DurableRecord {
            log_id: first_log_id.unwrap_or(LOG_ID),
            durable_end,
            last_frame_offset,
            last_frame_crc,
            clean_end: dir_flags & DIR_CLEAN_END != 0,
        }
    });
    DirectoryImage { flags: dir_flags, durable, files }
}

/// The offset and checksum of the last intact frame that ends at or before `end`, as a writer
/// that had synced up to `end` would record it.
fn last_frame_before(files: &[SegmentFile], end: u64) -> Option<(u64, u32)> {
    let mut last = None;
    for file in files {
        let Ok(header) = SegmentHeader::decode(&file.contents) else { continue };
        let data = file.contents.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
        let mut pos = 0u64;
        while let Some(region) = data.get(usize::try_from(pos).unwrap_or(usize::MAX)..) {
            let Some(offset) = header.base_offset.checked_add(pos) else { break };
            let Ok(FrameRead::Frame(frame)) = decode_frame(region, offset) else { break };
            if offset.saturating_add(frame.header.stride()) > end {
                break;
            }
            if frame.header.flags & FLAG_BATCH_CONTINUES == 0 {
                last = Some((offset, frame.header.crc));
            }
            pos += frame.header.stride();
        }
    }
    last
}

/// The files a directory input describes.
struct DirectoryImage {
    flags: u8,
    durable: Option<DurableRecord>,
    files: Vec<SegmentFile>,
}

/// A directory under the system's temporary directory, removed when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new() -> ScratchDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("chronicle-fuzz-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return ScratchDir { path },
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => panic!("cannot create scratch directory {}: {err}", path.display()),
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// What a replay of a whole log produced: the intact records, then the error that ended it.
#[derive(Debug, PartialEq, Eq)]
struct Replayed {
    records: Vec<(u64, u64, Vec<u8>)>,
    error: Option<String>,
    end: u64,
}

/// Replays `log` from its start and checks the replay invariants.
fn replay_all(log: &Log, what: &str) -> Replayed {
    let start = log.start_offset();
    let end = log.end_offset();
    assert!(start <= end, "{what}: start {start} after end {end}");
    let mut out = Replayed { records: Vec::new(), error: None, end };
    let mut replay = log.replay(start);
    let mut previous: Option<u64> = None;
    // A frame takes at least 32 bytes, so a replay has a bounded number of items.
    let bound = (end - start) / FRAME_HEADER_LEN as u64 + 2;
    for item in replay.by_ref() {
        assert!(
            (out.records.len() as u64) < bound,
            "{what}: replay yields more records than fit in {start}..{end}"
        );
        match item {
            Ok(record) => {
                assert!(
                    previous.is_none_or(|p| record.offset > p),
                    "{what}: offsets not strictly increasing: {previous:?} then {}",
                    record.offset
                );
                assert!(
                    record.offset >= start && record.offset < end,
                    "{what}: record at {} outside the log {start}..{end}",
                    record.offset
                );
                assert_eq!(record.offset % FRAME_ALIGN as u64, 0, "{what}: unaligned record");
                previous = Some(record.offset);
                out.records.push((
                    record.offset,
                    record.write_timestamp_ms,
                    record.payload.to_vec(),
                ));
            }
            Err(err) => {
                out.error = Some(err.to_string());
                break;
            }
        }
    }
    assert!(replay.next().is_none(), "{what}: replay goes on after an error or its end");
    out
}

/// Replays, verifies and, for a clean log, checks single-record reads against the replay.
fn check_log(log: &Log, what: &str) -> Replayed {
    let replayed = replay_all(log, what);
    let verified = log.verify();
    if replayed.error.is_none() {
        for (offset, ts, payload) in replayed.records.iter().take(64) {
            match log.read_at(*offset) {
                Ok(record) => {
                    assert_eq!(record.write_timestamp_ms, *ts, "{what}: read_at timestamp");
                    assert_eq!(&*record.payload, &payload[..], "{what}: read_at payload");
                }
                Err(err) => panic!("{what}: replayed record at {offset} cannot be read: {err}"),
            }
        }
        match verified {
            Ok(report) => assert_eq!(report.records, replayed.records.len() as u64, "{what}"),
            Err(err) => panic!("{what}: replay found no damage but verify did: {err}"),
        }
    } else {
        assert!(verified.is_err(), "{what}: replay failed but verify passed");
    }
    replayed
}

fn small_options(recovery: RecoveryMode) -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        record_bytes_max: RECORD_BYTES_MAX,
        recovery,
        ..Options::default()
    }
}

fn write_files(dir: &Path, image: &DirectoryImage) {
    let (dir_flags, files) = (image.flags, &image.files);
    if let Some(record) = image.durable {
        let _ = fs::write(dir.join(DURABLE_FILE_NAME), record.encode());
    }
    for file in files {
        if let Err(err) = fs::write(dir.join(&file.name), &file.contents) {
            panic!("cannot write test segment {}: {err}", file.name);
        }
    }
    let first = files.first().map(|f| f.name.clone()).unwrap_or_default();
    if dir_flags & DIR_TEMP_FILE != 0 {
        let temp = format!("{first}{TEMP_FILE_SUFFIX}");
        let _ = fs::write(dir.join(temp), b"half-built segment");
    }
    if dir_flags & DIR_STRAY_FILE != 0 {
        let _ = fs::write(dir.join(format!("notes{SEGMENT_FILE_SUFFIX}.txt")), b"x");
    }
}

/// Writes the files a directory input describes (see [`open_directory`]) into `dir`, which
/// must exist: for reproducing a fuzzer's finding by hand.
pub fn write_directory(data: &[u8], dir: &Path) {
    write_files(dir, &build_segments(data));
}

/// Opens a directory built from fuzz input in every mode and checks what the opens agree on.
///
/// Input: a flags byte (bits 0–1: number of segments, 1 + value % 3; [`DIR_TEMP_FILE`],
/// [`DIR_STRAY_FILE`], [`DIR_DURABLE_FILE`]), the durable end (`u64`) if that flag is set, then
/// per segment a mode byte (see [`SegmentSpec::mode`] and the
/// `MODE_*` constants), a body length (`u16`, little-endian, at most 8192), for header kind 3
/// the base offset and the durable offset (`u64` each), and the body. Missing bytes read as zero. A frame script is a
/// sequence of three-byte operations `[kind, a, b]` (see the `OP_*` constants): a frame with
/// `a` payload bytes, a gap, garbage, a sync point or a torn frame. Files are padded with zeros
/// to their size (4096 bytes unless the mode says otherwise) and named after their header's
/// base offset.
///
/// Invariants checked: nothing panics; a replay's offsets increase strictly and stay below the
/// end offset; replay and verify agree; a read-only open and a writer open of the same files
/// see the same records; after a writer open, a second open finds nothing to cut and replays
/// the same records (recovery is idempotent); an append after recovery lands at the end and
/// survives a reopen; after a successful repair every frame verifies and a strict open agrees.
pub fn open_directory(data: &[u8]) {
    let _ = open_directory_outcome(data);
}

/// What [`open_directory`] saw, so tests can check that an input does what it is meant to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryOutcome {
    /// Records a read-only open replayed, or its error.
    pub read_only: Result<usize, String>,
    /// Records a strict writer open replayed, or its error.
    pub writer: Result<usize, String>,
    /// Whether the writer open reported a torn tail.
    pub torn_tail: bool,
    /// Whether a replay after the writer open ended in an error (damage in a sealed segment,
    /// which a strict open does not read).
    pub replay_error: bool,
    /// Records left after a repair open of the same files, or its error.
    pub repaired: Result<usize, String>,
}

/// The body of [`open_directory`], returning what it saw.
#[must_use]
pub fn open_directory_outcome(data: &[u8]) -> DirectoryOutcome {
    let image = build_segments(data);
    let scratch = ScratchDir::new();
    let dir = scratch.path.join("log");
    let copy = scratch.path.join("copy");
    for path in [&dir, &copy] {
        if let Err(err) = fs::create_dir(path) {
            panic!("cannot create {}: {err}", path.display());
        }
        write_files(path, &image);
    }

    let read_only = Log::open_read_only(&dir).map(|log| check_log(&log, "read-only open"));

    let strict = small_options(RecoveryMode::Strict);
    let first = Log::open_with(&dir, strict.clone()).map(|log| {
        let replayed = check_log(&log, "writer open");
        (replayed, log.open_report().clone())
    });
    if let (Ok(seen), Ok((replayed, _))) = (&read_only, &first) {
        assert_eq!(seen, replayed, "read-only and writer opens disagree");
    }
    if let Ok((replayed, report)) = &first {
        assert_eq!(report.end_offset, replayed.end);
        let second = match Log::open_with(&dir, strict.clone()) {
            Ok(log) => log,
            Err(err) => panic!("reopen after a successful open failed: {err}"),
        };
        let report = second.open_report().clone();
        assert_eq!(report.torn_tail, None, "second recovery cut more: {report:?}");
        assert_eq!(report.temp_files_removed, 0);
        let again = check_log(&second, "reopen");
        assert_eq!(&again, replayed, "reopen replays different records");
        append_and_reopen(second, &dir, &strict, &again);
    }

    // Repair works on a pristine copy of the same files.
    let repaired = Log::open_with(&copy, small_options(RecoveryMode::Repair)).map(|log| {
        let replayed = check_log(&log, "repair open");
        assert_eq!(replayed.error, None, "records fail to replay after a repair");
        drop(log);
        match Log::open_with(&copy, strict) {
            Ok(log) => {
                assert_eq!(log.open_report().torn_tail, None, "repair left a torn tail");
                assert_eq!(log.open_report().repair, None, "repair left damage");
                let again = check_log(&log, "open after repair");
                assert_eq!(again, replayed, "strict open after repair disagrees");
            }
            Err(err) => panic!("strict open after a successful repair failed: {err}"),
        }
        replayed.records.len()
    });

    DirectoryOutcome {
        read_only: read_only.map(|r| r.records.len()).map_err(|e| e.to_string()),
        torn_tail: first.as_ref().is_ok_and(|(_, report)| report.torn_tail.is_some()),
        replay_error: first.as_ref().is_ok_and(|(r, _)| r.error.is_some()),
        writer: first.map(|(r, _)| r.records.len()).map_err(|e| e.to_string()),
        repaired: repaired.map_err(|e| e.to_string()),
    }
}

/// Appends one record to a recovered log and checks that it lands at the end and survives a
/// reopen along with everything before it.
fn append_and_reopen(mut log: Log, dir: &Path, options: &Options, before: &Replayed) {
    let end = log.end_offset();
    let payload = b"appended after recovery";
    let Ok(offset) = log.append_sync(payload) else {
        return;
    };
    assert_eq!(offset, end, "append after recovery did not land at the end");
    drop(log);
    let log = match Log::open_with(dir, options.clone()) {
        Ok(log) => log,
        Err(err) => panic!("reopen after an append failed: {err}"),
    };
    let after = replay_all(&log, "reopen after append");
    if before.error.is_none() {
        assert_eq!(after.error, None, "the appended log fails to replay");
        assert_eq!(after.records.get(..before.records.len()), Some(&before.records[..]));
        let last = after.records.last().map(|(o, _, p)| (*o, p.as_slice()));
        assert_eq!(last, Some((offset, &payload[..])), "the appended record is lost");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

/// Well-formed inputs for [`frame_decoder`], with a name for each.
#[must_use]
pub fn seed_frames() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let chain = |frames: &[(u64, u32, u32, &[u8])]| {
        let mut out = Vec::new();
        for &(offset, unsynced, flags, payload) in frames {
            out.extend_from_slice(&encode_frame_header(
                offset,
                CREATED_AT_MS,
                unsynced,
                flags,
                payload,
            ));
            out.extend_from_slice(payload);
            out.resize(out.len().next_multiple_of(FRAME_ALIGN), 0);
        }
        out
    };
    for len in [0u8, 1, 7, 8, 9, 100] {
        let payload: Vec<u8> = (0..len).collect();
        let mut input = vec![0u8]; // expected offset 0
        input.extend(chain(&[(0, 0, 0, &payload)]));
        seeds.push((format!("single-{len}"), input));
    }
    let mut three = vec![0b01u8]; // expected offset from the first frame
    three.extend(chain(&[
        (4096, 0, FLAG_BATCH_CONTINUES, b"first"),
        (4096 + 40, 40, FLAG_BATCH_CONTINUES, b"second"),
        (4096 + 80, 80, 0, b"third and last"),
    ]));
    three.extend_from_slice(&[0; 16]);
    seeds.push(("batch-of-three".to_string(), three));
    // Structured mode: the first frame from its fields, with a valid checksum.
    let structured = |offset: u64, unsynced: u32, flags: u32, payload: &[u8], rest: &[u8]| {
        let mut out = vec![0b11u8]; // structured, expected at the frame's own offset
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&CREATED_AT_MS.to_le_bytes());
        out.extend_from_slice(&unsynced.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.push(u8::try_from(payload.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(payload);
        out.extend_from_slice(rest);
        out
    };
    seeds.push(("structured-unknown-flags".to_string(), structured(64, 0, 6, b"flags", &[])));
    seeds.push((
        "structured-bad-distance".to_string(),
        structured(8, 16, 0, b"distance past the start", &[]),
    ));
    seeds.push((
        "structured-then-chain".to_string(),
        structured(800, 3, FLAG_BATCH_CONTINUES, b"head", &chain(&[(840, 8, 0, b"tail")])),
    ));
    let mut end = vec![0u8; 17];
    end.extend_from_slice(&[9; 40]);
    seeds.push(("end".to_string(), end));
    seeds
}

/// Well-formed inputs for [`segment_header_decoder`].
#[must_use]
pub fn seed_headers() -> Vec<(String, Vec<u8>)> {
    let header = |version, flags, base, prev: (u64, u32)| SegmentHeader {
        version,
        flags,
        created_at_ms: CREATED_AT_MS,
        base_offset: base,
        prev_last_frame_offset: prev.0,
        prev_last_frame_crc: prev.1,
        durable_offset: 0,
        log_id: LOG_ID,
    };
    let with = |selector: u8, h: SegmentHeader| {
        let mut out = vec![selector];
        out.extend_from_slice(&h.encode());
        out
    };
    vec![
        ("first".to_string(), with(0, header(1, 0, 0, (NO_PREVIOUS_FRAME, 0)))),
        ("chained".to_string(), with(0, header(1, 0, 4032, (3992, 0x1234_5678)))),
        ("max".to_string(), with(0, header(1, 0, u64::MAX, (u64::MAX, u32::MAX)))),
        ("version-2".to_string(), with(1, header(2, 0, 0, (NO_PREVIOUS_FRAME, 0)))),
        ("version-0".to_string(), with(1, header(0, 0, 0, (NO_PREVIOUS_FRAME, 0)))),
        ("flags".to_string(), with(1, header(1, 1, 0, (NO_PREVIOUS_FRAME, 0)))),
        ("truncated".to_string(), with(0, header(1, 0, 0, (0, 0)))[..40].to_vec()),
        ("not-a-log".to_string(), b"\0GIF89a not a chronicle segment at all, no".to_vec()),
    ]
}

/// Well-formed inputs for [`event_decoder`].
#[must_use]
pub fn seed_events() -> Vec<(String, Vec<u8>)> {
    let encode = |event: &Event| {
        let mut out = Vec::new();
        // Encoding these small events cannot fail; an empty seed would still be a valid input.
        let _ = encode_event_into(event, &mut out);
        out
    };
    let full = Event::builder("order.placed")
        .namespace("shop")
        .schema("order", 3)
        .aggregate_id(42)
        .payload(vec![0xde, 0xad, 0xbe, 0xef])
        .build();
    let wide = Event::builder("t".repeat(40))
        .schema("s".repeat(300), u32::MAX)
        .aggregate_id(u64::MAX)
        .payload(vec![7; 300])
        .build();
    vec![
        ("default".to_string(), encode(&Event::default())),
        ("builder".to_string(), encode(&Event::builder("x").build())),
        ("full".to_string(), encode(&full)),
        ("wide".to_string(), encode(&wide)),
        // The same event as `full`, with every integer and length in a wider form.
        (
            "full-wide-forms".to_string(),
            [
                &[0xdc, 0x00, 0x06][..],
                &[0xd9, 12],
                b"order.placed",
                &[0xda, 0, 4],
                b"shop",
                &[0xdb, 0, 0, 0, 5],
                b"order",
                &[0xd2, 0, 0, 0, 3],
                &[0xcf, 0, 0, 0, 0, 0, 0, 0, 42],
                &[0xc6, 0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
            ]
            .concat(),
        ),
        ("map-not-array".to_string(), vec![0x81, 0xa1, b'a', 0x01]),
    ]
}

/// Inputs for [`open_directory`]: frame scripts for the interesting recovery cases, and images
/// of real logs written through [`Log`] (which is why this does I/O in a scratch directory).
#[must_use]
pub fn seed_directories() -> Vec<(String, Vec<u8>)> {
    let frame = |len: u8, seed: u8| [OP_FRAME, len, seed];
    let frame_with = |bits: u8, len: u8, b: u8| [OP_FRAME | bits, len, b];
    let sync = [OP_SYNC_OR_TORN, 0, 0];
    let script = |ops: &[[u8; 3]]| ops.concat();
    let chained = |body: Vec<u8>| SegmentSpec {
        mode: HEADER_CHAINED | MODE_SCRIPT,
        base: 0,
        durable: 0,
        body,
    };
    let mut seeds = vec![
        (
            // Closed cleanly at 112, the end of its two frames (strides 40 and 72).
            "clean-end".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE | DIR_CLEAN_END,
                112,
                &[chained(script(&[frame(5, 1), frame(40, 2)]))],
            ),
        ),
        (
            // A clean end that lags: a third frame was written after it.
            "clean-end-lagging".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE | DIR_CLEAN_END,
                112,
                &[chained(script(&[frame(5, 1), frame(40, 2), frame(9, 3)]))],
            ),
        ),
        (
            "clean".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), frame(0, 0), frame(40, 2), sync, frame(9, 3)]))],
            ),
        ),
        (
            "torn-tail".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "lost-frame-then-stray".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[frame(5, 1), sync, [OP_GAP, 4, 0], frame(16, 2)]))],
            ),
        ),
        (
            "damage-before-synced-frame".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[
                    frame(5, 1),
                    sync,
                    [OP_GARBAGE, 20, 0x55],
                    frame_with(1 << OP_UNSYNCED_SHIFT, 16, 2),
                ]))],
            ),
        ),
        (
            "incomplete-batch".to_string(),
            encode_directory_input(
                0,
                0,
                &[chained(script(&[
                    frame(3, 1),
                    frame_with(OP_BATCH, 3, 2),
                    frame_with(OP_BATCH, 3, 3),
                ]))],
            ),
        ),
        (
            "three-segments".to_string(),
            encode_directory_input(
                2,
                0,
                &[
                    chained(script(&[frame(200, 1), frame(100, 2)])),
                    chained(script(&[frame(10, 3), frame_with(OP_BATCH, 1, 4), frame(2, 5)])),
                    chained(script(&[frame(7, 6), sync, frame(7, 7)])),
                ],
            ),
        ),
        (
            "broken-link".to_string(),
            encode_directory_input(
                1,
                0,
                &[
                    chained(script(&[frame(20, 1)])),
                    SegmentSpec {
                        mode: HEADER_CHAINED | MODE_SCRIPT | MODE_BAD_LINK,
                        base: 0,
                        durable: 0,
                        body: script(&[frame(20, 2)]),
                    },
                ],
            ),
        ),
        (
            "misplaced-and-unknown-flags".to_string(),
            encode_directory_input(
                DIR_TEMP_FILE | DIR_STRAY_FILE,
                0,
                &[chained(script(&[
                    frame(4, 1),
                    sync,
                    frame_with(OP_MISPLACED, 4, 2),
                    frame_with(OP_UNKNOWN_FLAG, 4, 3),
                ]))],
            ),
        ),
        (
            "late-base".to_string(),
            encode_directory_input(
                0,
                0,
                &[SegmentSpec {
                    mode: HEADER_CHAINED_AT | MODE_SCRIPT,
                    base: 1 << 40,
                    durable: 0,
                    body: script(&[frame(12, 1), frame(12, 2)]),
                }],
            ),
        ),
        (
            "short-file".to_string(),
            encode_directory_input(
                0,
                0,
                &[SegmentSpec {
                    mode: HEADER_CHAINED | MODE_SCRIPT | MODE_SHORT_FILE,
                    base: 0,
                    durable: 0,
                    body: script(&[frame(12, 1)]),
                }],
            ),
        ),
        (
            "durable-record-past-torn-tail".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE,
                200,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "durable-record-at-end".to_string(),
            encode_directory_input(
                DIR_DURABLE_FILE,
                40,
                &[chained(script(&[frame(5, 1), sync, frame(8, 2), [OP_SYNC_OR_TORN, 41, 30]]))],
            ),
        ),
        (
            "torn-across-segments".to_string(),
            encode_directory_input(
                1,
                0,
                &[
                    chained(script(&[
                        frame(200, 1),
                        sync,
                        frame(100, 2),
                        [OP_GAP | OP_LOSE, 0, 0],
                    ])),
                    chained(script(&[frame(10, 3), frame(20, 4)])),
                ],
            ),
        ),
    ];
    seeds.extend(real_log_seeds());
    seeds
}

/// Appends to a freshly created log.
type WriteScenario = fn(&mut Log) -> crate::error::Result<()>;

fn write_one_segment(log: &mut Log) -> crate::error::Result<()> {
    log.append_sync(b"alpha")?;
    log.append_batch(&[&b"batch one"[..], b"batch two"])?;
    log.append(b"unsynced tail")?;
    Ok(())
}

fn write_three_segments(log: &mut Log) -> crate::error::Result<()> {
    for i in 0..36u8 {
        log.append(&vec![i; 200 + usize::from(i)])?;
    }
    log.sync()?;
    log.append(b"last")?;
    Ok(())
}

/// Images of logs written through the real writer, as raw segment bodies.
fn real_log_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let scenarios: [(&str, WriteScenario); 2] =
        [("real-one-segment", write_one_segment), ("real-three-segments", write_three_segments)];
    for (name, write) in scenarios {
        let scratch = ScratchDir::new();
        let Ok(mut log) = Log::open_with(&scratch.path, small_options(RecoveryMode::Strict)) else {
            continue;
        };
        if write(&mut log).is_err() {
            continue;
        }
        drop(log);
        let Ok(entries) = fs::read_dir(&scratch.path) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(SEGMENT_FILE_SUFFIX))
            .collect();
        names.sort();
        let mut specs = Vec::new();
        for file in names.iter().rev().take(3).rev() {
            let Ok(mut contents) = fs::read(scratch.path.join(file)) else {
                continue;
            };
            let used = contents.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            contents.truncate(used);
            specs.push(SegmentSpec { mode: HEADER_RAW, base: 0, durable: 0, body: contents });
        }
        seeds.push((name.to_string(), encode_directory_input(0, 0, &specs)));
    }
    seeds
}

// ---------------------------------------------------------------------------------------------
// Index file
// ---------------------------------------------------------------------------------------------

/// Loads an index file from arbitrary bytes.
///
/// Input: the whole file. Checks that the decoder never panics; that a refused file is a
/// `Corruption` or `UnsupportedVersion` error naming the path; and that an accepted index
/// re-encodes to bytes that decode to the same index, whose accessors and invariants hold
/// (every list strictly increasing and below the covered end, the counts agreeing).
pub fn index_file(data: &[u8]) {
    let path = Path::new("fuzz.chx");
    match crate::index::decode_index(data, path) {
        Ok(index) => {
            let end = index.covered_end();
            assert!(index.time_covered_end() <= end);
            let increasing_below_end = |list: &[u64]| {
                list.windows(2).all(|w| w[0] < w[1]) && list.iter().all(|&o| o < end)
            };
            let mut typed = 0u64;
            for (name, offsets) in index.event_types() {
                assert!(increasing_below_end(offsets));
                assert_eq!(index.of_type(name), offsets);
                typed += offsets.len() as u64;
            }
            assert_eq!(typed, index.records());
            for (name, offsets) in index.namespaces() {
                assert!(increasing_below_end(offsets));
                assert_eq!(index.in_namespace(name), offsets);
            }
            for id in index.aggregate_ids() {
                assert!(increasing_below_end(&index.aggregate(id)));
            }
            let start = index.time_scan_start(0);
            assert!(start <= index.time_covered_end());
            let bytes = crate::index::encode_index(&index).expect("a loaded index encodes");
            let again = crate::index::decode_index(&bytes, path).expect("re-encoding decodes");
            assert_eq!(again, index);
            assert_eq!(again.last_crc(), index.last_crc());
        }
        Err(StorageError::Corruption { segment, .. }) => assert_eq!(segment, path),
        Err(StorageError::UnsupportedVersion { path: p, found, .. }) => {
            assert_eq!(p, path);
            assert_ne!(found, crate::index::INDEX_VERSION);
        }
        Err(other) => panic!("unexpected error kind from the index decoder: {other}"),
    }
}

/// Well-formed index files for the `index_file` target's corpus: empty, small, and with
/// several types, namespaces, aggregates and timestamps.
#[must_use]
pub fn seed_index_files() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, count) in [("empty", 0u64), ("one", 1), ("small", 12), ("mixed", 40)] {
        let mut index = crate::index::AggregateIndex::default();
        let mut offset = 0;
        for i in 0..count {
            let mut event = Event::builder(["a", "b.c", ""][(i % 3) as usize])
                .namespace(["default", "tenant"][(i % 2) as usize])
                .build();
            event.aggregate_id = (i % 4 != 0).then_some(i % 5);
            let next = offset + 8 * (5 + i % 3);
            index.insert_read(offset, next, CREATED_AT_MS + i / 4, 0x1234_5678 ^ i as u32, &event);
            offset = next;
        }
        if let Ok(bytes) = crate::index::encode_index(&index) {
            seeds.push((name.to_string(), bytes));
        }
    }
    seeds
}
