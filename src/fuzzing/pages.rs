//! The rollup-pages target: page records from arbitrary bytes, and a log whose page file is
//! overwritten by them, must never panic and never change an answer.

use std::fs;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::directory::ScratchDir;
use crate::log::{Log, Options, WithoutBackgroundThreads};
use crate::rollup::page::{Page, PAGE_RECORD_LEN};

/// Mode byte of a pages input: the rest is one page record to decode.
pub const PAGES_DECODE: u8 = 0;
/// Mode byte of a pages input: a flags byte, then a mask for a log's level-0 page file.
pub const PAGES_IN_LOG: u8 = 1;
/// Flag: after the mask, give every whole record the log's id and a right header hash and
/// CRC-32, so that the damage gets past the checksums to the checks behind them.
pub const PAGES_RESEAL: u8 = 1;
/// Flag: the page file gets the mask's length (cut or extended with the mask's bytes).
pub const PAGES_SET_LENGTH: u8 = 2;

/// Records in the target's log: two full level-0 pages and part of a third.
const RECORDS: u32 = 600;

/// Decodes page records, or damages a real log's pages, from arbitrary bytes.
///
/// Input: a mode byte, then
/// - [`PAGES_DECODE`]: a level byte, then a page record. Decoding never panics; a record
///   that decodes encodes back to the same bytes, and every node it answers for is readable.
/// - [`PAGES_IN_LOG`]: a flags byte, then a mask. A log of 600 records is built and its pages
///   stored; the mask is XORed over its level-0 page file (bytes beyond the file are
///   appended with [`PAGES_SET_LENGTH`]; see also [`PAGES_RESEAL`]). `verify_pages` must name
///   every stored page that differs from the intact one. The log is reopened: without
///   [`PAGES_RESEAL`] its heads and proofs must equal those of the intact log; with it, every
///   proof it gives must verify against the heads it gives.
pub fn rollup_pages(data: &[u8]) {
    match data.split_first() {
        Some((&PAGES_DECODE, rest)) => decode(rest),
        Some((&PAGES_IN_LOG, [flags, mask @ ..])) => in_log(*flags, mask),
        _ => {}
    }
}

fn decode(bytes: &[u8]) {
    let Some((&level, record)) = bytes.split_first() else { return };
    let index =
        record.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let log_id =
        record.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let _ = Page::decode_header(record, level, index, log_id);
    if let Ok(page) = Page::decode(record, level, index, log_id) {
        assert_eq!(page.encode(), record, "a decoded page encodes to other bytes");
        for height in 0..=8 {
            for child in (0..256).step_by(1 << height) {
                let _ = page.node(height, child);
            }
        }
    }
}

/// Heads and proofs of a log, as text, to compare.
fn answers(log: &Log) -> Vec<String> {
    let mut out = Vec::new();
    for size in [None, Some(1), Some(255), Some(256), Some(257), Some(512), Some(599)] {
        out.push(format!("{:?}", log.tree_head(size)));
    }
    let offsets: Vec<u64> = log.replay(0).filter_map(|r| r.ok()).map(|r| r.offset).collect();
    for index in [0, 255, 256, 300, 599] {
        out.push(format!("{:?}", log.inclusion_proof(offsets[index], Some(590))));
    }
    out.push(format!("{:?}", log.consistency_proof(300, None)));
    out.push(format!("{:?}", log.tree_head_at(u64::MAX)));
    out
}

/// The intact log every `PAGES_IN_LOG` input starts from: its files and its answers. Built
/// once per process (with the same options, the same records and so the same answers each
/// time), since building it took most of an input's time.
struct Template {
    files: Vec<(std::ffi::OsString, Vec<u8>)>,
    answers: Vec<String>,
}

const PAGE_FILE: &str = "rollup-0.pages";

fn options() -> Options {
    Options { segment_bytes: 16 << 10, ..Options::default() }
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let scratch = ScratchDir::new();
        let mut log = Log::open_with(&scratch.path, options()).expect("a new log opens");
        for i in 0..RECORDS {
            log.append(&i.to_le_bytes().repeat(1 + i as usize % 5)).expect("an append succeeds");
        }
        let answers = answers(&log);
        log.close().expect("the log closes");
        let files = fs::read_dir(&scratch.path)
            .expect("the log directory lists")
            .map(|entry| {
                let entry = entry.expect("a directory entry");
                (entry.file_name(), fs::read(entry.path()).expect("a log file reads"))
            })
            .collect();
        Template { files, answers }
    })
}

