//! Damage to a backup is refused by restore and reported by `verify_backup`, each naming the
//! object: a change of each byte, one at a time, of every kind of object (catalog, manifest, a
//! stored piece and a zstd piece), a missing piece or manifest, a catalog that names a missing
//! object, drops or reorders a segment, or names a key outside the backup, and objects of a
//! newer version.

mod archive_common;

use std::fs;
use std::path::{Path, PathBuf};

use archive_common::{append_events, S3Server};
use chronicle::archive::{self, ArchiveError, BackupOptions, RestoreOptions};
use chronicle::{EventLog, Options};
use sha2::{Digest as _, Sha256};

/// A backup in a local directory: three sealed segments of 8 KiB, one zstd-compressed, and a
/// growing last segment stored in two pieces.
struct Fixture {
    _dir: tempfile::TempDir,
    backup: PathBuf,
    url: String,
    scratch: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let url = format!("file://{}", backup.display());
    let options = Options { segment_bytes: 8 << 10, ..Options::default() };
    let mut log = EventLog::open_with(dir.path().join("log"), options).unwrap();
    append_events(&mut log, 40, 3);
    log.sync().unwrap();
    let zstd = BackupOptions { zstd_level: Some(5), ..BackupOptions::default() };
    archive::backup(log.log(), &url, zstd).unwrap();
    append_events(&mut log, 50, 4);
    log.sync().unwrap();
    archive::backup(log.log(), &url, BackupOptions::default()).unwrap();
    append_events(&mut log, 5, 5);
    log.sync().unwrap();
    archive::backup(log.log(), &url, BackupOptions::default()).unwrap();
    log.close().unwrap();
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    Fixture { backup, url, scratch, _dir: dir }
}

impl Fixture {
    fn path(&self, key: &str) -> PathBuf {
        self.backup.join(key)
    }

