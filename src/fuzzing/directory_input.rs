//! The input format of the directory target ([`open_directory`](super::open_directory)): the
//! segment files a directory input describes, how it is encoded, and how the files are built
//! and written.

use std::fs;
use std::path::Path;

use super::{Input, CREATED_AT_MS, LOG_ID, SEGMENT_BODY_MAX};
use crate::format::{
    decode_frame, encode_frame_header, frame_stride, header_crc, segment_file_name, unsynced_field,
    DurableRecord, FrameRead, SegmentHeader, DURABLE_FILE_NAME, FLAG_BATCH_CONTINUES,
    FORMAT_VERSION, FRAME_ALIGN, FRAME_HEADER_LEN, NO_PREVIOUS_FRAME, SEGMENT_FILE_SUFFIX,
    SEGMENT_HEADER_LEN, TEMP_FILE_SUFFIX,
};

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
/// Mode bit: the data region is a frame script (see
/// [`open_directory`](super::open_directory)), not raw bytes.
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

/// Encodes a directory input for [`open_directory`](super::open_directory).
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
pub(super) fn build_segments(data: &[u8]) -> DirectoryImage {
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
pub(super) struct DirectoryImage {
    flags: u8,
    durable: Option<DurableRecord>,
    files: Vec<SegmentFile>,
}

pub(super) fn write_files(dir: &Path, image: &DirectoryImage) {
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

/// Writes the files a directory input describes (see
/// [`open_directory`](super::open_directory)) into `dir`, which must exist: for reproducing a
/// fuzzer's finding by hand.
pub fn write_directory(data: &[u8], dir: &Path) {
    write_files(dir, &build_segments(data));
}
