//! The rollup's stored pages: heads and proofs from them match an independent RFC 6962
//! implementation; pages survive reopening; a deleted, torn, damaged or forged page file is
//! found, reported and rebuilt; pages over entries a crash or a repair took away are dropped.

mod common;

use std::path::Path;

use chronicle::rollup::leaf_data;
use chronicle::{Log, Options, RecoveryMode, StorageError};
use common::{forge_page, page_file, Rng, PAGE_CHILDREN_AT as CHILDREN_AT, PAGE_RECORD_LEN};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use sha2::Sha256;

fn options() -> Options {
    Options { segment_bytes: 1 << 20, ..Options::default() }
}

/// A log of `n` records of 0 to 40 bytes.
fn build(dir: &Path, n: u64) -> Log {
    let mut log = Log::open_with(dir, options()).unwrap();
    for i in 0..n {
        let payload: Vec<u8> = (0..i % 41).map(|k| (i ^ k) as u8).collect();
        log.append(&payload).unwrap();
    }
    log.sync().unwrap();
    log
}

/// Every head, inclusion proof and consistency proof the log gives for `sizes`, and the page
/// counts it keeps: what the same log must give again after its pages are rebuilt.
fn answers(log: &Log, sizes: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    for &size in sizes {
        out.push(format!("{:?}", log.tree_head(Some(size)).unwrap()));
        let offsets: Vec<u64> = log
            .replay(0)
            .filter(|r| !matches!(r, Err(StorageError::Gap { .. })))
            .map(|r| r.unwrap().offset)
            .take(size as usize)
            .collect();
        for &i in &[0, size / 2, size - 1] {
            out.push(format!(
                "{:?}",
                log.inclusion_proof(offsets[i as usize], Some(size)).unwrap()
            ));
        }
        out.push(format!("{:?}", log.consistency_proof(1 + size / 3, Some(size)).unwrap()));
    }
    out
}

/// The same answers from the log with its stored pages turned off (the tree built in memory
/// from every record).
fn answers_without_pages(dir: &Path, sizes: &[u64]) -> Vec<String> {
    let log = Log::open_with(dir, Options { merkle_rollup: false, ..options() }).unwrap();
    answers(&log, sizes)
}

#[test]
fn heads_and_proofs_from_pages_match_an_independent_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let n = 70_000u64;
    let log = build(dir.path(), n);
    let records: Vec<(u64, Vec<u8>)> = log
        .replay(0)
        .map(|r| {
            let r = r.unwrap();
            (r.offset, leaf_data(r.offset, r.write_timestamp_ms, &r.payload))
        })
        .collect();
    let mut rng = Rng(5);
    // Page and level boundaries, their neighbours, and random sizes.
    let mut sizes = vec![1, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, n - 1, n];
    sizes.extend((0..20).map(|_| 1 + rng.below(n)));
    sizes.sort_unstable();
    sizes.dedup();
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut previous = 0u64;
    for &size in &sizes {
        for (_, data) in &records[ct.len() as usize..size as usize] {
            ct.push(data.clone());
        }
        let head = log.tree_head(Some(size)).unwrap();
        assert_eq!(head.root.0.as_slice(), ct.root().as_bytes().as_slice(), "root of {size}");
        assert_eq!(head.end_offset, records.get(size as usize).map_or(log.end_offset(), |r| r.0));
        for _ in 0..3 {
            let i = rng.below(size);
            let proof = log.inclusion_proof(records[i as usize].0, Some(size)).unwrap();
            let expected = ct.prove_inclusion(i as usize);
            let path: Vec<u8> = proof.audit_path.iter().flat_map(|h| h.0).collect();
            assert_eq!(path, expected.as_bytes(), "inclusion of {i} in {size}");
            proof.verify(Some(&head.root)).unwrap();
        }
        if previous > 0 && previous < size {
            let proof = log.consistency_proof(previous, Some(size)).unwrap();
            let expected = ct.prove_consistency((size - previous) as usize);
            let path: Vec<u8> = proof.proof.iter().flat_map(|h| h.0).collect();
            assert_eq!(path, expected.as_bytes(), "consistency of {previous} and {size}");
            proof.verify(None).unwrap();
        }
        previous = size;
    }
    // The pages are on disk: 273 of level 0, 1 of level 1.
    let report = log.rollup_report();
    assert_eq!(report.entries_hashed, n);
    assert_eq!(report.pages[..2], [(273, 0), (1, 0)], "{report:?}");
    assert_eq!(report.disk_bytes, 274 * PAGE_RECORD_LEN as u64);
    assert_eq!(std::fs::metadata(page_file(dir.path(), 0)).unwrap().len(), 273 * 9328);
    // Heads by time agree with heads by size.
    let last_ms = log.read_at(records[40_000].0).unwrap().write_timestamp_ms;
    let by_time = log.tree_head_at(last_ms).unwrap();
    assert!(by_time.tree_size > 40_000);
    assert_eq!(by_time, log.tree_head(Some(by_time.tree_size)).unwrap());
    if by_time.tree_size < n {
        let next = log.read_at(records[by_time.tree_size as usize].0).unwrap();
        assert!(next.write_timestamp_ms > last_ms);
    }
}

