//! Exports audited by Go's reference implementation of tiled transparency logs,
//! `golang.org/x/mod/sumdb/tlog` and `golang.org/x/mod/sumdb/note` (the code the C2SP specs
//! grew from), through the small program in `tests/go_verifier`.
//!
//! It needs a Go toolchain and the `golang.org/x/mod` source in a GOPATH (Debian:
//! `apt-get install golang-go golang-golang-x-mod-dev`, which `.ci/run` does; another GOPATH
//! can be named in `CHRONICLE_GOPATH`). Where they are missing, the test says so and passes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use chronicle::transparency::{export_tiles, SigningKey, TileExport};
use chronicle::Log;

const ORIGIN: &str = "example.com/chronicle-go";

/// Builds the verifier; `None` (and why) where Go or `golang.org/x/mod` is missing.
fn build_verifier(scratch: &Path) -> Result<PathBuf, String> {
    let gopath = std::env::var("CHRONICLE_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
    if !Path::new(&gopath).join("src/golang.org/x/mod/sumdb/tlog").is_dir() {
        return Err(format!("no golang.org/x/mod source under GOPATH {gopath}"));
    }
    let binary = scratch.join("go_verifier");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_verifier");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", scratch.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("cannot run go: {e}"))?;
    if !built.status.success() {
        // Go and x/mod are there: a build failure is a real failure.
        panic!("go build failed:\n{}", String::from_utf8_lossy(&built.stderr));
    }
    Ok(binary)
}

/// Runs the verifier: `Ok(stdout)` if it accepted the export, `Err(stdout)` if it refused.
fn go_audit(verifier: &Path, vkey: &str, out: &Path, olds: &[PathBuf]) -> Result<String, String> {
    let run = Command::new(verifier).arg(vkey).arg(out).args(olds).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    match run.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => Err(stdout),
        other => panic!("go_verifier exited {other:?}: {}", String::from_utf8_lossy(&run.stderr)),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn append(log: &mut Log, from: u64, to: u64) {
    for i in from..to {
        let payload: Vec<u8> = (0..(i * 13 % 37)).map(|k| (i + k) as u8).collect();
        log.append(&payload).unwrap();
    }
}

/// A log grown through sizes where tiles fill and split, exported into one directory after
/// each step: Go's `sumdb/note` verifies every checkpoint, `sumdb/tlog` recomputes its root
/// from the tiles, checks every entry of every bundle and proves every earlier checkpoint a
/// prefix of the newest. A damaged tile or bundle, another key, and a changed byte of the
/// checkpoint are each refused.
#[test]
fn gos_sumdb_tlog_audits_exports() {
    let scratch = tempfile::tempdir().unwrap();
    let verifier = match build_verifier(scratch.path()) {
        Ok(verifier) => verifier,
        Err(why) => {
            println!("skipped: Go's reference verifier is not available here ({why})");
            return;
        }
    };
    let (log_dir, out) = (scratch.path().join("log"), scratch.path().join("out"));
    let mut log = Log::open(&log_dir).unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let vkey = key.verifier().to_string();
    let export = TileExport { origin: ORIGIN, key: Some(&key) };
    let mut olds = Vec::new();
    let mut size = 0;
    for next in [0, 1, 255, 256, 257, 1_234, 65_536, 65_537, 65_900] {
        append(&mut log, size, next);
        size = next;
        export_tiles(&log, &out, &export).unwrap();
        let head = log.tree_head(None).unwrap();
        let said = go_audit(&verifier, &vkey, &out, &olds).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(said.trim(), format!("ok {size} {}", base64(&head.root.0)));
        let kept = scratch.path().join(format!("checkpoint-{size}"));
        fs::copy(out.join("checkpoint"), &kept).unwrap();
        olds.push(kept);
    }

    // Damage: one byte of a tile, of a bundle, of a partial tile; a checkpoint signed by another
    // key.
    let refused = |out: &Path| go_audit(&verifier, &vkey, out, &[]).unwrap_err();
    for file in ["tile/0/017", "tile/entries/017", "tile/1/000", "tile/0/257.p/108"] {
        let path = out.join(file);
        let good = fs::read(&path).unwrap();
        let mut bad = good.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(refused(&out).starts_with("fail:"), "{file}");
        fs::write(&path, &good).unwrap();
    }
    let good = fs::read(out.join("checkpoint")).unwrap();
    let other = SigningKey::generate(ORIGIN).unwrap();
    let checkpoint = chronicle::transparency::Checkpoint::parse_unverified(&good).unwrap();
    fs::write(out.join("checkpoint"), checkpoint.sign(&other).unwrap()).unwrap();
    assert!(refused(&out).contains("no verifiable signatures"));

    // Every byte of a small export's checkpoint, changed (its case or its top bits flipped).
    let small = scratch.path().join("small");
    let mut log = Log::open(scratch.path().join("small-log")).unwrap();
    append(&mut log, 0, 300);
    export_tiles(&log, &small, &export).unwrap();
    let good = fs::read(small.join("checkpoint")).unwrap();
    go_audit(&verifier, &vkey, &small, &[]).unwrap();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        fs::write(small.join("checkpoint"), &bad).unwrap();
        assert!(go_audit(&verifier, &vkey, &small, &[]).is_err(), "byte {at} ^ 0x20 accepted");
    }
}
