//! Known answers from RFC 6962's reference implementation, and the verifiers' refusals.

use super::tree::{mem_consistency_path, mem_inclusion_path, mem_root};
use super::*;

/// The eight test leaves of the Certificate Transparency reference tests (leaf data as hex).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees over the first 1..=8 of them.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves() -> Vec<Hash> {
    LEAVES.iter().map(|l| hash_leaf_data(&hex::decode(l).unwrap())).collect()
}

fn h(text: &str) -> Hash {
    text.parse().unwrap()
}

#[test]
fn roots_match_the_reference_tests() {
    let leaves = leaves();
    assert_eq!(
        mem_root(leaves.as_slice(), 0),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    for (n, expected) in ROOTS.iter().enumerate() {
        assert_eq!(mem_root(leaves.as_slice(), n as u64 + 1), h(expected), "tree of {}", n + 1);
    }
}

#[test]
fn reference_inclusion_and_consistency_proofs() {
    let leaves = leaves();
    let path = mem_inclusion_path(leaves.as_slice(), 0, 0, 8);
    let expected = [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ];
    assert_eq!(path, expected.iter().map(|e| h(e)).collect::<Vec<_>>());
    let proof = mem_consistency_path(leaves.as_slice(), 6, 8);
    let expected = [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ];
    assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>());
}

#[test]
fn every_proof_in_small_trees_verifies_and_no_bit_flip_does() {
    let leaves = leaves();
    for n in 1..=8u64 {
        let r = mem_root(leaves.as_slice(), n);
        for i in 0..n {
            let path = mem_inclusion_path(leaves.as_slice(), i, 0, n);
            let leaf = leaves[i as usize];
            assert!(verify_inclusion_path(i, n, &leaf, &path, &r), "{i} in {n}");
            // An index past the tree, another leaf, or any flipped bit of the path fails. (A
            // path can also fit another tree size whose shape is the same there: RFC 9162 binds
            // the size through the root, which the verifier must trust.)
            assert!(!verify_inclusion_path(n, n, &leaf, &path, &r));
            assert!(!verify_inclusion_path(i, n, &leaves[(i as usize + 1) % 8], &path, &r));
            for k in 0..path.len() {
                for bit in [0, 77, 255] {
                    let mut bad = path.clone();
                    bad[k].0[bit / 8] ^= 1 << (bit % 8);
                    assert!(!verify_inclusion_path(i, n, &leaf, &bad, &r));
                }
            }
            if n > 1 {
                assert!(!verify_inclusion_path(i, n, &leaf, &path[..path.len() - 1], &r));
            }
        }
        for m in 1..n {
            let old = mem_root(leaves.as_slice(), m);
            let proof = mem_consistency_path(leaves.as_slice(), m, n);
            assert!(verify_consistency_path(m, n, &old, &r, &proof), "{m} to {n}");
            assert!(!verify_consistency_path(m, n, &r, &old, &proof));
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k].0[3] ^= 0x10;
                assert!(!verify_consistency_path(m, n, &old, &r, &bad), "{m} to {n}, node {k}");
            }
        }
        assert!(verify_consistency_path(n, n, &r, &r, &[]));
        assert!(!verify_consistency_path(0, n, &empty_root(), &r, &[]));
    }
}

#[test]
fn hashes_print_and_parse_as_hex() {
    let hash = leaves()[3];
    let text = hash.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<Hash>(), Ok(hash));
    assert_eq!(text.to_uppercase().parse::<Hash>(), Ok(hash));
    assert!("abc".parse::<Hash>().is_err());
    assert!(format!("{text}00").parse::<Hash>().is_err());
}
