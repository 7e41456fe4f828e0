//! Signed checkpoints and tlog-tiles exports, checked by implementations Chronicle did not
//! write:
//!
//! - `tlog_tiles` (C2SP tlog-tiles and tlog-checkpoint, a port of Go's `sumdb/tlog`) reads the
//!   exported tiles, recomputes the checkpoint's root from them, authenticates every entry
//!   bundle against it, and proves inclusion and consistency from the tiles alone;
//! - `signed_note` (C2SP signed-note, a port of Go's `sumdb/note`) checks the checkpoints'
//!   signatures and reads Chronicle's key files;
//! - `ct-merkle` (an RFC 6962 implementation of its own) checks Chronicle's inclusion and
//!   consistency proofs against the roots of the signed checkpoints.
//!
//! Go's reference verifier, where a Go toolchain is installed, is in `transparency_go.rs`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chronicle::rollup::leaf_data;
use chronicle::transparency::{
    entries_path, export_tiles, tile_path, Checkpoint, ExportReport, SigningKey, TileExport,
    VerifierKey,
};
use chronicle::{Log, StorageError};
use common::Rng;
use ct_merkle::{ConsistencyProof as CtConsistency, InclusionProof as CtInclusion, RootHash};
use sha2::Sha256;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{
    check_record, check_tree, prove_record, prove_tree, record_hash, stored_hash_index, tree_hash,
    HashReader as _, Tile, TileHashReader, TileReader,
};

const ORIGIN: &str = "example.com/chronicle-test";

/// An export directory as a tlog-tiles client sees it: tiles fetched by the paths the crate
/// computes (its `Tile::path` is Go's `tile/<H>/<L>/<N>`; C2SP drops the height).
struct Served(PathBuf);

fn c2sp_path(tile: &Tile) -> String {
    let go = tile.path();
    let rest = go.strip_prefix("tile/8/").expect("height-8 tiles");
    format!("tile/{rest}")
}