#[test]
fn pages_survive_reopening_and_answer_like_the_log_itself() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [1, 300, 5_000, 9_999, 10_000];
    let log = build(dir.path(), 10_000);
    let first = answers(&log, &sizes);
    log.close().unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.rollup_report();
    assert_eq!(report.entries_kept_on_open, 39 * 256, "{report:?}");
    assert_eq!(report.dropped, None);
    assert_eq!(answers(&log, &sizes), first);
    drop(log);
    assert_eq!(answers_without_pages(dir.path(), &sizes), first);
    // A read-only open answers the same from the stored pages.
    let read_only = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(answers(&read_only, &sizes), first);
    assert_eq!(read_only.rollup_report().entries_kept_on_open, 39 * 256);
}

#[test]
fn deleted_or_torn_page_files_are_rebuilt_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 70_000);
    let head = log.tree_head(None).unwrap();
    drop(log);
    let level0 = std::fs::read(page_file(dir.path(), 0)).unwrap();
    let level1 = std::fs::read(page_file(dir.path(), 1)).unwrap();

    std::fs::remove_file(page_file(dir.path(), 0)).unwrap();
    std::fs::remove_file(page_file(dir.path(), 1)).unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.tree_head(None).unwrap(), head);
    drop(log);
    assert!(std::fs::read(page_file(dir.path(), 0)).unwrap() == level0);
    assert!(std::fs::read(page_file(dir.path(), 1)).unwrap() == level1);

    // A torn last record, and a lost level-1 file.
    let file = std::fs::OpenOptions::new().write(true).open(page_file(dir.path(), 0)).unwrap();
    file.set_len(level0.len() as u64 - 5000).unwrap();
    std::fs::remove_file(page_file(dir.path(), 1)).unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.rollup_report();
    assert_eq!(report.entries_kept_on_open, 272 * 256, "{report:?}");
    assert_eq!(log.tree_head(None).unwrap(), head);
    drop(log);
    assert!(std::fs::read(page_file(dir.path(), 0)).unwrap() == level0);
    assert!(std::fs::read(page_file(dir.path(), 1)).unwrap() == level1);
}

/// A page file left above a level whose file is gone is cut back, not trusted: the level below
/// fills none of its pages.
#[test]
fn a_page_file_above_a_missing_level_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 66_000);
    let head = log.tree_head(None).unwrap();
    drop(log);
    let level1 = std::fs::read(page_file(dir.path(), 1)).unwrap();
    // A stale level-2 file (a level-1 record under the wrong name) above a lost level 1.
    std::fs::write(page_file(dir.path(), 2), &level1).unwrap();
    std::fs::remove_file(page_file(dir.path(), 1)).unwrap();
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.tree_head(None).unwrap(), head);
    let report = log.rollup_report();
    assert_eq!(report.pages[..3], [(257, 0), (1, 0), (0, 0)], "{report:?}");
    drop(log);
    assert_eq!(std::fs::read(page_file(dir.path(), 1)).unwrap(), level1);
    assert_eq!(std::fs::metadata(page_file(dir.path(), 2)).unwrap().len(), 0);
}

