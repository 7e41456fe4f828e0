//! Unit tests of the segment header and frame codecs.
//!
//! Besides round trips, every field of both structures is damaged in turn (including every
//! single-bit flip of an encoded header and frame), and each test names the exact error the
//! decoder must give, so a reordering of the checks or a field left outside a checksum shows
//! up as a failure here.

use super::*;

/// A header with every field distinct and non-trivial.
fn sample_header() -> SegmentHeader {
    SegmentHeader {
        version: FORMAT_VERSION,
        flags: 0,
        created_at_ms: 1_700_000_000_123,
        base_offset: 4096 * 17,
        prev_last_frame_offset: 4096 * 17 - 48,
        prev_last_frame_crc: 0xdead_beef,
        durable_offset: 4096 * 17 - 8,
        log_id: 0x5eed_1d00_0000_0042,
    }
}

/// Re-computes the checksum of a hand-edited encoded header, as a writer would have.
fn reseal_header(bytes: &mut [u8; SEGMENT_HEADER_LEN]) {
    let crc = crc32fast::hash(&bytes[..SH_CRC]);
    bytes[SH_CRC..].copy_from_slice(&crc.to_le_bytes());
}

/// Builds a frame byte by byte from the layout in FORMAT.md, independently of
/// `encode_frame_header`: CRC of bytes `[4, frame_len)`, length, offset, timestamp, unsynced
/// distance, flags, payload, zero padding to the alignment.
fn hand_frame(offset: u64, ts: u64, unsynced: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let frame_len = u32::try_from(FRAME_HEADER_LEN + payload.len()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&frame_len.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&unsynced.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[4..]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
    out.resize(usize::try_from(align_up(out.len() as u64)).unwrap(), 0);
    out
}

/// The byte range of a frame's length field.
const LEN_FIELD: std::ops::Range<usize> = FH_LEN..FH_LEN + 4;

/// The byte range of a frame's checksum field.
const CRC_FIELD: std::ops::Range<usize> = FH_CRC..FH_CRC + 4;

/// What a frame's checksum field must hold: the CRC of everything after the field, up to the
/// frame's length.
fn frame_crc_of(bytes: &[u8], frame_len: usize) -> u32 {
    crc32fast::hash(&bytes[CRC_FIELD.end..frame_len])
}

fn read_u32(bytes: &[u8], field: std::ops::Range<usize>) -> u32 {
    u32::from_le_bytes(bytes[field].try_into().unwrap())
}

/// The durable end FORMAT.md defines for a frame at `offset` with this distance field.
fn durable_end_of(offset: u64, unsynced: u32) -> u64 {
    if unsynced == u32::MAX {
        0
    } else {
        offset - u64::from(unsynced) * 8
    }
}

/// Encodes a frame with `encode_frame_header` followed by its payload and padding.
fn encoded_frame(offset: u64, ts: u64, unsynced: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = encode_frame_header(offset, ts, unsynced, flags, payload).to_vec();
    out.extend_from_slice(payload);
    out.resize(usize::try_from(frame_stride(payload.len())).unwrap(), 0);
    out
}

fn payload_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect()
}

fn expect_frame(bytes: &[u8], expected_offset: u64) -> Frame<'_> {
    match decode_frame(bytes, expected_offset) {
        Ok(FrameRead::Frame(frame)) => frame,
        other => panic!("expected a valid frame, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------------------------

#[test]
fn header_round_trips() {
    let header = sample_header();
    let bytes = header.encode();
    assert_eq!(&bytes[..4], b"CHRN");
    assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    // Extra bytes after the header (the data region) are not the header's business.
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0xff; 100]);
    assert_eq!(SegmentHeader::decode(&longer), Ok(header));
}

#[test]
fn header_round_trips_extreme_values() {
    for header in [
        SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: 0,
            base_offset: 0,
            prev_last_frame_offset: NO_PREVIOUS_FRAME,
            prev_last_frame_crc: 0,
            durable_offset: 0,
            log_id: 0x5eed_1d00_0000_0042,
        },
        SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: u64::MAX,
            base_offset: u64::MAX,
            prev_last_frame_offset: u64::MAX,
            prev_last_frame_crc: u32::MAX,
            durable_offset: u64::MAX,
            log_id: u64::MAX,
        },
    ] {
        assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
    }
}

