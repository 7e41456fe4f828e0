use crate::log::{Log, Options, WithoutBackgroundThreads};
use crate::rollup::leaf_hash;
use crate::rollup::tree::mem_root;

/// Without background threads (the fuzz targets' mode), a writer still makes its spare
/// segment, at the append that passes half the segment, and rolls into it; the rollup has no
/// hashing thread, so pages are stored only by a query, whose head is right.
#[test]
fn a_log_without_threads_makes_its_spare_and_stores_pages_on_query() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 16 << 10, ..Options::default() };
    let _threads = WithoutBackgroundThreads::new();
    let mut log = Log::open_with(dir.path(), options).unwrap();
    assert!(!log.rollup.as_ref().unwrap().has_thread(), "a hashing thread was started");
    let spare = dir.path().join("next.seg.tmp");
    let mut saw_spare = false;
    for i in 0..1000u32 {
        log.append(&i.to_le_bytes().repeat(8)).unwrap();
        saw_spare |= spare.exists();
    }
    assert!(saw_spare, "no spare segment was made");
    let writer = log.writer.as_ref().unwrap();
    assert!(writer.pager.as_ref().unwrap().thread_count() == 0, "pager threads were started");
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert!(segments > 2, "the log should have rolled: {segments} segments");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!dir.path().join("rollup-0.pages").exists(), "pages stored with no query");

    let head = log.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 1000);
    let leaves: Vec<_> = log
        .replay(0)
        .map(|r| r.unwrap())
        .map(|r| leaf_hash(r.offset, r.write_timestamp_ms, &r.payload))
        .collect();
    assert_eq!(head.root, mem_root(&leaves, 1000));
    assert!(dir.path().join("rollup-0.pages").exists(), "the query stored no pages");
}

/// The stored pages are checked against the log when they are first loaded, which (without
/// a hashing thread, or before it runs) may be after the writer appended. Pages over records
/// a power cut took (stored before the records were synced) then lie over new records at
/// other boundaries, and checking the last one read the log from an offset inside a record:
/// `InvalidOffset` failed the load, and every head and proof of the log with it. (Found by the
/// power-cut campaign, where a torn segment creation was dropped at open.) Such a page does
/// not match the log: it is dropped and its entries hashed again. (A writer's open now cuts
/// pages past the end from the files, so here they arrive after it, as from elsewhere.)
#[test]
fn stale_pages_over_records_a_cut_took_are_dropped_when_loaded_after_new_appends() {
    let _threads = WithoutBackgroundThreads::new();
    let options = || Options { segment_bytes: 64 << 10, ..Options::default() };
    let (dir, snapshot) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..300u32 {
        log.append(&i.to_le_bytes().repeat(4)).unwrap();
    }
    log.close().unwrap();
    // The log as a power cut leaves it: the first 300 records...
    copy_files(dir.path(), snapshot.path());
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    for i in 300..600u32 {
        log.append(&i.to_le_bytes().repeat(4)).unwrap();
    }
    assert_eq!(log.tree_head(None).unwrap().tree_size, 600);
    log.close().unwrap();

    let mut log = Log::open_with(snapshot.path(), options()).unwrap();
    // ...with the pages stored over all 600 (two full level-0 pages).
    std::fs::copy(dir.path().join("rollup-0.pages"), snapshot.path().join("rollup-0.pages"))
        .unwrap();
    for i in 0..400u32 {
        // Other lengths than the records the pages describe, so other boundaries.
        log.append(&i.to_le_bytes().repeat(5)).unwrap();
    }
    let head = log.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 700);
    let leaves: Vec<_> = log
        .replay(0)
        .map(|r| r.unwrap())
        .map(|r| leaf_hash(r.offset, r.write_timestamp_ms, &r.payload))
        .collect();
    assert_eq!(head.root, mem_root(&leaves, 700));
    let proof = log.inclusion_proof(log.replay(0).nth(650).unwrap().unwrap().offset, None);
    assert!(proof.unwrap().verify(Some(&head.root)).is_ok());
}

/// Level-0 pages whose records retention removed cannot be checked against the log. The
/// check called them "no match", so the matching pages were no prefix any more, and when the
/// last stored page did not match either (here: the writer stored pages past the end a
/// read-only handle saw at its open) the search for the last matching page ended at 0: the
/// handle dropped every page, and with them the only hashes of the removed records, so it
/// gave no head at all. They match now: their checksums vouch for them.
#[test]
fn a_reader_loads_pages_past_its_end_on_a_log_retention_trimmed() {
    let _threads = WithoutBackgroundThreads::new();
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 16 << 10, ..Options::default() };
    let mut writer = Log::open_with(dir.path(), options).unwrap();
    let mut offsets = Vec::new();
    for i in 0..1500u32 {
        offsets.push(writer.append(&i.to_le_bytes()).unwrap());
    }
    writer.sync().unwrap();
    assert_eq!(writer.tree_head(None).unwrap().tree_size, 1500);
    writer.truncate_before(offsets[1300]).unwrap();
    assert!(writer.reader().start_entry() > 4 * 256, "retention removed too little");

    let reader = Log::open_read_only(dir.path()).unwrap();
    for i in 1500..2200u32 {
        writer.append(&i.to_le_bytes()).unwrap();
    }
    writer.sync().unwrap();
    assert_eq!(writer.tree_head(None).unwrap().tree_size, 2200);

    let head = reader.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 1500);
    assert_eq!(head, writer.tree_head(Some(1500)).unwrap());
}

