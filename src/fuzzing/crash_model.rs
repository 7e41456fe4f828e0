//! The crash-model target: a random sequence of appends, batches, syncs, closes and power
//! cuts on a real log, checked after every cut against a model of what was acknowledged.
//!
//! A power cut is simulated on a copy of the log's directory taken while the writer is open
//! (the copy is what the page cache held): every byte past the last durable point may be lost,
//! 4 KiB page by page, as the input chooses; segment files and page files made since may be
//! gone or zeroed. The copy must then open and hold a prefix of what was appended that
//! includes every acknowledged record; its tree head, read through whatever pages it stored,
//! must equal the root computed from its records, at once or after later appends.

use std::fs;
use std::path::Path;

use super::directory::ScratchDir;
use crate::format::{SEGMENT_FILE_SUFFIX, SEGMENT_HEADER_LEN};
use crate::log::{Log, Options, WithoutBackgroundThreads};
use crate::rollup::leaf_hash;
use crate::rollup::tree::mem_root;

/// Operations an input may hold, so every input stays cheap.
const OPS_MAX: usize = 96;
/// File pages whose loss the input chooses one by one.
const PAGE: u64 = 4096;

/// What the log must hold: everything appended, and how much of it is durable.
struct Model {
    appended: Vec<Vec<u8>>,
    acknowledged: usize,
    /// The log's end offset when the last sync returned.
    durable_end: u64,
}

/// Reads bytes of the input, then zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fn options() -> Options {
    Options {
        segment_bytes: super::SEGMENT_BYTES,
        record_bytes_max: Some(super::RECORD_BYTES_MAX),
        ..Options::default()
    }
}

/// Runs the input's operations; see the module docs.
///
/// Input: a sequence of operations, one byte each (`b % 9`), some followed by an argument:
/// 0–2 `append` (length byte), 3 `append_sync` (length byte), 4 `append_batch` and 5
/// `append_batch_sync` (count byte, then a length byte), 6 `sync`, 7 `close` and reopen, 8 a
/// power cut (then one byte per file choosing what it loses, and bits choosing lost pages).
/// After an operation 0–6 whose byte has bit 0 of `b / 9` set, a tree head is asked for,
/// which hashes the records and stores their Merkle pages, synced or not (as the hashing
/// thread does, so pages may cover records a later cut takes). After an 8 with that bit set, the
/// reopened log's tree head is checked against its records at once; without it, the pages
/// are first loaded by the next head asked for (which checks only its size) or the check at
/// the end, after whatever was appended since (so pages over records the cut took would lie
/// over new ones). At the end, the head is always checked against the records.
///
/// The log starts no background threads (`WithoutBackgroundThreads`), so the same input
/// always does the same work: pages are stored only by those heads, and a spare segment is
/// made as soon as the writer asks for it.
pub fn crash_model(data: &[u8]) {
    let _threads = WithoutBackgroundThreads::new();
    let mut input = Input(data);
    let mut dir = ScratchDir::new();
    let mut log = Log::open_with(&dir.path, options()).expect("a new log opens");
    let mut model = Model { appended: Vec::new(), acknowledged: 0, durable_end: 0 };
    for _ in 0..OPS_MAX {
        if input.0.is_empty() {
            break;
        }
        let op_byte = input.byte();
        let (op, store_pages) = (op_byte % 9, (op_byte / 9) & 1 == 1);
        let payload = |model: &Model, len: u8| -> Vec<u8> {
            let n = model.appended.len() as u32;
            n.to_le_bytes().iter().copied().cycle().take(4 + usize::from(len) * 3).collect()
        };
        match op {
            0..=3 => {
                let record = payload(&model, input.byte());
                let offset = if op == 3 { log.append_sync(&record) } else { log.append(&record) };
                offset.expect("an append succeeds");
                model.appended.push(record);
                if op == 3 {
                    acknowledge(&mut model, &log);
                }
            }
            4 | 5 => {
                // Small enough that a whole batch fits in one segment.
                let count = 1 + usize::from(input.byte() % 8);
                let len = input.byte() % 32;
                let records: Vec<Vec<u8>> = (0..count)
                    .map(|i| {
                        let mut r = payload(&model, len);
                        r.push(i as u8);
                        r
                    })
                    .collect();
                let written = match op {
                    5 => log.append_batch_sync(&records),
                    _ => log.append_batch(&records),
                };
                written.expect("a batch succeeds");
                model.appended.extend(records);
                if op == 5 {
                    acknowledge(&mut model, &log);
                }
            }
            6 => {
                log.sync().expect("a sync succeeds");
                acknowledge(&mut model, &log);
            }
            7 => {
                log.close().expect("a close succeeds");
                model.acknowledged = model.appended.len();
                log = Log::open_with(&dir.path, options()).expect("a closed log reopens");
                model.durable_end = log.end_offset();
            }
            _ => {
                let copy = ScratchDir::new();
                copy_dir(&dir.path, &copy.path);
                drop(log);
                lose_unsynced(&copy.path, model.durable_end, &mut input);
                dir = copy;
                log = reopen_and_check(&dir.path, &mut model, store_pages);
            }
        }
        if store_pages && op <= 6 {
            let head = log.tree_head(None).unwrap_or_else(|e| panic!("a tree head: {e}"));
            assert_eq!(head.tree_size, model.appended.len() as u64, "a head of another size");
        }
    }
    check_head(&log);
}

