//! The decoder targets (frames, segment headers, events) and their seeds.

use super::{Input, CREATED_AT_MS, LOG_ID};
use crate::error::StorageError;
use crate::event::{decode_versioned_event, encode_event_into, encode_versioned_event_into, Event};
use crate::format::{
    decode_frame, encode_frame_header, frame_crc, probe_frame, FrameRead, SegmentHeader,
    FLAG_BATCH_CONTINUES, FORMAT_VERSION_MAX, FRAME_ALIGN, FRAME_FLAGS_KNOWN, FRAME_HEADER_LEN,
    NO_PREVIOUS_FRAME, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

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
            assert!((1..=FORMAT_VERSION_MAX).contains(&header.version));
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
            assert!(found == 0 || found > FORMAT_VERSION_MAX);
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
    match decode_versioned_event(data, 8) {
        Ok((event, version)) => {
            assert!(version.is_none() || event.aggregate_id.is_some(), "a version needs an id");
            let mut again = Vec::new();
            if let Err(err) = encode_versioned_event_into(&event, version, &mut again) {
                panic!("a decoded event must re-encode: {err}");
            }
            assert!(again.len() <= data.len(), "re-encoding grew the record");
            match decode_versioned_event(&again, 8) {
                Ok(decoded) => assert_eq!(decoded, (event, version)),
                Err(err) => panic!("a re-encoded event must decode: {err}"),
            }
        }
        Err(StorageError::Decode { offset, .. }) => assert_eq!(offset, 8),
        Err(other) => panic!("unexpected error kind from decode_event: {other}"),
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
        ("versioned".to_string(), encode_versioned(&full, 7)),
        ("versioned-wide".to_string(), encode_versioned(&wide, u64::MAX)),
    ]
}

/// `event` as a record with its aggregate version (layout 2, `FORMAT.md` 7).
fn encode_versioned(event: &Event, version: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // As in `seed_events`: these small events always encode.
    let _ = encode_versioned_event_into(event, Some(version), &mut out);
    out
}
