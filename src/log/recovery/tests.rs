//! Recovery planning over hand-built segment images: each test builds the bytes a crash (or
//! damage) would leave and checks the plan.

use super::*;
use crate::format::{encode_frame_header, frame_stride, FRAME_HEADER_LEN, NO_PREVIOUS_FRAME};

/// A frame to place: payload, flags, and the durable point recorded when it was written.
struct F<'a> {
    payload: &'a [u8],
    flags: u32,
    durable: u64,
}

fn f(payload: &[u8], durable: u64) -> F<'_> {
    F { payload, flags: 0, durable }
}

/// Writes `frames` into a zeroed data region of `capacity` bytes starting at `base`; returns
/// the region and each frame's offset.
fn region(base: u64, capacity: usize, frames: &[F<'_>]) -> (Vec<u8>, Vec<u64>) {
    let mut data = vec![0u8; capacity];
    let mut pos = 0usize;
    let mut offsets = Vec::new();
    for frame in frames {
        let offset = base + pos as u64;
        let unsynced = crate::format::unsynced_field(offset, frame.durable);
        let header = encode_frame_header(offset, 7, unsynced, frame.flags, frame.payload);
        data[pos..pos + FRAME_HEADER_LEN].copy_from_slice(&header);
        data[pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + frame.payload.len()]
            .copy_from_slice(frame.payload);
        offsets.push(offset);
        pos += frame_stride(frame.payload.len()) as usize;
    }
    (data, offsets)
}

fn header(base: u64, prev: Option<FrameHeader>, durable_offset: u64) -> SegmentHeader {
    SegmentHeader {
        version: crate::format::FORMAT_VERSION,
        flags: 0,
        created_at_ms: 1,
        base_offset: base,
        prev_last_frame_offset: prev.map_or(NO_PREVIOUS_FRAME, |h| h.offset),
        prev_last_frame_crc: prev.map_or(0, |h| h.crc),
        durable_offset,
        log_id: 0x1234,
    }
}

fn view(header: SegmentHeader, data: &[u8]) -> SegmentView<'_> {
    SegmentView { header, data, extents: vec![(0, data.len() as u64)], read_at_open: None }
}

fn last_frame(data: &[u8], base: u64) -> FrameHeader {
    walk_chain(data, base, 0).last_complete.expect("segment has frames")
}

#[test]
fn walk_stops_at_zero_and_counts_frames() {
    let (data, offsets) = region(800, 4096, &[f(b"a", 0), f(b"bbbbbbbbb", 0), f(b"", 0)]);
    let walk = walk_chain(&data, 800, 0);
    assert_eq!(walk.frames, 3);
    assert_eq!(walk.stop, None);
    assert_eq!(walk.complete_end, walk.chain_end);
    assert_eq!(walk.last_complete.map(|h| h.offset), Some(offsets[2]));
    let after = examine_after_chain(&data, 800, walk.chain_end, &[(0, data.len() as u64)]);
    assert_eq!(after.dirty_end, walk.chain_end);
    assert_eq!(after.stray_frames, 0);
}

#[test]
fn incomplete_batch_is_cut_whole() {
    let frames = [
        f(b"one", 0),
        F { payload: b"b1", flags: 1, durable: 0 },
        F { payload: b"b2", flags: 1, durable: 0 },
    ];
    let (data, offsets) = region(0, 4096, &frames);
    let views = [view(header(0, None, 0), &data)];
    let p = plan(&views, None);
    let expected_end = offsets[1];
    assert!(matches!(p.outcome, Outcome::End { index: 0, end, dirty_end }
        if end == expected_end && dirty_end > end));
    assert_eq!(p.frames_dropped, 2);
    assert_eq!(p.last_complete.map(|h| h.offset), Some(0));
}

