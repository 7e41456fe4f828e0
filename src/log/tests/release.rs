use std::path::Path;

use crate::error::StorageError;
use crate::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::{Log, Options};

/// Options for records of a few KiB in small segments.
fn small_records() -> Options {
    Options { record_bytes_max: Some(4096), ..Options::default() }
}

/// A log of `segments` full segments of 64 KiB (and a last one partly filled), closed.
fn log_of_segments(dir: &Path, segments: usize) -> Vec<Vec<u8>> {
    let options = Options { segment_bytes: 64 << 10, ..small_records() };
    let mut log = Log::open_with(dir, options).unwrap();
    let mut records = Vec::new();
    let mut i = 0u32;
    while log.shared.snapshot().segments.len() <= segments {
        let record = vec![i as u8; 1000 + (i as usize % 7) * 100];
        log.append(&record).unwrap();
        records.push(record);
        i += 1;
    }
    log.close().unwrap();
    records
}

/// A replay releases the pages of the segments it has left more than its window behind,
/// and only those; what it reads is unchanged.
#[test]
fn a_replay_releases_the_segments_it_has_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_of_segments(dir.path(), 12);
    let log = Log::open_read_only(dir.path()).unwrap();
    let segments = log.shared.snapshot().segments;
    let last = segments.len() - 1;
    let window = 2 * (64 << 10);
    let mut replay = log.replay(0).with_resident_window(window);
    let mut read = Vec::new();
    while let Some(record) = replay.next_ref() {
        read.push(record.unwrap().payload.to_vec());
    }
    assert_eq!(read, records);
    let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
    // Released: each segment that ends at least the window before the last one starts.
    let last_base = segments[last].base_offset();
    assert!(mapped[..last - 3].iter().all(|&p| p == 0), "{mapped:?}");
    for (index, &pages) in mapped.iter().enumerate() {
        let end = segments.get(index + 1).map_or(u64::MAX, |next| next.base_offset());
        if end.saturating_add(window) <= last_base {
            assert_eq!(pages, 0, "segment {index} should be released: {mapped:?}");
        } else {
            assert!(pages > 0, "segment {index} is inside the window: {mapped:?}");
        }
    }
    // Released pages read back the same bytes.
    let again: Vec<Vec<u8>> = log.replay(0).map(|r| r.unwrap().payload.to_vec()).collect();
    assert_eq!(again, records);
}

/// Segments before a replay's start are not the replay's to release; with the default
/// window, a log smaller than it is never released.
#[test]
fn a_replay_leaves_alone_what_it_did_not_read_and_small_logs() {
    let dir = tempfile::tempdir().unwrap();
    log_of_segments(dir.path(), 12);
    let log = Log::open_read_only(dir.path()).unwrap();
    let segments = log.shared.snapshot().segments;
    // Map a page of every segment (by reading a byte of it).
    for segment in segments.iter() {
        std::hint::black_box(segment.data(0, 8)[0]);
    }
    let from = segments[6].base_offset();
    let mut replay = log.replay(from).with_resident_window(0);
    while let Some(record) = replay.next_ref() {
        record.unwrap();
    }
    let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
    assert!(mapped[..6].iter().all(|&p| p > 0), "{mapped:?}");
    assert!(mapped[6..mapped.len() - 1].iter().all(|&p| p == 0), "{mapped:?}");

    let mut replay = log.replay(0);
    while let Some(record) = replay.next_ref() {
        record.unwrap();
    }
    let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
    assert!(mapped.iter().all(|&p| p > 0), "the default window covers this log: {mapped:?}");
}

/// The chain check reads each sealed segment's last frame from its file, and a clean
/// open the frame the durable record names, so a clean open maps no page of any segment
/// (through the map, each check made a 2 MiB folio resident: 257 MB for a 10 GiB log);
/// damage there is still found.
#[test]
fn a_clean_open_maps_no_page_of_any_segment() {
    let dir = tempfile::tempdir().unwrap();
    // The rollup's hashing thread reads the log after a writer's open, on its own schedule:
    // off here, since this is about what `open` itself reads.
    let options = Options { segment_bytes: 1 << 20, merkle_rollup: false, ..small_records() };
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let record = vec![5u8; 3000];
    while log.shared.snapshot().segments.len() < 6 {
        log.append(&record).unwrap();
    }
    log.close().unwrap();
    for read_only in [true, false] {
        let log = if read_only {
            Log::open_read_only(dir.path()).unwrap()
        } else {
            Log::open_with(dir.path(), options.clone()).unwrap()
        };
        let segments = log.shared.snapshot().segments;
        assert!(log.open_report().clean_close);
        let mapped: Vec<usize> = segments.iter().map(|s| s.mapped_pages()).collect();
        assert!(mapped.iter().all(|&p| p == 0), "read-only {read_only}: {mapped:?}");
        log.close().unwrap();
    }
    // A flipped bit in the last frame of the second segment: the check reads the file.
    let second = Log::open_read_only(dir.path()).unwrap().shared.snapshot().segments[1].clone();
    let third_header =
        *Log::open_read_only(dir.path()).unwrap().shared.snapshot().segments[2].header();
    let pos = third_header.prev_last_frame_offset - second.base_offset();
    let path = second.path().to_path_buf();
    drop(second);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[SEGMENT_HEADER_LEN + pos as usize + FRAME_HEADER_LEN + 7] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    match Log::open_read_only(dir.path()) {
        Err(StorageError::Corruption { segment, offset, .. }) => {
            assert_eq!((segment, offset), (path, third_header.prev_last_frame_offset));
        }
        other => panic!("expected the damaged last frame to be refused: {other:?}"),
    }
}
