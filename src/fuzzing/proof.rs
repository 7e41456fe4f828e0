//! The Merkle proof target and its seeds.

use crate::rollup::tree::{mem_consistency_path, mem_inclusion_path, mem_root};
use crate::rollup::{
    hash_leaf_data, leaf_hash, verify_consistency_path, verify_inclusion_path, ConsistencyProof,
    Hash, InclusionProof,
};

/// Mode byte of a proof input: the rest is a proof in its JSON form.
pub const PROOF_JSON: u8 = 0;
/// Mode byte of a proof input: the rest is raw leaves, indexes and proof hashes.
pub const PROOF_RAW: u8 = 1;

/// Most leaves a raw input builds a tree of, so every input stays cheap.
const LEAVES_MAX: usize = 64;

/// Verifies proofs from arbitrary bytes.
///
/// Input: a mode byte, then
/// - [`PROOF_JSON`]: a proof as JSON. Decoding and verification never panic, and a proof that
///   verifies still verifies after a round trip through JSON.
/// - [`PROOF_RAW`]: two bytes `i` and `m`, then leaf data chunks of up to 16 bytes each, one
///   length byte before each. The tree over those leaves is built; the inclusion proof of leaf
///   `i % n` and the consistency proof from `1 + m % n` to `n` must verify, and with any one
///   bit flipped (the input's next byte chooses it) must not. The verifiers are also run on the
///   raw bytes read as hashes, which must not panic.
pub fn merkle_proof(data: &[u8]) {
    match data.split_first() {
        Some((&PROOF_JSON, rest)) => json_proof(rest),
        Some((&PROOF_RAW, rest)) => raw_proof(rest),
        _ => {}
    }
}

fn json_proof(bytes: &[u8]) {
    if let Ok(proof) = serde_json::from_slice::<InclusionProof>(bytes) {
        if proof.verify(None).is_ok() {
            let again = serde_json::to_vec(&proof).expect("a proof encodes");
            let back: InclusionProof = serde_json::from_slice(&again).expect("and decodes");
            assert!(back.verify(Some(&proof.root)).is_ok(), "a valid proof stops verifying");
        }
    }
    if let Ok(proof) = serde_json::from_slice::<ConsistencyProof>(bytes) {
        if proof.verify(None).is_ok() {
            assert!(proof.old_size > 0 && proof.old_size <= proof.new_size);
        }
    }
}

fn raw_proof(bytes: &[u8]) {
    let Some((&[i, m, flip], mut rest)) = bytes.split_first_chunk::<3>() else { return };
    let mut leaves = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len % 17).min(tail.len());
        let (data, tail) = tail.split_at(len);
        leaves.push(hash_leaf_data(data));
        rest = tail;
        if leaves.len() == LEAVES_MAX {
            break;
        }
    }
    // The raw bytes as hashes: the verifiers must refuse or accept, never panic.
    let hashes: Vec<Hash> =
        bytes.chunks_exact(32).filter_map(|c| c.try_into().ok()).map(Hash).collect();
    if let Some((first, others)) = hashes.split_first() {
        let (a, b) = (u64::from(i), u64::from(m));
        let _ = verify_inclusion_path(a, b, first, others, first);
        let _ = verify_consistency_path(a, b, first, first, others);
    }
    let n = leaves.len() as u64;
    if n == 0 {
        return;
    }
    let leaves = leaves.as_slice();
    let r = mem_root(leaves, n);
    let index = u64::from(i) % n;
    let path = mem_inclusion_path(leaves, index, 0, n);
    let leaf = leaves[index as usize];
    assert!(verify_inclusion_path(index, n, &leaf, &path, &r), "inclusion of {index} in {n}");
    let bit = usize::from(flip);
    if let Some(node) = path.len().checked_sub(1).map(|last| bit % (last + 1)) {
        let mut bad = path.clone();
        bad[node].0[bit % 32] ^= 1 << (bit % 8);
        assert!(!verify_inclusion_path(index, n, &leaf, &bad, &r), "a flipped path verified");
    }
    let old = 1 + u64::from(m) % n;
    let old_root = mem_root(leaves, old);
    let proof = if old == n { Vec::new() } else { mem_consistency_path(leaves, old, n) };
    assert!(verify_consistency_path(old, n, &old_root, &r, &proof), "consistency {old} to {n}");
    if !proof.is_empty() {
        let mut bad = proof.clone();
        let node = bit % bad.len();
        bad[node].0[bit % 32] ^= 1 << (bit % 8);
        assert!(!verify_consistency_path(old, n, &old_root, &r, &bad), "a flipped proof verified");
    }
}

/// Seeds: a valid inclusion and consistency proof in JSON, and raw trees of a few sizes.
#[must_use]
pub fn seed_proofs() -> Vec<(String, Vec<u8>)> {
    let datas: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; usize::from(i)]).collect();
    let leaves: Vec<Hash> =
        (0..11u64).map(|i| leaf_hash(i * 40, 1_796_000_000_000, &datas[i as usize])).collect();
    let leaves = leaves.as_slice();
    let inclusion = InclusionProof {
        leaf_index: 6,
        tree_size: 11,
        offset: 240,
        write_timestamp_ms: 1_796_000_000_000,
        payload_hex: datas[6].clone(),
        leaf_hash: leaves[6],
        audit_path: mem_inclusion_path(leaves, 6, 0, 11),
        root: mem_root(leaves, 11),
    };
    let consistency = ConsistencyProof {
        old_size: 5,
        new_size: 11,
        old_root: mem_root(leaves, 5),
        new_root: mem_root(leaves, 11),
        proof: mem_consistency_path(leaves, 5, 11),
    };
    let json = |v: Vec<u8>| [vec![PROOF_JSON], v].concat();
    let mut seeds = vec![
        ("inclusion-json".to_string(), json(serde_json::to_vec(&inclusion).unwrap_or_default())),
        (
            "consistency-json".to_string(),
            json(serde_json::to_vec(&consistency).unwrap_or_default()),
        ),
    ];
    for n in [1u8, 2, 7, 33] {
        let mut raw = vec![PROOF_RAW, n / 2, n / 3, 77];
        for k in 0..n {
            raw.push(k % 17);
            raw.extend((0..k % 17).map(|b| b ^ k));
        }
        seeds.push((format!("raw-{n}-leaves"), raw));
    }
    seeds
}