#[test]
fn lost_page_before_unsynced_frames_is_a_torn_tail() {
    // Frame 1 lost after a power cut; frame 2 survived, but when it was written nothing after
    // frame 0 was durable, so losing frame 1 is what a crash does.
    let payload = [5u8; 40];
    let (mut data, offsets) = region(0, 4096, &[f(&payload, 0), f(&payload, 0), f(&payload, 0)]);
    data[offsets[1] as usize..offsets[2] as usize].fill(0);
    let views = [view(header(0, None, 0), &data)];
    let p = plan(&views, None);
    let (cut, stray_end) = (offsets[1], offsets[2] + frame_stride(40));
    assert_eq!(p.outcome, Outcome::End { index: 0, end: cut, dirty_end: stray_end });
    assert_eq!(p.frames_dropped, 1);
}

#[test]
fn damage_before_a_frame_written_after_sync_is_refused() {
    let payload = [5u8; 40];
    let stride = frame_stride(40);
    // Frame 2 was written when frames 0 and 1 were durable.
    let (mut data, offsets) =
        region(0, 4096, &[f(&payload, 0), f(&payload, 0), f(&payload, 2 * stride)]);
    data[offsets[1] as usize + 40] ^= 1;
    let views = [view(header(0, None, 0), &data)];
    let p = plan(&views, None);
    assert!(
        matches!(p.outcome, Outcome::Damaged { index: 0, offset, kind: FormatError::FrameChecksum { .. }, .. }
        if offset == offsets[1])
    );
}

#[test]
fn zeroed_durable_page_before_a_later_frame_is_refused() {
    let payload = [5u8; 40];
    let stride = frame_stride(40);
    let (mut data, offsets) =
        region(0, 4096, &[f(&payload, 0), f(&payload, stride), f(&payload, 2 * stride)]);
    data[offsets[1] as usize..offsets[2] as usize].fill(0);
    let views = [view(header(0, None, 0), &data)];
    let p = plan(&views, None);
    assert!(matches!(p.outcome,
        Outcome::Damaged { kind: FormatError::DamagedBeforeValidData { next_valid }, .. }
        if next_valid == offsets[2]));
}

/// Two segments: the first sealed with `n` frames, the second with `m`, `durable` recorded
/// everywhere. Returns the images and the frame offsets of each.
fn two_segments(
    n: usize,
    m: usize,
    durable_in_second: u64,
    header_durable: u64,
) -> (Vec<u8>, Vec<u8>, SegmentHeader, SegmentHeader, Vec<u64>, Vec<u64>) {
    let payload = [9u8; 100];
    let frames: Vec<F<'_>> = (0..n).map(|_| f(&payload, 0)).collect();
    let (first, first_offsets) = region(0, 4096, &frames);
    let base = n as u64 * frame_stride(100);
    let link = last_frame(&first, 0);
    let frames: Vec<F<'_>> = (0..m).map(|_| f(&payload, durable_in_second)).collect();
    let (second, second_offsets) = region(base, 4096, &frames);
    (
        first,
        second,
        header(0, None, 0),
        header(base, Some(link), header_durable),
        first_offsets,
        second_offsets,
    )
}

#[test]
fn clean_two_segments_walk_only_what_is_not_durable() {
    let (a, b, ha, hb, _, second) = two_segments(10, 5, 0, 0);
    let views = [view(ha, &a), view(hb, &b)];
    let p = plan(&views, None);
    let end = 5 * frame_stride(100);
    assert_eq!(p.outcome, Outcome::End { index: 1, end, dirty_end: end });
    // Nothing was durable, so the sealed segment was walked too.
    assert_eq!(p.frames_scanned, 15);
    assert_eq!(p.last_complete.map(|h| h.offset), Some(second[4]));

    // Everything before the second segment durable: the sealed one is only link-checked.
    let base = 10 * frame_stride(100);
    let (a, b, ha, hb, _, _) = two_segments(10, 5, base, base);
    let views = [view(ha, &a), view(hb, &b)];
    let p = plan(&views, None);
    assert_eq!(p.frames_scanned, 5);
    assert_eq!(p.known_durable, base);
}

