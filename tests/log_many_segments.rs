//! A log may have more segments than a process may have open files: segments keep their maps,
//! not their file descriptors. This file holds a single test because it lowers the process's
//! open-file limit, which would disturb any test running beside it in the same process.

mod common;

use std::path::Path;

use chronicle::{Log, StorageError};
use common::small;

/// Open-file limit the test runs under: well below the number of segments it writes.
const FILE_LIMIT: u64 = 128;
/// Segments written: several times the limit.
const SEGMENTS: u64 = 4 * FILE_LIMIT;

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn lower_file_limit(limit: u64) {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` and `setrlimit` read and write only the `rlimit` passed by reference,
    // which lives across both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
        current.rlim_cur = limit.min(current.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &current), 0);
    }
}

fn replayed(log: &Log) -> Vec<(u64, Vec<u8>)> {
    log.replay(0).map(|r| r.map(|r| (r.offset, r.payload.to_vec())).unwrap()).collect()
}

fn segment_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count() as u64
}

#[test]
fn more_segments_than_open_files_write_reopen_and_replay() {
    lower_file_limit(FILE_LIMIT);
    let dir = tempfile::tempdir().unwrap();
    let options = small(1024);
    let before = open_files();

    // Buffered appends with a sync now and then, so segments are created both between syncs
    // (kept for the next sync to make durable) and synced as they come.
    let mut expected = Vec::new();
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let mut i = 0u32;
    while segment_files(dir.path()) < SEGMENTS {
        let payload = vec![(i % 251) as u8; 1 + (i as usize * 13) % 200];
        let offset =
            if i.is_multiple_of(97) { log.append_sync(&payload) } else { log.append(&payload) };
        let offset = offset.unwrap_or_else(|e| panic!("append {i}: {e}"));
        expected.push((offset, payload));
        i += 1;
        if i.is_multiple_of(1000) {
            // However many segments were made, the writer holds a few files, not one each.
            assert!(open_files() <= before + 16, "{} files open", open_files());
        }
    }
    log.close().unwrap();

    let log = Log::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(log.open_report().segments as u64, SEGMENTS);
    assert!(open_files() <= before + 8, "{} files open after a writer's open", open_files());
    assert_eq!(replayed(&log), expected);
    drop(log);

    let reader = Log::open_read_only(dir.path()).unwrap();
    assert!(open_files() <= before + 8, "{} files open after a read-only open", open_files());
    assert_eq!(replayed(&reader), expected);
    // The writer may open beside the reader, and append where the log ended.
    let mut log = Log::open_with(dir.path(), options).unwrap();
    let end = log.end_offset();
    assert_eq!(log.append_sync(b"after").unwrap(), end);
    assert!(matches!(Log::open(dir.path()), Err(StorageError::Locked { .. })));
    drop(reader);
    drop(log);
}
