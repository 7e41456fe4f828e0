use std::path::Path;
use std::sync::Arc;

use crate::format::SEGMENT_HEADER_LEN;
use crate::log::writer::ZERO_AHEAD_BYTES;
use crate::log::{Log, Options};

/// Zeroing ahead writes through the file, beside the writer's map: it must start at a page
/// boundary at or after the end, never touch a record, and stop at the segment's end.
#[test]
fn zero_ahead_keeps_every_record_and_zeroes_only_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 2 MiB, so the 1 MiB zeroed region is extended several times per
    // segment and clipped at its end; bursts of buffered appends of about 1 MiB between
    // syncs, so the end often passes the zeroed region before the next sync.
    let options =
        Options { segment_bytes: 2 << 20, record_bytes_max: Some(4096), ..Options::default() };
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let mut expected = Vec::new();
    for i in 0..4000u32 {
        let payload = vec![u8::try_from(i % 251).unwrap() | 1; 1 + (i as usize * 37) % 3000];
        let offset = if i % 700 == 0 || (i / 700) % 2 == 1 && i % 7 == 0 {
            log.append_sync(&payload).unwrap()
        } else {
            log.append(&payload).unwrap()
        };
        expected.push((offset, payload));
        let writer = log.writer.as_ref().unwrap();
        assert!(writer.zeroed_pos <= writer.capacity());
        if writer.synced_pos == writer.pos {
            // Just synced: the zeroed region reaches past the end, by at least the low
            // mark (a page short, for rounding), or to the segment's end.
            assert!(writer.zeroed_pos >= writer.pos, "{} < {}", writer.zeroed_pos, writer.pos);
            let low_mark = (writer.pos + ZERO_AHEAD_BYTES / 4).min(writer.capacity());
            assert!(
                writer.zeroed_pos + 4096 >= low_mark,
                "zeroed to {}, end {}",
                writer.zeroed_pos,
                writer.pos
            );
        }
    }
    let writer = log.writer.as_ref().unwrap();
    let (segment, pos) = (Arc::clone(writer.active.segment()), writer.pos);
    let file = std::fs::read(segment.path()).unwrap();
    let data_end = SEGMENT_HEADER_LEN + usize::try_from(pos).unwrap();
    assert!(file[data_end..].iter().all(|&b| b == 0), "bytes past the end are not zero");
    log.close().unwrap();
    assert_reopens_with(dir.path(), options, &expected);
}

/// Reopens the log in `dir` and checks that it has no torn tail and holds exactly
/// `expected` (offset, payload) records.
fn assert_reopens_with(dir: &Path, options: Options, expected: &[(u64, Vec<u8>)]) {
    let log = Log::open_with(dir, options).unwrap();
    assert!(log.open_report().torn_tail.is_none());
    let seen: Vec<(u64, Vec<u8>)> =
        log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect();
    assert_eq!(seen, expected);
}

/// With `zero_fill_segments`, the segment an open creates and every segment a roll makes
/// (from a spare or by itself) count as zeroed to their end, so no sync zeroes ahead: a
/// failure injected into the next zeroing never fires (without the setting, the first
/// sync would hit it and poison the writer). Every record reads back after a reopen.
#[test]
fn zero_filled_segments_are_never_zeroed_ahead() {
    for prepare_next_segment in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            segment_bytes: 256 << 10,
            record_bytes_max: Some(4096),
            prepare_next_segment,
            zero_fill_segments: true,
            ..Options::default()
        };
        let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
        let mut expected = Vec::new();
        let mut bases = std::collections::BTreeSet::new();
        for i in 0..1200u32 {
            log.writer.as_mut().unwrap().fail_next_zero_ahead = true;
            let payload = vec![u8::try_from(i % 251).unwrap() | 1; 200 + (i as usize * 37) % 1500];
            let offsets = match i % 3 {
                0 => vec![log.append_sync(&payload).unwrap()],
                1 => log.append_batch_sync(&[&payload[..], &payload[1..]]).unwrap(),
                _ => vec![log.append(&payload).unwrap()],
            };
            for (k, offset) in offsets.into_iter().enumerate() {
                expected.push((offset, payload[k..].to_vec()));
            }
            let writer = log.writer.as_ref().unwrap();
            assert_eq!(writer.zeroed_pos, writer.capacity(), "record {i}");
            bases.insert(writer.base());
        }
        assert!(bases.len() >= 4, "only {} segments", bases.len());
        log.close().unwrap();
        assert_reopens_with(dir.path(), options, &expected);
    }
}

#[test]
fn zero_ahead_rounds_inwards_to_whole_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path()).unwrap();
    log.append_sync(b"first").unwrap();
    let writer = log.writer.as_mut().unwrap();
    let header = SEGMENT_HEADER_LEN as u64;
    // Data positions [100, 100 + 1 MiB) are file offsets [164, 1 MiB + 164): the zeros
    // cover the whole pages [4096, 1 MiB), which end at data position 1 MiB - 64.
    assert_eq!(writer.active.zero_ahead(100, 100 + (1 << 20)).unwrap(), (1 << 20) - header);
    // A range without a whole page reaches nothing.
    assert_eq!(writer.active.zero_ahead(5000, 6000).unwrap(), 5000);
    assert_eq!(log.read_at(0).unwrap().payload.to_vec(), b"first".to_vec());
}