impl TileReader for Served {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|tile| {
                let path = c2sp_path(tile);
                // The crate's path encoding and Chronicle's agree.
                let width = u64::from(tile.width());
                assert_eq!(path, tile_path(tile.level(), tile.level_index(), width));
                fs::read(self.0.join(&path))
                    .map_err(|e| tlog_tiles::Error::InvalidInput(format!("{path}: {e}")))
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

fn hash(h: &chronicle::rollup::Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h.0)
}

/// Entries of an entry bundle: big-endian u16 length, then the entry.
fn bundle_entries(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        entries.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    entries
}

/// A log's records as (offset, leaf data).
fn records(log: &Log) -> Vec<(u64, Vec<u8>)> {
    log.replay(0)
        .map(|r| {
            let r = r.unwrap();
            (r.offset, leaf_data(r.offset, r.write_timestamp_ms, &r.payload))
        })
        .collect()
}

/// What a signed checkpoint says, as `signed_note` and `tlog_tiles` read it.
fn read_checkpoint(out: &Path, vkey: &str) -> (u64, tlog_tiles::Hash) {
    let bytes = fs::read(out.join("checkpoint")).unwrap();
    let note = Note::from_bytes(&bytes).unwrap();
    let verifier = StandardVerifier::new(vkey).unwrap();
    let (verified, _) = note.verify(&VerifierList::new(vec![Box::new(verifier)])).unwrap();
    assert_eq!(verified.len(), 1);
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    assert_eq!(checkpoint.origin(), ORIGIN);
    (checkpoint.size(), *checkpoint.hash())
}

/// Audits an export the way a client would, from its files alone, then checks Chronicle's
/// own proofs against its signed checkpoint: returns the checkpoint's size and root.
fn audit(out: &Path, vkey: &str, log: &Log, rng: &mut Rng) -> (u64, tlog_tiles::Hash) {
    let (size, root) = read_checkpoint(out, vkey);
    let served = Served(out.to_path_buf());
    let reader = TileHashReader::new(size, root, &served);
    assert_eq!(tree_hash(size, &reader).unwrap(), root, "root recomputed from the tiles");
    let head = log.tree_head(Some(size)).unwrap();
    assert_eq!(hash(&head.root), root);

    // Every entry of every bundle hashes to its (authenticated) leaf, and is the record.
    let records = records(log);
    for bundle in 0..size.div_ceil(256) {
        let width = (size - bundle * 256).min(256);
        let entries = bundle_entries(&fs::read(out.join(entries_path(bundle, width))).unwrap());
        assert_eq!(entries.len() as u64, width, "bundle {bundle}");
        let indexes: Vec<u64> =
            (bundle * 256..bundle * 256 + width).map(|i| stored_hash_index(0, i)).collect();
        let leaves = reader.read_hashes(&indexes).unwrap();
        for (k, (entry, leaf)) in entries.iter().zip(&leaves).enumerate() {
            assert_eq!(record_hash(entry), *leaf, "entry {}", bundle * 256 + k as u64);
            assert_eq!(*entry, records[(bundle * 256) as usize + k].1);
        }
    }

    // Sampled entries: proved from the tiles, and by Chronicle's proofs against the checkpoint.
    let ct_root = RootHash::<Sha256>::new(root.0.into(), size);
    let verifier = VerifierKey::parse(vkey).unwrap();
    let checkpoint = Checkpoint::open(&fs::read(out.join("checkpoint")).unwrap(), &verifier);
    let checkpoint = checkpoint.unwrap();
    assert_eq!((checkpoint.tree_size, checkpoint.root.0), (size, root.0));
    for _ in 0..8.min(size) {
        let i = rng.below(size);
        let (offset, data) = &records[i as usize];
        let proof = prove_record(size, i, &reader).unwrap();
        check_record(&proof, size, root, i, record_hash(data)).unwrap();
        let ours = log.inclusion_proof(*offset, Some(size)).unwrap();
        let ours_path: Vec<u8> = ours.audit_path.iter().flat_map(|h| h.0).collect();
        assert_eq!(ours_path, proof.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
        let ct_proof = CtInclusion::<Sha256>::from_bytes(ours_path);
        assert!(ct_root.verify_inclusion(data, i, &ct_proof).is_ok(), "entry {i} of {size}");
        checkpoint.check_inclusion(&ours).unwrap();
    }
    (size, root)
}

/// The consistency of an older export's checkpoint with the newer export's tiles, proved from
/// the tiles by `tlog_tiles` and by Chronicle's proof checked with `ct-merkle`.
fn check_consistent(
    out: &Path,
    log: &Log,
    old: (u64, tlog_tiles::Hash),
    new: (u64, tlog_tiles::Hash),
) {
    if old.0 == 0 || old.0 == new.0 {
        return;
    }
    let served = Served(out.to_path_buf());
    let reader = TileHashReader::new(new.0, new.1, &served);
    let proof = prove_tree(new.0, old.0, &reader).unwrap();
    check_tree(&proof, new.0, new.1, old.0, old.1).unwrap();
    let ours = log.consistency_proof(old.0, Some(new.0)).unwrap();
    let ours_bytes: Vec<u8> = ours.proof.iter().flat_map(|h| h.0).collect();
    assert_eq!(ours_bytes, proof.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
    let ct_proof = CtConsistency::<Sha256>::try_from_bytes(ours_bytes).unwrap();
    let (ct_old, ct_new) = (
        RootHash::<Sha256>::new(old.1 .0.into(), old.0),
        RootHash::<Sha256>::new(new.1 .0.into(), new.0),
    );
    assert!(ct_new.verify_consistency(&ct_old, &ct_proof).is_ok(), "{} to {}", old.0, new.0);
}

/// Every file under `dir`, relative, with its inode, modification time and bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, SystemTime, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(name, (meta.ino(), meta.modified().unwrap(), fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut files);
    }
    files
}

fn append_random(log: &mut Log, rng: &mut Rng, count: u64) {
    for _ in 0..count {
        let len = rng.below(40) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        log.append(&payload).unwrap();
    }
}

fn export(log: &Log, out: &Path, key: &SigningKey) -> ExportReport {
    export_tiles(log, out, &TileExport { origin: ORIGIN, key: Some(key) }).unwrap()
}

/// One log grows through the sizes where tiles fill and split (1, 255, 256, 257, 65,536,
/// 65,537) and random ones; after each step it is exported again into the same directory,
/// audited from the files alone, and proved consistent with every earlier export. Each
/// export changes no file an earlier one wrote but the checkpoint, and adds only the tiles of
/// the new entries; a fresh export of the final log holds the same files.
#[test]
fn exports_of_a_growing_log_verify_with_tlog_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, out) = (dir.path().join("log"), dir.path().join("out"));
    let mut log = Log::open(&log_dir).unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    let mut rng = Rng(24);

    let empty = export(&log, &out, &key);
    assert_eq!((empty.tree_size, empty.tiles_written, empty.bundles_written), (0, 0, 0));
    let mut exports = vec![read_checkpoint(&out, &vkey)];
    let sizes =
        [1, 255, 256, 257, 258 + rng.below(65_000), 65_536, 65_537, 65_538 + rng.below(600)];
    for size in sizes {
        let have = log.tree_head(None).unwrap().tree_size;
        append_random(&mut log, &mut rng, size - have);
        let before = snapshot(&out);
        let report = export(&log, &out, &key);
        assert_eq!(report.tree_size, size);
        assert_eq!(report.previous_tree_size, Some(exports.last().unwrap().0));
        let after = snapshot(&out);
        for (path, was) in &before {
            if path != "checkpoint" {
                assert_eq!(after.get(path), Some(was), "{path} changed at size {size}");
            }
        }
        let added: Vec<&String> = after.keys().filter(|p| !before.contains_key(*p)).collect();
        assert!(added.iter().all(|p| p.starts_with("tile/")), "{added:?}");
        assert_eq!(added.len() as u64, report.tiles_written + report.bundles_written);
        assert!(report.checkpoint_written);
        assert_ne!(after["checkpoint"], before["checkpoint"]);

        let audited = audit(&out, &vkey, &log, &mut rng);
        assert_eq!(audited.0, size);
        for old in &exports {
            check_consistent(&out, &log, *old, audited);
        }
        exports.push(audited);

        // Exporting again without appends changes nothing at all.
        let again = export(&log, &out, &key);
        assert_eq!((again.tiles_written, again.bundles_written, again.bytes_written), (0, 0, 0));
        assert!(!again.checkpoint_written);
        assert_eq!(snapshot(&out), after);
    }

    // A fresh export of the final log holds the same files; the incremental one also keeps
    // the partial tiles of the earlier checkpoints (clients holding those still find them).
    let fresh = dir.path().join("fresh");
    export(&log, &fresh, &key);
    let (fresh, incremental) = (snapshot(&fresh), snapshot(&out));
    for (path, (_, _, bytes)) in &fresh {
        assert_eq!(&incremental[path].2, bytes, "{path}");
    }
    for path in incremental.keys().filter(|p| !fresh.contains_key(*p)) {
        assert!(path.contains(".p/"), "{path} is only in the incremental export");
    }
    // The fresh export holds exactly the tiles C2SP tlog-tiles lays out for the tree: at each
    // level `l`, floor(size / 256^(l+1)) full tiles and a partial one of width
    // floor(size / 256^l) mod 256 if that is not 0, and the level-0 bundles likewise.
    let size = exports.last().unwrap().0;
    let mut expected = vec!["checkpoint".to_string()];
    for level in 0..8u8 {
        let hashes = size >> (8 * u32::from(level));
        let full = (0..hashes / 256).map(|n| (n, 256));
        for (n, width) in full.chain((hashes % 256 > 0).then_some((hashes / 256, hashes % 256))) {
            expected.push(tile_path(level, n, width));
            if level == 0 {
                expected.push(entries_path(n, width));
            }
        }
    }
    expected.sort();
    assert_eq!(fresh.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(fresh.contains_key("tile/0/255") && fresh.contains_key("tile/1/000"));
    assert!(fresh.contains_key("tile/2/000.p/1") && fresh.contains_key("tile/entries/255"));
    assert_eq!(fresh["tile/0/000"].2.len(), 8192);
}