#[test]
fn header_layout_is_little_endian_at_documented_positions() {
    let header = sample_header();
    let bytes = header.encode();
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), FORMAT_VERSION);
    assert_eq!(&bytes[6..8], &[0, 0]);
    assert_eq!(bytes[8..16], header.created_at_ms.to_le_bytes());
    assert_eq!(bytes[16..24], header.base_offset.to_le_bytes());
    assert_eq!(bytes[24..32], header.prev_last_frame_offset.to_le_bytes());
    assert_eq!(bytes[32..36], header.prev_last_frame_crc.to_le_bytes());
    assert_eq!(&bytes[36..40], &[0; 4], "reserved bytes are written as zero");
    assert_eq!(bytes[40..48], header.durable_offset.to_le_bytes());
    assert_eq!(bytes[48..56], header.log_id.to_le_bytes());
    assert_eq!(&bytes[56..60], &[0; 4], "reserved bytes are written as zero");
    assert_eq!(bytes[60..64], crc32fast::hash(&bytes[..60]).to_le_bytes());
}

#[test]
fn header_bad_magic() {
    for at in 0..4 {
        let mut bytes = sample_header().encode();
        bytes[at] = b'X';
        let mut found = *b"CHRN";
        found[at] = b'X';
        assert_eq!(SegmentHeader::decode(&bytes), Err(FormatError::BadMagic { found }));
    }
    // Magic is checked before the checksum: a resealed header with the wrong magic is still
    // not ours.
    let mut bytes = sample_header().encode();
    bytes[..4].copy_from_slice(b"CHRM");
    reseal_header(&mut bytes);
    assert_eq!(SegmentHeader::decode(&bytes), Err(FormatError::BadMagic { found: *b"CHRM" }));
    assert_eq!(
        SegmentHeader::decode(&[0u8; SEGMENT_HEADER_LEN]),
        Err(FormatError::BadMagic { found: [0; 4] })
    );
}

#[test]
fn header_newer_version_is_unsupported_before_checksum() {
    for version in [FORMAT_VERSION_MAX + 1, 0x100, u16::MAX] {
        // Without resealing: a newer version may place its checksum elsewhere, so the version
        // verdict must come before the checksum is looked at.
        let mut bytes = sample_header().encode();
        bytes[SH_VERSION..SH_FLAGS].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&bytes),
            Err(FormatError::UnsupportedVersion { found: version })
        );
        let resealed = SegmentHeader { version, ..sample_header() }.encode();
        assert_eq!(
            SegmentHeader::decode(&resealed),
            Err(FormatError::UnsupportedVersion { found: version })
        );
    }
}

#[test]
fn header_version_zero_with_valid_checksum_is_unsupported() {
    let bytes = SegmentHeader { version: 0, ..sample_header() }.encode();
    assert_eq!(SegmentHeader::decode(&bytes), Err(FormatError::UnsupportedVersion { found: 0 }));
    // Without a valid checksum, version 0 is just damage.
    let mut damaged = sample_header().encode();
    damaged[SH_VERSION..SH_FLAGS].copy_from_slice(&0u16.to_le_bytes());
    assert!(matches!(SegmentHeader::decode(&damaged), Err(FormatError::HeaderChecksum { .. })));
}

#[test]
fn header_unknown_flags_with_valid_checksum() {
    for flags in [1u16, 2, 0x8000, u16::MAX] {
        let bytes = SegmentHeader { flags, ..sample_header() }.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Err(FormatError::UnknownHeaderFlags { flags }));
    }
}

