//! The Merkle rollup against an independent RFC 6962 implementation (`ct-merkle`), and proofs
//! made from real logs: every one verifies, and no single flipped bit does.

mod common;

use chronicle::rollup::{self, leaf_data, ConsistencyProof, Hash, InclusionProof};
use chronicle::{Log, Options};
use common::Rng;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof as CtConsistency, InclusionProof as CtInclusion, RootHash};
use sha2::Sha256;

/// Builds a log of `n` records of varied sizes (4 KiB segments, so it spans many).
fn build(dir: &std::path::Path, n: usize) -> Log {
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let mut log = Log::open_with(dir, options).unwrap();
    for i in 0..n {
        let payload: Vec<u8> = (0..(i * 7 % 97)).map(|k| (i + k) as u8).collect();
        log.append(&payload).unwrap();
    }
    log.sync().unwrap();
    log
}

/// The leaf data of every record, as `ct-merkle` is given it.
fn leaves_of(log: &Log) -> Vec<(u64, Vec<u8>)> {
    log.replay(0)
        .map(|r| {
            let r = r.unwrap();
            (r.offset, leaf_data(r.offset, r.write_timestamp_ms, &r.payload))
        })
        .collect()
}

fn digest_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

fn ct_root(tree: &MemoryBackedTree<Sha256, Vec<u8>>) -> Hash {
    Hash(tree.root().as_bytes().as_slice().try_into().unwrap())
}

#[test]
fn roots_and_proofs_match_an_independent_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 300);
    let leaves = leaves_of(&log);
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut rng = Rng(7);
    for (n, (_, data)) in leaves.iter().enumerate() {
        ct.push(data.clone());
        let size = n as u64 + 1;
        let head = log.tree_head(Some(size)).unwrap();
        assert_eq!(head.root, ct_root(&ct), "root of {size}");
        // Every index in small trees, a few random ones in larger trees.
        let picks: Vec<u64> = if size <= 40 {
            (0..size).collect()
        } else {
            (0..6).map(|_| rng.below(size)).collect()
        };
        for i in picks {
            let proof = log.inclusion_proof(leaves[i as usize].0, Some(size)).unwrap();
            assert_eq!(proof.leaf_index, i);
            let expected = ct.prove_inclusion(i as usize);
            assert_eq!(digest_bytes(&proof.audit_path), expected.as_bytes(), "{i} in {size}");
            let ct_proof = CtInclusion::<Sha256>::from_bytes(digest_bytes(&proof.audit_path));
            assert!(ct.root().verify_inclusion(&leaves[i as usize].1, i, &ct_proof).is_ok());
            proof.verify(Some(&head.root)).unwrap();
        }
        let olds: Vec<u64> = if size <= 40 {
            (1..size).collect()
        } else {
            (0..6).map(|_| 1 + rng.below(size - 1)).collect()
        };
        for old in olds {
            let proof = log.consistency_proof(old, Some(size)).unwrap();
            let expected = ct.prove_consistency((size - old) as usize);
            assert_eq!(digest_bytes(&proof.proof), expected.as_bytes(), "{old} to {size}");
            let old_root = RootHash::<Sha256>::new(proof.old_root.0.into(), old);
            let ct_proof =
                CtConsistency::<Sha256>::try_from_bytes(digest_bytes(&proof.proof)).unwrap();
            assert!(ct.root().verify_consistency(&old_root, &ct_proof).is_ok());
            proof.verify(None).unwrap();
        }
    }
}

#[test]
fn large_trees_match_an_independent_implementation() {
    let mut rng = Rng(11);
    for size in [1_000u64, 4_097, 65_536, 100_000] {
        let leaves: Vec<Vec<u8>> =
            (0..size).map(|i| leaf_data(i * 8, 1_700_000_000_000 + i, &i.to_le_bytes())).collect();
        let hashes: Vec<Hash> = leaves.iter().map(|d| rollup::hash_leaf_data(d)).collect();
        let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        for data in &leaves {
            ct.push(data.clone());
        }
        let root = ct_root(&ct);
        for _ in 0..5 {
            let i = rng.below(size);
            let proof = ct.prove_inclusion(i as usize);
            let path: Vec<Hash> =
                proof.as_bytes().chunks(32).map(|c| Hash(c.try_into().unwrap())).collect();
            assert!(rollup::verify_inclusion_path(i, size, &hashes[i as usize], &path, &root));
            let old = 1 + rng.below(size - 1);
            let proof = ct.prove_consistency((size - old) as usize);
            let path: Vec<Hash> =
                proof.as_bytes().chunks(32).map(|c| Hash(c.try_into().unwrap())).collect();
            let mut old_tree = MemoryBackedTree::<Sha256, Vec<u8>>::new();
            for data in &leaves[..old as usize] {
                old_tree.push(data.clone());
            }
            let old_root = ct_root(&old_tree);
            assert!(rollup::verify_consistency_path(old, size, &old_root, &root, &path));
        }
    }
}