/// A checkpoint signed by Chronicle verifies with `signed_note` and parses with `tlog_tiles`;
/// changing any one byte of it, in any of three ways, makes both Chronicle and `signed_note`
/// refuse it. Keys move both ways between Chronicle and `signed_note`, which sign the same
/// bytes.
#[test]
fn signed_checkpoints_verify_elsewhere_and_no_changed_byte_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    append_random(&mut log, &mut Rng(5), 1000);
    let key = SigningKey::generate(ORIGIN).unwrap();
    let out = dir.path().join("out");
    export(&log, &out, &key);
    let bytes = fs::read(out.join("checkpoint")).unwrap();
    let vkey = key.verifier().to_string();
    assert_eq!(read_checkpoint(&out, &vkey).0, 1000);
    let ours = Checkpoint::open(&bytes, &key.verifier()).unwrap();
    assert_eq!(ours.root, log.tree_head(None).unwrap().root);

    let theirs = |note: &[u8]| -> bool {
        let verifier = StandardVerifier::new(&vkey).unwrap();
        Note::from_bytes(note)
            .and_then(|n| n.verify(&VerifierList::new(vec![Box::new(verifier)])))
            .is_ok()
    };
    assert!(theirs(&bytes));
    let mut refused = 0;
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut changed = bytes.clone();
            changed[at] ^= flip;
            assert!(!theirs(&changed), "signed_note accepted byte {at} ^ {flip:#x}");
            assert!(
                Checkpoint::open(&changed, &key.verifier()).is_err(),
                "Chronicle accepted byte {at} ^ {flip:#x}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, bytes.len() * 3);

    // Chronicle's key, used by signed_note, signs the same bytes.
    let signer = StandardSigner::new(&key.to_note_key()).unwrap();
    let mut note = Note::new(ours.body().as_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    assert_eq!(note.to_bytes(), bytes);
    // signed_note's keys, used by Chronicle.
    let (skey, their_vkey) = signed_note::generate_key(&mut rand_core::OsRng, "example.org/x");
    let theirs_key = SigningKey::parse(&skey).unwrap();
    assert_eq!(theirs_key.verifier().to_string(), their_vkey);
    let signed = ours.sign(&theirs_key).unwrap();
    let verifier = StandardVerifier::new(&their_vkey).unwrap();
    let note = Note::from_bytes(signed.as_bytes()).unwrap();
    assert!(note.verify(&VerifierList::new(vec![Box::new(verifier)])).is_ok());
}

fn export_reason(result: chronicle::Result<ExportReport>) -> String {
    match result {
        Err(StorageError::Export { reason, .. }) => reason,
        other => panic!("expected an export error, got {other:?}"),
    }
}

/// An entry bundle's length prefix is a u16, so a record whose leaf data (16 bytes of offset
/// and time, then the payload) exceeds 65,535 bytes cannot be exported: the export says which
/// record and writes nothing. A payload of exactly 65,519 bytes still fits.
#[test]
fn records_too_large_for_an_entry_bundle_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let out = dir.path().join("out");
    log.append(b"small").unwrap();
    let largest = log.append(&vec![7u8; 65_519]).unwrap();
    export(&log, &out, &key);
    let entries = bundle_entries(&fs::read(out.join(entries_path(0, 2))).unwrap());
    assert_eq!(entries[1].len(), 65_535);
    assert_eq!(entries[1][..8], largest.to_le_bytes());

    let before = snapshot(&out);
    let too_large = log.append(&vec![8u8; 65_520]).unwrap();
    log.append(b"after").unwrap();
    let reason =
        export_reason(export_tiles(&log, &out, &TileExport { origin: ORIGIN, key: Some(&key) }));
    assert!(reason.contains(&format!("offset {too_large} (entry 2)")), "{reason}");
    assert!(reason.contains("65520 bytes") && reason.contains("nothing was written"), "{reason}");
    assert_eq!(snapshot(&out), before);
}