#[test]
fn header_checksum_covers_every_field() {
    let good = sample_header().encode();
    let stored = u32::from_le_bytes(good[SH_CRC..].try_into().unwrap());
    // (name, range) of every field the checksum must protect, reserved bytes and the
    // checksum itself included.
    let fields: [(&str, std::ops::Range<usize>); 10] = [
        ("flags", SH_FLAGS..SH_CREATED_AT),
        ("created_at", SH_CREATED_AT..SH_BASE_OFFSET),
        ("base_offset", SH_BASE_OFFSET..SH_PREV_OFFSET),
        ("prev_last_frame_offset", SH_PREV_OFFSET..SH_PREV_CRC),
        ("prev_last_frame_crc", SH_PREV_CRC..SH_RESERVED_0),
        ("reserved_0", SH_RESERVED_0..SH_DURABLE_OFFSET),
        ("durable_offset", SH_DURABLE_OFFSET..SH_LOG_ID),
        ("log_id", SH_LOG_ID..SH_RESERVED_1),
        ("reserved_1", SH_RESERVED_1..SH_CRC),
        ("crc", SH_CRC..SEGMENT_HEADER_LEN),
    ];
    let listed: usize = fields.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(listed + SH_FLAGS, SEGMENT_HEADER_LEN, "every byte after the version is listed");
    for (name, range) in fields {
        for at in range {
            let mut bytes = good;
            bytes[at] ^= 0x5a;
            let computed = crc32fast::hash(&bytes[..SH_CRC]);
            let stored_now = u32::from_le_bytes(bytes[SH_CRC..].try_into().unwrap());
            assert_eq!(
                SegmentHeader::decode(&bytes),
                Err(FormatError::HeaderChecksum { stored: stored_now, computed }),
                "field {name}, byte {at}"
            );
            if at < SH_CRC {
                assert_eq!(stored_now, stored);
            }
        }
    }
}

/// The error a single-bit flip at `byte` of a valid version-1 header must give.
fn expected_header_damage(bytes: &[u8; SEGMENT_HEADER_LEN], byte: usize) -> FormatError {
    match byte {
        0..=3 => FormatError::BadMagic { found: bytes[..4].try_into().unwrap() },
        4 | 5 => {
            let version = u16::from_le_bytes([bytes[4], bytes[5]]);
            if version > FORMAT_VERSION {
                FormatError::UnsupportedVersion { found: version }
            } else {
                // Version 1 with its low bit flipped is 0, which is below the supported
                // version, so the checksum catches it first.
                FormatError::HeaderChecksum {
                    stored: u32::from_le_bytes(bytes[SH_CRC..].try_into().unwrap()),
                    computed: crc32fast::hash(&bytes[..SH_CRC]),
                }
            }
        }
        _ => FormatError::HeaderChecksum {
            stored: u32::from_le_bytes(bytes[SH_CRC..].try_into().unwrap()),
            computed: crc32fast::hash(&bytes[..SH_CRC]),
        },
    }
}

#[test]
fn header_every_single_bit_flip_is_caught() {
    for header in [
        sample_header(),
        SegmentHeader {
            version: FORMAT_VERSION,
            flags: 0,
            created_at_ms: 0,
            base_offset: 0,
            prev_last_frame_offset: NO_PREVIOUS_FRAME,
            prev_last_frame_crc: 0,
            durable_offset: 0,
            log_id: 0x5eed_1d00_0000_0042,
        },
    ] {
        let good = header.encode();
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut bytes = good;
            bytes[bit / 8] ^= 1 << (bit % 8);
            let got = SegmentHeader::decode(&bytes);
            assert_eq!(
                got,
                Err(expected_header_damage(&bytes, bit / 8)),
                "bit {bit} (byte {})",
                bit / 8
            );
        }
    }
}

#[test]
fn header_truncated_at_every_length() {
    let good = sample_header().encode();
    for len in 0..SEGMENT_HEADER_LEN {
        assert_eq!(
            SegmentHeader::decode(&good[..len]),
            Err(FormatError::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: len as u64,
            }),
            "length {len}"
        );
    }
    // Truncation is reported even when what is there would fail other checks.
    assert!(matches!(
        SegmentHeader::decode(b"XXXX"),
        Err(FormatError::Truncated { needed: 64, available: 4 })
    ));
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

const PAYLOAD_LENS: [usize; 6] = [0, 1, 7, 8, 9, 100];