/// Copies every file of `from` into `to`, as a power cut or a backup may leave them.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    std::fs::remove_file(to.join("LOCK")).ok();
}

/// A power cut usually leaves the unsynced records as zeros, or takes a segment made since
/// the last sync whole, and recovery then cuts no torn tail; only a torn tail made a writer's
/// open drop the pages past the end, so pages stored over the lost records stayed until
/// they were first loaded, after new appends, where a new record could match a stale page's
/// last entry. Every writer's open drops them now.
#[test]
fn a_writer_open_drops_pages_past_the_end_though_the_crash_left_no_torn_tail() {
    let _threads = WithoutBackgroundThreads::new();
    let options = || Options { segment_bytes: 64 << 10, ..Options::default() };
    let (dir, cut) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open_with(dir.path(), options()).unwrap();
    for i in 0..300u32 {
        log.append(&i.to_le_bytes().repeat(4)).unwrap();
    }
    log.sync().unwrap();
    // What reached the disk before the cut: the synced records...
    copy_files(dir.path(), cut.path());
    for i in 300..600u32 {
        log.append(&i.to_le_bytes().repeat(4)).unwrap();
    }
    assert_eq!(log.tree_head(None).unwrap().tree_size, 600);
    // ...and the pages the hashing stored over the unsynced ones.
    std::fs::copy(dir.path().join("rollup-0.pages"), cut.path().join("rollup-0.pages")).unwrap();
    drop(log);
    let page_len = crate::rollup::page::PAGE_RECORD_LEN as u64;
    let pages_len = || std::fs::metadata(cut.path().join("rollup-0.pages")).unwrap().len();
    assert_eq!(pages_len(), 2 * page_len);

    let log = Log::open_with(cut.path(), options()).unwrap();
    assert!(log.open_report().torn_tail.is_none(), "the cut left a torn tail to cut");
    assert_eq!(log.open_report().merkle_pages_dropped, 1);
    assert_eq!(log.replay(0).count(), 300);
    assert_eq!(pages_len(), page_len, "the page over records 256..512 outlived the open");
}

/// Strides of 64 bytes, 64 records a segment: a segment begins at record 512, where the
/// second level-0 page ends.
fn forked_options(merkle_rollup: bool) -> Options {
    Options { segment_bytes: 64 + 64 * 64, merkle_rollup, ..Options::default() }
}

/// A log of 700 records whose page file, with good checksums, comes from a copy of the log
/// that went on after record 300 with other records of the same lengths; and the offsets.
fn log_with_forked_pages(dir: &std::path::Path, merkle_rollup: bool) -> (Log, Vec<u64>) {
    let record = |i: u32| i.to_le_bytes().repeat(8);
    let fork = tempfile::tempdir().unwrap();
    let mut log = Log::open_with(dir, forked_options(true)).unwrap();
    let mut offsets = Vec::new();
    for i in 0..300u32 {
        offsets.push(log.append(&record(i)).unwrap());
    }
    log.close().unwrap();
    copy_files(dir, fork.path());
    let mut forked = Log::open_with(fork.path(), forked_options(true)).unwrap();
    for i in 300..600u32 {
        forked.append(&record(i + 1_000_000)).unwrap();
    }
    assert_eq!(forked.tree_head(None).unwrap().tree_size, 600);
    forked.close().unwrap();

    let mut log = Log::open_with(dir, forked_options(merkle_rollup)).unwrap();
    for i in 300..700u32 {
        offsets.push(log.append(&record(i)).unwrap());
    }
    std::fs::copy(fork.path().join("rollup-0.pages"), dir.join("rollup-0.pages")).unwrap();
    (log, offsets)
}

/// Level-0 pages wholly before the log's start are taken as they are when loaded: their
/// records are gone. Retention checks the pages before it removes records, but a forced
/// truncation did not, so a page foreign to the log over exactly the records it removed gave
/// a head with another root, and no error. A forced truncation checks the pages first now,
/// while the records exist to check them against: the foreign page goes, and with it the
/// tree, so heads fail as the method documents.
#[test]
fn a_forced_truncation_checks_the_pages_before_their_records_go() {
    let _threads = WithoutBackgroundThreads::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, offsets) = log_with_forked_pages(dir.path(), true);
    let report = log.truncate_before_forced(offsets[512]).unwrap();
    assert_eq!(report.start_offset, offsets[512], "no segment begins where the page ends");
    match log.tree_head(None) {
        Err(crate::StorageError::Proof { .. }) => {}
        other => panic!("a head over records no checked page covers: {other:?}"),
    }
}

/// The same with the rollup off: the pages an earlier open stored are checked before the
/// records go, for a later open that keeps pages.
#[test]
fn a_forced_truncation_without_the_rollup_checks_the_pages_an_earlier_open_stored() {
    let _threads = WithoutBackgroundThreads::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, offsets) = log_with_forked_pages(dir.path(), false);
    let report = log.truncate_before_forced(offsets[512]).unwrap();
    assert_eq!(report.start_offset, offsets[512], "no segment begins where the page ends");
    log.close().unwrap();
    let log = Log::open_with(dir.path(), forked_options(true)).unwrap();
    match log.tree_head(None) {
        Err(crate::StorageError::Proof { .. }) => {}
        other => panic!("a head over records no checked page covers: {other:?}"),
    }
}
