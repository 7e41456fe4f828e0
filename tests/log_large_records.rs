//! Records of 16 KiB and more, and every record of `append_sync` and `append_batch_sync`, are
//! written through the file (`pwritev`) rather than copied through the map. Both paths must
//! give the same log: these tests mix sizes around the threshold, with and without
//! write-behind, across segment rolls, batches, syncs, a concurrent reader and a reopen, and
//! interleave the two paths within one page.

mod common;

use chronicle::{Log, Options};
use common::ReplayWatcher;

/// Sizes on both sides of the 16 KiB threshold, and well past it.
const SIZES: [usize; 9] = [0, 100, 4096, 16_383, 16_384, 16_385, 40_000, 65_536, 200_000];

fn payload(i: usize) -> Vec<u8> {
    let len = SIZES[i % SIZES.len()];
    (0..len).map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8).collect()
}

fn options(write_behind: bool) -> Options {
    Options {
        segment_bytes: 1 << 20,
        record_bytes_max: Some(256 << 10),
        write_behind,
        ..Options::default()
    }
}

fn mixed_sizes_round_trip(write_behind: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options(write_behind)).unwrap();
    let mut expected: Vec<(u64, Vec<u8>)> = Vec::new();

    // A reader replaying while the writer appends must only ever see intact records, in order.
    let watcher = ReplayWatcher::start(log.reader(), payload);

    let mut i = 0;
    while i < 400 {
        match i % 11 {
            3 => {
                let batch: Vec<Vec<u8>> = (i..i + 3).map(payload).collect();
                let offsets = log.append_batch(&batch).unwrap();
                expected.extend(offsets.into_iter().zip(batch));
                i += 3;
            }
            7 => {
                let p = payload(i);
                expected.push((log.append_sync(&p).unwrap(), p));
                i += 1;
            }
            _ => {
                let p = payload(i);
                expected.push((log.append(&p).unwrap(), p));
                i += 1;
            }
        }
        // Every record is readable as soon as its append returns.
        let (offset, bytes) = expected.last().unwrap();
        assert_eq!(&*log.read_at(*offset).unwrap().payload, &bytes[..]);
    }
    watcher.finish();
    log.sync().unwrap();
    let seen: Vec<(u64, Vec<u8>)> =
        log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect();
    assert_eq!(seen, expected);
    log.close().unwrap();

    let log = Log::open_with(dir.path(), options(write_behind)).unwrap();
    assert!(log.open_report().segments > 10, "{:?}", log.open_report());
    assert_eq!(log.open_report().torn_tail, None);
    let seen: Vec<(u64, Vec<u8>)> =
        log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect();
    assert_eq!(seen, expected);
    assert_eq!(log.verify().unwrap().records, expected.len() as u64);
}

#[test]
fn mixed_sizes_round_trip_with_write_behind() {
    mixed_sizes_round_trip(true);
}

#[test]
fn mixed_sizes_round_trip_without_write_behind() {
    mixed_sizes_round_trip(false);
}

/// A large record left unsynced when the writer is dropped (a process crash keeps the page
/// cache) is still there after reopening, as for records written through the map.
#[test]
fn unsynced_large_record_survives_a_dropped_writer() {
    let dir = tempfile::tempdir().unwrap();
    let big = payload(8);
    let offset = {
        let mut log = Log::open_with(dir.path(), options(true)).unwrap();
        log.append_sync(&payload(1)).unwrap();
        log.append(&big).unwrap()
    };
    let log = Log::open_with(dir.path(), options(true)).unwrap();
    assert_eq!(&*log.read_at(offset).unwrap().payload, &big[..]);
}

/// Records written through the map and through the file share pages; a synced batch larger
/// than one `pwritev` takes (1024 buffers) is written whole, padding included.
#[test]
fn map_and_file_writes_interleave_within_pages() {
    let dir = tempfile::tempdir().unwrap();
    let small = |i: usize| -> Vec<u8> {
        // Lengths 0..=12 cover every padding from 0 to 7 bytes.
        (0..(i * 5) % 13).map(|j| (i * 3 + j) as u8 ^ 0x5a).collect()
    };
    let mut expected: Vec<(u64, Vec<u8>)> = Vec::new();
    {
        let mut log = Log::open_with(dir.path(), options(true)).unwrap();
        let reader = log.reader();
        let mut i = 0;
        for round in 0..40 {
            let p = small(i);
            expected.push((log.append(&p).unwrap(), p));
            i += 1;
            let p = small(i);
            expected.push((log.append_sync(&p).unwrap(), p));
            i += 1;
            // Up to 781 records: at least 1,562 buffers, more than one `pwritev` takes.
            let batch: Vec<Vec<u8>> = (i..i + 1 + round * 20).map(small).collect();
            i += batch.len();
            let offsets = if round % 2 == 0 {
                log.append_batch_sync(&batch).unwrap()
            } else {
                log.append_batch(&batch).unwrap()
            };
            expected.extend(offsets.into_iter().zip(batch));
            // Everything so far is visible to a reader, in order and intact.
            let seen: Vec<(u64, Vec<u8>)> = reader
                .replay(0)
                .map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap())
                .collect();
            assert_eq!(seen, expected, "after round {round}");
        }
        log.close().unwrap();
    }
    let log = Log::open_with(dir.path(), options(true)).unwrap();
    let seen: Vec<(u64, Vec<u8>)> =
        log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect();
    assert_eq!(seen, expected);
    assert!(log.open_report().torn_tail.is_none());
}
