//! Write-behind: every few MiB the pager thread drops the pages the writer has passed from the
//! process's page tables (`MADV_DONTNEED`) and starts their write-out. A sync of a large range
//! does the same dropping first, with or without write-behind. None of it may change a byte,
//! lose a page's dirtiness, or disturb a reader. These tests write enough to trigger it many
//! times, with a concurrent reader, then throw the synced pages out of the page cache so the
//! records must come back from the disk.

use std::num::NonZeroU64;
use std::path::Path;
mod common;

use chronicle::{Log, Options};
use common::ReplayWatcher;

/// Mostly small records (written through the map), one in 40 of 20 KiB (written with
/// `pwritev`), each with its own bytes.
fn payload(i: usize) -> Vec<u8> {
    let len = if i % 40 == 39 { 20 << 10 } else { (i * 37) % 1500 };
    (0..len).map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7) ^ (j >> 8)) as u8).collect()
}

/// 16 MiB segments: write-behind (every 4 MiB appended in a segment) happens three times in
/// each, and the log rolls segments while it runs.
fn options() -> Options {
    Options { segment_bytes: 16 << 20, record_bytes_max: Some(1 << 20), ..Options::default() }
}

/// The same without write-behind: every page is still mapped when `sync` runs.
fn options_without_write_behind() -> Options {
    Options { write_behind: false, ..options() }
}

/// Appends records until `bytes` of payload are written, with a reader replaying alongside
/// that checks every record it sees. Returns how many records were appended.
fn append_with_reader(log: &mut Log, bytes: usize) -> usize {
    let watcher = ReplayWatcher::start(log.reader(), payload);
    let (mut written, mut count) = (0, 0);
    while written < bytes {
        let p = payload(count);
        log.append(&p).unwrap();
        written += p.len();
        count += 1;
    }
    watcher.finish();
    count
}

/// Asks the kernel to drop every clean, unmapped page of the log's segment files from the page
/// cache, so the next read of them comes from the disk.
fn evict_page_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let file = std::fs::File::open(&path).unwrap();
            rustix::fs::fadvise(&file, 0, None::<NonZeroU64>, rustix::fs::Advice::DontNeed)
                .unwrap();
        }
    }
}

fn assert_log_holds(log: &Log, count: usize) {
    let mut replay = log.replay(0);
    let mut n = 0;
    while let Some(record) = replay.next_ref() {
        let record = record.unwrap();
        assert_eq!(record.payload, &payload(n)[..], "record {n} differs");
        n += 1;
    }
    assert_eq!(n, count, "records replayed");
}

/// Synced records come back intact from the disk, both in the writing process (whose
/// written-behind pages are no longer mapped and so were evicted) and after a reopen.
#[test]
fn synced_records_come_back_from_the_disk() {
    synced_records_come_back(options());
}

/// As above, with every page still mapped until `sync` drops the mappings itself.
#[test]
fn synced_records_come_back_from_the_disk_without_write_behind() {
    synced_records_come_back(options_without_write_behind());
}

fn synced_records_come_back(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir.path(), options.clone()).unwrap();
    let count = append_with_reader(&mut log, 40 << 20);
    log.sync().unwrap();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() >= 4,
        "the log should span several segments"
    );
    evict_page_cache(dir.path());
    assert_log_holds(&log, count);

    let more = count + 1000;
    for i in count..more {
        log.append(&payload(i)).unwrap();
    }
    log.close().unwrap();
    evict_page_cache(dir.path());
    let log = Log::open_with(dir.path(), options).unwrap();
    assert_log_holds(&log, more);
    assert!(log.open_report().torn_tail.is_none(), "a clean close leaves no torn tail");
}

/// Records never synced are still there after the writer is dropped (as after a crash of the
/// process, which keeps the page cache), including those already written behind.
#[test]
fn unsynced_records_survive_a_dropped_writer() {
    let dir = tempfile::tempdir().unwrap();
    let count = {
        let mut log = Log::open_with(dir.path(), options()).unwrap();
        log.append_sync(&payload(0)).unwrap();
        1 + append_from(&mut log, 1, 20 << 20)
    };
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_log_holds(&log, count);
}

/// Appends records from record `first` on until `bytes` of payload are written; returns how
/// many.
fn append_from(log: &mut Log, first: usize, bytes: usize) -> usize {
    let (mut written, mut i) = (0, first);
    while written < bytes {
        let p = payload(i);
        log.append(&p).unwrap();
        written += p.len();
        i += 1;
    }
    i - first
}
