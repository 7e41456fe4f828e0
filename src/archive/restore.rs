//! Restore (`FORMAT.md` 15.8): a log rebuilt in a new directory from the latest catalog, up to
//! a point, from no more objects than that point needs, each checked before it is used.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::check::{check_image, check_link, fetch_image, fetch_manifest, latest_catalog, Stats};
use super::error::{ArchiveError, Result};
use super::format::{new_run_id, CatalogEntry, Manifest};
use super::scan::walk_frames;
use super::store::Store;
use super::{RestoreOptions, RestorePoint, RestoreReport};
use crate::format::{segment_file_name, SEGMENT_HEADER_LEN};
use crate::log::{write_start_record, StartRecord};
use crate::rollup::TreeHead;
use crate::Log;

/// Restores the backup at `url` into `target`; see [`restore`](super::restore).
pub(super) fn restore(url: &str, target: &Path, options: &RestoreOptions) -> Result<RestoreReport> {
    let store = Store::open(url, &options.store_options)?;
    let staging = staging_dir(target)?;
    let result = restore_into(&store, url, &staging, options);
    match result {
        Ok(report) => {
            std::fs::rename(&staging, target)
                .map_err(|e| ArchiveError::io("rename the restored log to", target, e))?;
            if let Some(parent) = parent_of(target) {
                sync_dir(&parent)?;
            }
            Ok(report)
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err)
        }
    }
}

fn parent_of(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute.parent().map(Path::to_path_buf)
}

/// Checks that `target` does not exist or is an empty directory, and makes the directory the
/// log is restored into first, beside it (renamed to `target` at the end).
fn staging_dir(target: &Path) -> Result<PathBuf> {
    let invalid = |reason: String| ArchiveError::InvalidRestore { reason };
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(invalid(format!("`{}` exists and is not empty", target.display())));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(ArchiveError::io("read", target, err)),
    }
    let parent = parent_of(target)
        .ok_or_else(|| invalid(format!("`{}` has no parent directory", target.display())))?;
    let name = target
        .file_name()
        .ok_or_else(|| invalid(format!("`{}` does not name a directory", target.display())))?;
    let staging = parent.join(format!(".{}.restoring-{}", name.to_string_lossy(), new_run_id()));
    std::fs::create_dir(&staging).map_err(|e| ArchiveError::io("create", &staging, e))?;
    Ok(staging)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io("sync the directory", dir, e))
}

/// The catalog entries a point needs: every segment up to the one the point falls in.
fn needed<'a>(
    entries: &'a [CatalogEntry],
    point: RestorePoint,
    url: &str,
) -> Result<&'a [CatalogEntry]> {
    let invalid = |reason: String| ArchiveError::InvalidRestore { reason };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(invalid(format!("the catalog at `{url}` lists no segment")));
    };
    let count = match point {
        RestorePoint::Latest => entries.len(),
        RestorePoint::Offset(offset) => {
            if offset < first.base_offset || offset > last.end_offset {
                return Err(invalid(format!(
                    "offset {offset} is outside the backup, which holds offsets {} to {}",
                    first.base_offset, last.end_offset
                )));
            }
            entries.iter().filter(|e| e.base_offset < offset).count().max(1)
        }
        RestorePoint::Time(ms) => {
            entries.iter().position(|e| e.max_write_ms > ms).map_or(entries.len(), |i| i + 1)
        }
    };
    Ok(entries.get(..count).unwrap_or(entries))
}

/// Where to cut the image of the last segment needed: the length of data to keep, `None` for
/// all of it. The cut is at a batch boundary: records below the offset, or records written at or
/// before the time, up to the first that is not.
fn find_cut(key: &str, m: &Manifest, image: &[u8], point: RestorePoint) -> Result<Option<u64>> {
    let data = image.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
    let mut keep = 0u64;
    let mut stopped = false;
    walk_frames(data, m.base_offset, |frame| {
        if stopped {
            return;
        }
        let past = match point {
            RestorePoint::Latest => false,
            RestorePoint::Offset(offset) => frame.offset >= offset,
            RestorePoint::Time(ms) => {
                !frame.header.is_gap() && frame.header.write_timestamp_ms > ms
            }
        };
        if past {
            stopped = true;
        } else if frame.completes_batch() {
            keep = frame.offset + frame.header.stride() - m.base_offset;
        }
    })
    .map_err(|err| {
        ArchiveError::damaged(key, format!("frame at offset {}: {}", err.offset, err.reason))
    })?;
    Ok((stopped || keep < data.len() as u64).then_some(keep))
}