/// The tree head over every record of `log`, read through whatever pages it stored, must
/// equal the root computed here from the records themselves; returns the records' payloads.
fn check_head(log: &Log) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut leaves = Vec::new();
    for record in log.replay(log.start_offset()) {
        let record = record.unwrap_or_else(|e| panic!("replay: {e}"));
        leaves.push(leaf_hash(record.offset, record.write_timestamp_ms, &record.payload));
        payloads.push(record.payload.to_vec());
    }
    let head = log.tree_head(None).unwrap_or_else(|e| panic!("a tree head: {e}"));
    assert_eq!(head.tree_size, leaves.len() as u64);
    let root = mem_root(&leaves, leaves.len() as u64);
    assert_eq!(head.root, root, "stored pages gave another head than the records");
    payloads
}

/// Records a sync that returned.
fn acknowledge(model: &mut Model, log: &Log) {
    model.acknowledged = model.appended.len();
    model.durable_end = log.end_offset();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("the log directory lists") {
        let entry = entry.expect("a directory entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("a file copies");
    }
}

/// What a power cut may take: in each segment, bytes past the durable point, a 4 KiB file
/// page at a time; a segment that holds nothing durable may vanish or be all zeros; page
/// files may lose their tail or vanish.
fn lose_unsynced(dir: &Path, durable_end: u64, input: &mut Input<'_>) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("the copy lists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    // Directory entries become durable in the order they were made (FORMAT.md 11): once a
    // segment made since the last sync is lost, so is every later one.
    let mut segment_lost = false;
    for name in names {
        let path = dir.join(&name);
        let choice = input.byte();
        if let Some(base) =
            name.strip_suffix(SEGMENT_FILE_SUFFIX).and_then(|s| s.parse::<u64>().ok())
        {
            let mut bytes = fs::read(&path).expect("a segment reads");
            let header = SEGMENT_HEADER_LEN as u64;
            // The first byte that may be lost, as a file position.
            let lost_from = header + durable_end.saturating_sub(base);
            let made_since_sync = base >= durable_end && base > 0;
            if made_since_sync && (segment_lost || choice.is_multiple_of(4)) {
                fs::remove_file(&path).expect("a segment is removed");
                segment_lost = true;
                continue;
            }
            if made_since_sync && choice % 4 == 1 {
                bytes.fill(0);
            } else {
                let mut page_start = lost_from / PAGE * PAGE;
                let mut bits = 0u8;
                let mut page = 0;
                while page_start < bytes.len() as u64 {
                    if page % 8 == 0 {
                        bits = input.byte();
                    }
                    if bits & (1 << (page % 8)) != 0 {
                        let from = page_start.max(lost_from) as usize;
                        let to = ((page_start + PAGE) as usize).min(bytes.len());
                        bytes[from..to].fill(0);
                    }
                    page += 1;
                    page_start += PAGE;
                }
            }
            fs::write(&path, bytes).expect("a segment is written");
        } else if name.ends_with(".pages") {
            match choice % 3 {
                0 => {}
                1 => fs::remove_file(&path).expect("a page file is removed"),
                _ => {
                    let len = fs::metadata(&path).map_or(0, |m| m.len());
                    let keep = len * u64::from(input.byte()) / 255;
                    let file = fs::OpenOptions::new().write(true).open(&path);
                    file.and_then(|f| f.set_len(keep)).expect("a page file is cut");
                }
            }
        } else if name == "next.seg.tmp" && choice.is_multiple_of(2) {
            fs::remove_file(&path).expect("a spare segment is removed");
        }
    }
}

/// Opens the log after a cut and checks it against the model, which then becomes what the
/// log holds (all of it durable: recovery syncs what survived). With `check_head_now`, the
/// tree head too ([`check_head`]); else the pages are first loaded later.
fn reopen_and_check(dir: &Path, model: &mut Model, check_head_now: bool) -> Log {
    let log = Log::open_with(dir, options())
        .unwrap_or_else(|e| panic!("the log does not open after a power cut: {e}"));
    let recovered: Vec<Vec<u8>> = if check_head_now {
        check_head(&log)
    } else {
        let replay = log.replay(log.start_offset());
        replay
            .map(|r| r.unwrap_or_else(|e| panic!("replay after a power cut: {e}")))
            .map(|r| r.payload.to_vec())
            .collect()
    };
    assert!(
        recovered.len() >= model.acknowledged,
        "{} acknowledged records, {} recovered",
        model.acknowledged,
        recovered.len()
    );
    assert!(recovered.len() <= model.appended.len(), "records that were never appended");
    assert!(
        recovered[..] == model.appended[..recovered.len()],
        "not a prefix of what was appended"
    );
    model.appended = recovered;
    model.acknowledged = model.appended.len();
    model.durable_end = log.end_offset();
    log
}

/// Seeds: appends then a cut that loses everything unsynced; a cut across a segment roll;
/// batches; a close and reopen; and repeated cuts.
pub fn seed_crash_models() -> Vec<(String, Vec<u8>)> {
    let appends = |n: usize, len: u8| -> Vec<u8> { (0..n).flat_map(|_| [0, len]).collect() };
    let all_pages = [0xff; 16];
    let seeds = [
        (
            "append-sync-cut",
            [appends(5, 9), vec![3, 20], appends(4, 30), vec![8], all_pages.to_vec()].concat(),
        ),
        (
            "roll-then-cut",
            [appends(3, 10), vec![6], appends(40, 60), vec![8, 0, 0xff, 1, 0x55]].concat(),
        ),
        ("roll-cut-segment-zeroed", [vec![6], appends(40, 60), vec![8, 5, 1, 1, 1, 1]].concat()),
        ("batches", [vec![4, 5, 12, 5, 3, 40, 6, 4, 7, 9, 8, 0xaa, 0x0f]].concat()),
        ("close-reopen", [appends(10, 50), vec![7], appends(3, 3), vec![8, 0, 0]].concat()),
        // One level-0 page over the first 256 of 264 records hashed, 248 of them unsynced (a
        // batch of 8 with a head: 4 + 9); a
        // cut that removes every segment made since the sync and keeps the pages (0x84 is
        // also a sync where it is read as an operation); then records of other lengths past
        // the stale page's end, and the pages first loaded at the end.
        (
            "stale-pages-under-new-records",
            [
                vec![4, 7, 10, 6],
                [4, 7, 10].repeat(31),
                vec![13, 7, 10, 8],
                vec![0x84; 16],
                [4, 7, 20].repeat(25),
            ]
            .concat(),
        ),
        (
            "cuts-again",
            [appends(8, 80), vec![8, 0, 0xff], appends(8, 80), vec![6, 8, 1, 0xff]].concat(),
        ),
    ];
    seeds.into_iter().map(|(name, bytes)| (name.to_string(), bytes)).collect()
}