#[test]
fn torn_tail_spanning_segments_cuts_in_the_sealed_one() {
    // Power cut with nothing synced: the sealed segment lost its last two frames, the new
    // segment's frames survived. Nothing was durable, so this is a torn tail that starts in
    // the sealed segment, and the second segment is dropped.
    let (mut a, b, ha, hb, first, _) = two_segments(10, 3, 0, 0);
    a[first[8] as usize..].fill(0);
    let views = [view(ha, &a), view(hb, &b)];
    let p = plan(&views, None);
    assert_eq!(p.outcome, Outcome::End { index: 0, end: first[8], dirty_end: first[8] });
    assert_eq!(p.frames_dropped, 3);
    assert_eq!(p.last_complete.map(|h| h.offset), Some(first[7]));
}

#[test]
fn damage_in_a_sealed_segment_that_was_durable_is_refused() {
    let base = 10 * frame_stride(100);
    let (mut a, b, ha, hb, first, _) = two_segments(10, 3, base, base);
    a[first[4] as usize + 50] ^= 0x80;
    let views = [view(ha, &a), view(hb, &b)];
    // The header says segment 0 was durable: the link check passes (the last frame is
    // intact), so the damage is found by replay, not by open.
    assert!(matches!(plan(&views, None).outcome, Outcome::End { index: 1, .. }));
    // Damage to the link frame itself is caught on open.
    let mut a2 = a.clone();
    a2[first[4] as usize + 50] ^= 0x80;
    a2[first[9] as usize + 50] ^= 0x80;
    let views = [view(ha, &a2), view(hb, &b)];
    assert!(matches!(plan(&views, None).outcome, Outcome::Damaged { index: 0, offset, .. }
        if offset == first[9]));
}

#[test]
fn damage_in_an_unsynced_sealed_segment_proven_by_a_later_frame() {
    // The second segment's frames record that the first segment was durable when they were
    // written, but its header (created before that sync) does not: the frames prove it.
    let base = 10 * frame_stride(100);
    let (mut a, b, ha, hb, first, _) = two_segments(10, 3, base, 0);
    a[first[2] as usize + 40] ^= 1;
    let views = [view(ha, &a), view(hb, &b)];
    // Known durable point comes from the frames (base), so segment 0 is only link-checked
    // and the damage in frame 2 is left for replay to report.
    let p = plan(&views, None);
    assert_eq!(p.known_durable, base);
    assert!(matches!(p.outcome, Outcome::End { index: 1, .. }));
}

#[test]
fn recorded_durable_point_turns_a_short_log_into_damage() {
    // A log closed cleanly (durable record up to its end) whose last frames are then lost.
    let payload = [5u8; 40];
    let (mut data, offsets) = region(0, 4096, &[f(&payload, 0), f(&payload, 0), f(&payload, 0)]);
    let end = offsets[2] + frame_stride(40);
    data[offsets[2] as usize..].fill(0);
    let views = [view(header(0, None, 0), &data)];
    assert!(matches!(plan(&views, None).outcome, Outcome::End { end, .. } if end == offsets[2]));
    let record = DurableRecord {
        log_id: 0x1234,
        durable_end: end,
        last_frame_offset: offsets[2],
        last_frame_crc: 0,
        clean_end: false,
    };
    let p = plan(&views, Some(&record));
    assert!(matches!(p.outcome,
        Outcome::Damaged { offset, kind: FormatError::LostDurableData { durable_end }, .. }
        if offset == offsets[2] && durable_end == end));
}

#[test]
fn segments_of_another_log_break_the_chain() {
    let (a, b, ha, mut hb, _, _) = two_segments(10, 3, 0, 0);
    hb.log_id ^= 1;
    let views = [view(ha, &a), view(hb, &b)];
    assert!(matches!(plan(&views, None).outcome, Outcome::Broken { index: 1, .. }));
}

