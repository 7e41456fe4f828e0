//! `chronicle keygen`, `head --sign`, `tiles` and `verify-proof --checkpoint`, run as the built
//! binary: what they write is read back by the library and by `signed_note`, and every bad
//! input ends in a clear error and the documented exit code, never a panic.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chronicle::transparency::{Checkpoint, SigningKey, VerifierKey};
use chronicle::Log;

const NAME: &str = "example.com/cli-test";

fn chronicle(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .output()
        .expect("run the chronicle binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args`, expects exit code `code`, and returns stdout and stderr together.
fn expect(code: i32, args: &[&str]) -> String {
    let out = chronicle(args);
    let both = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{args:?}:\n{both}");
    both
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn build_log(dir: &Path, n: u32) {
    let mut log = Log::open(dir).unwrap();
    for i in 0..n {
        log.append(format!("record {i}").as_bytes()).unwrap();
    }
    log.close().unwrap();
}

/// Makes a key pair with `keygen` in `dir`; returns the two file paths.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join("key");
    expect(0, &["keygen", name, "--out", path(&prefix)]);
    (dir.join("key.key"), dir.join("key.pub"))
}

#[test]
fn keygen_writes_a_key_pair_that_others_read() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("log42");
    let said = expect(0, &["keygen", NAME, "--out", path(&prefix)]);
    let (private, public) = (dir.path().join("log42.key"), dir.path().join("log42.pub"));
    assert_eq!(fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    let key = SigningKey::from_file(&private).unwrap();
    let verifier = VerifierKey::from_file(&public).unwrap();
    assert_eq!(verifier, key.verifier());
    assert_eq!(key.name(), NAME);
    assert!(said.contains(&verifier.to_string()), "{said}");
    let key_text = fs::read_to_string(&private).unwrap();
    assert!(key_text.starts_with("PRIVATE+KEY+example.com/cli-test+"));
    signed_note::StandardSigner::new(key_text.trim()).unwrap();
    signed_note::StandardVerifier::new(fs::read_to_string(&public).unwrap().trim()).unwrap();

    let again = expect(2, &["keygen", NAME, "--out", path(&prefix)]);
    assert!(again.contains("never overwrites"), "{again}");
    assert_eq!(SigningKey::from_file(&private).unwrap().to_note_key(), key.to_note_key());
    let bad = expect(2, &["keygen", "has space", "--out", path(&dir.path().join("bad"))]);
    assert!(bad.contains("cannot name a key"), "{bad}");
    assert!(!dir.path().join("bad.key").exists());
}

#[test]
fn head_signs_checkpoints_that_verify_proof_checks_proofs_against() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    build_log(&log_dir, 300);
    let (private, public) = keygen(dir.path(), NAME);
    let (log, pubkey) = (path(&log_dir), path(&public));

    let now = chronicle(&["head", log, "--sign", path(&private)]).stdout;
    let then = chronicle(&["head", log, "--tree-size", "100", "--sign", path(&private)]).stdout;
    let verifier = VerifierKey::from_file(&public).unwrap();
    let checkpoint = Checkpoint::open(&now, &verifier).unwrap();
    let head = Log::open_read_only(&log_dir).unwrap().tree_head(None).unwrap();
    assert_eq!((checkpoint.origin.as_str(), checkpoint.tree_size), (NAME, 300));
    assert_eq!(checkpoint.root, head.root);
    let unsigned = text(&chronicle(&["head", log, "--origin", NAME]).stdout);
    assert_eq!(unsigned, checkpoint.body());
    let files = |name: &str, bytes: &[u8]| {
        let file = dir.path().join(name);
        fs::write(&file, bytes).unwrap();
        file
    };
    let (now, then) = (files("now", &now), files("then", &then));
    let (now, then) = (path(&now), path(&then));
    let offset = Log::open_read_only(&log_dir).unwrap().replay(0).nth(50).unwrap().unwrap().offset;
    let offset = offset.to_string();
    let proof =
        files("proof.json", &chronicle(&["proof", log, "--offset", &offset, "--json"]).stdout);
    let old_proof = chronicle(&["proof", log, "--offset", &offset, "--tree-size", "100", "--json"]);
    let old_proof = files("old-proof.json", &old_proof.stdout);
    let grown = chronicle(&["consistency", log, "--old-size", "100", "--json"]).stdout;
    let grown = files("grown.json", &grown);
    let (proof, old_proof, grown) = (path(&proof), path(&old_proof), path(&grown));

    // Valid: an inclusion proof in each checkpoint's tree, the key as a file or as text, and
    // the consistency of the two checkpoints.
    let valid = expect(0, &["verify-proof", proof, "--checkpoint", now, "--key", pubkey]);
    assert!(valid.contains("valid inclusion proof for the signed checkpoint of"), "{valid}");
    let vkey = verifier.to_string();
    expect(0, &["verify-proof", old_proof, "--checkpoint", then, "--key", &vkey, "--origin", NAME]);
    let args =
        ["verify-proof", grown, "--old-checkpoint", then, "--checkpoint", now, "--key", pubkey];
    expect(0, &args);
    expect(0, &["verify-proof", grown, "--checkpoint", now, "--key", pubkey]);

    // Invalid (exit 1): a proof of another tree, checkpoints swapped, another origin, a
    // tampered signature, a checkpoint by another key.
    let other_tree = expect(1, &["verify-proof", old_proof, "--checkpoint", now, "--key", pubkey]);
    assert!(other_tree.contains("tree of 100 entries, the checkpoint for 300"), "{other_tree}");
    let args =
        ["verify-proof", grown, "--old-checkpoint", now, "--checkpoint", then, "--key", pubkey];
    expect(1, &args);
    let args = ["verify-proof", proof, "--checkpoint", now, "--key", pubkey, "--origin", "x.org/y"];
    assert!(expect(1, &args).contains("not the expected \"x.org/y\""));
    let mut tampered = fs::read(now).unwrap();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = files("tampered", &tampered);
    let said =
        expect(1, &["verify-proof", proof, "--checkpoint", path(&tampered), "--key", pubkey]);
    assert!(said.contains("does not verify"), "{said}");
    let other_dir = tempfile::tempdir().unwrap();
    let (other_private, _) = keygen(other_dir.path(), NAME);
    let by_other = chronicle(&["head", log, "--sign", path(&other_private)]).stdout;
    let by_other = files("by-other", &by_other);
    let said =
        expect(1, &["verify-proof", proof, "--checkpoint", path(&by_other), "--key", pubkey]);
    assert!(said.contains("no signature by example.com/cli-test+"), "{said}");

    // Unreadable (exit 2): a missing checkpoint, one that is not a checkpoint, a bad key.
    let missing = dir.path().join("missing");
    let said = expect(2, &["verify-proof", proof, "--checkpoint", path(&missing), "--key", pubkey]);
    assert!(said.contains("cannot read checkpoint"), "{said}");
    let garbage = files("garbage", b"{\"not\": \"a checkpoint\"}\n");
    let said = expect(2, &["verify-proof", proof, "--checkpoint", path(&garbage), "--key", pubkey]);
    assert!(said.contains("cannot read") && said.contains("tree size"), "{said}");
    let said = expect(2, &["verify-proof", proof, "--checkpoint", now, "--key", path(&private)]);
    assert!(said.contains("this is a signing key"), "{said}");
    let said = expect(2, &["verify-proof", proof, "--checkpoint", now, "--key", "nonsense"]);
    assert!(said.contains("neither a file nor a verifier key"), "{said}");
    let bad_key = files("bad.pub", b"example.com/cli-test+00000000+AAAA\n");
    let said = expect(2, &["verify-proof", proof, "--checkpoint", now, "--key", path(&bad_key)]);
    assert!(said.contains("bad.pub"), "{said}");
    expect(2, &["verify-proof", proof, "--checkpoint", now]);

    // head refuses a verifier key, a missing key file and a bad origin.
    assert!(expect(2, &["head", log, "--sign", pubkey]).contains("this is a verifier key"));
    assert!(expect(2, &["head", log, "--sign", path(&missing)]).contains("read key file"));
    assert!(expect(2, &["head", log, "--origin", "a+b"]).contains("cannot be an origin"));
}

#[test]
fn tiles_exports_incrementally_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    build_log(&log_dir, 600);
    let (private, public) = keygen(dir.path(), NAME);
    let out = dir.path().join("out");
    let (log, key, out_s) = (path(&log_dir), path(&private), path(&out));

    let first = expect(0, &["tiles", log, out_s, "--sign", key, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(report["tree_size"], 600);
    assert_eq!(report["tiles_written"], 4, "2 full and 1 partial at level 0, 1 at level 1");
    assert_eq!(report["bundles_written"], 3);
    let verifier = VerifierKey::from_file(&public).unwrap();
    let checkpoint = Checkpoint::open(&fs::read(out.join("checkpoint")).unwrap(), &verifier);
    assert_eq!(checkpoint.unwrap().tree_size, 600);
    let full = fs::metadata(out.join("tile/0/000")).unwrap();

    let mut writer = Log::open(&log_dir).unwrap();
    for i in 0..100 {
        writer.append(format!("more {i}").as_bytes()).unwrap();
    }
    writer.close().unwrap();
    let second = expect(0, &["tiles", log, out_s, "--sign", key]);
    assert!(second.contains("exported 700 entries of example.com/cli-test"), "{second}");
    assert!(second.contains("checkpoint written, signed"), "{second}");
    let kept = fs::metadata(out.join("tile/0/000")).unwrap();
    assert_eq!((kept.ino(), kept.mtime_nsec()), (full.ino(), full.mtime_nsec()));
    assert!(out.join("tile/0/002.p/88").is_file() && out.join("tile/0/002.p/188").is_file());
    let third = expect(0, &["tiles", log, out_s, "--sign", key]);
    assert!(third.contains("0 tiles and 0 entry bundles written") && third.contains("unchanged"));

    let unsigned = dir.path().join("unsigned");
    let unsigned = path(&unsigned);
    assert!(expect(2, &["tiles", log, unsigned]).contains("needs --origin"));
    expect(0, &["tiles", log, unsigned, "--origin", NAME]);
    let said = expect(2, &["tiles", log, out_s, "--sign", key, "--origin", "example.com/other"]);
    assert!(said.contains("not \"example.com/other\""), "{said}");
    let said = expect(2, &["tiles", log, out_s, "--sign", path(&public)]);
    assert!(said.contains("this is a verifier key"), "{said}");
    assert!(expect(2, &["tiles", path(&dir.path().join("nolog")), out_s]).contains("error:"));

    // A record too large for an entry bundle: refused, naming it, and nothing changes.
    let mut writer = Log::open(&log_dir).unwrap();
    let large = writer.append(&vec![1u8; 70_000]).unwrap();
    writer.close().unwrap();
    let said = expect(2, &["tiles", log, out_s, "--sign", key]);
    assert!(said.contains(&format!("offset {large} (entry 700)")), "{said}");
    let checkpoint = Checkpoint::open(&fs::read(out.join("checkpoint")).unwrap(), &verifier);
    assert_eq!(checkpoint.unwrap().tree_size, 700);
}
