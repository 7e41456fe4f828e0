//! Verifying a backup without restoring it (`FORMAT.md` 15.7): every object the latest
//! catalog names, every byte, every link, every frame and the tree, with each problem reported
//! against the object it concerns.

use std::collections::BTreeSet;

use super::check::{check_image, check_link, fetch_image, fetch_manifest, latest_catalog, Stats};
use super::error::{ArchiveError, Result};
use super::format::{Manifest, MANIFESTS, SEGMENTS};
use super::store::Store;
use super::{BackupCheck, Problem};
use crate::rollup::Hash;

fn problem(err: &ArchiveError) -> Problem {
    Problem { object: err.object().unwrap_or("").to_string(), reason: err.to_string() }
}

/// Whether `err` means the store could not be used (so verification cannot go on) rather
/// than that an object is damaged.
fn is_access(err: &ArchiveError) -> bool {
    matches!(
        err,
        ArchiveError::Store { .. } | ArchiveError::Destination { .. } | ArchiveError::Io { .. }
    )
}

pub(super) fn verify(url: &str, store_options: &[(String, String)]) -> Result<BackupCheck> {
    let store = Store::open(url, store_options)?;
    let mut report = BackupCheck::default();
    let mut stats = Stats::default();
    let (catalog_key, catalog) = match latest_catalog(&store) {
        Ok(Some((key, catalog, _))) => (key, catalog),
        Ok(None) => return Err(ArchiveError::NoBackup { url: url.to_string() }),
        Err(err) if is_access(&err) => return Err(err),
        Err(err) => {
            report.problems.push(problem(&err));
            return Ok(report);
        }
    };
    stats.objects_read += 1;
    report.catalog = Some(catalog_key.clone());
    report.catalog_seq = Some(catalog.seq);
    report.head = Some(catalog.head);
    report.segments = catalog.segments.len();
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut prev: Option<(Manifest, Hash)> = None;
    for (i, entry) in catalog.segments.iter().enumerate() {
        named.insert(entry.manifest.clone());
        let key = &entry.manifest;
        let manifest = match fetch_manifest(&store, &catalog_key, entry) {
            Ok(manifest) => manifest,
            Err(err) if is_access(&err) => return Err(err),
            Err(err) => {
                report.problems.push(problem(&err));
                prev = None;
                continue;
            }
        };
        stats.objects_read += 1;
        named.extend(manifest.pieces.iter().map(|p| p.key.clone()));
        // A broken link is reported, and the segment is still checked on its own.
        if prev.is_some() || i == 0 {
            if let Err(err) = check_link(key, &manifest, prev.as_ref().map(|(m, sha)| (m, *sha))) {
                report.problems.push(problem(&err));
            }
        }
        let checked = fetch_image(&store, key, &manifest, &mut stats).and_then(|image| {
            check_image(key, &manifest, &image, prev.as_ref().map(|(m, _)| m), None)
        });
        match checked {
            Ok(_) => report.records += manifest.entries_end - manifest.first_entry,
            Err(err) if is_access(&err) => return Err(err),
            Err(err) => report.problems.push(problem(&err)),
        }
        report.end_offset = manifest.end_offset;
        if let Some(last) = catalog.segments.last() {
            if last.base_offset == manifest.base_offset && manifest.tree_head != catalog.head {
                report.problems.push(problem(&ArchiveError::damaged(
                    &catalog_key,
                    "its head is not the last manifest's tree head",
                )));
            }
        }
        prev = Some((manifest, entry.manifest_sha256));
    }
    for prefix in [MANIFESTS, SEGMENTS] {
        for (key, _) in store.list(prefix)? {
            if !named.contains(&key) {
                report.unreferenced.push(key);
            }
        }
    }
    report.objects_read = stats.objects_read;
    report.bytes_read = stats.bytes_read;
    Ok(report)
}
