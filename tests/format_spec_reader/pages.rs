//! The stored pages of the Merkle tree, read from `FORMAT.md` section 12.3 alone: every field
//! of every record is recomputed from the spec reader's records and compared, and the roots
//! the pages give are the library's tree heads.

use sha2::{Digest, Sha256};

use super::{agree_records, frame_stride, u16_at, u64_at, SpecRecord, HEADER_LEN};
use chronicle::{Log, Options};

/// Section 12.3: record size, and where its parts are.
const RECORD: usize = 9328;
const CHILDREN: usize = 168;
const NODES: usize = 8360;
const CRC: usize = 9320;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Section 12.1: leaf hash and node hash.
fn leaf(record: &SpecRecord) -> [u8; 32] {
    let (offset, time) = (record.offset.to_le_bytes(), record.timestamp_ms.to_le_bytes());
    sha256(&[&[0], &offset, &time, &record.payload])
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[1], left, right])
}

/// The rows of a perfect tree over `children`: `rows[h]` holds the nodes of height `h`.
fn rows(children: &[[u8; 32]]) -> Vec<Vec<[u8; 32]>> {
    let mut rows = vec![children.to_vec()];
    while rows.last().unwrap().len() > 1 {
        let next = rows.last().unwrap().chunks(2).map(|p| node(&p[0], &p[1])).collect();
        rows.push(next);
    }
    rows
}

/// What a page must hold, from the entries (or the pages below) it covers.
struct Expected {
    children: Vec<[u8; 32]>,
    first: (u64, u64),
    last: (u64, u64, u64),
}

/// Checks page `k` of `level` in `bytes` against `expected`, and returns its root and hash.
fn check_page(
    bytes: &[u8],
    level: u8,
    k: u64,
    log_id: u64,
    prev: [u8; 32],
    expected: &Expected,
) -> ([u8; 32], [u8; 32]) {
    let r = &bytes[k as usize * RECORD..(k as usize + 1) * RECORD];
    let what = format!("level {level} page {k}");
    assert_eq!(&r[0..4], b"CHRP", "{what}: magic");
    assert_eq!((u16_at(r, 4), r[6], r[7]), (1, level, 0), "{what}: version, level, reserved");
    assert_eq!(u64_at(r, 8), log_id, "{what}: log_id");
    let per_page = 256u64.pow(u32::from(level) + 1);
    assert_eq!((u64_at(r, 16), u64_at(r, 24)), (k, k * per_page), "{what}: index, first_entry");
    assert_eq!((u64_at(r, 32), u64_at(r, 56)), expected.first, "{what}: first offset and time");
    let last = (u64_at(r, 40), u64_at(r, 48), u64_at(r, 64));
    assert_eq!(last, expected.last, "{what}: last offset, end offset and time");
    let children: Vec<[u8; 32]> = (0..256)
        .map(|i| r[CHILDREN + 32 * i..CHILDREN + 32 * (i + 1)].try_into().unwrap())
        .collect();
    assert!(children == expected.children, "{what}: children");
    let rows = rows(&children);
    let inner: Vec<u8> = rows[4..8].iter().flatten().flatten().copied().collect();
    assert!(r[NODES..CRC] == inner[..], "{what}: inner nodes of heights 4 to 7");
    assert_eq!(r[72..104], rows[8][0], "{what}: root");
    assert_eq!(r[104..136], prev, "{what}: prev_hash");
    let hash = sha256(&[&r[..136]]);
    assert_eq!(r[136..168], hash, "{what}: page_hash");
    let crc = u32::from_le_bytes(r[CRC..CRC + 4].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(&r[..CRC]), "{what}: crc");
    assert_eq!(r[CRC + 4..], [0; 4], "{what}: reserved");
    (rows[8][0], hash)
}

#[test]
fn stored_pages_are_what_section_12_3_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        Log::open_with(dir.path(), Options { segment_bytes: 1 << 20, ..Options::default() })
            .unwrap();
    let n = 66_000u64;
    for i in 0..n {
        log.append(&vec![i as u8; (i % 50) as usize]).unwrap();
    }
    let head = log.tree_head(Some(65_536)).unwrap();
    log.close().unwrap();
    let records = agree_records(dir.path()).unwrap();
    assert_eq!(records.len() as u64, n);
    let first_segment = std::fs::read(dir.path().join(format!("{:020}.seg", 0))).unwrap();
    let log_id = u64_at(&first_segment[..HEADER_LEN], 48);

    let level0 = std::fs::read(dir.path().join("rollup-0.pages")).unwrap();
    assert_eq!(level0.len(), (n as usize / 256) * RECORD);
    let mut prev = [0u8; 32];
    let mut roots = Vec::new();
    for k in 0..n / 256 {
        let entries = &records[k as usize * 256..(k as usize + 1) * 256];
        let (first, last) = (&entries[0], &entries[255]);
        let expected = Expected {
            children: entries.iter().map(leaf).collect(),
            first: (first.offset, first.timestamp_ms),
            last: (last.offset, last.offset + frame_stride(last.payload.len()), last.timestamp_ms),
        };
        let (root, hash) = check_page(&level0, 0, k, log_id, prev, &expected);
        roots.push((root, expected));
        prev = hash;
    }
    let level1 = std::fs::read(dir.path().join("rollup-1.pages")).unwrap();
    assert_eq!(level1.len(), RECORD);
    let expected = Expected {
        children: roots[..256].iter().map(|(root, _)| *root).collect(),
        first: roots[0].1.first,
        last: roots[255].1.last,
    };
    let (root, _) = check_page(&level1, 1, 0, log_id, [0; 32], &expected);
    // The root of level-1 page 0 is the root of the tree of the first 65,536 entries.
    assert_eq!(root, head.root.0);
    assert!(!dir.path().join("rollup-2.pages").exists());
}
