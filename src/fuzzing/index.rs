//! The index file target and its seeds.

use std::path::Path;

use super::CREATED_AT_MS;
use crate::error::StorageError;
use crate::event::Event;

/// Loads an index file from arbitrary bytes.
///
/// Input: the whole file. Checks that the decoder never panics; that a refused file is a
/// `Corruption` or `UnsupportedVersion` error naming the path; and that an accepted index
/// re-encodes to bytes that decode to the same index, whose accessors and invariants hold
/// (every list strictly increasing and below the covered end, the counts agreeing).
pub fn index_file(data: &[u8]) {
    let path = Path::new("fuzz.chx");
    match crate::index::decode_index(data, path) {
        Ok(index) => {
            let end = index.covered_end();
            assert!(index.time_covered_end() <= end);
            let increasing_below_end = |list: &[u64]| {
                list.windows(2).all(|w| w[0] < w[1]) && list.iter().all(|&o| o < end)
            };
            let mut typed = 0u64;
            for (name, offsets) in index.event_types() {
                assert!(increasing_below_end(offsets));
                assert_eq!(index.of_type(name), offsets);
                typed += offsets.len() as u64;
            }
            assert_eq!(typed, index.records());
            for (name, offsets) in index.namespaces() {
                assert!(increasing_below_end(offsets));
                assert_eq!(index.in_namespace(name), offsets);
            }
            for id in index.aggregate_ids() {
                assert!(increasing_below_end(&index.aggregate(id)));
            }
            let start = index.time_scan_start(0);
            assert!(start <= index.time_covered_end());
            let bytes = crate::index::encode_index(&index).expect("a loaded index encodes");
            let again = crate::index::decode_index(&bytes, path).expect("re-encoding decodes");
            assert_eq!(again, index);
            assert_eq!(again.last_crc(), index.last_crc());
        }
        Err(StorageError::Corruption { segment, .. }) => assert_eq!(segment, path),
        Err(StorageError::UnsupportedVersion { path: p, found, .. }) => {
            assert_eq!(p, path);
            assert_ne!(found, crate::index::INDEX_VERSION);
        }
        Err(other) => panic!("unexpected error kind from the index decoder: {other}"),
    }
}

/// Well-formed index files for the `index_file` target's corpus: empty, small, and with
/// several types, namespaces, aggregates and timestamps.
#[must_use]
pub fn seed_index_files() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, count) in [("empty", 0u64), ("one", 1), ("small", 12), ("mixed", 40)] {
        let mut index = crate::index::AggregateIndex::default();
        let mut offset = 0;
        for i in 0..count {
            let mut event = Event::builder(["a", "b.c", ""][(i % 3) as usize])
                .namespace(["default", "tenant"][(i % 2) as usize])
                .build();
            event.aggregate_id = (i % 4 != 0).then_some(i % 5);
            let next = offset + 8 * (5 + i % 3);
            index.insert_read(offset, next, CREATED_AT_MS + i / 4, 0x1234_5678 ^ i as u32, &event);
            offset = next;
        }
        if let Ok(bytes) = crate::index::encode_index(&index) {
            seeds.push((name.to_string(), bytes));
        }
    }
    seeds
}