#[test]
fn frame_round_trips() {
    for len in PAYLOAD_LENS {
        let payload = payload_of(len);
        for (offset, ts, unsynced, flags) in [
            (0u64, 0u64, 0u32, 0u32),
            (4096, 1_700_000_000_000, 96, FLAG_BATCH_CONTINUES),
            (u64::MAX - 7, u64::MAX, u32::MAX, FLAG_GAP),
        ] {
            let bytes = encoded_frame(offset, ts, unsynced, flags, &payload);
            assert_eq!(bytes.len() as u64, frame_stride(len));
            assert_eq!(
                bytes,
                hand_frame(offset, ts, unsynced, flags, &payload),
                "encode_frame_header must match the documented layout"
            );
            let frame = expect_frame(&bytes, offset);
            assert_eq!(frame.payload, &payload[..]);
            assert_eq!(frame.header.frame_len as usize, FRAME_HEADER_LEN + len);
            assert_eq!(frame.header.offset, offset);
            assert_eq!(frame.header.write_timestamp_ms, ts);
            assert_eq!(frame.header.unsynced_before, unsynced);
            assert_eq!(frame.header.flags, flags);
            assert_eq!(frame.header.crc, read_u32(&bytes, CRC_FIELD));
            assert_eq!(frame.header.payload_len(), len);
            assert_eq!(frame.header.stride(), frame_stride(len));
            assert_eq!(frame.header.durable_end(), durable_end_of(offset, unsynced));
            // Decoding from a longer slice (the rest of the segment) gives the same frame.
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xab; 64]);
            assert_eq!(expect_frame(&longer, offset), frame);
        }
    }
}

#[test]
fn frame_decodes_without_padding_at_the_end_of_the_region() {
    // The data region may end right after the payload, before the alignment padding.
    let payload = payload_of(9);
    let bytes = encoded_frame(64, 1, 0, 0, &payload);
    let tight = &bytes[..FRAME_HEADER_LEN + 9];
    assert_eq!(expect_frame(tight, 64).payload, &payload[..]);
}

/// The result a single-bit flip at `bit` of a frame encoded at `offset` must give, where
/// `bytes` is the damaged buffer handed to the decoder.
fn expected_frame_damage(bytes: &[u8], bit: usize) -> Result<FrameRead<'static>, FormatError> {
    let frame_len = read_u32(bytes, LEN_FIELD);
    let stored = read_u32(bytes, CRC_FIELD);
    if LEN_FIELD.contains(&(bit / 8)) {
        if frame_len == 0 {
            return Ok(FrameRead::End);
        }
        if (frame_len as usize) < FRAME_HEADER_LEN || frame_len as usize > bytes.len() {
            return Err(FormatError::BadFrameLength { frame_len, available: bytes.len() as u64 });
        }
    }
    Err(FormatError::FrameChecksum { stored, computed: frame_crc_of(bytes, frame_len as usize) })
}

#[test]
fn frame_every_single_bit_flip_is_caught() {
    for len in PAYLOAD_LENS {
        let payload = payload_of(len);
        let offset = 8 * 1000;
        let frame = encoded_frame(offset, 1_700_000_000_000, 40, FLAG_BATCH_CONTINUES, &payload);
        // Some slack after the frame, so that a damaged length can land in bounds (checksum
        // error) or out of bounds (length error).
        let mut good = frame.clone();
        good.extend_from_slice(&[0u8; 24]);
        let covered = FRAME_HEADER_LEN + len;
        let mut in_bounds = 0;
        for bit in 0..covered * 8 {
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let got = decode_frame(&bytes, offset);
            let want = expected_frame_damage(&bytes, bit);
            assert_eq!(got, want, "payload {len}, bit {bit} (byte {})", bit / 8);
            if !LEN_FIELD.contains(&(bit / 8)) {
                assert!(
                    matches!(got, Err(FormatError::FrameChecksum { .. })),
                    "payload {len}, bit {bit}: {got:?}"
                );
            } else if matches!(got, Err(FormatError::FrameChecksum { .. })) {
                in_bounds += 1;
            }
            assert_eq!(probe_frame(&bytes, offset), None, "payload {len}, bit {bit}");
        }
        // The low bits of the length keep it in bounds here, so both length outcomes occur.
        assert!(in_bounds > 0, "payload {len}: no in-bounds length damage was exercised");
        // Damage to the padding after the payload is outside the frame and changes nothing.
        for at in covered..frame.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0xff;
            assert_eq!(expect_frame(&bytes, offset).payload, &payload[..]);
        }
    }
}