fn in_log(flags: u8, mask: &[u8]) {
    let _threads = WithoutBackgroundThreads::new();
    let template = template();
    let scratch = ScratchDir::new();
    let dir = &scratch.path;
    for (name, bytes) in &template.files {
        fs::write(dir.join(name), bytes).expect("a log file is written");
    }
    let expected = &template.answers;
    let path = dir.join(PAGE_FILE);
    let intact = fs::read(&path).expect("the pages were stored");
    let log_id = intact.get(8..16).map_or([0; 8], |b| b.try_into().unwrap_or_default());

    let mut pages = intact.clone();
    if flags & PAGES_SET_LENGTH != 0 {
        pages.resize(mask.len(), 0);
    }
    for (at, m) in mask.iter().enumerate() {
        match pages.get_mut(at) {
            Some(byte) => *byte ^= m,
            None if flags & PAGES_SET_LENGTH != 0 => pages.push(*m),
            None => break,
        }
    }
    if flags & PAGES_RESEAL != 0 {
        for record in pages.chunks_exact_mut(PAGE_RECORD_LEN) {
            record[8..16].copy_from_slice(&log_id);
            let hash = Sha256::digest(&record[..136]);
            record[136..168].copy_from_slice(&hash);
            let crc = crc32fast::hash(&record[..PAGE_RECORD_LEN - 8]);
            record[PAGE_RECORD_LEN - 8..PAGE_RECORD_LEN - 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    fs::write(&path, &pages).expect("the page file is written");

    // What verify_pages must name: every whole record that differs from the intact one.
    let report = Log::open_read_only(dir).expect("the log opens").verify_pages(None, None);
    let report = report.expect("verify_pages reads the log");
    for (index, (now, was)) in
        pages.chunks_exact(PAGE_RECORD_LEN).zip(intact.chunks_exact(PAGE_RECORD_LEN)).enumerate()
    {
        let named = report.problems.iter().any(|p| p.level == 0 && p.index == index as u64);
        assert!(now == was || named, "page {index} differs but verify_pages missed it: {report:?}");
    }
    let log = Log::open_with(dir, options()).expect("the log reopens");
    let read_only = Log::open_read_only(dir).expect("the log opens read-only");
    if flags & PAGES_RESEAL == 0 {
        // Damage the checksums catch never changes an answer.
        assert_eq!(&answers(&log), expected, "damaged pages changed an answer");
        assert_eq!(&answers(&read_only), expected, "a read-only open answered otherwise");
    } else {
        // A page forged behind good checksums may change a head (verify_pages names it,
        // above), but every proof handed out still verifies against the log's own heads.
        proofs_verify(&log);
        proofs_verify(&read_only);
    }
}

/// Every proof `log` gives verifies against the head it gives next for the same size (a
/// forged page a proof's self-check finds is rebuilt first, so the head asked before the
/// proof may still be the forged one).
fn proofs_verify(log: &Log) {
    let offsets: Vec<u64> = log.replay(0).filter_map(|r| r.ok()).map(|r| r.offset).collect();
    for size in [1, 255, 256, 300, 600] {
        for index in [0, size / 2, size - 1] {
            if let Ok(proof) = log.inclusion_proof(offsets[index as usize], Some(size)) {
                let head = log.tree_head(Some(size)).expect("a head of a proven size");
                assert!(proof.verify(Some(&head.root)).is_ok(), "inclusion of {index} in {size}");
            }
        }
        let old_size = 1 + size / 3;
        if let Ok(proof) = log.consistency_proof(old_size, Some(size)) {
            let old = log.tree_head(Some(old_size)).expect("a head of a proven size");
            let new = log.tree_head(Some(size)).expect("a head of a proven size");
            assert!(proof.verify(Some((&old.root, &new.root))).is_ok(), "consistency to {size}");
        }
    }
}

/// Seeds: a real page record (decoded), and masks that leave the pages intact, damage one
/// byte, forge a child and an offset behind good checksums, cut the file, and extend it.
pub fn seed_pages() -> Vec<(String, Vec<u8>)> {
    let children: Vec<crate::rollup::Hash> = (0..256u32)
        .map(|i| crate::rollup::leaf_hash(u64::from(i) * 8, 7, &i.to_le_bytes()))
        .collect();
    let span = crate::rollup::page::Span {
        first_offset: 0,
        last_offset: 255 * 8,
        end_offset: 256 * 8,
        first_write_ms: 7,
        last_write_ms: 7,
    };
    let mut rows = vec![children];
    while let Some(row) = rows.last().filter(|row| row.len() > 2) {
        let next = row.chunks(2).map(|p| crate::rollup::node_hash(&p[0], &p[1])).collect();
        rows.push(next);
    }
    let page = Page::from_rows(0, 0, 42, span, crate::rollup::Hash([0; 32]), rows);
    let decode = [&[PAGES_DECODE, 0][..], &page.encode()].concat();
    let mut seeds = vec![("decode-page".to_string(), decode)];
    let mut mask = |name: &str, flags: u8, edits: &[(usize, u8)], len: usize| {
        let mut bytes = vec![0u8; len];
        for &(at, value) in edits {
            bytes[at] = value;
        }
        seeds.push((name.to_string(), [&[PAGES_IN_LOG, flags][..], &bytes].concat()));
    };
    mask("intact", 0, &[], 0);
    mask("flipped-child", 0, &[(PAGE_RECORD_LEN + 200, 1)], PAGE_RECORD_LEN + 201);
    mask("forged-child", PAGES_RESEAL, &[(300, 0x80)], 301);
    mask("forged-offsets", PAGES_RESEAL, &[(PAGE_RECORD_LEN + 41, 1)], PAGE_RECORD_LEN + 42);
    let link = PAGE_RECORD_LEN + 104;
    mask("forged-link-after-bad-page", PAGES_RESEAL, &[(7, 1), (link, 1)], link + 1);
    mask("cut", PAGES_SET_LENGTH, &[], PAGE_RECORD_LEN + 100);
    mask("extended", PAGES_SET_LENGTH | PAGES_RESEAL, &[], 3 * PAGE_RECORD_LEN);
    seeds
}
