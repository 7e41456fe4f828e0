//! Pure scans over a segment's data region: walking the frame chain, classifying what lies
//! after its end as a torn tail or as damage, and checking the link between two segments.
//!
//! Nothing here does I/O or changes bytes; `Log::open` acts on the results.

use crate::format::{
    decode_frame, probe_frame, FormatError, FrameHeader, FrameRead, FLAG_BATCH_CONTINUES,
    FRAME_ALIGN,
};

/// Bytes examined at once when looking for non-zero data after the end of the chain.
const ZERO_CHECK_CHUNK: usize = 4096;

/// What a walk over consecutive frames found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainWalk {
    /// Valid frames walked, including any of an incomplete trailing batch.
    pub frames: u64,
    /// Data position just after the last frame that completes a record or batch.
    pub complete_end: u64,
    /// Frames after `complete_end`: members of a batch whose last frame is missing.
    pub incomplete_frames: u64,
    /// Data position where the walk stopped.
    pub chain_end: u64,
    /// Why it stopped, if a frame failed to decode (`None`: a zero length, or the end).
    pub stop: Option<FormatError>,
    /// Header of the last complete frame.
    pub last_complete: Option<FrameHeader>,
}

/// Walks frames from data position `start` (a frame boundary) through `data`, which begins
/// at logical offset `base`, until a zero length field, the end of `data`, or an invalid frame.
pub(crate) fn walk_chain(data: &[u8], base: u64, start: u64) -> ChainWalk {
    let mut walk = ChainWalk {
        frames: 0,
        complete_end: start,
        incomplete_frames: 0,
        chain_end: start,
        stop: None,
        last_complete: None,
    };
    loop {
        let rest = data.get(usize::try_from(walk.chain_end).unwrap_or(usize::MAX)..);
        let Some(rest) = rest else { break };
        match decode_frame(rest, base + walk.chain_end) {
            Ok(FrameRead::End) => break,
            Ok(FrameRead::Frame(frame)) => {
                walk.frames += 1;
                walk.chain_end += frame.header.stride();
                if frame.header.flags & FLAG_BATCH_CONTINUES == 0 {
                    walk.complete_end = walk.chain_end;
                    walk.incomplete_frames = 0;
                    walk.last_complete = Some(frame.header);
                } else {
                    walk.incomplete_frames += 1;
                }
            }
            Err(kind) => {
                walk.stop = Some(kind);
                break;
            }
        }
    }
    walk
}

/// What lies after the end of the frame chain in the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AfterChain {
    /// Data position just past the last non-zero byte at or after the chain's end (equal to
    /// the chain's end when everything after it is zero).
    pub dirty_end: u64,
    /// Intact frames found after the chain's end.
    pub stray_frames: u64,
    /// Logical offset of the first intact frame that was written when the bytes at the
    /// chain's end were already durable: proof that the damage is not a torn write.
    pub written_after_durable: Option<u64>,
}

/// Examines `data[chain_end..]` for non-zero bytes and for intact frames.
///
/// After a crash, only bytes that were never synced can be missing or torn, and every frame
/// records how far the log was durable when it was written. An intact frame after the chain's
/// end that was written when the chain's end was already durable therefore shows damage to
/// durable data; any other leftover bytes are a torn tail.
pub(crate) fn examine_after_chain(data: &[u8], base: u64, chain_end: u64) -> AfterChain {
    let mut after = AfterChain {
        dirty_end: chain_end,
        stray_frames: 0,
        written_after_durable: None,
    };
    let damage_at = base + chain_end;
    let mut pos = usize::try_from(chain_end).unwrap_or(usize::MAX);
    while pos < data.len() {
        let chunk_end = ((pos / ZERO_CHECK_CHUNK) + 1) * ZERO_CHECK_CHUNK;
        let chunk_end = chunk_end.min(data.len());
        let chunk = data.get(pos..chunk_end).unwrap_or_default();
        // An OR-fold has no early exit, so it vectorises; most chunks are all zero.
        if chunk.iter().fold(0u8, |acc, &b| acc | b) == 0 {
            pos = chunk_end;
            continue;
        }
        while pos < chunk_end {
            let rest = data.get(pos..).unwrap_or_default();
            let word_end = (pos + FRAME_ALIGN).min(data.len());
            if data
                .get(pos..word_end)
                .is_some_and(|w| w.iter().any(|&b| b != 0))
            {
                after.dirty_end = after.dirty_end.max(word_end as u64);
            }
            if let Some(frame) = probe_frame(rest, base + pos as u64) {
                after.stray_frames += 1;
                let frame_end = pos as u64 + frame.header.stride();
                after.dirty_end = after.dirty_end.max(frame_end.min(data.len() as u64));
                if frame.header.durable_end() > damage_at && after.written_after_durable.is_none() {
                    after.written_after_durable = Some(frame.header.offset);
                }
                pos = usize::try_from(frame_end).unwrap_or(usize::MAX);
            } else {
                pos += FRAME_ALIGN;
            }
        }
    }
    after
}

