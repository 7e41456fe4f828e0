//! Filling ahead: a writer that buffers more than a MiB between syncs has a helper thread
//! write zeros into the pages ahead of it (through the file), while the writer itself copies
//! small records through the map and writes large ones through the file. These tests append
//! such a mix across many segment rolls, with and without syncs in between, and check every
//! record's bytes after replay and after a reopen: zeros that landed on a record would show
//! as a damaged frame or as different bytes.

use chronicle::{Log, Options};

/// Record `i`: mostly small (through the map), every 97th one 20 KiB (through the file).
fn payload(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(97) { 20 << 10 } else { 1 + (i * 53) % 400 };
    (0..len).map(|j| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ j as u8 | 1).collect()
}

fn assert_replays(log: &Log, written: &[(u64, Vec<u8>)], what: &str) {
    let mut replay = log.replay(0);
    for (i, (offset, bytes)) in written.iter().enumerate() {
        let record = replay
            .next()
            .unwrap_or_else(|| panic!("{what}: the log ends before record {i}"))
            .unwrap_or_else(|e| panic!("{what}: record {i}: {e}"));
        assert_eq!(record.offset, *offset, "{what}: offset of record {i}");
        assert_eq!(&record.payload[..], bytes.as_slice(), "{what}: bytes of record {i}");
    }
    assert!(replay.next().is_none(), "{what}: records after the last one written");
}

fn append_mix(log: &mut Log, count: usize, sync_every: Option<usize>) -> Vec<(u64, Vec<u8>)> {
    let mut written = Vec::with_capacity(count);
    for i in 0..count {
        let bytes = payload(i);
        let offset = log.append(&bytes).unwrap();
        written.push((offset, bytes));
        if sync_every.is_some_and(|n| i % n == n - 1) {
            log.sync().unwrap();
        }
    }
    written
}

/// 60,000 records (about 22 MB) into 4 MiB segments without a sync: filled ahead all along,
/// across five rolls into spares that were filled too.
#[test]
fn buffered_records_survive_the_zeros_written_ahead_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        Options { segment_bytes: 4 << 20, record_bytes_max: Some(64 << 10), ..Options::default() };
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let written = append_mix(&mut log, 60_000, None);
    assert!(log.end_offset() > 5 * (4 << 20), "the records should span at least six segments");
    assert_replays(&log, &written, "before close");
    log.close().unwrap();
    let log = Log::open_with(dir.path(), options).unwrap();
    assert_replays(&log, &written, "after reopen");
}

/// The same with a sync every 5,000 records (about 1.8 MB): the writer asks for filling only
/// once a MiB is unsynced, so it starts and stops again and again.
#[test]
fn records_survive_filling_that_starts_and_stops_with_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        Options { segment_bytes: 4 << 20, record_bytes_max: Some(64 << 10), ..Options::default() };
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let written = append_mix(&mut log, 60_000, Some(5_000));
    assert_replays(&log, &written, "before close");
    drop(log);
    let log = Log::open_with(dir.path(), options).unwrap();
    assert_replays(&log, &written, "after a reopen without close");
}