/// A directory holding another log's export, another origin's, or a file that is not a
/// checkpoint is refused, and so is an origin Chronicle does not write; nothing changes.
#[test]
fn export_directories_of_another_log_or_origin_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let mut one = Log::open(dir.path().join("one")).unwrap();
    let mut two = Log::open(dir.path().join("two")).unwrap();
    append_random(&mut one, &mut Rng(1), 300);
    append_random(&mut two, &mut Rng(2), 400);
    let out = dir.path().join("out");
    export(&one, &out, &key);
    let before = snapshot(&out);

    let reason =
        export_reason(export_tiles(&two, &out, &TileExport { origin: ORIGIN, key: Some(&key) }));
    assert!(reason.contains("another log"), "{reason}");
    let other = TileExport { origin: "example.com/other", key: Some(&key) };
    let reason = export_reason(export_tiles(&one, &out, &other));
    assert!(reason.contains("origin \"example.com/chronicle-test\""), "{reason}");
    let bad = TileExport { origin: "has space", key: Some(&key) };
    assert!(matches!(export_tiles(&one, &out, &bad), Err(StorageError::Checkpoint { .. })));
    assert_eq!(snapshot(&out), before);

    // A log that shrank below its export (a truncating repair, say) is refused too.
    let small = dir.path().join("small");
    let mut three = Log::open(&small).unwrap();
    append_random(&mut three, &mut Rng(1), 100);
    let reason =
        export_reason(export_tiles(&three, &out, &TileExport { origin: ORIGIN, key: Some(&key) }));
    assert!(reason.contains("tree size 300"), "{reason}");

    fs::write(out.join("checkpoint"), b"not a checkpoint").unwrap();
    let reason =
        export_reason(export_tiles(&one, &out, &TileExport { origin: ORIGIN, key: Some(&key) }));
    assert!(reason.contains("cannot be read"), "{reason}");

    // Unsigned exports write the bare checkpoint text.
    let unsigned = dir.path().join("unsigned");
    let report = export_tiles(&one, &unsigned, &TileExport { origin: ORIGIN, key: None }).unwrap();
    assert!(!report.signed);
    let text = fs::read_to_string(unsigned.join("checkpoint")).unwrap();
    assert_eq!(Checkpoint::parse_body(&text).unwrap().tree_size, 300);
}

