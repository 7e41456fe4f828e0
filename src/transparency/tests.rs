//! Keys, notes, checkpoints and tile paths against known answers; exports are tested against
//! independent implementations in `tests/transparency.rs`.

use super::*;
use crate::rollup::{empty_root, Hash, TreeHead};
use crate::StorageError;

/// The key and signed note of the test suite of Go's `golang.org/x/mod/sumdb/note`
/// (`TestSign`): Ed25519 signatures are deterministic, so Chronicle must sign the same bytes.
const GO_SIGNING_KEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIGNATURE_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn keys_and_signatures_match_gos_note_package() {
    let key = SigningKey::parse(GO_SIGNING_KEY).unwrap();
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.key_id(), 0xc74f_20a3);
    assert_eq!(key.to_note_key(), GO_SIGNING_KEY);
    assert_eq!(key.verifier().to_string(), GO_VERIFIER_KEY);
    let signed = key.sign_note(GO_TEXT).unwrap();
    assert_eq!(signed, format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}"));
    let verifier = VerifierKey::parse(GO_VERIFIER_KEY).unwrap();
    assert_eq!(verifier.open(signed.as_bytes()).unwrap(), GO_TEXT);
}

#[test]
fn generated_keys_round_trip_through_their_formats() {
    let key = SigningKey::generate("example.com/log42").unwrap();
    let again = SigningKey::parse(&format!("  {}\n", key.to_note_key())).unwrap();
    assert_eq!(again.to_note_key(), key.to_note_key());
    let verifier = VerifierKey::parse(&key.verifier().to_string()).unwrap();
    assert_eq!(verifier, key.verifier());
    assert_eq!(verifier.key_id(), key_id("example.com/log42", &verifier_bytes(&verifier)));
    assert_ne!(SigningKey::generate("example.com/log42").unwrap().to_note_key(), key.to_note_key());
    // The Debug form never shows the key.
    let shown = format!("{key:?}");
    assert!(!shown.contains(&key.to_note_key()[40..]), "{shown}");
}

fn verifier_bytes(key: &VerifierKey) -> [u8; 32] {
    use base64::Engine as _;
    let text = key.to_string();
    let encoded = text.splitn(3, '+').nth(2).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    bytes[1..].try_into().unwrap()
}