/// Flips a bit of page `index` of level 0, in the byte at `at` of its record.
fn flip(dir: &Path, index: usize, at: usize) {
    let path = page_file(dir, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[index * PAGE_RECORD_LEN + at] ^= 0x04;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn damaged_and_forged_pages_are_named_by_verify_pages_and_rebuilt_when_met() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 5_000);
    let sizes = [4_000, 5_000];
    let first = answers(&log, &sizes);
    let clean = log.verify_pages(None, None).unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.entries, clean.pages_checked), (5_000, 19));
    drop(log);

    flip(dir.path(), 5, CHILDREN_AT + 100);
    forge_page(dir.path(), 8, |record| record[CHILDREN_AT + 32 * 7] ^= 1);
    forge_page(dir.path(), 11, |record| record[104] ^= 1);
    let log = Log::open_with(dir.path(), options()).unwrap();
    let report = log.verify_pages(None, None).unwrap();
    let found: Vec<(u8, u64, &str)> =
        report.problems.iter().map(|p| (p.level, p.index, p.problem.as_str())).collect();
    assert_eq!(found.len(), 4, "{report:?}");
    assert!(found[0].0 == 0 && found[0].1 == 5 && found[0].2.contains("checksum"), "{found:?}");
    assert!(found[1].1 == 8 && found[1].2.contains("child hash differs"), "{found:?}");
    assert!(found[2].1 == 11 && found[2].2.contains("link to the previous page"), "{found:?}");
    // The forged page's hash changed, so the next page's link no longer holds either.
    assert!(found[3].1 == 12 && found[3].2.contains("link to the previous page"), "{found:?}");
    let offsets: Vec<u64> = log.replay(0).map(|r| r.unwrap().offset).collect();
    assert_eq!(report.problems[0].first_offset, offsets[5 * 256]);
    assert_eq!(report.problems[0].last_offset, offsets[6 * 256 - 1]);
    // Only pages 8.. asked for: page 5 is not reported.
    let some = log.verify_pages(Some(0), Some(8..20)).unwrap();
    assert_eq!(some.problems.len(), 3, "{some:?}");

    // Answering meets the damaged page, drops it and rebuilds it and everything after it.
    assert_eq!(answers(&log, &sizes), first);
    let rollup = log.rollup_report();
    assert!(rollup.pages_rebuilt > 0, "{rollup:?}");
    assert!(rollup.dropped.as_deref().unwrap_or("").contains("level 0 page 5"), "{rollup:?}");
    assert!(log.verify_pages(None, None).unwrap().is_clean());
}

/// Found by the `rollup_pages` fuzz target: a forged link is named even when the page before
/// it cannot be read.
#[test]
fn a_forged_link_after_an_unreadable_page_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 600);
    let head = log.tree_head(None).unwrap();
    drop(log);
    forge_page(dir.path(), 0, |record| record[7] = 1);
    forge_page(dir.path(), 1, |record| record[104] ^= 1);
    // Read-only: a writer's hashing thread would drop and rebuild both pages meanwhile.
    let report = Log::open_read_only(dir.path()).unwrap().verify_pages(None, None).unwrap();
    let named: Vec<u64> = report.problems.iter().map(|p| p.index).collect();
    assert_eq!(named, [0, 1], "{report:?}");
    assert!(report.problems[1].problem.contains("link"), "{report:?}");
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.tree_head(None).unwrap(), head);
    assert!(log.verify_pages(None, None).unwrap().is_clean());
}

/// Found by the `rollup_pages` fuzz target: a page forged behind good checksums in two
/// places, a child hash and the first offset in its header. An inclusion proof read only the
/// forged child and was given with a forged root; the head asked next checked the header,
/// rebuilt the page and gave the true root, against which the proof failed. Proofs now run
/// the head's checks first.
#[test]
fn a_proof_checks_its_pages_as_a_head_does_so_both_agree() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 600);
    let offsets: Vec<u64> = log.replay(0).map(|r| r.unwrap().offset).collect();
    let true_root = log.tree_head(Some(300)).unwrap().root;
    let true_consistency = log.consistency_proof(100, Some(300)).unwrap();
    drop(log);
    let forge_page_1 = |dir: &Path| {
        forge_page(dir, 1, |record| {
            record[CHILDREN_AT + 32 * 32] ^= 1;
            record[36] ^= 0x80;
        })
    };
    forge_page_1(dir.path());
    // Read-only: a writer's hashing thread could find the header first.
    let log = Log::open_read_only(dir.path()).unwrap();
    let proof = log.inclusion_proof(offsets[0], Some(300)).unwrap();
    let head = log.tree_head(Some(300)).unwrap();
    assert_eq!(proof.root, head.root, "the proof's root is not the head's");
    assert_eq!(proof.root, true_root);
    proof.verify(Some(&head.root)).unwrap();
    drop(log);

    forge_page_1(dir.path());
    // Read-only: a writer's hashing thread could find the header first.
    let log = Log::open_read_only(dir.path()).unwrap();
    let consistency = log.consistency_proof(100, Some(300)).unwrap();
    assert_eq!(consistency, true_consistency);
    assert_eq!(log.tree_head(Some(300)).unwrap().root, consistency.new_root);
}

