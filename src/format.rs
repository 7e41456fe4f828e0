//! Byte layouts and constants: the segment header, the record frame and the durable record.
//!
//! This module is the code form of `FORMAT.md`; the two change together. It does no I/O,
//! decodes from any byte slice without allocating, and never panics on any input: every way
//! bytes can be wrong is a [`FormatError`].
//!
//! All integers are little-endian and fixed-width. Frames start at 8-byte aligned logical
//! offsets, so the 64-bit fields of a frame header are naturally aligned in the memory map.

use std::fmt;
use std::sync::OnceLock;

/// The first four bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"CHRN";

/// The segment format version this build writes into new segments.
pub const FORMAT_VERSION: u16 = 1;

/// The version of a segment that holds a gap frame ([`FLAG_GAP`]): a repair sets it before it
/// writes the gap, so that builds that know only version 1 refuse the segment as a whole.
pub const FORMAT_VERSION_GAPS: u16 = 2;

/// The newest segment format version this build reads.
pub const FORMAT_VERSION_MAX: u16 = FORMAT_VERSION_GAPS;

/// Size of the segment header; the data region starts right after it.
pub const SEGMENT_HEADER_LEN: usize = 64;

/// Size of a frame header; the payload starts right after it.
pub const FRAME_HEADER_LEN: usize = 32;

/// Every frame starts at a multiple of this many bytes, in the file and in logical offsets.
pub const FRAME_ALIGN: usize = 8;

/// `prev_last_frame_offset` value of a segment that has no predecessor.
pub const NO_PREVIOUS_FRAME: u64 = u64::MAX;

/// Frame flag: this frame belongs to a batch and is not its last frame. A log whose last
/// frame carries this flag ends in an incomplete batch, which recovery drops whole.
pub const FLAG_BATCH_CONTINUES: u32 = 1;

/// Frame flag: this frame is a gap, not a record. It stands in for bytes a repair found damaged
/// and took out, so that every later offset is unchanged; its payload is zeros.
pub const FLAG_GAP: u32 = 2;

/// All frame flags the format defines; any other bit set, or both, is corruption.
#[allow(dead_code)] // Used by the fuzz bodies and tests; the decoder compares the two it knows.
pub const FRAME_FLAGS_KNOWN: u32 = FLAG_BATCH_CONTINUES | FLAG_GAP;

/// Offsets (and segment base offsets) stay below this, so that no offset arithmetic can
/// overflow: a log of 8 EiB is out of reach, while a damaged base offset near `u64::MAX` is
/// refused on open.
pub const OFFSET_LIMIT: u64 = 1 << 63;

/// Largest segment file, header included (4 GiB): frame lengths are 32-bit.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;

/// Suffix of segment file names; the stem is the base offset as 20 decimal digits.
pub const SEGMENT_FILE_SUFFIX: &str = ".seg";

/// Suffix added to a segment's name while it is being created; such files are removed on open.
pub const TEMP_FILE_SUFFIX: &str = ".tmp";

/// Name of the lock file that one writer holds exclusively.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Name of the file recording how far the log was durable when it was last closed.
pub const DURABLE_FILE_NAME: &str = "DURABLE";

/// The first four bytes of the durable record.
pub const DURABLE_MAGIC: [u8; 4] = *b"CHDR";

/// Size of the durable record.
pub const DURABLE_RECORD_LEN: usize = 40;

// Durable record field positions.
const DR_MAGIC: usize = 0;
const DR_VERSION: usize = DR_MAGIC + 4;
const DR_FLAGS: usize = DR_VERSION + 2;
const DR_LOG_ID: usize = DR_FLAGS + 2;
const DR_DURABLE_END: usize = DR_LOG_ID + 8;
const DR_LAST_OFFSET: usize = DR_DURABLE_END + 8;
const DR_LAST_CRC: usize = DR_LAST_OFFSET + 8;
const DR_CRC: usize = DR_LAST_CRC + 4;
const _: () = assert!(DR_CRC + 4 == DURABLE_RECORD_LEN);

/// Durable record flag: the log ended at `durable_end` when the record was written, every byte
/// after it in the last segment was zero, and nothing has been written to the log since (a
/// writer removes the flag, durably, before it writes anything). Recovery then need not
/// examine the last segment past `durable_end`. Written by `close`.
pub const DURABLE_FLAG_CLEAN_END: u16 = 1;