fn key_reason(result: crate::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(StorageError::Key { reason }) => reason,
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn bad_keys_are_refused_with_a_reason() {
    let cases: [(&str, &str); 7] = [
        ("", "does not start with PRIVATE+KEY+"),
        (GO_VERIFIER_KEY, "this is a verifier key"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", "expected PRIVATE+KEY+<name>+<id>+<key>"),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "key id",
        ),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF", "base64"),
        ("PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "name"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "type"),
    ];
    for (text, expected) in cases {
        let reason = key_reason(SigningKey::parse(text));
        assert!(reason.contains(expected), "{text:?}: {reason}");
        assert!(!reason.contains("AYEKFALV"), "a reason never shows the key: {reason}");
    }
    let verifier_cases: [(&str, &str); 5] = [
        (GO_SIGNING_KEY, "this is a signing key"),
        ("PeterNeumann+c74f20a3", "expected <name>+<id>+<key>"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key id"),
        ("PeterNeumann+xyz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",
            "holds 29 bytes, not the 32",
        ),
    ];
    for (text, expected) in verifier_cases {
        let reason = key_reason(VerifierKey::parse(text));
        assert!(reason.contains(expected), "{text:?}: {reason}");
    }
    assert!(!is_valid_key_name("a+b") && !is_valid_key_name("") && !is_valid_key_name("a\u{a0}b"));
    assert!(is_valid_key_name("example.com/log42"));
}

fn checkpoint_reason(result: crate::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(StorageError::Checkpoint { reason }) => reason,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn notes_verify_only_with_a_signature_by_the_key() {
    let key = SigningKey::parse(GO_SIGNING_KEY).unwrap();
    let other = SigningKey::from_seed("EnochRoot", &[7; 32]).unwrap();
    let signed = key.sign_note(GO_TEXT).unwrap();
    // Another key's signature is ignored, before or after ours.
    let other_line = other.sign_note(GO_TEXT).unwrap()[GO_TEXT.len() + 1..].to_string();
    let cosigned = format!("{signed}{other_line}");
    assert_eq!(key.verifier().open(cosigned.as_bytes()).unwrap(), GO_TEXT);
    assert_eq!(other.verifier().open(cosigned.as_bytes()).unwrap(), GO_TEXT);
    let reason = checkpoint_reason(other.verifier().open(signed.as_bytes()));
    assert!(reason.contains("no signature by EnochRoot"), "{reason}");
    // A bad signature by the key fails, even beside a good one.
    let mut bad = signed.clone().into_bytes();
    let at = bad.len() - 10;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let reason = checkpoint_reason(key.verifier().open(&bad));
    assert!(reason.contains("does not verify"), "{reason}");
    let both = [signed.as_bytes(), &bad[GO_TEXT.len() + 1..]].concat();
    assert!(key.verifier().open(&both).is_err());
    for (note, expected) in [
        (GO_TEXT.to_string(), "no signature block"),
        (format!("{GO_TEXT}\n"), "signature block is empty"),
        (format!("{GO_TEXT}\n- PeterNeumann abc\n"), "not a signature line"),
        (format!("{GO_TEXT}\n\u{2014} PeterNeumann !!!!\n"), "not base64"),
        (format!("{GO_TEXT}\u{7}\n{GO_SIGNATURE_LINE}"), "control characters"),
    ] {
        let reason = checkpoint_reason(key.verifier().open(note.as_bytes()));
        assert!(reason.contains(expected), "{note:?}: {reason}");
    }
    assert!(checkpoint_reason(key.verifier().open(&[0xff, b'\n', b'\n'])).contains("UTF-8"));
    assert!(key.sign_note("no newline").is_err());
    assert!(key.sign_note("blank last line\n\n").is_err());
}

fn head(tree_size: u64, root: Hash) -> TreeHead {
    TreeHead { tree_size, root, end_offset: 0, last_write_timestamp_ms: 0 }
}

#[test]
fn checkpoints_have_the_c2sp_form_and_parse_strictly() {
    let checkpoint = Checkpoint::new("example.com/log42", &head(0, empty_root())).unwrap();
    assert_eq!(
        checkpoint.body(),
        "example.com/log42\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    );
    assert_eq!(Checkpoint::parse_body(&checkpoint.body()).unwrap(), checkpoint);
    let key = SigningKey::from_seed("example.com/log42", &[1; 32]).unwrap();
    let signed = checkpoint.sign(&key).unwrap();
    assert!(signed.starts_with(&checkpoint.body()));
    assert_eq!(Checkpoint::open(signed.as_bytes(), &key.verifier()).unwrap(), checkpoint);
    assert_eq!(Checkpoint::parse_unverified(signed.as_bytes()).unwrap(), checkpoint);
    assert_eq!(Checkpoint::parse_unverified(checkpoint.body().as_bytes()).unwrap(), checkpoint);
    let with_extension = "o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n";
    assert_eq!(Checkpoint::parse_body(with_extension).unwrap().extensions, ["ext"]);
    for (text, expected) in [
        ("o\n5\n", "fewer than three lines"),
        ("\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "origin line is empty"),
        ("o\n05\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "leading zeros"),
        ("o\n+5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "tree size line"),
        ("o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n", "root line"),
        ("o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n", "root line"),
        ("o\n5\nAAAA\n", "root line"),
        ("o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\nx\n", "empty extension"),
        ("o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "newline"),
    ] {
        let reason = checkpoint_reason(Checkpoint::parse_body(text));
        assert!(reason.contains(expected), "{text:?}: {reason}");
    }
    for origin in ["", "has space", "a+b", "new\nline"] {
        let reason = checkpoint_reason(Checkpoint::new(origin, &head(0, empty_root())));
        assert!(reason.contains("cannot be an origin"), "{origin:?}: {reason}");
    }
    let reason = checkpoint_reason(checkpoint.check_origin("example.com/other"));
    assert!(reason.contains("not the expected"), "{reason}");
}

#[test]
fn tile_paths_follow_the_tlog_tiles_layout() {
    assert_eq!(tile_path(0, 0, 256), "tile/0/000");
    assert_eq!(tile_path(0, 0, 1), "tile/0/000.p/1");
    assert_eq!(tile_path(1, 999, 256), "tile/1/999");
    assert_eq!(tile_path(1, 1000, 255), "tile/1/x001/000.p/255");
    assert_eq!(tile_path(3, 1_234_067, 256), "tile/3/x001/x234/067");
    assert_eq!(tile_path(3, 1_234_067, 8), "tile/3/x001/x234/067.p/8");
    assert_eq!(entries_path(1_234_067, 256), "tile/entries/x001/x234/067");
    assert_eq!(entries_path(5, 17), "tile/entries/005.p/17");
    assert_eq!(
        tile_path(0, u64::MAX, 256),
        "tile/0/x018/x446/x744/x073/x709/x551/615",
        "the largest index"
    );
}
