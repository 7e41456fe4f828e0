//! Codec tests for the index file: round trips and refusals.

use std::path::Path;

use super::file::decode_index;
use super::*;
use crate::event::Event;

fn event(ty: &str, ns: &str, agg: Option<u64>) -> Event {
    let mut e = Event::builder(ty).namespace(ns).build();
    e.aggregate_id = agg;
    e
}

fn sample() -> AggregateIndex {
    let mut index = AggregateIndex::starting_at(0);
    let mut offset = 0;
    for i in 0..20u64 {
        let e = event(
            ["a", "b", "c"][(i % 3) as usize],
            ["x", "y"][(i % 2) as usize],
            (i % 4 != 0).then_some(i % 5),
        );
        index.insert_read(offset, offset + 64, 1000 + i / 3, 7, &e);
        offset += 64;
    }
    index
}

fn encoded(index: &AggregateIndex) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i");
    save_index(&path, index).unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn round_trip_keeps_every_list() {
    let index = sample();
    let bytes = encoded(&index);
    let back = decode_index(&bytes, Path::new("i")).unwrap();
    assert_eq!(back, index);
    assert_eq!(back.last_crc(), Some(7));
    assert_eq!(back.of_type("a"), &[0, 192, 384, 576, 768, 960, 1152]);
    assert_eq!(back.aggregate(1), index.aggregate(1));
    assert_eq!(back.time_entries().len(), 7);
    assert_eq!(back.time_scan_start(1003), 9 * 64);
    assert_eq!(back.time_scan_start(5000), 20 * 64);
}

#[test]
fn empty_index_round_trips() {
    let index = AggregateIndex::starting_at(0);
    let back = decode_index(&encoded(&index), Path::new("i")).unwrap();
    assert_eq!(back, index);
}

#[test]
fn every_flipped_byte_and_every_truncation_is_refused() {
    let bytes = encoded(&sample());
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x01;
        assert!(decode_index(&damaged, Path::new("i")).is_err(), "flip at byte {i} accepted");
    }
    for len in 0..bytes.len() {
        assert!(decode_index(&bytes[..len], Path::new("i")).is_err());
    }
}

#[test]
fn unknown_crc_is_not_saved() {
    let mut index = AggregateIndex::starting_at(0);
    index.insert(0, &event("a", "x", None));
    index.set_end(64);
    let dir = tempfile::tempdir().unwrap();
    let err = save_index(dir.path().join("i"), &index).unwrap_err();
    assert!(matches!(err, crate::StorageError::Encode { .. }), "{err}");
}

#[test]
fn truncate_keeps_exactly_the_prefix() {
    let mut index = sample();
    index.truncate(10 * 64);
    let mut expected = AggregateIndex::starting_at(0);
    let full = sample();
    let _ = full;
    let mut offset = 0;
    for i in 0..10u64 {
        let e = event(
            ["a", "b", "c"][(i % 3) as usize],
            ["x", "y"][(i % 2) as usize],
            (i % 4 != 0).then_some(i % 5),
        );
        expected.insert_read(offset, offset + 64, 1000 + i / 3, 7, &e);
        offset += 64;
    }
    assert_eq!(index, expected);
    assert_eq!(index.records(), 10);
    assert_eq!(index.last_record_offset(), Some(9 * 64));
    assert_eq!(index.last_crc(), None);
}
