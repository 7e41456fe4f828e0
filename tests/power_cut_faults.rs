//! Faults injected through the power-cut filesystem (`tests/power_cut/`): a failed `fsync`,
//! a full disk at preallocation and at write, read errors, and renames that fail. Each test
//! checks the error Chronicle reports, that nothing acknowledged is lost (the power is cut
//! after the fault, so only what was durable counts), and that the log opens and takes appends
//! again once the fault is gone. The first tests check the filesystem itself: what a cut keeps
//! and drops. Every test skips, saying why, where FUSE cannot be mounted.

#[path = "power_cut/mod.rs"]
mod power_cut;

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;

use chronicle::{EventLog, IndexOptions, Log, Options, StorageError};
use power_cut::check::HeadBuilder;
use power_cut::workload::{event, payload};
use power_cut::{CutMode, Fault, Op, PowerCutMount};

fn options() -> Options {
    Options { segment_bytes: 64 << 10, ..Options::default() }
}

/// The errno of an I/O error, or a failure naming what came instead.
fn errno(result: Result<impl std::fmt::Debug, StorageError>) -> i32 {
    match result {
        Err(StorageError::Io { source, .. }) => source.raw_os_error().expect("an OS error"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

/// Appends records `first..first + n` (of 100 bytes, every 100th of 20 KiB) with
/// `append_sync`, returning their offsets.
fn append_synced(log: &mut Log, first: u64, n: u64) -> Vec<u64> {
    (first..first + n).map(|seq| log.append_sync(&payload(seq, len_of(seq))).unwrap()).collect()
}

fn len_of(seq: u64) -> usize {
    if seq % 100 == 99 {
        20 << 10
    } else {
        100
    }
}

/// Opens the log in `fs` as a writer and checks that its records start with `acked` (offsets
/// of records `0..acked.len()`) and are records of this test (`seq` after `seq`).
fn reopen_and_check(fs: &PowerCutMount, acked: &[u64]) -> Log {
    let log = Log::open_with(fs.path().join("log"), options()).expect("the log reopens");
    let records: Vec<_> = log.replay(0).map(|r| r.expect("replay")).collect();
    assert!(
        records.len() >= acked.len(),
        "{} records, {} acknowledged",
        records.len(),
        acked.len()
    );
    for (seq, record) in records.iter().enumerate() {
        if let Some(&offset) = acked.get(seq) {
            assert_eq!(record.offset, offset, "record {seq}");
        }
        assert!(*record.payload == payload(seq as u64, len_of(seq as u64))[..], "record {seq}");
    }
    log
}

#[test]
fn filesystem_keeps_only_what_was_synced() {
    let Some(mut fs) = PowerCutMount::new("filesystem_keeps_only_what_was_synced") else {
        return;
    };
    let dir = fs.path().join("d");
    fs::create_dir(&dir).unwrap();
    File::open(fs.path()).unwrap().sync_all().unwrap(); // `d` is durable
    fs::write(dir.join("synced"), b"one").unwrap();
    File::open(dir.join("synced")).unwrap().sync_all().unwrap();
    fs::write(dir.join("renamed"), b"two").unwrap();
    File::open(dir.join("renamed")).unwrap().sync_all().unwrap();
    fs::write(dir.join("unlinked"), b"four").unwrap();
    File::open(dir.join("unlinked")).unwrap().sync_all().unwrap();
    File::open(&dir).unwrap().sync_all().unwrap(); // the three entries are durable
    let mut f = OpenOptions::new().append(true).open(dir.join("synced")).unwrap();
    f.write_all(b" and more").unwrap(); // not synced
    fs::write(dir.join("unsynced entry"), b"three").unwrap();
    File::open(dir.join("unsynced entry")).unwrap().sync_all().unwrap(); // data, not entry
    fs::rename(dir.join("renamed"), dir.join("new name")).unwrap(); // not synced
    fs::remove_file(dir.join("unlinked")).unwrap(); // not synced
    drop(f);
    fs.cut(CutMode::Strict);
    let dir = fs.path().join("d");
    assert_eq!(fs::read(dir.join("synced")).unwrap(), b"one");
    assert_eq!(fs::read(dir.join("renamed")).unwrap(), b"two");
    assert_eq!(fs::read(dir.join("unlinked")).unwrap(), b"four");
    assert!(!dir.join("new name").exists() && !dir.join("unsynced entry").exists());
}

#[test]
fn filesystem_syncs_shared_maps_and_locks_files() {
    let Some(mut fs) = PowerCutMount::new("filesystem_syncs_shared_maps_and_locks_files") else {
        return;
    };
    let path = fs.path().join("mapped");
    let mut open = OpenOptions::new();
    let file = open.read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(8192).unwrap();
    file.sync_all().unwrap();
    File::open(fs.path()).unwrap().sync_all().unwrap();
    // SAFETY: nothing else maps, truncates or writes the file while the map lives.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    map[..5].copy_from_slice(b"first");
    map.flush_range(0, 4096).unwrap(); // msync(MS_SYNC)
    map[4096..4102].copy_from_slice(b"second"); // never synced
    assert!(file.try_lock().is_ok());
    let other = File::open(&path).unwrap();
    assert!(other.try_lock().is_err(), "flock must exclude a second open file description");
    drop((map, file, other));
    fs.cut(CutMode::Strict);
    let bytes = fs::read(fs.path().join("mapped")).unwrap();
    assert_eq!(&bytes[..5], b"first");
    assert_eq!(&bytes[4096..4102], &[0; 6], "unsynced map writes are lost");
    // Chronicle's own lock: one writer at a time.
    let log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let second = Log::open_with(fs.path().join("log"), options());
    assert!(matches!(second, Err(StorageError::Locked { .. })), "{second:?}");
    drop(log);
    Log::open_with(fs.path().join("log"), options()).unwrap();
}

#[test]
fn failed_fsync_poisons_the_writer() {
    let Some(mut fs) = PowerCutMount::new("failed_fsync_poisons_the_writer") else { return };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let acked = append_synced(&mut log, 0, 20);
    fs.control().inject(Fault::once(Op::Fsync, ".seg", libc::EIO));
    assert_eq!(errno(log.append_sync(&payload(20, len_of(20)))), libc::EIO);
    assert!(matches!(log.append(&payload(21, 100)), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.append_batch(&[b"x"]), Err(StorageError::Poisoned { .. })));
    drop(log);
    fs.cut(CutMode::Strict);
    let mut log = reopen_and_check(&fs, &acked);
    let n = log.replay(0).count() as u64;
    append_synced(&mut log, n, 5);
}

#[test]
fn failed_directory_sync_poisons_the_writer() {
    let Some(mut fs) = PowerCutMount::new("failed_directory_sync_poisons_the_writer") else {
        return;
    };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let acked = append_synced(&mut log, 0, 3);
    // Fill the first segment with buffered appends so the next one is created unsynced; the
    // sync that makes it durable syncs the directory, and that fails.
    let mut seq = 3;
    while log.end_offset() < 64 << 10 {
        log.append(&payload(seq, len_of(seq))).unwrap();
        seq += 1;
    }
    fs.control().inject(Fault::once(Op::FsyncDir, "log", libc::EIO));
    assert_eq!(errno(log.sync()), libc::EIO);
    assert!(matches!(log.append_sync(b"x"), Err(StorageError::Poisoned { .. })));
    drop(log);
    fs.cut(CutMode::Strict);
    let mut log = reopen_and_check(&fs, &acked);
    let n = log.replay(0).count() as u64;
    append_synced(&mut log, n, 3);
}

#[test]
fn full_disk_at_preallocation_fails_the_roll() {
    let Some(mut fs) = PowerCutMount::new("full_disk_at_preallocation_fails_the_roll") else {
        return;
    };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let mut acked = append_synced(&mut log, 0, 5);
    fs.control().inject(Fault::always(Op::Fallocate, "", libc::ENOSPC));
    let mut seq = 5;
    let error = loop {
        match log.append_sync(&payload(seq, len_of(seq))) {
            Ok(offset) => acked.push(offset),
            Err(e) => break e,
        }
        seq += 1;
    };
    assert_eq!(errno(Err::<(), _>(error)), libc::ENOSPC, "the roll fails with ENOSPC");
    // A record as large as the one that failed does not fit either (a smaller one may still
    // fit in the segment's last bytes).
    assert_eq!(errno(log.append_sync(&payload(seq, len_of(seq)))), libc::ENOSPC);
    drop(log);
    fs.cut(CutMode::Strict);
    fs.control().clear_faults();
    let mut log = reopen_and_check(&fs, &acked);
    let n = log.replay(0).count() as u64;
    append_synced(&mut log, n, 300); // rolls now that there is space
}

#[test]
fn full_disk_at_write_fails_and_appends_resume_after_reopen() {
    let Some(mut fs) = PowerCutMount::new("full_disk_at_write") else { return };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let acked = append_synced(&mut log, 0, 5);
    fs.control().inject(Fault::always(Op::Write, ".seg", libc::ENOSPC));
    assert_eq!(errno(log.append_sync(&payload(5, 100))), libc::ENOSPC);
    assert!(log.append_sync(&payload(5, 100)).is_err());
    // Nothing failed to sync: `close` may succeed, but then the log ends where it did.
    let closed = log.close();
    fs.cut(CutMode::Strict);
    let mut log = reopen_and_check(&fs, &acked);
    if closed.is_ok() {
        assert_eq!(log.replay(0).count(), acked.len(), "a failed append left a record");
        assert!(log.open_report().torn_tail.is_none());
    }
    let n = log.replay(0).count() as u64;
    append_synced(&mut log, n, 5);
}

#[test]
fn full_disk_when_writing_the_durable_record_fails_close() {
    let Some(mut fs) = PowerCutMount::new("full_disk_durable_record") else { return };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let acked = append_synced(&mut log, 0, 5);
    log.append(&payload(5, 100)).unwrap();
    fs.control().inject(Fault::always(Op::Write, "DURABLE", libc::ENOSPC));
    assert_eq!(errno(log.close()), libc::ENOSPC);
    fs.cut(CutMode::Strict);
    fs.control().clear_faults();
    let log = reopen_and_check(&fs, &acked);
    // `close` synced before it wrote the record: the buffered append is durable too.
    assert_eq!(log.replay(0).count(), 6);
}

#[test]
fn failed_rename_of_the_durable_record() {
    let Some(mut fs) = PowerCutMount::new("failed_rename_of_the_durable_record") else {
        return;
    };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let mut acked = append_synced(&mut log, 0, 5);
    acked.push(log.append(&payload(5, 100)).unwrap());
    fs.control().inject(Fault::once(Op::Rename, "DURABLE", libc::EIO));
    assert_eq!(errno(log.close()), libc::EIO);
    fs.cut(CutMode::Strict);
    let mut log = reopen_and_check(&fs, &acked);
    assert_eq!(log.replay(0).count(), 6);
    append_synced(&mut log, 6, 3);
    log.close().unwrap();
    assert!(reopen_and_check(&fs, &acked).open_report().clean_close);
}

#[test]
fn failed_rename_of_the_next_segment() {
    let Some(mut fs) = PowerCutMount::new("failed_rename_of_the_next_segment") else { return };
    for prepare in [true, false] {
        let options = Options { prepare_next_segment: prepare, ..options() };
        let dir = fs.path().join("log");
        let mut log = Log::open_with(&dir, options.clone()).unwrap();
        let mut acked = append_synced(&mut log, 0, 5);
        fs.control().inject(Fault::once(Op::Rename, ".seg", libc::EIO));
        let mut seq = 5;
        let error = loop {
            match log.append_sync(&payload(seq, len_of(seq))) {
                Ok(offset) => acked.push(offset),
                Err(e) => break e,
            }
            seq += 1;
        };
        assert_eq!(errno(Err::<(), _>(error)), libc::EIO, "prepare_next_segment {prepare}");
        // The writer either goes on (the roll is retried) or refuses; it never loses a record.
        if let Ok(offset) = log.append_sync(&payload(seq, len_of(seq))) {
            acked.push(offset);
        }
        drop(log);
        fs.cut(CutMode::Strict);
        let mut log = reopen_and_check(&fs, &acked);
        let n = log.replay(0).count() as u64;
        append_synced(&mut log, n, 300);
        drop(log);
        fs::remove_dir_all(fs.path().join("log")).unwrap();
    }
}

#[test]
fn failed_rename_of_an_index_checkpoint() {
    let Some(mut fs) = PowerCutMount::new("failed_rename_of_an_index_checkpoint") else {
        return;
    };
    let dir = fs.path().join("log");
    let index = IndexOptions { checkpoint_bytes: 0, ..IndexOptions::default() };
    let mut ev = EventLog::open_with_index_options(&dir, options(), index.clone()).unwrap();
    for seq in 0..50 {
        ev.append(&event(seq, 50)).unwrap();
    }
    ev.checkpoint().unwrap();
    for seq in 50..80 {
        ev.append(&event(seq, 50)).unwrap();
    }
    ev.sync().unwrap();
    fs.control().inject(Fault::once(Op::Rename, "index.chx", libc::EIO));
    assert_eq!(errno(ev.checkpoint()), libc::EIO);
    drop(ev);
    fs.cut(CutMode::Strict);
    let ev = EventLog::open_with_index_options(fs.path().join("log"), options(), index).unwrap();
    let all: Vec<_> = ev.replay(0).map(|e| e.unwrap()).collect();
    assert_eq!(all.len(), 80);
    assert!(ev.index_report().loaded, "the earlier checkpoint is used and caught up");
    power_cut::check::index_matches(&ev, &all, 3).unwrap();
}

#[test]
fn read_errors_at_open_are_errors() {
    let Some(mut fs) = PowerCutMount::new("read_errors_at_open_are_errors") else { return };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let acked = append_synced(&mut log, 0, 400); // a few segments
    log.close().unwrap();
    for name in ["00000000000000000000.seg", ".seg"] {
        fs.remount(); // nothing in the page cache
        fs.control().inject(Fault::always(Op::Read, name, libc::EIO));
        let opened = Log::open_with(fs.path().join("log"), options());
        assert_eq!(errno(opened), libc::EIO, "reading {name}");
        let opened = Log::open_read_only(fs.path().join("log"));
        assert_eq!(errno(opened), libc::EIO, "reading {name}");
        fs.control().clear_faults();
    }
    // `DURABLE` only adds knowledge: an open that cannot read it does without it.
    fs.remount();
    fs.control().inject(Fault::always(Op::Read, "DURABLE", libc::EIO));
    let log = reopen_and_check(&fs, &acked);
    assert_eq!(log.replay(0).count(), acked.len());
    assert!(fs.control().faults_fired() > 0);
    drop(log);
    // Nothing was set aside or cut: the log is whole without the fault.
    fs.control().clear_faults();
    fs.remount();
    assert_eq!(reopen_and_check(&fs, &acked).replay(0).count(), acked.len());
}

#[test]
fn read_errors_on_pages_never_give_a_wrong_head() {
    let Some(mut fs) = PowerCutMount::new("read_errors_on_pages") else { return };
    let mut log = Log::open_with(fs.path().join("log"), options()).unwrap();
    append_synced(&mut log, 0, 600);
    let head = log.tree_head(None).unwrap();
    log.close().unwrap();
    assert!(fs::read_dir(fs.path().join("log")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("rollup-")));
    fs.remount();
    fs.control().inject(Fault::always(Op::Read, "rollup-", libc::EIO));
    let log = Log::open_with(fs.path().join("log"), options()).unwrap();
    let mut computed = HeadBuilder::new(0);
    log.replay(0).for_each(|r| computed.push(&r.unwrap()));
    match log.tree_head(None) {
        Ok(got) => assert_eq!((got, computed.head()), (head, head)),
        Err(e) => assert!(matches!(e, StorageError::Io { .. }), "{e}"),
    }
    assert!(fs.control().faults_fired() > 0, "the pages were read");
}

#[test]
fn a_page_file_a_writer_may_not_write_goes_only_where_it_needed_a_cut() {
    // What a power cut can leave (as in `tests/rollup_pages.rs`): pages stored over records
    // that were never synced. Made on a plain directory, then copied in, with the records
    // after the sync zeroed (lost) or not.
    let options = Options { segment_bytes: 1 << 20, ..Options::default() };
    let built = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(built.path(), options.clone()).unwrap();
    for i in 0..6_000u32 {
        if i == 3_000 {
            log.sync().unwrap();
        }
        log.append(&i.to_le_bytes()).unwrap();
    }
    let durable_end = log.replay(0).nth(3_000).unwrap().unwrap().offset;
    assert_eq!(log.tree_head(None).unwrap().tree_size, 6_000); // 23 pages over 5,888
    let Some(fs) = PowerCutMount::new("a_page_file_a_writer_may_not_write") else { return };
    let copy = |name: &str, lost: bool| {
        let dir = fs.path().join(name);
        fs::create_dir(&dir).unwrap();
        for entry in fs::read_dir(built.path()).unwrap() {
            let entry = entry.unwrap();
            let mut bytes = fs::read(entry.path()).unwrap();
            if lost && entry.file_name() == "00000000000000000000.seg" {
                bytes[64 + durable_end as usize..].fill(0);
            }
            if entry.file_name() != "DURABLE" {
                fs::write(dir.join(entry.file_name()), bytes).unwrap();
            }
        }
        dir
    };
    let head_from_records = |log: &Log| {
        let mut computed = HeadBuilder::new(0);
        log.replay(0).for_each(|r| computed.push(&r.unwrap()));
        computed.head()
    };
    let (past_the_end, unreadable, no_cut) =
        (copy("past_the_end", true), copy("unreadable", true), copy("no_cut", false));
    drop(log);
    let len = fs::metadata(no_cut.join("rollup-0.pages")).unwrap().len();

    // The writer may read the page file but not write it, so cannot cut the pages past the
    // end: the files go, rather than stay for a later open (with the right to write) to load.
    fs.control().inject(Fault::always(Op::OpenToWrite, "rollup-0.pages", libc::EACCES));
    let log = Log::open_with(&past_the_end, options.clone()).unwrap();
    assert!(fs.control().faults_fired() > 0, "the page file was opened");
    assert_eq!(log.end_offset(), durable_end);
    assert_eq!(log.open_report().merkle_pages_dropped, 23);
    assert!(!past_the_end.join("rollup-0.pages").exists(), "the stale pages are still there");
    assert_eq!(log.tree_head(None).unwrap(), head_from_records(&log));
    drop(log);

    // Nor read it: it cannot be checked either, and goes the same way.
    fs.control().inject(Fault::always(Op::Open, "rollup-0.pages", libc::EACCES));
    let log = Log::open_with(&unreadable, options.clone()).unwrap();
    assert_eq!(log.open_report().merkle_pages_dropped, 23);
    assert!(!unreadable.join("rollup-0.pages").exists(), "the stale pages are still there");
    fs.control().clear_faults();
    assert_eq!(log.tree_head(None).unwrap(), head_from_records(&log));
    drop(log);

    // Pages that need no cut stay, read-only: they may hold the only hashes of records
    // retention removed.
    fs.control().inject(Fault::always(Op::OpenToWrite, "rollup-0.pages", libc::EACCES));
    let log = Log::open_with(&no_cut, options).unwrap();
    assert_eq!(log.open_report().merkle_pages_dropped, 0);
    assert_eq!(log.tree_head(None).unwrap(), head_from_records(&log));
    assert_eq!(log.rollup_report().entries_kept_on_open, 23 * 256);
    assert_eq!(fs::metadata(no_cut.join("rollup-0.pages")).unwrap().len(), len);
}