#[test]
fn pages_over_records_a_crash_took_away_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 3_000);
    let durable_end = log.end_offset();
    for i in 0..3_000u32 {
        log.append(&i.to_le_bytes()).unwrap();
    }
    // Pages now cover unsynced records too.
    assert_eq!(log.tree_head(None).unwrap().tree_size, 6_000);
    assert_eq!(log.rollup_report().pages[0].0, 23);
    // What a power cut could leave: the page files as they are, the unsynced records gone.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    drop(log);
    let segment = copy.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + durable_end as usize..].fill(0);
    std::fs::write(&segment, bytes).unwrap();
    std::fs::remove_file(copy.path().join("DURABLE")).ok();

    // A read-only handle leaves the files alone: the stale pages go when they are loaded.
    let pages = copy.path().join("rollup-0.pages");
    let pages_len = || std::fs::metadata(&pages).unwrap().len();
    let stored_len = pages_len();
    let log = Log::open_read_only(copy.path()).unwrap();
    assert_eq!(log.end_offset(), durable_end);
    let report = log.rollup_report();
    assert_eq!(report.entries_kept_on_open, 11 * 256, "{report:?}");
    assert!(report.dropped.as_deref().unwrap_or("").contains("do not match"), "{report:?}");
    drop(log);
    assert_eq!(pages_len(), stored_len);
    // A writer's open cuts them from the files before anything can be appended over them.
    let log = Log::open_with(copy.path(), options()).unwrap();
    assert_eq!(log.end_offset(), durable_end);
    assert_eq!(pages_len() * 23, stored_len * 11, "the pages past the end outlived the open");
    assert_eq!(log.open_report().merkle_pages_dropped, 12);
    let report = log.rollup_report();
    assert_eq!(report.entries_kept_on_open, 11 * 256, "{report:?}");
    let sizes = [1, 2_999, 3_000];
    let with_pages = answers(&log, &sizes);
    drop(log);
    assert_eq!(answers_without_pages(copy.path(), &sizes), with_pages);
}

#[test]
fn pages_after_a_salvaged_span_are_dropped_and_proofs_skip_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 3_000);
    let offsets: Vec<u64> = log.replay(0).map(|r| r.unwrap().offset).collect();
    log.tree_head(None).unwrap();
    log.close().unwrap();
    // Damage record 1000's payload.
    let segment = dir.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + offsets[1_000] as usize + 32] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();

    let salvage = Options { recovery: RecoveryMode::Salvage, ..options() };
    let log = Log::open_with(dir.path(), salvage).unwrap();
    assert_eq!(log.open_report().repair.as_ref().unwrap().damaged.len(), 1);
    let report = log.rollup_report();
    assert_eq!(report.entries_kept_on_open, 3 * 256, "{report:?}");
    // The gap is not an entry: 2,999 entries, record 1001 is entry 1000.
    let head = log.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 2_999);
    let proof = log.inclusion_proof(offsets[1_001], None).unwrap();
    assert_eq!(proof.leaf_index, 1_000);
    proof.verify(Some(&head.root)).unwrap();
    let with_pages = answers(&log, &[2_999]);
    drop(log);
    assert_eq!(answers_without_pages(dir.path(), &[2_999]), with_pages);
}

#[test]
fn no_page_file_is_written_with_the_rollup_off_and_a_reader_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let off = Options { merkle_rollup: false, ..options() };
    let mut log = Log::open_with(dir.path(), off).unwrap();
    for i in 0..1_000u32 {
        log.append(&i.to_le_bytes()).unwrap();
    }
    let head = log.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 1_000);
    assert!(!log.rollup_report().stored_pages);
    log.close().unwrap();
    assert!(!page_file(dir.path(), 0).exists());
    let read_only = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.tree_head(None).unwrap(), head);
    assert_eq!(read_only.rollup_report().pages[0], (0, 3), "kept in memory");
    assert!(!page_file(dir.path(), 0).exists());
    // A new writer hashes the log into pages in the background, and answers the same.
    let log = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(log.tree_head(None).unwrap(), head);
    assert_eq!(std::fs::metadata(page_file(dir.path(), 0)).unwrap().len(), 3 * 9328);
}
