use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::format::{
    SegmentHeader, FORMAT_VERSION, FRAME_ALIGN, FRAME_HEADER_LEN, NO_PREVIOUS_FRAME,
};
use crate::segment::{to_index, NewFile};

const SEGMENT_BYTES: u64 = 8 << 20;

fn new_writer(dir: &Path) -> SegmentWriter {
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        flags: 0,
        created_at_ms: 0,
        base_offset: 0,
        prev_last_frame_offset: NO_PREVIOUS_FRAME,
        prev_last_frame_crc: 0,
        durable_offset: 0,
        log_id: 1,
    };
    let new = NewFile { bytes: SEGMENT_BYTES, zero_fill: false };
    Segment::create(dir, new, header, false).unwrap()
}

/// The byte a test frame at data position `pos` is filled with.
fn fill_byte(pos: u64) -> u8 {
    (pos / FRAME_ALIGN as u64) as u8 | 1
}

/// Writes frames whose payloads are `payload_len` bytes of [`fill_byte`] of their
/// position, from data position `pos`, publishing each, until `until`; returns their
/// positions.
fn write_frames(
    writer: &mut SegmentWriter,
    mut pos: u64,
    until: u64,
    payload_len: usize,
) -> Vec<u64> {
    let mut positions = Vec::new();
    let stride = ((FRAME_HEADER_LEN + payload_len) as u64).next_multiple_of(FRAME_ALIGN as u64);
    while pos + stride <= until {
        let payload = vec![fill_byte(pos); payload_len];
        writer.write_frame(pos, &[0; FRAME_HEADER_LEN], &payload).unwrap();
        positions.push(pos);
        pos += stride;
        writer.publish(pos);
    }
    positions
}

fn assert_frames_intact(writer: &mut SegmentWriter, positions: &[u64], payload_len: usize) {
    let data = writer.data_region();
    for &pos in positions {
        let start = to_index(pos) + FRAME_HEADER_LEN;
        let payload = &data[start..start + payload_len];
        assert!(
            payload.iter().all(|&b| b == fill_byte(pos)),
            "the frame at data position {pos} was overwritten"
        );
    }
}

/// A fill asked for from the start of the data region starts past what the writer has
/// reserved, leaves every written byte alone and reaches the end it was asked for.
#[test]
fn a_fill_starts_past_the_writers_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir.path());
    let capacity = writer.segment().capacity();
    let positions = write_frames(&mut writer, 0, 1 << 20, 1000);
    let reached = writer.pager_handle().fill_ahead(0, capacity).unwrap();
    assert_eq!(reached, capacity);
    assert_frames_intact(&mut writer, &positions, 1000);
    // The writer's reservation covers its last frame; past it the region still reads zeros.
    let end = positions.last().unwrap() + 1024;
    let reserved = writer.reserved;
    assert!(reserved >= end);
    assert!(writer.data_region()[to_index(reserved)..].iter().all(|&b| b == 0));
    // Asked for a range wholly below the reservation, a fill writes nothing and reports
    // that nothing below the reservation needs filling.
    assert!(writer.pager_handle().fill_ahead(0, 4096).unwrap() >= reserved);
    assert_frames_intact(&mut writer, &positions, 1000);
}

/// A writer reserving where a fill is under way waits until the fill is done, and one
/// reserving below it does not.
#[test]
fn a_writer_waits_for_a_fill_under_way_where_it_reserves() {
    let dir = tempfile::tempdir().unwrap();
    let writer = new_writer(dir.path());
    let io = Arc::clone(&writer.io);
    // A fill under way from 1 MiB on, as `PagerHandle::fill_ahead` marks one.
    io.fence().filling_from = Some(1 << 20);
    assert_eq!(io.reserve(4096), RESERVE_STEP, "a reservation below the fill waited");
    let returned = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (io, returned) = (Arc::clone(&io), Arc::clone(&returned));
        std::thread::spawn(move || {
            let reserved = io.reserve((1 << 20) + 100);
            returned.store(true, Ordering::SeqCst);
            reserved
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!returned.load(Ordering::SeqCst), "the writer did not wait for the fill");
    io.fence().filling_from = None;
    io.filled.notify_all();
    assert_eq!(waiter.join().unwrap(), (1 << 20) + RESERVE_STEP);
}

/// A helper filling the whole segment again and again while the writer writes through the
/// map and through the file never overwrites a written byte: the fills start past the
/// writer's reservation, and the writer waits for a fill under way where it reserves.
#[test]
fn fills_racing_the_writer_never_touch_its_bytes() {
    // A race each time, which catches a missing wait only some of the time (the test
    // above checks the wait itself).
    for _ in 0..16 {
        race_fills_against_the_writer();
    }
}

fn race_fills_against_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir.path());
    let capacity = writer.segment().capacity();
    let handle = writer.pager_handle();
    let stop = Arc::new(AtomicBool::new(false));
    let fills = Arc::new(AtomicU32::new(0));
    let filler = {
        let (stop, fills) = (Arc::clone(&stop), Arc::clone(&fills));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                handle.fill_ahead(0, capacity).unwrap();
                fills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut small = write_frames(&mut writer, 0, capacity / 4, 200);
    // However the threads are scheduled, some fills come while the writer is part-way:
    // it waits here for two (more than one, so at least one started after it stopped).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let seen = fills.load(Ordering::Relaxed);
    while fills.load(Ordering::Relaxed) < seen + 2 {
        assert!(std::time::Instant::now() < deadline, "the helper made no fill in 10 s");
        std::thread::yield_now();
    }
    let more_from = small.last().unwrap() + 256;
    small.extend(write_frames(&mut writer, more_from, capacity / 2, 200));
    let large_from = small.last().unwrap() + 256;
    let large = write_frames(&mut writer, large_from, capacity, WRITE_THROUGH_FILE_MIN);
    stop.store(true, Ordering::Relaxed);
    filler.join().unwrap();
    assert_frames_intact(&mut writer, &small, 200);
    assert_frames_intact(&mut writer, &large, WRITE_THROUGH_FILE_MIN);
}