#[test]
fn frame_length_damaged_to_zero_reads_as_end() {
    // A frame with an empty payload has length 32, a single bit: flipping it gives a zero
    // length, which means "no more data". Recovery then sees the rest as stray bytes; the
    // codec alone cannot tell.
    let bytes = encoded_frame(0, 5, 0, 0, &[]);
    let mut damaged = bytes.clone();
    damaged[FH_LEN] ^= 0x20;
    assert_eq!(decode_frame(&damaged, 0), Ok(FrameRead::End));
}

#[test]
fn frame_each_field_damaged_fails_the_checksum() {
    let payload = payload_of(9);
    let good = encoded_frame(800, 1234, 16, 0, &payload);
    // Every byte of the header but the length field, which has its own test below.
    let fields: [(&str, std::ops::Range<usize>); 6] = [
        ("crc", CRC_FIELD),
        ("offset", FH_OFFSET..FH_TIMESTAMP),
        ("timestamp", FH_TIMESTAMP..FH_UNSYNCED),
        ("unsynced_before", FH_UNSYNCED..FH_FLAGS),
        ("flags", FH_FLAGS..FRAME_HEADER_LEN),
        ("payload", FRAME_HEADER_LEN..FRAME_HEADER_LEN + 9),
    ];
    let listed: usize = fields.iter().map(|(_, r)| r.len()).sum::<usize>() - 9;
    assert_eq!(listed + LEN_FIELD.len(), FRAME_HEADER_LEN, "every header byte is listed");
    for (name, range) in fields {
        for at in range {
            let mut bytes = good.clone();
            bytes[at] = bytes[at].wrapping_add(1);
            assert!(
                matches!(decode_frame(&bytes, 800), Err(FormatError::FrameChecksum { .. })),
                "field {name}, byte {at}"
            );
        }
    }
    // A length that stays in bounds but is wrong (8 bytes longer) fails the checksum, which
    // covers the length field.
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0; 8]);
    bytes[FH_LEN] += 8;
    assert!(matches!(decode_frame(&bytes, 800), Err(FormatError::FrameChecksum { .. })));
}

#[test]
fn frame_at_the_wrong_offset_is_a_mismatch() {
    let bytes = encoded_frame(4096, 1, 0, 0, b"hello");
    for expected in [0u64, 8, 4088, 4104, u64::MAX] {
        assert_eq!(
            decode_frame(&bytes, expected),
            Err(FormatError::OffsetMismatch { expected, found: 4096 })
        );
        assert_eq!(probe_frame(&bytes, expected), None);
    }
}

#[test]
fn frame_unknown_flags_with_valid_checksum() {
    // A gap is never a member of a batch: both known flags at once are refused too.
    for flags in [3u32, 4, 0x8000_0000, u32::MAX, FLAG_BATCH_CONTINUES | 0x10, FRAME_FLAGS_KNOWN] {
        let bytes = hand_frame(64, 9, 0, flags, b"payload");
        assert_eq!(decode_frame(&bytes, 64), Err(FormatError::UnknownFrameFlags { flags }));
        assert_eq!(probe_frame(&bytes, 64), None);
    }
}