#[test]
fn stale_or_missing_segments_are_broken_chains() {
    let (a, b, ha, mut hb, _, _) = two_segments(10, 3, 0, 0);
    hb.prev_last_frame_crc ^= 1;
    let views = [view(ha, &a), view(hb, &b)];
    assert!(matches!(plan(&views, None).outcome, Outcome::Broken { index: 1, .. }));
    let (a, b, ha, mut hb, _, _) = two_segments(10, 3, 0, 0);
    hb.base_offset += 8;
    let views = [view(ha, &a), view(hb, &b)];
    assert!(matches!(plan(&views, None).outcome, Outcome::Broken { index: 1, .. }));
}

/// A header that names, as the previous segment's last frame, an offset that cannot be a frame
/// boundary of that segment (between two boundaries, before its base, `NO_PREVIOUS_FRAME`)
/// describes another chain: a broken chain, not damage at that offset.
#[test]
fn a_link_to_no_frame_boundary_is_a_broken_chain() {
    let base = 10 * frame_stride(100);
    for named in [4, frame_stride(100) * 9 + 4, base - 4, base, NO_PREVIOUS_FRAME] {
        // Segment 0 durable: it is only link-checked (step 5).
        let (a, b, ha, mut hb, _, _) = two_segments(10, 3, base, base);
        hb.prev_last_frame_offset = named;
        let views = [view(ha, &a), view(hb, &b)];
        let outcome = plan(&views, None).outcome;
        assert!(matches!(outcome, Outcome::Broken { index: 1, .. }), "{named}: {outcome:?}");
        // Segment 0 not durable and damaged: walked, and the link still must name a boundary.
        let (mut a, b, ha, mut hb, first, _) = two_segments(10, 3, 0, 0);
        a[first[5] as usize + 40] ^= 1;
        hb.prev_last_frame_offset = named;
        let views = [view(ha, &a), view(hb, &b)];
        let outcome = plan(&views, None).outcome;
        assert!(matches!(outcome, Outcome::Broken { index: 1, .. }), "{named}: {outcome:?}");
    }
}

/// A clean end is trusted only as far as the chain agrees with it: with the chain ending at
/// the record's end, the tail is not examined (bytes there, which a clean close cannot have
/// left, are not looked at); with frames after the record's end, it is examined as usual.
#[test]
fn a_clean_end_spares_the_tail_only_where_the_chain_ends() {
    let payload = [5u8; 40];
    let (mut data, offsets) = region(0, 4096, &[f(&payload, 0), f(&payload, 0), f(&payload, 0)]);
    let end = offsets[2] + frame_stride(40);
    // Bytes past the end that no clean close leaves: examined only without the flag.
    data[end as usize + 64] = 0xAB;
    let crc_at = |offset: u64| {
        let at = offset as usize;
        u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
    };
    let record = |durable_end: u64, last_frame_offset: u64, clean_end: bool| DurableRecord {
        log_id: 0x1234,
        durable_end,
        last_frame_offset,
        last_frame_crc: crc_at(last_frame_offset),
        clean_end,
    };
    let views = [view(header(0, None, 0), &data)];
    // The check an open with read checks makes first agrees with the plan's.
    for (durable_end, last_frame, clean) in [
        (end, offsets[2], true),
        (end, offsets[2], false),
        (offsets[1] + frame_stride(40), offsets[1], true),
    ] {
        let record = record(durable_end, last_frame, clean);
        let planned = plan(&views, Some(&record)).clean_end;
        assert_eq!(clean_end_holds(&views[0], &record), planned, "{record:?}");
    }

    let trusted = plan(&views, Some(&record(end, offsets[2], true)));
    assert!(trusted.clean_end);
    assert_eq!(trusted.outcome, Outcome::End { index: 0, end, dirty_end: end });
    assert_eq!((trusted.frames_scanned, trusted.bytes_scanned), (0, 0));

    let examined = plan(&views, Some(&record(end, offsets[2], false)));
    assert!(!examined.clean_end);
    assert_eq!(examined.outcome, Outcome::End { index: 0, end, dirty_end: end + 72 });

    // A clean end that lags behind frames written after it is not trusted.
    let lagging = plan(&views, Some(&record(offsets[1] + frame_stride(40), offsets[1], true)));
    assert!(!lagging.clean_end);
    assert_eq!(lagging.outcome, Outcome::End { index: 0, end, dirty_end: end + 72 });
}