    /// The keys in folder `folder`, sorted.
    fn keys(&self, folder: &str) -> Vec<String> {
        let mut keys: Vec<String> = fs::read_dir(self.backup.join(folder))
            .unwrap()
            .map(|e| format!("{folder}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        keys.sort();
        keys
    }

    fn catalog(&self) -> String {
        self.keys("catalogs").pop().unwrap()
    }

    /// The manifests the latest catalog names, in order, and the pieces they name.
    fn named(&self) -> (Vec<String>, Vec<String>) {
        let catalog = json(&self.path(&self.catalog()));
        let manifests: Vec<String> = catalog["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manifest"].as_str().unwrap().to_string())
            .collect();
        let pieces = manifests
            .iter()
            .flat_map(|m| {
                let manifest = json(&self.path(m));
                let keys: Vec<String> = manifest["pieces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["key"].as_str().unwrap().to_string())
                    .collect();
                keys
            })
            .collect();
        (manifests, pieces)
    }

    /// Checks that verification reports a problem naming `object` and that restore fails
    /// naming it, leaving nothing at the target.
    fn assert_refused(&self, object: &str, what: &str) {
        let check = archive::verify_backup(&self.url, &[]).unwrap();
        assert!(
            check.problems.iter().any(|p| p.object == object),
            "{what}: verify_backup did not name {object}: {:?}",
            check.problems
        );
        let target = self.scratch.join("restored");
        let err = archive::restore(&self.url, &target, &RestoreOptions::default()).unwrap_err();
        assert!(
            err.is_damage() || matches!(err, ArchiveError::UnsupportedVersion { .. }),
            "{what}: {err}"
        );
        assert_eq!(err.object(), Some(object), "{what}: restore failed with {err}");
        assert!(!target.exists(), "{what}: a failed restore left {}", target.display());
    }

    fn assert_sound(&self) {
        let check = archive::verify_backup(&self.url, &[]).unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
    }
}

/// The JSON body of an object of the backup.
fn json(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap();
    serde_json::from_slice(&bytes[..bytes.len() - 72]).unwrap()
}

/// Changes each byte of `key` in turn and checks that every change is refused. Returns how
/// many were made.
fn change_every_byte(fixture: &Fixture, key: &str) -> usize {
    let path = fixture.path(key);
    let original = fs::read(&path).unwrap();
    for at in 0..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0x20;
        fs::write(&path, &damaged).unwrap();
        fixture.assert_refused(key, &format!("byte {at} of {key}"));
    }
    fs::write(&path, &original).unwrap();
    fixture.assert_sound();
    original.len()
}

#[test]
fn every_kind_of_object_refuses_every_changed_byte() {
    let fixture = fixture();
    fixture.assert_sound();
    let (manifests, pieces) = fixture.named();
    let zstd = pieces.iter().find(|k| k.ends_with(".zst")).expect("a zstd piece");
    let raw = pieces.iter().rfind(|k| k.ends_with(".seg")).expect("a stored piece");
    let manifest = manifests[1].clone();
    for key in [&fixture.catalog(), &manifest, zstd, raw] {
        let changed = change_every_byte(&fixture, key);
        println!("{key}: {changed} single-byte changes, each refused and reported");
    }
}

/// Rewrites a JSON object of the backup with a valid digest line after `edit` changed it.
fn rewrite(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let original = fs::read(path).unwrap();
    let body = &original[..original.len() - 72];
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    edit(&mut value);
    let mut bytes = serde_json::to_vec_pretty(&value).unwrap();
    bytes.push(b'\n');
    let digest = hex::encode(Sha256::digest(&bytes));
    bytes.extend_from_slice(format!("sha256:{digest}\n").as_bytes());
    fs::write(path, &bytes).unwrap();
    original
}

fn sha_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn missing_reordered_and_misnamed_objects_are_refused() {
    let fixture = fixture();
    let catalog_key = fixture.catalog();
    let catalog = fixture.path(&catalog_key);

    // A piece or a manifest that is gone.
    let (manifests, pieces) = fixture.named();
    for key in [pieces[1].clone(), manifests[2].clone()] {
        let saved = fs::read(fixture.path(&key)).unwrap();
        fs::remove_file(fixture.path(&key)).unwrap();
        fixture.assert_refused(&key, &format!("{key} missing"));
        fs::write(fixture.path(&key), saved).unwrap();
    }

    // A catalog naming a manifest that does not exist (a well-formed key).
    let missing =
        "manifests/00000000000000000000-00000000000000000064-sealed-00000000000000aa.json";
    let saved = rewrite(&catalog, |c| {
        c["segments"][0]["manifest"] = missing.into();
        c["segments"][0]["end_offset"] = 64.into();
    });
    fixture.assert_refused(
        &catalog_key,
        "a catalog whose first segment ends where the second does not start",
    );
    fs::write(&catalog, &saved).unwrap();
    let first_end = {
        let v: serde_json::Value = serde_json::from_slice(&saved[..saved.len() - 72]).unwrap();
        v["segments"][0]["end_offset"].as_u64().unwrap()
    };
    let missing =
        format!("manifests/00000000000000000000-{first_end:020}-sealed-00000000000000aa.json");
    rewrite(&catalog, |c| c["segments"][0]["manifest"] = missing.clone().into());
    fixture.assert_refused(&missing, "a catalog naming a missing manifest");
    fs::write(&catalog, &saved).unwrap();

    // A segment dropped from the catalog, or two swapped.
    rewrite(&catalog, |c| {
        c["segments"].as_array_mut().unwrap().remove(1);
    });
    fixture.assert_refused(&catalog_key, "a segment dropped from the catalog");
    fs::write(&catalog, &saved).unwrap();
    rewrite(&catalog, |c| c["segments"].as_array_mut().unwrap().swap(0, 1));
    fixture.assert_refused(&catalog_key, "two segments swapped in the catalog");
    fs::write(&catalog, &saved).unwrap();

    // A manifest replaced by another segment's (its hash no longer the catalog's), and a
    // manifest whose previous-manifest link is wrong although the catalog names its new hash.
    let (one, two) = (fixture.path(&manifests[1]), fixture.path(&manifests[2]));
    let saved_two = fs::read(&two).unwrap();
    fs::copy(&one, &two).unwrap();
    fixture.assert_refused(&manifests[2], "a manifest replaced by another");
    fs::write(&two, &saved_two).unwrap();
    rewrite(&two, |m| m["prev_manifest_sha256"] = "00".repeat(32).into());
    let new_sha = sha_hex(&two);
    rewrite(&catalog, |c| {
        for entry in c["segments"].as_array_mut().unwrap() {
            if entry["manifest"] == manifests[2].as_str() {
                entry["manifest_sha256"] = new_sha.clone().into();
            }
        }
    });
    fixture.assert_refused(&manifests[2], "a broken manifest chain");
    fs::write(&two, &saved_two).unwrap();
    fs::write(&catalog, &saved).unwrap();

    // Keys that would leave the backup (or the restore directory).
    rewrite(&catalog, |c| c["segments"][0]["manifest"] = "../../etc/passwd".into());
    let err = archive::restore(&fixture.url, fixture.scratch.join("r"), &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, ArchiveError::UnsafeKey { .. }), "{err}");
    fs::write(&catalog, &saved).unwrap();
    let saved_one = rewrite(&one, |m| m["pieces"][0]["key"] = "/etc/passwd".into());
    let new_sha = sha_hex(&one);
    rewrite(&catalog, |c| {
        for entry in c["segments"].as_array_mut().unwrap() {
            if entry["manifest"] == manifests[1].as_str() {
                entry["manifest_sha256"] = new_sha.clone().into();
            }
        }
    });
    let err = archive::restore(&fixture.url, fixture.scratch.join("r"), &RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, ArchiveError::UnsafeKey { .. }), "{err}");
    fs::write(&catalog, &saved).unwrap();
    fs::write(&one, &saved_one).unwrap();

    // A catalog of a newer version.
    rewrite(&catalog, |c| c["version"] = 2.into());
    fixture.assert_refused(&catalog_key, "a newer catalog version");
    fs::write(&catalog, &saved).unwrap();
    fixture.assert_sound();
}

#[test]
fn s3_missing_piece_is_named() {
    let server = S3Server::start();
    let url = server.url("damage");
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(
        dir.path().join("log"),
        Options { segment_bytes: 8 << 10, ..Options::default() },
    )
    .unwrap();
    append_events(&mut log, 60, 9);
    log.sync().unwrap();
    let options = BackupOptions { store_options: server.options(), ..BackupOptions::default() };
    archive::backup(log.log(), &url, options).unwrap();
    let segments = server.dir_of("damage").join("segments");
    let mut pieces: Vec<_> = fs::read_dir(&segments).unwrap().map(|e| e.unwrap().path()).collect();
    pieces.sort();
    fs::remove_file(&pieces[1]).unwrap();
    let key = format!("segments/{}", pieces[1].file_name().unwrap().to_string_lossy());
    let check = archive::verify_backup(&url, &server.options()).unwrap();
    assert!(check.problems.iter().any(|p| p.object == key), "{:?}", check.problems);
    let restore = RestoreOptions { store_options: server.options(), ..RestoreOptions::default() };
    let err = archive::restore(&url, dir.path().join("restored"), &restore).unwrap_err();
    assert!(matches!(&err, ArchiveError::Missing { key: k, .. } if *k == key), "{err}");
}