#[test]
fn frame_unsynced_distance_before_the_log_start() {
    // The distance is in units of 8 bytes: 3 units before offset 16 is before offset 0.
    let bytes = hand_frame(16, 9, 3, 0, b"x");
    assert_eq!(
        decode_frame(&bytes, 16),
        Err(FormatError::BadUnsyncedDistance { unsynced_before: 3 })
    );
    assert_eq!(probe_frame(&bytes, 16), None);
    let bytes = hand_frame(0, 9, 1, 0, b"");
    assert_eq!(
        decode_frame(&bytes, 0),
        Err(FormatError::BadUnsyncedDistance { unsynced_before: 1 })
    );
    // "Unknown" (saturated) is only possible 32 GiB into the log.
    let bytes = hand_frame(4096, 9, u32::MAX, 0, b"");
    assert_eq!(
        decode_frame(&bytes, 4096),
        Err(FormatError::BadUnsyncedDistance { unsynced_before: u32::MAX })
    );
    let far = u64::from(u32::MAX) * 8;
    let bytes = hand_frame(far, 9, u32::MAX, 0, b"");
    assert_eq!(expect_frame(&bytes, far).header.durable_end(), 0);
    // Reaching exactly back to offset 0 is fine, and so is any shorter distance.
    let bytes = hand_frame(16, 9, 2, 0, b"x");
    assert_eq!(expect_frame(&bytes, 16).header.durable_end(), 0);
    let bytes = hand_frame(4096, 9, 12, 0, b"x");
    assert_eq!(expect_frame(&bytes, 4096).header.durable_end(), 4096 - 96);
}

#[test]
fn frame_end_of_data() {
    // Fewer bytes than reach to the end of the length field: nothing can start here.
    for len in 0..LEN_FIELD.end {
        let short = vec![0xffu8; len];
        assert_eq!(decode_frame(&short, 0), Ok(FrameRead::End), "{len} bytes");
        assert_eq!(probe_frame(&short, 0), None);
    }
    // A zero length means end, whatever surrounds it.
    let mut bytes = vec![0xeeu8; 64];
    bytes[LEN_FIELD].fill(0);
    assert_eq!(decode_frame(&bytes, 0), Ok(FrameRead::End));
    assert_eq!(decode_frame(&[0u8; 4096], 0), Ok(FrameRead::End));
    assert_eq!(probe_frame(&[0u8; 4096], 0), None);
}

#[test]
fn frame_length_out_of_bounds() {
    let good = encoded_frame(0, 1, 0, 0, &payload_of(100));
    // Beyond the slice: cut the region short of the frame.
    for cut in [LEN_FIELD.end, 31, 32, 100, FRAME_HEADER_LEN + 99] {
        assert_eq!(
            decode_frame(&good[..cut], 0),
            Err(FormatError::BadFrameLength { frame_len: 132, available: cut as u64 }),
            "cut at {cut}"
        );
    }
    // Shorter than a frame header.
    for frame_len in [1u32, 7, 8, 31] {
        let mut bytes = good.clone();
        bytes[LEN_FIELD].copy_from_slice(&frame_len.to_le_bytes());
        assert_eq!(
            decode_frame(&bytes, 0),
            Err(FormatError::BadFrameLength { frame_len, available: bytes.len() as u64 })
        );
    }
    let mut bytes = good.clone();
    bytes[LEN_FIELD].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_frame(&bytes, 0),
        Err(FormatError::BadFrameLength { frame_len: u32::MAX, available: bytes.len() as u64 })
    );
}

#[test]
fn probe_agrees_with_decode_on_valid_frames() {
    for len in PAYLOAD_LENS {
        let payload = payload_of(len);
        for (offset, unsynced, flags) in [(0u64, 0u32, 0u32), (4096, 512, 1), (1 << 40, 7, 0)] {
            let mut bytes = encoded_frame(offset, 77, unsynced, flags, &payload);
            bytes.extend_from_slice(&[0x11; 40]);
            let decoded = expect_frame(&bytes, offset);
            assert_eq!(probe_frame(&bytes, offset), Some(decoded));
            assert_eq!(probe_frame(&bytes, offset + 8), None);
        }
    }
}

#[test]
fn probe_rejects_garbage() {
    // A deterministic xorshift stream: no random frame should ever validate.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let len = (next() % 200) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let offset = (next() % 4) * 8;
        assert_eq!(probe_frame(&bytes, offset), None, "round {round}");
        // Decode must agree that these bytes hold no valid frame.
        assert!(!matches!(decode_frame(&bytes, offset), Ok(FrameRead::Frame(_))), "round {round}");
    }
    // Garbage that has the right offset and a plausible length but a wrong checksum.
    let mut bytes = encoded_frame(8, 1, 0, 0, b"abc");
    bytes[CRC_FIELD.start] ^= 1;
    assert_eq!(probe_frame(&bytes, 8), None);
}