/// Bytes the opener read from the file stand in for the map only where they cover what a
/// check reads: plans are the same with them as without, for a trusted clean end, a record
/// that lags behind later frames, and a damaged recorded frame.
#[test]
fn bytes_read_at_open_give_the_plans_the_map_gives() {
    let payload = [5u8; 40];
    let (mut data, offsets) = region(0, 4096, &[f(&payload, 0), f(&payload, 0), f(&payload, 0)]);
    let end = offsets[2] + frame_stride(40);
    let crc_at = |data: &[u8], offset: u64| {
        let at = offset as usize;
        u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
    };
    let record = |data: &[u8], durable_end: u64, last_frame_offset: u64| DurableRecord {
        log_id: 0x1234,
        durable_end,
        last_frame_offset,
        last_frame_crc: crc_at(data, last_frame_offset),
        clean_end: true,
    };
    let same_plans = |data: &[u8], record: DurableRecord| {
        // What `read_recorded_frame` reads: the recorded frame and a header's worth after.
        let from = record.last_frame_offset;
        let to = (record.durable_end + FRAME_HEADER_LEN as u64).min(data.len() as u64);
        let read = data[from as usize..to as usize].to_vec();
        let mapped = [view(header(0, None, 0), data)];
        let mut with_read = view(header(0, None, 0), data);
        with_read.read_at_open = Some((from, &read));
        assert_eq!(clean_end_holds(&with_read, &record), clean_end_holds(&mapped[0], &record));
        let (a, b) = (plan(&mapped, Some(&record)), plan(&[with_read], Some(&record)));
        assert_eq!(a, b, "record {record:?}");
        assert_eq!(clean_end_holds(&mapped[0], &record), a.clean_end, "record {record:?}");
        a
    };
    let trusted = same_plans(&data, record(&data, end, offsets[2]));
    assert!(trusted.clean_end);
    let lagging = same_plans(&data, record(&data, offsets[1] + frame_stride(40), offsets[1]));
    assert!(!lagging.clean_end);
    assert_eq!(lagging.frames_scanned, 1);
    let intact = record(&data, end, offsets[2]);
    data[offsets[2] as usize + FRAME_HEADER_LEN + 3] ^= 1;
    let damaged = same_plans(&data, intact);
    assert!(matches!(damaged.outcome, Outcome::Damaged { .. }), "{:?}", damaged.outcome);
}

/// Where the recorded end is the last segment's base (its frame in the segment before), the
/// check an open with read checks makes first agrees with the plan too: trusted while the
/// last segment is empty, not once a frame follows.
#[test]
fn a_clean_end_at_a_segment_base_is_judged_as_the_plan_judges_it() {
    let payload = [5u8; 40];
    let (first, _) = region(0, 4096, &[f(&payload, 0), f(&payload, 0)]);
    let last = last_frame(&first, 0);
    let base = last.offset + frame_stride(40);
    let record = DurableRecord {
        log_id: 0x1234,
        durable_end: base,
        last_frame_offset: last.offset,
        last_frame_crc: last.crc,
        clean_end: true,
    };
    let empty = vec![0u8; 4096];
    let (written, _) = region(base, 4096, &[f(&payload, base)]);
    for (data, trusted) in [(&empty, true), (&written, false)] {
        let views = [view(header(0, None, 0), &first), view(header(base, Some(last), base), data)];
        let plan = plan(&views, Some(&record));
        assert_eq!(plan.clean_end, trusted, "{:?}", plan.outcome);
        assert_eq!(clean_end_holds(&views[1], &record), trusted);
    }
}
