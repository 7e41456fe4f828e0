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

/// Indexes events `from..to` of the sample's pattern into `index`.
fn extend_sample(index: &mut AggregateIndex, from: u64, to: u64) {
    for i in from..to {
        let e = event(
            ["a", "b", "c", "a long event type name"][(i % 4) as usize],
            ["x", "y"][(i % 2) as usize],
            (i % 4 != 0).then_some(i % 5),
        );
        index.insert_read(i * 64, (i + 1) * 64, 1000 + i / 3, 7, &e);
    }
}

#[test]
fn loaded_lists_stay_frozen_and_thaw_on_append() {
    let mut built = AggregateIndex::starting_at(0);
    extend_sample(&mut built, 0, 20);
    let bytes = encoded(&built);
    let mut loaded = decode_index(&bytes, Path::new("i")).unwrap();
    assert!((0..5).all(|id| loaded.aggregates.only_frozen(id).is_some()));
    assert!(loaded.types.lists.iter().all(|l| l.frozen.is_some()));
    // Saved again untouched, the frozen lists are copied byte for byte.
    assert_eq!(encode_index(&loaded).unwrap(), bytes);
    // A query decodes a frozen list without thawing it.
    assert_eq!(loaded.aggregate(1), built.aggregate(1));
    assert_eq!(loaded.of_type("a"), built.of_type("a"));
    assert!(loaded.aggregates.only_frozen(1).is_some());
    // Appends thaw the lists they extend; the rest stay frozen.
    extend_sample(&mut built, 20, 23);
    extend_sample(&mut loaded, 20, 23);
    assert_eq!(loaded, built);
    // Events 21 and 22 extend aggregates 1 and 2; the others stay as loaded.
    assert!(loaded.aggregates.only_frozen(1).is_none());
    assert!(loaded.aggregates.only_frozen(3).is_some());
    assert_eq!(encode_index(&loaded).unwrap(), encoded(&built));
    for id in built.aggregate_ids() {
        assert_eq!(loaded.aggregate(id), built.aggregate(id), "aggregate {id}");
    }
    let mut ids: Vec<u64> = loaded.aggregate_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    // Truncating thaws everything.
    built.truncate(10 * 64);
    loaded.truncate(10 * 64);
    assert_eq!(loaded, built);
    assert!(loaded.aggregates.only_frozen(3).is_none());
    assert!(!loaded.has_aggregate(7));
    assert!(loaded.has_aggregate(3));
}

#[test]
fn name_keys_tell_short_names_apart() {
    let names = [
        "",
        "a",
        "b",
        "ab",
        "ba",
        "abc",
        "acb",
        "abcd",
        "abce",
        "abcdefg",
        "abcdefh",
        "abcdefgh",
        "abcdefgi",
        "abcdefghi",
        "abcdefghj",
        "abcdefghijklmnop",
        "abcdefghijklmnoq",
    ];
    for (i, a) in names.iter().enumerate() {
        for (j, b) in names.iter().enumerate() {
            assert_eq!(NameKey::of(a) == NameKey::of(b), i == j, "{a:?} vs {b:?}");
        }
    }
    let mut interned = Interned::new();
    for (i, name) in names.iter().chain(&["abcdefghijklmnopq", "abcdefghijklmnopr"]).enumerate() {
        interned.push(name, i as u64 * 8, &[]);
        interned.push(name, i as u64 * 8 + 800, &[]);
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(interned.get(*name, &[]), &[i as u64 * 8, i as u64 * 8 + 800]);
    }
}

#[test]
fn aggregate_chains_interleave_and_survive_a_truncation() {
    let mut index = AggregateIndex::starting_at(0);
    let mut expected: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for i in 0..1000u64 {
        let id = (i * i + 3 * i) % 37;
        index.insert_read(i * 8, (i + 1) * 8, 1, 7, &event("t", "n", Some(id)));
        expected.entry(id).or_default().push(i * 8);
    }
    let mut ids: Vec<u64> = index.aggregate_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, expected.keys().copied().collect::<Vec<_>>());
    for (&id, list) in &expected {
        assert_eq!(&index.aggregate(id), list, "aggregate {id}");
    }
    assert_eq!(index.aggregate(99), Vec::<u64>::new());
    // Saved and loaded, then extended, then cut back.
    let mut loaded = decode_index(&encoded(&index), Path::new("i")).unwrap();
    assert_eq!(loaded, index);
    for i in 1000..1100u64 {
        let id = i % 50;
        loaded.insert_read(i * 8, (i + 1) * 8, 1, 7, &event("t", "n", Some(id)));
        index.insert_read(i * 8, (i + 1) * 8, 1, 7, &event("t", "n", Some(id)));
        expected.entry(id).or_default().push(i * 8);
    }
    assert_eq!(loaded, index);
    for (&id, list) in &expected {
        assert_eq!(&loaded.aggregate(id), list, "aggregate {id}");
    }
    assert_eq!(encoded(&loaded), encoded(&index));
    loaded.truncate(500 * 8);
    for list in expected.values_mut() {
        list.retain(|&o| o < 500 * 8);
    }
    expected.retain(|_, list| !list.is_empty());
    for (&id, list) in &expected {
        assert_eq!(&loaded.aggregate(id), list, "aggregate {id}");
    }
    assert_eq!(loaded.aggregate_ids().count(), expected.len());
    // Appends after a truncation chain onto the kept lists.
    loaded.insert_read(500 * 8, 501 * 8, 1, 7, &event("t", "n", Some(5)));
    expected.entry(5).or_default().push(500 * 8);
    assert_eq!(loaded.aggregate(5), expected[&5]);
}

#[test]
fn a_loaded_index_outlives_the_file_being_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let mut built = AggregateIndex::starting_at(0);
    extend_sample(&mut built, 0, 20);
    save_index(&path, &built).unwrap();
    let mut loaded = load_index(&path).unwrap();
    assert!(matches!(*loaded.file, map::FileBytes::Mapped(_)));
    // A save replaces the file by rename; the mapped bytes of the loaded index stay as they
    // were.
    save_index(&path, &AggregateIndex::starting_at(0)).unwrap();
    assert_eq!(loaded, built);
    extend_sample(&mut loaded, 20, 30);
    extend_sample(&mut built, 20, 30);
    assert_eq!(loaded, built);
    save_index(&path, &loaded).unwrap();
    assert_eq!(load_index(&path).unwrap(), built);
    // An empty file is refused, not mapped.
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(load_index(&path), Err(crate::StorageError::Corruption { .. })));
}

#[test]
fn a_name_key_packs_every_short_length_exactly() {
    // Issue 18: a 4-byte name shifted a `u32` by 32. The key of a name of up to 16 bytes is
    // its bytes in order, zero-padded, whatever the length.
    let name = "abcdefghijklmnopq";
    for len in 0..=name.len() {
        let name = &name[..len];
        let mut padded = [0u8; 16];
        for (to, from) in padded.iter_mut().zip(name.as_bytes()) {
            *to = *from;
        }
        let head = u64::from_le_bytes(padded[..8].try_into().unwrap());
        let tail = u64::from_le_bytes(padded[8..].try_into().unwrap());
        if len < 8 {
            assert_eq!(short_name_word(name.as_bytes()), head, "length {len}");
        }
        let key = NameKey::of(name);
        assert_eq!(key.len, len);
        if len <= NAME_KEY_EXACT_MAX {
            assert_eq!((key.head, key.tail), (head, tail), "length {len}");
        }
    }
}