fn restore_into(
    store: &Store,
    url: &str,
    dir: &Path,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let mut stats = Stats::default();
    let (catalog_key, catalog, _) =
        latest_catalog(store)?.ok_or_else(|| ArchiveError::NoBackup { url: url.to_string() })?;
    stats.objects_read += 1;
    let entries = needed(&catalog.segments, options.point, url)?;
    let mut prev: Option<(Manifest, crate::rollup::Hash)> = None;
    let mut report = RestoreReport {
        catalog_seq: catalog.seq,
        segments: 0,
        start_offset: 0,
        end_offset: 0,
        first_entry: 0,
        head: catalog.head,
        objects_read: 0,
        bytes_read: 0,
        log_checked: false,
    };
    // One thread fetches (and checks the digests of) the next segment's manifest and pieces
    // while this one checks and writes the current one.
    std::thread::scope(|scope| -> Result<()> {
        let (sender, fetched) = std::sync::mpsc::sync_channel(1);
        let catalog_key = &catalog_key;
        scope.spawn(move || {
            for entry in entries {
                let mut stats = Stats::default();
                let result = fetch_manifest(store, catalog_key, entry).and_then(|manifest| {
                    stats.objects_read += 1;
                    let image = fetch_image(store, &entry.manifest, &manifest, &mut stats)?;
                    Ok((manifest, image, stats))
                });
                let failed = result.is_err();
                if sender.send(result).is_err() || failed {
                    break;
                }
            }
        });
        for (i, entry) in entries.iter().enumerate() {
            let (manifest, image, fetch_stats) = fetched.recv().map_err(|_| {
                ArchiveError::damaged(&entry.manifest, "the fetching thread stopped")
            })??;
            stats.objects_read += fetch_stats.objects_read;
            stats.bytes_read += fetch_stats.bytes_read;
            let key = &entry.manifest;
            check_link(key, &manifest, prev.as_ref().map(|(m, sha)| (m, *sha)))?;
            let is_last = i + 1 == entries.len();
            let cut = match is_last {
                true => find_cut(key, &manifest, &image, options.point)?,
                false => None,
            };
            let facts = check_image(key, &manifest, &image, prev.as_ref().map(|(m, _)| m), cut)?;
            report.head = match facts.cut {
                Some(cut_head) => cut_head,
                None => manifest.tree_head,
            };
            let keep = SEGMENT_HEADER_LEN as u64
                + cut.unwrap_or(manifest.image_bytes - SEGMENT_HEADER_LEN as u64);
            let image = image.get(..usize::try_from(keep).unwrap_or(usize::MAX)).unwrap_or(&image);
            write_segment(dir, &manifest, image)?;
            report.segments += 1;
            report.end_offset = manifest.base_offset + (keep - SEGMENT_HEADER_LEN as u64);
            if i == 0 {
                report.start_offset = manifest.base_offset;
                report.first_entry = manifest.first_entry;
                if manifest.base_offset != 0 {
                    // The backup begins after retention removed the log's front: the restored
                    // log says where it begins, as the original does (FORMAT.md 6.6), or its
                    // first segment would read as a missing one.
                    let start = StartRecord {
                        log_id: manifest.log_id,
                        start_offset: manifest.base_offset,
                        start_entry: manifest.first_entry,
                    };
                    write_start_record(dir, &start)?;
                }
            }
            prev = Some((manifest, entry.manifest_sha256));
        }
        Ok(())
    })?;
    sync_dir(dir)?;
    report.objects_read = stats.objects_read;
    report.bytes_read = stats.bytes_read;
    if options.check_log {
        report.log_checked = check_restored(dir, &report)?;
    }
    Ok(report)
}

/// Writes a segment file: the image, then zeros up to the segment's full length, preallocated
/// as Chronicle's writer makes its segments; synced.
fn write_segment(dir: &Path, m: &Manifest, image: &[u8]) -> Result<()> {
    let path = dir.join(segment_file_name(m.base_offset));
    let mut file = File::create_new(&path).map_err(|e| ArchiveError::io("create", &path, e))?;
    file.write_all(image).map_err(|e| ArchiveError::io("write", &path, e))?;
    file.set_len(m.file_bytes).map_err(|e| ArchiveError::io("extend", &path, e))?;
    fs4::fs_std::FileExt::allocate(&file, m.file_bytes)
        .map_err(|e| ArchiveError::io("preallocate", &path, e))?;
    file.sync_all().map_err(|e| ArchiveError::io("sync", &path, e))
}

/// Opens the restored log and checks that it holds what was restored: its end and, when the
/// backup starts at the log's first entry, its tree head. Returns whether the head was compared.
fn check_restored(dir: &Path, report: &RestoreReport) -> Result<bool> {
    let log = Log::open_read_only(dir)?;
    let mismatch = |reason: String| ArchiveError::InvalidRestore {
        reason: format!("the restored log does not match the backup: {reason}"),
    };
    if log.end_offset() != report.end_offset || log.start_offset() != report.start_offset {
        return Err(mismatch(format!(
            "it holds offsets {} to {}, the backup {} to {}",
            log.start_offset(),
            log.end_offset(),
            report.start_offset,
            report.end_offset
        )));
    }
    if report.first_entry != 0 {
        // The log's own tree counts from its first record; the backup's from entry 0 of the
        // log it came from, whose earlier records it does not hold.
        return Ok(false);
    }
    let head: TreeHead = log.tree_head(None)?;
    if head != report.head {
        return Err(mismatch(format!("its tree head is {head:?}, the backup's {:?}", report.head)));
    }
    Ok(true)
}
