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