/// Checks a sealed segment's data region `data[..data_end]`: every frame valid, the last one
/// completing its batch, and the chain ending exactly at `data_end`.
///
/// Returns the walk on success; on failure the data position of the first bad frame and why.
pub(crate) fn check_sealed(
    data: &[u8],
    base: u64,
    data_end: u64,
) -> Result<ChainWalk, (u64, FormatError)> {
    let bounded = data
        .get(..usize::try_from(data_end).unwrap_or(usize::MAX))
        .unwrap_or(data);
    let walk = walk_chain(bounded, base, 0);
    if let Some(kind) = walk.stop.clone() {
        return Err((walk.chain_end, kind));
    }
    if walk.chain_end != data_end {
        return Err((
            walk.chain_end,
            FormatError::UnexpectedEnd {
                expected_end: base + data_end,
            },
        ));
    }
    if walk.complete_end != data_end {
        return Err((walk.complete_end, FormatError::IncompleteBatch));
    }
    Ok(walk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_frame_header, frame_stride, FRAME_HEADER_LEN};

    /// Builds a data region of `capacity` bytes holding frames with the given payloads,
    /// flags and unsynced distances, starting at logical offset `base`.
    fn region(base: u64, capacity: usize, frames: &[(&[u8], u32, u32)]) -> (Vec<u8>, Vec<u64>) {
        let mut data = vec![0u8; capacity];
        let mut pos = 0usize;
        let mut offsets = Vec::new();
        for (payload, flags, unsynced) in frames {
            let offset = base + pos as u64;
            let header = encode_frame_header(offset, 7, *unsynced, *flags, payload);
            data[pos..pos + FRAME_HEADER_LEN].copy_from_slice(&header);
            data[pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + payload.len()]
                .copy_from_slice(payload);
            offsets.push(offset);
            pos += frame_stride(payload.len()) as usize;
        }
        (data, offsets)
    }

    #[test]
    fn walk_stops_at_zero_and_counts_frames() {
        let (data, offsets) = region(
            800,
            4096,
            &[(b"a", 0, 0), (b"bbbbbbbbb", 0, 40), (b"", 0, 0)],
        );
        let walk = walk_chain(&data, 800, 0);
        assert_eq!(walk.frames, 3);
        assert_eq!(walk.stop, None);
        assert_eq!(walk.complete_end, walk.chain_end);
        assert_eq!(walk.last_complete.map(|h| h.offset), Some(offsets[2]));
        let after = examine_after_chain(&data, 800, walk.chain_end);
        assert_eq!(after.dirty_end, walk.chain_end);
        assert_eq!(after.stray_frames, 0);
    }

    #[test]
    fn incomplete_batch_is_not_complete() {
        let (data, offsets) = region(0, 4096, &[(b"one", 0, 0), (b"b1", 1, 0), (b"b2", 1, 0)]);
        let walk = walk_chain(&data, 0, 0);
        assert_eq!(walk.frames, 3);
        assert_eq!(walk.incomplete_frames, 2);
        assert_eq!(walk.complete_end, offsets[1]);
        assert!(walk.chain_end > walk.complete_end);
    }

    #[test]
    fn stray_frame_written_before_sync_is_a_torn_tail() {
        // Frame 1 lost (zeroed) after a power cut; frame 2 survived, but when it was written
        // nothing after frame 0 was durable, so frame 1's loss is a torn write.
        let payload = [5u8; 40];
        let (mut data, offsets) = region(
            0,
            4096,
            &[(&payload, 0, 0), (&payload, 0, 72), (&payload, 0, 144)],
        );
        let f1 = offsets[1] as usize;
        data[f1..f1 + 72].fill(0);
        let walk = walk_chain(&data, 0, 0);
        assert_eq!(walk.chain_end, offsets[1]);
        let after = examine_after_chain(&data, 0, walk.chain_end);
        assert_eq!(after.stray_frames, 1);
        assert_eq!(after.written_after_durable, None);
        assert_eq!(after.dirty_end, offsets[2] + 72);
    }

    #[test]
    fn stray_frame_written_after_sync_proves_damage() {
        let payload = [5u8; 40];
        // Frame 2 was written with everything before it durable (unsynced distance 0).
        let (mut data, offsets) = region(
            0,
            4096,
            &[(&payload, 0, 0), (&payload, 0, 72), (&payload, 0, 0)],
        );
        data[offsets[1] as usize + 40] ^= 1;
        let walk = walk_chain(&data, 0, 0);
        assert!(matches!(walk.stop, Some(FormatError::FrameChecksum { .. })));
        let after = examine_after_chain(&data, 0, walk.chain_end);
        assert_eq!(after.written_after_durable, Some(offsets[2]));
    }

    #[test]
    fn sealed_check_requires_exact_end() {
        let (data, offsets) = region(0, 4096, &[(b"x", 0, 0), (b"y", 0, 0)]);
        let end = offsets[1] + frame_stride(1);
        assert_eq!(check_sealed(&data, 0, end).map(|w| w.frames), Ok(2));
        let short = check_sealed(&data, 0, end + 8);
        assert!(matches!(short, Err((pos, FormatError::UnexpectedEnd { .. })) if pos == end));
    }
}