// ---------------------------------------------------------------------------------------------
// File names and sizes
// ---------------------------------------------------------------------------------------------

#[test]
fn segment_file_name_round_trips() {
    assert_eq!(segment_file_name(0), "00000000000000000000.seg");
    assert_eq!(segment_file_name(4032), "00000000000000004032.seg");
    assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.seg");
    for base in [0u64, 8, 4032, 123_456_789_000, u64::MAX - 7, u64::MAX] {
        let name = segment_file_name(base);
        assert_eq!(name.len(), 20 + SEGMENT_FILE_SUFFIX.len());
        assert_eq!(parse_segment_file_name(&name), Some(base), "{name}");
    }
}

#[test]
fn segment_file_name_rejects_other_names() {
    for name in [
        "",
        ".seg",
        "0000000000000000000.seg",   // 19 digits
        "000000000000000000000.seg", // 21 digits
        "0000000000000000000a.seg",
        "+0000000000000000001.seg", // `u64::from_str` alone would accept the sign
        "-0000000000000000001.seg",
        " 0000000000000000001.seg",
        "000000000000000000\u{0661}.seg", // a non-ASCII digit, 20 bytes
        "00000000000000000000.SEG",
        "00000000000000000000.sg",
        "00000000000000000000.seg.tmp",
        "00000000000000000000.seg.dropped",
        "00000000000000000000",
        "99999999999999999999.seg", // 20 digits, but beyond u64
        "18446744073709551616.seg", // u64::MAX + 1
        "LOCK",
    ] {
        assert_eq!(parse_segment_file_name(name), None, "{name:?}");
    }
}

#[test]
fn frame_stride_and_alignment() {
    assert_eq!(frame_stride(0), 32);
    assert_eq!(frame_stride(1), 40);
    assert_eq!(frame_stride(7), 40);
    assert_eq!(frame_stride(8), 40);
    assert_eq!(frame_stride(9), 48);
    assert_eq!(frame_stride(100), 136);
    for len in 0..100 {
        let stride = frame_stride(len);
        assert_eq!(stride % FRAME_ALIGN as u64, 0);
        assert!(stride >= (FRAME_HEADER_LEN + len) as u64);
        assert!(stride < (FRAME_HEADER_LEN + len + FRAME_ALIGN) as u64);
    }
    assert_eq!(align_up(0), 0);
    assert_eq!(align_up(1), 8);
    assert_eq!(align_up(7), 8);
    assert_eq!(align_up(8), 8);
    assert_eq!(align_up(9), 16);
    assert_eq!(align_up(u64::MAX - 7), u64::MAX - 7);
    assert_eq!(align_up(u64::MAX - 8), u64::MAX - 7);
}

/// The writer's way of sealing a frame (fields first, then one checksum pass over the frame's
/// contiguous bytes, stored in place) gives the same bytes as `encode_frame_header` and as the
/// layout written out by hand, for payloads of every padding and around the CRC's internal
/// block sizes.
#[test]
fn sealing_in_place_matches_encode_frame_header() {
    for len in (0..300).chain([1000, 4096, 16_383, 16_384, 70_000]) {
        let payload = payload_of(len);
        let (offset, ts, unsynced, flags) = (8 * len as u64, 1_700_000_000_000, 3, len as u32 % 2);
        let expected = encode_frame_header(offset, ts, unsynced, flags, &payload);
        let mut frame = encode_frame_fields(offset, ts, unsynced, flags, &payload).to_vec();
        assert_eq!(read_u32(&frame, 0..4), 0, "fields leave the checksum zero");
        frame.extend_from_slice(&payload);
        let crc = frame_crc(&frame);
        store_frame_crc(&mut frame, crc);
        assert_eq!(frame[..FRAME_HEADER_LEN], expected, "len {len}");
        assert_eq!(&frame[..], &hand_frame(offset, ts, unsynced, flags, &payload)[..frame.len()]);
        let mut sealed = encode_frame_fields(offset, ts, unsynced, flags, &payload);
        assert_eq!(seal_frame_header(&mut sealed, &payload), crc);
        assert_eq!(sealed, expected);
    }
}