/// The durable record: the log it belongs to, an offset before which every byte of that log
/// is known to be on stable storage, and the last frame before that offset. Written whole
/// (temporary file, sync, rename) after a sync; it may lag behind the log, never run ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableRecord {
    /// The log's identifier, as in every segment header.
    pub log_id: u64,
    /// Every byte before this offset was durable when the record was written.
    pub durable_end: u64,
    /// Offset of the last frame before `durable_end` ([`NO_PREVIOUS_FRAME`] if none).
    pub last_frame_offset: u64,
    /// That frame's checksum field.
    pub last_frame_crc: u32,
    /// [`DURABLE_FLAG_CLEAN_END`]: the log was closed at `durable_end` and not written since.
    pub clean_end: bool,
}

impl DurableRecord {
    /// Encodes the record, checksum included.
    #[must_use]
    pub fn encode(&self) -> [u8; DURABLE_RECORD_LEN] {
        let mut out = [0u8; DURABLE_RECORD_LEN];
        out[DR_MAGIC..DR_VERSION].copy_from_slice(&DURABLE_MAGIC);
        out[DR_VERSION..DR_FLAGS].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let flags = if self.clean_end { DURABLE_FLAG_CLEAN_END } else { 0 };
        out[DR_FLAGS..DR_LOG_ID].copy_from_slice(&flags.to_le_bytes());
        out[DR_LOG_ID..DR_DURABLE_END].copy_from_slice(&self.log_id.to_le_bytes());
        out[DR_DURABLE_END..DR_LAST_OFFSET].copy_from_slice(&self.durable_end.to_le_bytes());
        out[DR_LAST_OFFSET..DR_LAST_CRC].copy_from_slice(&self.last_frame_offset.to_le_bytes());
        out[DR_LAST_CRC..DR_CRC].copy_from_slice(&self.last_frame_crc.to_le_bytes());
        let crc = crc32(&[&out[..DR_CRC]]);
        out[DR_CRC..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a durable record; `bytes` must be exactly one record.
    ///
    /// # Errors
    /// [`FormatError::Truncated`] for a wrong length, [`FormatError::BadMagic`],
    /// [`FormatError::UnsupportedVersion`] or [`FormatError::HeaderChecksum`].
    pub fn decode(bytes: &[u8]) -> Result<DurableRecord, FormatError> {
        let Some(b) =
            bytes.first_chunk::<DURABLE_RECORD_LEN>().filter(|_| bytes.len() == DURABLE_RECORD_LEN)
        else {
            return Err(FormatError::Truncated {
                needed: DURABLE_RECORD_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        let magic = read_array::<4>(b, DR_MAGIC);
        if magic != DURABLE_MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes(read_array(b, DR_VERSION));
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let stored = u32::from_le_bytes(read_array(b, DR_CRC));
        let computed = crc32(&[&b[..DR_CRC]]);
        if stored != computed {
            return Err(FormatError::HeaderChecksum { stored, computed });
        }
        Ok(DurableRecord {
            log_id: u64::from_le_bytes(read_array(b, DR_LOG_ID)),
            durable_end: u64::from_le_bytes(read_array(b, DR_DURABLE_END)),
            last_frame_offset: u64::from_le_bytes(read_array(b, DR_LAST_OFFSET)),
            last_frame_crc: u32::from_le_bytes(read_array(b, DR_LAST_CRC)),
            // Other flag bits are not defined: a record from a later version that sets one
            // still means what this version reads from it.
            clean_end: u16::from_le_bytes(read_array(b, DR_FLAGS)) & DURABLE_FLAG_CLEAN_END != 0,
        })
    }
}

// Segment header field positions, each derived from the one before.
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = SH_MAGIC + 4;
const SH_FLAGS: usize = SH_VERSION + 2;
const SH_CREATED_AT: usize = SH_FLAGS + 2;
const SH_BASE_OFFSET: usize = SH_CREATED_AT + 8;
const SH_PREV_OFFSET: usize = SH_BASE_OFFSET + 8;
const SH_PREV_CRC: usize = SH_PREV_OFFSET + 8;
const SH_RESERVED_0: usize = SH_PREV_CRC + 4;
const SH_DURABLE_OFFSET: usize = SH_RESERVED_0 + 4;
const SH_LOG_ID: usize = SH_DURABLE_OFFSET + 8;
const SH_RESERVED_1: usize = SH_LOG_ID + 8;
const SH_CRC: usize = SEGMENT_HEADER_LEN - 4;

// Frame header field positions. The checksum comes first so that it covers one contiguous
// range, `[FH_LEN, frame_len)`, which one CRC call can process.
const FH_CRC: usize = 0;
const FH_LEN: usize = FH_CRC + 4;
const FH_OFFSET: usize = FH_LEN + 4;
const FH_TIMESTAMP: usize = FH_OFFSET + 8;
const FH_UNSYNCED: usize = FH_TIMESTAMP + 8;
const FH_FLAGS: usize = FH_UNSYNCED + 4;

const _: () = assert!(SH_RESERVED_1 <= SH_CRC);
const _: () = assert!(SH_DURABLE_OFFSET.is_multiple_of(8) && SH_LOG_ID.is_multiple_of(8));
const _: () = assert!(FH_FLAGS + 4 == FRAME_HEADER_LEN);
const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FH_OFFSET.is_multiple_of(8) && FH_TIMESTAMP.is_multiple_of(8));

/// Why bytes failed to decode. Pure data: the caller adds the file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer is shorter than the structure being decoded.
    Truncated {
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes that were there.
        available: u64,
    },
    /// The segment header does not start with `CHRN`.
    BadMagic {
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// The segment header has a version newer than this build reads.
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The segment header has flags this version does not define.
    UnknownHeaderFlags {
        /// The flags found.
        flags: u16,
    },
    /// The segment header's checksum does not match its contents.
    HeaderChecksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// A frame's length field is impossible: shorter than a frame header or running past the
    /// end of its segment.
    BadFrameLength {
        /// The length field as read.
        frame_len: u32,
        /// Bytes left in the segment from the frame's start.
        available: u64,
    },
    /// A frame's checksum does not match its contents.
    FrameChecksum {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// A frame is intact but records a different offset from where it was read: a misplaced
    /// write, a copied block, or a caller's offset inside another record.
    OffsetMismatch {
        /// The offset the frame was read at.
        expected: u64,
        /// The offset stored in the frame.
        found: u64,
    },
    /// An intact frame has flags this version does not define.
    UnknownFrameFlags {
        /// The flags found.
        flags: u32,
    },
    /// An intact frame records a distance to the last synced byte that reaches before the
    /// start of the log.
    BadUnsyncedDistance {
        /// The distance found.
        unsynced_before: u32,
    },
    /// The data region ends in the middle of a batch.
    IncompleteBatch,
    /// A zero length field (end of data) before the point where the segment's data must end,
    /// which the next segment's base offset fixes.
    UnexpectedEnd {
        /// The logical offset where the data should have ended.
        expected_end: u64,
    },
    /// An invalid frame is followed by frames that were written after it had been made
    /// durable, so it was damaged after the fact rather than torn by a crash.
    DamagedBeforeValidData {
        /// Offset of the first valid frame found after the damage.
        next_valid: u64,
    },
    /// The log ends (or a frame is missing) before an offset that was recorded as durable.
    LostDurableData {
        /// The durable end that was recorded.
        durable_end: u64,
    },
    /// A persisted structure other than a segment failed validation.
    Other(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, available } => {
                write!(f, "truncated: needed {needed} bytes, found {available}")
            }
            FormatError::BadMagic { found } => write!(f, "bad magic bytes {found:02x?}"),
            FormatError::UnsupportedVersion { found } => {
                write!(f, "format version {found} is not supported (this build reads 1 to {FORMAT_VERSION_MAX})")
            }
            FormatError::UnknownHeaderFlags { flags } => {
                write!(f, "unknown segment header flags {flags:#06x}")
            }
            FormatError::HeaderChecksum { stored, computed } => write!(
                f,
                "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FormatError::BadFrameLength { frame_len, available } => write!(
                f,
                "impossible frame length {frame_len} ({available} bytes left in the segment)"
            ),
            FormatError::FrameChecksum { stored, computed } => write!(
                f,
                "frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FormatError::OffsetMismatch { expected, found } => {
                write!(f, "frame records offset {found} but was read at offset {expected}")
            }
            FormatError::UnknownFrameFlags { flags } => {
                write!(f, "unknown frame flags {flags:#010x}")
            }
            FormatError::BadUnsyncedDistance { unsynced_before } => {
                write!(f, "unsynced distance {unsynced_before} reaches before offset 0")
            }
            FormatError::IncompleteBatch => write!(f, "data ends inside a batch"),
            FormatError::UnexpectedEnd { expected_end } => {
                write!(f, "data ends early: expected frames up to offset {expected_end}")
            }
            FormatError::DamagedBeforeValidData { next_valid } => write!(
                f,
                "invalid frame followed by a valid frame at offset {next_valid} that was \
                 written after the damaged bytes were durable"
            ),
            FormatError::LostDurableData { durable_end } => write!(
                f,
                "no intact frame here, although the log was recorded as durable up to offset \
                 {durable_end}"
            ),
            FormatError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for FormatError {}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u16,
    /// Header flags; version 1 defines none and writes 0.
    pub flags: u16,
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Logical offset of the first byte of the data region.
    pub base_offset: u64,
    /// Offset of the last frame of the previous segment, or [`NO_PREVIOUS_FRAME`].
    pub prev_last_frame_offset: u64,
    /// Checksum field of that frame (0 when there is none).
    pub prev_last_frame_crc: u32,
    /// Every byte of the log before this offset was on stable storage when this segment was
    /// created. Recovery never needs to look for torn data before it.
    pub durable_offset: u64,
    /// Random identifier chosen when the log was created and shared by all its segments, so
    /// a segment (or durable record) from another log is recognised.
    pub log_id: u64,
}

impl SegmentHeader {
    /// Encodes the header, checksum included.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[SH_MAGIC..SH_VERSION].copy_from_slice(&SEGMENT_MAGIC);
        out[SH_VERSION..SH_FLAGS].copy_from_slice(&self.version.to_le_bytes());
        out[SH_FLAGS..SH_CREATED_AT].copy_from_slice(&self.flags.to_le_bytes());
        out[SH_CREATED_AT..SH_BASE_OFFSET].copy_from_slice(&self.created_at_ms.to_le_bytes());
        out[SH_BASE_OFFSET..SH_PREV_OFFSET].copy_from_slice(&self.base_offset.to_le_bytes());
        out[SH_PREV_OFFSET..SH_PREV_CRC]
            .copy_from_slice(&self.prev_last_frame_offset.to_le_bytes());
        out[SH_PREV_CRC..SH_RESERVED_0].copy_from_slice(&self.prev_last_frame_crc.to_le_bytes());
        out[SH_DURABLE_OFFSET..SH_LOG_ID].copy_from_slice(&self.durable_offset.to_le_bytes());
        out[SH_LOG_ID..SH_RESERVED_1].copy_from_slice(&self.log_id.to_le_bytes());
        let crc = crc32fast::hash(&out[..SH_CRC]);
        out[SH_CRC..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a segment header from the start of `bytes`.
    ///
    /// Checks, in this order: length, magic, version, checksum, flags. Magic and version
    /// come first because a file that is not a log, or a log from a newer version, may not
    /// have its checksum where this version looks for it.
    ///
    /// # Errors
    /// [`FormatError::Truncated`], [`FormatError::BadMagic`],
    /// [`FormatError::UnsupportedVersion`], [`FormatError::HeaderChecksum`] or
    /// [`FormatError::UnknownHeaderFlags`].
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
        let Some(h) = bytes.first_chunk::<SEGMENT_HEADER_LEN>() else {
            return Err(FormatError::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        let magic = read_array::<4>(h, SH_MAGIC);
        if magic != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes(read_array(h, SH_VERSION));
        if version > FORMAT_VERSION_MAX {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let stored = u32::from_le_bytes(read_array(h, SH_CRC));
        let computed = crc32fast::hash(&h[..SH_CRC]);
        if stored != computed {
            return Err(FormatError::HeaderChecksum { stored, computed });
        }
        // Version 0 never existed; a checksummed header claiming it is not ours.
        if version == 0 {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let flags = u16::from_le_bytes(read_array(h, SH_FLAGS));
        if flags != 0 {
            return Err(FormatError::UnknownHeaderFlags { flags });
        }
        Ok(SegmentHeader {
            version,
            flags,
            created_at_ms: u64::from_le_bytes(read_array(h, SH_CREATED_AT)),
            base_offset: u64::from_le_bytes(read_array(h, SH_BASE_OFFSET)),
            prev_last_frame_offset: u64::from_le_bytes(read_array(h, SH_PREV_OFFSET)),
            prev_last_frame_crc: u32::from_le_bytes(read_array(h, SH_PREV_CRC)),
            durable_offset: u64::from_le_bytes(read_array(h, SH_DURABLE_OFFSET)),
            log_id: u64::from_le_bytes(read_array(h, SH_LOG_ID)),
        })
    }
}

/// The fixed fields of a frame, as written before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header plus payload bytes, excluding alignment padding; never 0 for a real frame.
    pub frame_len: u32,
    /// CRC-32 (IEEE) of frame bytes `[4, frame_len)`: everything after the checksum itself,
    /// the length included.
    pub crc: u32,
    /// The frame's own logical offset.
    pub offset: u64,
    /// When the log accepted the record, milliseconds since the Unix epoch; never decreasing.
    pub write_timestamp_ms: u64,
    /// How far before this frame the log was not yet known durable when the frame was
    /// written, in units of [`FRAME_ALIGN`] bytes, saturating at `u32::MAX` (32 GiB), which
    /// means "unknown". Recovery uses it to tell a torn tail from later damage.
    pub unsynced_before: u32,
    /// Frame flags, see [`FLAG_BATCH_CONTINUES`].
    pub flags: u32,
}

impl FrameHeader {
    /// Payload length in bytes.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        (self.frame_len as usize).saturating_sub(FRAME_HEADER_LEN)
    }

    /// Bytes from this frame's start to the next frame's start (length plus padding).
    #[must_use]
    pub fn stride(&self) -> u64 {
        frame_stride(self.payload_len())
    }

    /// Whether this frame is a gap ([`FLAG_GAP`]) rather than a record.
    #[must_use]
    pub fn is_gap(&self) -> bool {
        self.flags & FLAG_GAP != 0
    }

    /// The offset up to which the log was durable when this frame was written: exact, or 0
    /// when the distance saturated, so it is always a safe lower bound.
    #[must_use]
    pub fn durable_end(&self) -> u64 {
        if self.unsynced_before == u32::MAX {
            return 0;
        }
        self.offset.saturating_sub(u64::from(self.unsynced_before) * FRAME_ALIGN as u64)
    }
}

/// A decoded, validated frame whose payload borrows from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's header fields.
    pub header: FrameHeader,
    /// The record's payload.
    pub payload: &'a [u8],
}

/// Bytes a frame with `payload_len` bytes of payload occupies, padding included.
///
/// Exact for any payload a slice can hold (at most `isize::MAX` bytes); a frame's own payload
/// is shorter than 4 GiB.
#[must_use]
pub const fn frame_stride(payload_len: usize) -> u64 {
    align_up((FRAME_HEADER_LEN + payload_len) as u64)
}

/// Rounds `n` up to the frame alignment.
///
/// `n` must be at most `u64::MAX - 7`, the largest aligned value: above it there is nothing to
/// round up to (a debug build panics, a release build returns 0). Offsets and lengths stay
/// below [`OFFSET_LIMIT`], so no caller in this crate comes near it.
#[must_use]
pub const fn align_up(n: u64) -> u64 {
    let mask = FRAME_ALIGN as u64 - 1;
    (n + mask) & !mask
}

/// The `unsynced_before` field for a frame at `offset` written when the log was durable up to
/// `durable_end`: the distance in [`FRAME_ALIGN`] units, saturating at `u32::MAX`.
#[must_use]
pub fn unsynced_field(offset: u64, durable_end: u64) -> u32 {
    let units = offset.saturating_sub(durable_end) / FRAME_ALIGN as u64;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// Encodes a frame header for `payload` and returns it with the frame's checksum filled in.
/// The checksum is computed in one pass over the header and the payload.
///
/// The caller guarantees `payload.len() <= u32::MAX - FRAME_HEADER_LEN`; the log checks
/// this against its record size limit before calling.
#[must_use]
pub fn encode_frame_header(
    offset: u64,
    write_timestamp_ms: u64,
    unsynced_before: u32,
    flags: u32,
    payload: &[u8],
) -> [u8; FRAME_HEADER_LEN] {
    let mut h = encode_frame_fields(offset, write_timestamp_ms, unsynced_before, flags, payload);
    seal_frame_header(&mut h, payload);
    h
}

/// Computes the checksum of a frame from its header (as [`encode_frame_fields`] makes it; its
/// checksum field is ignored) and its payload, stores it in the header and returns it.
pub fn seal_frame_header(header: &mut [u8; FRAME_HEADER_LEN], payload: &[u8]) -> u32 {
    let crc = checksum::small_frame_checksum(header, payload)
        .unwrap_or_else(|| crc32(&[&header[FH_LEN..], payload]));
    header[FH_CRC..FH_LEN].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Encodes a frame header for `payload` with every field but the checksum, which is left
/// zero: for a writer that computes the checksum over the frame's bytes once they are in
/// place ([`frame_crc`]) and stores it at offset 0. Same caller guarantee as
/// [`encode_frame_header`].
#[must_use]
pub fn encode_frame_fields(
    offset: u64,
    write_timestamp_ms: u64,
    unsynced_before: u32,
    flags: u32,
    payload: &[u8],
) -> [u8; FRAME_HEADER_LEN] {
    let frame_len = u32::try_from(FRAME_HEADER_LEN + payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[FH_LEN..FH_OFFSET].copy_from_slice(&frame_len.to_le_bytes());
    h[FH_OFFSET..FH_TIMESTAMP].copy_from_slice(&offset.to_le_bytes());
    h[FH_TIMESTAMP..FH_UNSYNCED].copy_from_slice(&write_timestamp_ms.to_le_bytes());
    h[FH_UNSYNCED..FH_FLAGS].copy_from_slice(&unsynced_before.to_le_bytes());
    h[FH_FLAGS..].copy_from_slice(&flags.to_le_bytes());
    h
}

/// The checksum of a frame whose bytes are contiguous: `frame` is the whole frame (header and
/// payload, without padding), and the checksum covers `frame[4..]` (the stored checksum in
/// `frame[..4]` is ignored). The writer hashes a frame this way once it has copied it into
/// place: every 16-byte chunk it reads then comes whole from one of the copy's stores. Hashing
/// the header it built on the stack and the caller's payload before copying (as
/// [`seal_frame_header`] does) took the writer about 10 ms longer per 1M appends of 128 bytes.
#[must_use]
#[inline]
pub fn frame_crc(frame: &[u8]) -> u32 {
    frame
        .split_first_chunk::<FRAME_HEADER_LEN>()
        .and_then(|(head, payload)| checksum::small_frame_checksum(head, payload))
        .unwrap_or_else(|| crc32(&[frame.get(FH_LEN..).unwrap_or_default()]))
}

/// Stores `crc` in the checksum field of the frame starting at `frame` (if it is long enough).
pub fn store_frame_crc(frame: &mut [u8], crc: u32) {
    if let Some(field) = frame.get_mut(FH_CRC..FH_LEN) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

/// CRC-32 (ISO-HDLC, as zlib and crc32fast compute it) of `parts` taken back to back.
///
/// `crc32fast::Hasher::new` detects CPU features on every call, which costs about as much as
/// hashing a small frame; cloning a hasher made once keeps the detected implementation.
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    static PROTOTYPE: OnceLock<crc32fast::Hasher> = OnceLock::new();
    let mut hasher = PROTOTYPE.get_or_init(crc32fast::Hasher::new).clone();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// The offset field of the frame header at the start of `bytes`, read without validating
/// anything. A damaged frame whose stored offset still equals the position it was read at
/// is a damaged record, not a position inside one.
#[must_use]
pub fn stored_offset(bytes: &[u8]) -> Option<u64> {
    let h = bytes.first_chunk::<FRAME_HEADER_LEN>()?;
    Some(u64::from_le_bytes(read_array(h, FH_OFFSET)))
}

/// The length field of the frame header at the start of `bytes` (header and payload, no
/// padding), read without validating anything; `None` if fewer than eight bytes remain.
#[must_use]
pub fn stored_frame_len(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(read_array(bytes.get(..FH_OFFSET)?, FH_LEN)))
}

/// The checksum stored in an encoded frame header.
#[must_use]
pub fn header_crc(header: &[u8; FRAME_HEADER_LEN]) -> u32 {
    u32::from_le_bytes(read_array(header, FH_CRC))
}

/// The result of looking for a frame at some position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// The length field is zero (or fewer than eight bytes remain): no more data here.
    End,
    /// A valid frame.
    Frame(Frame<'a>),
}

/// Decodes and validates the frame at the start of `bytes`, which must reach to the end of the
/// segment's data region; `expected_offset` is the logical offset `bytes` starts at.
///
/// Checks, in this order: the length (zero, or fewer than 8 bytes left, means
/// [`FrameRead::End`]), the checksum, the stored
/// offset, the flags and the unsynced distance. The length comes first because a damaged
/// length would make the checksum cover the wrong bytes; the checksum covers the length too,
/// so a damaged length that still lands in bounds is caught by it.
///
/// # Errors
/// [`FormatError::BadFrameLength`], [`FormatError::FrameChecksum`],
/// [`FormatError::OffsetMismatch`], [`FormatError::UnknownFrameFlags`],
/// [`FormatError::BadUnsyncedDistance`] or [`FormatError::Truncated`].
#[inline]
pub fn decode_frame(bytes: &[u8], expected_offset: u64) -> Result<FrameRead<'_>, FormatError> {
    let Some(len_bytes) = bytes.get(FH_LEN..FH_OFFSET) else {
        return Ok(FrameRead::End);
    };
    let frame_len = u32::from_le_bytes(read_array(len_bytes, 0));
    if frame_len == 0 {
        return Ok(FrameRead::End);
    }
    let available = bytes.len() as u64;
    if (frame_len as usize) < FRAME_HEADER_LEN || u64::from(frame_len) > available {
        return Err(FormatError::BadFrameLength { frame_len, available });
    }
    let Some(h) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FormatError::Truncated { needed: FRAME_HEADER_LEN as u64, available });
    };
    let payload = bytes.get(FRAME_HEADER_LEN..frame_len as usize).unwrap_or_default();
    let stored = u32::from_le_bytes(read_array(h, FH_CRC));
    let computed = frame_crc(bytes.get(..frame_len as usize).unwrap_or_default());
    if stored != computed {
        return Err(FormatError::FrameChecksum { stored, computed });
    }
    let header = FrameHeader {
        frame_len,
        crc: stored,
        offset: u64::from_le_bytes(read_array(h, FH_OFFSET)),
        write_timestamp_ms: u64::from_le_bytes(read_array(h, FH_TIMESTAMP)),
        unsynced_before: u32::from_le_bytes(read_array(h, FH_UNSYNCED)),
        flags: u32::from_le_bytes(read_array(h, FH_FLAGS)),
    };
    if header.offset != expected_offset {
        return Err(FormatError::OffsetMismatch {
            expected: expected_offset,
            found: header.offset,
        });
    }
    // One comparison for the common flags (none, or a batch that continues); a gap, or
    // anything else, is told apart off the hot path.
    if header.flags > FLAG_BATCH_CONTINUES && header.flags != FLAG_GAP {
        return Err(FormatError::UnknownFrameFlags { flags: header.flags });
    }
    if u64::from(header.unsynced_before) * FRAME_ALIGN as u64 > header.offset {
        return Err(FormatError::BadUnsyncedDistance { unsynced_before: header.unsynced_before });
    }
    Ok(FrameRead::Frame(Frame { header, payload }))
}

/// Returns the frame at the start of `bytes` if it is a valid frame for `expected_offset`,
/// checking the cheap fields (length bounds, stored offset) before the checksum. Recovery uses
/// it to look for intact frames after damage at every aligned position, where computing a
/// checksum over an arbitrary length at each position would be quadratic.
#[must_use]
pub fn probe_frame(bytes: &[u8], expected_offset: u64) -> Option<Frame<'_>> {
    let h = bytes.first_chunk::<FRAME_HEADER_LEN>()?;
    let frame_len = u32::from_le_bytes(read_array(h, FH_LEN));
    let offset = u64::from_le_bytes(read_array(h, FH_OFFSET));
    if offset != expected_offset
        || (frame_len as usize) < FRAME_HEADER_LEN
        || u64::from(frame_len) > bytes.len() as u64
    {
        return None;
    }
    match decode_frame(bytes, expected_offset) {
        Ok(FrameRead::Frame(frame)) => Some(frame),
        Ok(FrameRead::End) | Err(_) => None,
    }
}

/// The file name of the segment whose data region starts at `base_offset`.
#[must_use]
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SEGMENT_FILE_SUFFIX}")
}

/// The base offset named by a segment file name, or `None` for any other name.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_FILE_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Copies `N` bytes at `at` out of a fixed-size header. The positions are compile-time
/// constants inside the header, so the slice is always in bounds.
fn read_array<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = h.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

mod checksum;
#[cfg(test)]
mod tests;