/// The export reads the log's stored pages, read-only: a damaged page (its CRC no longer
/// matches) is rebuilt in memory from the log, the export still audits, and the page files
/// are left as they were.
#[test]
fn exports_read_stored_pages_and_survive_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut log = Log::open(&log_dir).unwrap();
    append_random(&mut log, &mut Rng(9), 3000);
    log.tree_head(None).unwrap();
    assert_eq!(log.rollup_report().pages[0], (11, 0), "level-0 pages on disk");
    log.close().unwrap();
    let pages = log_dir.join("rollup-0.pages");
    let mut bytes = fs::read(&pages).unwrap();
    bytes[3 * 9328 + 1000] ^= 0xff; // a child hash of page 3
    fs::write(&pages, &bytes).unwrap();

    let log = Log::open_read_only(&log_dir).unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let out = dir.path().join("out");
    let report = export(&log, &out, &key);
    assert_eq!(report.tree_size, 3000);
    audit(&out, &key.verifier().to_string(), &log, &mut Rng(3));
    assert_eq!(fs::read(&pages).unwrap(), bytes, "an export never writes the page files");
}

/// What an interrupted export can leave — tiles past its checkpoint with other bytes, a
/// published tile cut short — is put right by the next export: a file the checkpoint does not
/// cover is replaced if its bytes are wrong, a published hash tile of the wrong length is
/// written again, and the right ones are kept.
#[test]
fn an_interrupted_export_is_completed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("log")).unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let out = dir.path().join("out");
    append_random(&mut log, &mut Rng(4), 300);
    export(&log, &out, &key);
    append_random(&mut log, &mut Rng(5), 300);
    // Left by an export of 600 entries that stopped before its checkpoint, then damaged.
    fs::create_dir_all(out.join("tile/0")).unwrap();
    fs::write(out.join("tile/0/001"), vec![0u8; 8192]).unwrap();
    fs::write(out.join("tile/entries/001"), b"\x00\x01x").unwrap();
    fs::write(out.join("tile/0/000"), b"short").unwrap();
    let report = export(&log, &out, &key);
    assert_eq!((report.tiles_written, report.bundles_written), (4, 2), "{report:?}");
    audit(&out, &key.verifier().to_string(), &log, &mut Rng(6));
    let again = export(&log, &out, &key);
    assert_eq!((again.tiles_written, again.bundles_written, again.files_kept), (0, 0, 7));
}