/// Every entry's proof verifies against the head; flipping any single bit of the record, the
/// leaf hash, the path or the root makes it fail; the JSON form round-trips.
#[test]
fn proofs_from_a_log_verify_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 120);
    let head = log.tree_head(None).unwrap();
    assert_eq!(head.tree_size, 120);
    assert_eq!(head.end_offset, log.end_offset());
    for (offset, _) in leaves_of(&log) {
        let proof = log.inclusion_proof(offset, None).unwrap();
        proof.verify(Some(&head.root)).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        assert!(json.starts_with(r#"{"type":"inclusion","leaf_index":"#), "{json}");
        let back: InclusionProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back, proof);
        let mut bad = proof.clone();
        bad.offset += 8;
        assert!(bad.verify(None).is_err());
        let mut bad = proof.clone();
        bad.write_timestamp_ms ^= 1;
        assert!(bad.verify(None).is_err());
        if !proof.payload_hex.is_empty() {
            let mut bad = proof.clone();
            bad.payload_hex[0] ^= 0x80;
            assert!(bad.verify(None).is_err());
        }
        for k in 0..proof.audit_path.len() {
            let mut bad = proof.clone();
            bad.audit_path[k].0[31] ^= 1;
            assert!(bad.verify(None).is_err());
        }
        let mut bad = proof.clone();
        bad.root.0[0] ^= 4;
        assert!(bad.verify(None).is_err());
        assert!(proof.verify(Some(&bad.root)).is_err());
    }
    for old in [1, 2, 3, 64, 65, 119, 120] {
        let proof = log.consistency_proof(old, None).unwrap();
        proof.verify(Some((&log.tree_head(Some(old)).unwrap().root, &head.root))).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        assert!(json.starts_with(r#"{"type":"consistency","old_size":"#), "{json}");
        assert_eq!(serde_json::from_str::<ConsistencyProof>(&json).unwrap(), proof);
        for k in 0..proof.proof.len() {
            let mut bad = proof.clone();
            bad.proof[k].0[9] ^= 2;
            assert!(bad.verify(None).is_err(), "{old}: node {k}");
        }
    }
    // Sizes the log cannot prove are refused, not panicked on.
    assert!(log.tree_head(Some(121)).is_err());
    assert!(log.consistency_proof(0, None).is_err());
    assert!(log.consistency_proof(50, Some(40)).is_err());
    assert!(log.inclusion_proof(3, None).is_err());
    let last = leaves_of(&log).last().unwrap().0;
    assert!(log.inclusion_proof(last, Some(10)).is_err());
}

/// The head as of a time is the largest tree whose entries were all written by then.
#[test]
fn heads_by_size_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 50);
    let records: Vec<(u64, u64)> =
        log.replay(0).map(|r| r.unwrap()).map(|r| (r.offset, r.write_timestamp_ms)).collect();
    let empty = log.tree_head(Some(0)).unwrap();
    assert_eq!((empty.root, empty.end_offset), (rollup::empty_root(), 0));
    let at = records[20].1;
    let by_time = log.tree_head_at(at).unwrap();
    let size = records.iter().filter(|r| r.1 <= at).count() as u64;
    assert_eq!(by_time, log.tree_head(Some(size)).unwrap());
    assert_eq!(log.tree_head_at(0).unwrap().tree_size, 0);
    assert_eq!(log.tree_head_at(u64::MAX).unwrap().tree_size, 50);
}

/// An aggregate's state as of a time comes with the tree head of that time, and each of its
/// events is proven in that tree; the delta report is the events of a time window.
#[test]
fn an_aggregates_state_as_of_a_time_is_provable() {
    use chronicle::{Event, EventLog};
    let dir = tempfile::tempdir().unwrap();
    let mut events = EventLog::open(dir.path()).unwrap();
    let mut written = Vec::new();
    for i in 0..60u64 {
        let event = Event::builder("credited").aggregate_id(i % 4).payload(vec![i as u8]).build();
        let offset = events.append(&event).unwrap();
        written.push((offset, events.read_at(offset).unwrap().write_timestamp_ms, i % 4));
        if i % 10 == 9 {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    }
    let at = written[35].1;
    let (state, head) = events.aggregate_as_of(3, at).unwrap();
    let expected: Vec<u64> =
        written.iter().filter(|w| w.2 == 3 && w.1 <= at).map(|w| w.0).collect();
    assert_eq!(state.iter().map(|e| e.offset).collect::<Vec<_>>(), expected);
    assert_eq!(head, events.log().tree_head_at(at).unwrap());
    for e in &state {
        let proof = events.log().inclusion_proof(e.offset, Some(head.tree_size)).unwrap();
        proof.verify(Some(&head.root)).unwrap();
    }
    let (from, to) = (written[12].1, written[41].1);
    let delta = events.aggregate_events_between(1, from, to).unwrap();
    let expected: Vec<u64> =
        written.iter().filter(|w| w.2 == 1 && w.1 >= from && w.1 < to).map(|w| w.0).collect();
    assert_eq!(delta.iter().map(|e| e.offset).collect::<Vec<_>>(), expected);
}
