//! Shipping a log to a destination: the segments not yet there, then the durable part of the
//! active one, each with its manifest, then a new catalog (`FORMAT.md` 15.6). A one-off
//! [`backup`](super::backup) is one round of a [`Shipper`]; `chronicle ship` runs rounds
//! until it is stopped.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::{ArchiveError, Result};
use super::format::{
    catalog_key, encode_object, manifest_key, new_run_id, piece_key, sha256, Catalog, CatalogEntry,
    Codec, Manifest, Piece, CATALOG_FORMAT, MANIFEST_FORMAT, OBJECT_VERSION,
};
use super::lease::LeaseHolder;
use super::scan::{walk_frames, CompactRange};
use super::store::Store;
use super::{check, now_ms, BackupOptions, ShipReport};
use crate::format::{parse_segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::rollup::TreeHead;
use crate::{Log, StorageError};

const HEADER: u64 = SEGMENT_HEADER_LEN as u64;

/// A segment file of the local log.
#[derive(Debug, Clone)]
struct LocalSegment {
    base: u64,
    path: PathBuf,
}

/// The segment files of the log in `dir`, by base offset.
fn local_segments(dir: &Path) -> Result<Vec<LocalSegment>> {
    let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::io("list", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io("list", dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            segments.push(LocalSegment { base, path: entry.path() });
        }
    }
    segments.sort_by_key(|s| s.base);
    Ok(segments)
}

/// Reads `len` bytes at file position `at` of `path`.
fn read_range(path: &Path, at: u64, len: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| ArchiveError::io("open", path, e))?;
    let len = usize::try_from(len).map_err(|_| ArchiveError::LocalDamage {
        segment: path.to_path_buf(),
        offset: at,
        reason: "too large to read".into(),
    })?;
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, at).map_err(|e| ArchiveError::io("read", path, e))?;
    Ok(bytes)
}

/// The last segment shipped: its manifest, and what continuing it needs.
#[derive(Debug, Clone)]
struct Last {
    manifest: Manifest,
    /// SHA-256 over the image shipped so far, to extend if the segment grows.
    hasher: Option<Sha256>,
    /// The tree's compact range at the manifest's `entries_end`, if known.
    range_end: Option<CompactRange>,
    /// SHA-256 of the manifest object.
    sha: crate::rollup::Hash,
}

/// Ships one log to one destination, round after round, holding the destination's lease.
#[derive(Debug)]
pub struct Shipper {
    store: Store,
    options: BackupOptions,
    run: String,
    /// The id in the keys of the objects this shipper writes: its run id, and a new one after
    /// a failed round, so that a round tried again never meets the objects of the one that
    /// failed (which nothing names).
    keys: String,
    lease: Option<LeaseHolder>,
    loaded: bool,
    catalog: Option<(Catalog, crate::rollup::Hash)>,
    last: Option<Last>,
    /// Keys that catalogs published by this shipper stopped naming, with the sequence number
    /// of the catalog that stopped naming them: deleted once a later catalog is out too.
    retired: VecDeque<(u64, Vec<String>)>,
}

impl Shipper {
    /// Opens the destination `url` and takes its lease.
    ///
    /// # Errors
    /// [`ArchiveError::Leased`] if another backup or shipper holds it;
    /// [`ArchiveError::Destination`] or [`ArchiveError::Store`] if the destination cannot be
    /// used; [`ArchiveError::Log`] for invalid options.
    pub fn new(url: &str, options: BackupOptions) -> Result<Shipper> {
        options.check()?;
        let store = Store::open(url, &options.store_options)?;
        let run = new_run_id();
        let lease = LeaseHolder::acquire(&store, &run, options.lease_duration)?;
        Ok(Shipper {
            store,
            options,
            keys: run.clone(),
            run,
            lease: Some(lease),
            loaded: false,
            catalog: None,
            last: None,
            retired: VecDeque::new(),
        })
    }

    /// This shipper's run id (in the keys of the objects it writes and in its lease).
    #[must_use]
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Ships what `log` has made durable and the destination does not hold yet, and publishes
    /// the catalog that names it. On return everything in the report is durable in the store.
    /// `log` may be the writer's handle or a read-only one; a read-only handle knows a record
    /// is durable once a later frame says so (`LogReader::durable_offset`).
    ///
    /// # Errors
    /// [`ArchiveError::Diverged`] if the log does not continue what the destination holds
    /// (another log, or one cut back below it); [`ArchiveError::LocalDamage`] for a segment that
    /// cannot be read; [`ArchiveError::Conflict`] if another writer published a catalog or took
    /// the lease; store and log errors.
    pub fn ship(&mut self, log: &Log) -> Result<ShipReport> {
        let result = self.round(log);
        if result.is_err() {
            // What this shipper believes the destination holds may be ahead of the catalog
            // (objects written, catalog not): the next round reads it again.
            self.loaded = false;
            self.catalog = None;
            self.last = None;
            self.keys = new_run_id();
        }
        result
    }

    fn round(&mut self, log: &Log) -> Result<ShipReport> {
        let lease = self.lease.as_mut().ok_or_else(|| ArchiveError::Conflict {
            key: super::format::LEASE_KEY.to_string(),
            reason: "this shipper has released its lease".to_string(),
        })?;
        lease.renew(&self.store)?;
        let segments = local_segments(log.dir())?;
        let log_id = match segments.first() {
            Some(first) => read_header(&first.path, first.base)?.log_id,
            None => {
                return Err(StorageError::NotALogDirectory {
                    path: log.dir().to_path_buf(),
                    found: "no segment file".to_string(),
                }
                .into())
            }
        };
        if !self.loaded {
            self.load(log_id, &segments)?;
        }
        let durable = log.reader().durable_offset();
        let mut report = ShipReport { run_id: self.run.clone(), ..ShipReport::default() };
        let mut entries: Vec<CatalogEntry> =
            self.catalog.as_ref().map(|(c, _)| c.segments.clone()).unwrap_or_default();
        let mut retired = Vec::new();
        // Bytes shipped that no catalog names yet: a long round (a first backup) publishes a
        // catalog every `catalog_every_bytes`, so that a crash does not lose all of it.
        let (mut unpublished, mut pending) = (0, false);
        for (i, segment) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map(|s| s.base);
            let Some(plan) = self.plan(segment, next_base, durable)? else { continue };
            let before = report.bytes_shipped;
            let (entry, old) = self.ship_segment(log, log_id, segment, plan, &mut report)?;
            let sealed = entry.sealed;
            match entries.last_mut() {
                Some(last) if last.base_offset == entry.base_offset => *last = entry,
                _ => entries.push(entry),
            }
            retired.extend(old);
            pending = true;
            unpublished += report.bytes_shipped - before;
            if sealed && unpublished >= self.options.catalog_every_bytes {
                self.publish(log_id, entries.clone(), std::mem::take(&mut retired))?;
                report.catalogs_published += 1;
                (unpublished, pending) = (0, false);
            }
        }
        if pending || self.catalog.is_none() {
            self.publish(log_id, entries, retired)?;
            report.catalogs_published += 1;
        }
        if let Some((catalog, _)) = &self.catalog {
            report.catalog_seq = Some(catalog.seq);
            report.end_offset = catalog.segments.last().map_or(0, |e| e.end_offset);
            report.head = Some(catalog.head);
        }
        if let Some(name) = &self.options.consumer {
            // After the catalog: the position never runs ahead of what the store holds.
            let mut consumer = log.consumer(name)?;
            if consumer.position() != Some(report.end_offset) {
                consumer.commit(report.end_offset)?;
            }
        }
        Ok(report)
    }

    /// Releases the lease.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub fn release(mut self) -> Result<()> {
        match self.lease.take() {
            Some(lease) => lease.release(&self.store),
            None => Ok(()),
        }
    }

    /// Reads the destination's latest catalog and checks that the log continues it.
    fn load(&mut self, log_id: u64, segments: &[LocalSegment]) -> Result<()> {
        let Some((_, catalog, sha)) = check::latest_catalog(&self.store)? else {
            self.loaded = true;
            return Ok(());
        };
        if catalog.log_id != log_id {
            return Err(ArchiveError::Diverged {
                reason: format!(
                    "the destination holds a backup of log {:016x}, this log is {log_id:016x}",
                    catalog.log_id
                ),
            });
        }
        if let Some(entry) = catalog.segments.last() {
            let key = super::format::catalog_key(catalog.seq);
            let manifest = check::fetch_manifest(&self.store, &key, entry)?;
            let local = segments.iter().find(|s| s.base == manifest.base_offset);
            let last = match local {
                Some(local) => resume_from_local(local, manifest, entry.manifest_sha256)?,
                None if manifest.sealed => {
                    Last { manifest, hasher: None, range_end: None, sha: entry.manifest_sha256 }
                }
                None => {
                    return Err(ArchiveError::Diverged {
                        reason: format!(
                            "the backup ends inside the segment at {}, which the log no longer has",
                            manifest.base_offset
                        ),
                    })
                }
            };
            self.last = Some(last);
        }
        self.catalog = Some((catalog, sha));
        self.loaded = true;
        Ok(())
    }

    /// What to ship of `segment`: `None` if nothing, else the image bytes `[from, to)` and
    /// whether it is sealed.
    fn plan(
        &self,
        segment: &LocalSegment,
        next_base: Option<u64>,
        durable: u64,
    ) -> Result<Option<Plan>> {
        let sealed = next_base.is_some_and(|next| next <= durable);
        let end = match next_base {
            Some(next) if sealed => next,
            _ => durable.max(segment.base),
        };
        let Some(last) = &self.last else {
            // Nothing shipped yet: start with the log's first segment, even if it holds no
            // durable record (a restore needs its header).
            return Ok((segment.base <= durable || self.catalog.is_none()).then_some(Plan {
                from: 0,
                to: HEADER + (end - segment.base),
                sealed,
            }));
        };
        let m = &last.manifest;
        let to = HEADER + (end - segment.base);
        if segment.base < m.base_offset {
            return Ok(None);
        }
        if segment.base == m.base_offset {
            if end < m.end_offset {
                return Err(ArchiveError::Diverged {
                    reason: format!(
                        "the backup holds the segment at {} up to offset {}, the log only to {end}",
                        m.base_offset, m.end_offset
                    ),
                });
            }
            let unchanged = end == m.end_offset && sealed == m.sealed;
            return Ok((!unchanged).then_some(Plan { from: m.image_bytes, to, sealed }));
        }
        // A later segment: only once the last one shipped is sealed (it was shipped first in
        // this round if it sealed since), and only if it has durable data.
        if !m.sealed || segment.base >= durable {
            return Ok(None);
        }
        if segment.base != m.end_offset {
            return Err(ArchiveError::Diverged {
                reason: format!(
                    "the backup ends at offset {} but the log's next segment starts at {}",
                    m.end_offset, segment.base
                ),
            });
        }
        Ok(Some(Plan { from: 0, to, sealed }))
    }

    /// Ships image bytes `[plan.from, plan.to)` of `segment` and its manifest; returns the
    /// catalog entry and the keys the previous manifest of this segment named that the new one
    /// does not.
    fn ship_segment(
        &mut self,
        log: &Log,
        log_id: u64,
        segment: &LocalSegment,
        plan: Plan,
        report: &mut ShipReport,
    ) -> Result<(CatalogEntry, Vec<String>)> {
        let continuing = self.last.as_ref().filter(|l| l.manifest.base_offset == segment.base);
        let file_bytes = std::fs::metadata(&segment.path)
            .map_err(|e| ArchiveError::io("stat", &segment.path, e))?
            .len();
        let mut bytes = read_range(&segment.path, plan.from, plan.to - plan.from)?;
        let (mut manifest, mut hasher, mut range, prev_sha) = match continuing {
            Some(last) => {
                let range = last.range_end.clone().ok_or_else(|| ArchiveError::Diverged {
                    reason: "the tree at the end of the backup is unknown".into(),
                })?;
                let hasher = last.hasher.clone().ok_or_else(|| ArchiveError::Diverged {
                    reason: "the backup's last segment cannot be continued".into(),
                })?;
                (last.manifest.clone(), hasher, range, last.manifest.prev_manifest_sha256)
            }
            None => {
                let header =
                    SegmentHeader::decode(bytes.get(..SEGMENT_HEADER_LEN).unwrap_or_default())
                        .map_err(|err| local_damage(segment, segment.base, err.to_string()))?;
                if header.base_offset != segment.base || header.log_id != log_id {
                    return Err(local_damage(
                        segment,
                        segment.base,
                        "header names another segment".into(),
                    ));
                }
                if let Some(last) = &self.last {
                    if last.manifest.last_frame.is_some_and(|(offset, crc)| {
                        (offset, crc) != (header.prev_last_frame_offset, header.prev_last_frame_crc)
                    }) {
                        return Err(ArchiveError::Diverged {
                            reason: format!(
                                "the segment at {} does not follow the last frame the backup holds",
                                segment.base
                            ),
                        });
                    }
                }
                let range = match self.last.as_ref().and_then(|l| l.range_end.clone()) {
                    Some(range) => range,
                    None if segment.base == 0 => CompactRange::default(),
                    None => range_before(log, segment)?,
                };
                let prev_sha = self.last.as_ref().map(|l| l.sha);
                let manifest = empty_manifest(log_id, segment.base, file_bytes, &range);
                (manifest, Sha256::new(), range, prev_sha)
            }
        };
        // Frames from the first one not yet shipped; cut back to the last complete batch.
        let data_from = plan.from.max(HEADER);
        let skip = usize::try_from(data_from - plan.from).unwrap_or(0);
        let start_offset = segment.base + (data_from - HEADER);
        let data = bytes.get(skip..).unwrap_or_default();
        let complete = walk_frames(data, start_offset, |_| {})
            .map_err(|err| local_damage(segment, err.offset, err.reason))?;
        if complete < data.len() {
            if plan.sealed {
                return Err(local_damage(
                    segment,
                    start_offset,
                    "a sealed segment ends inside a batch".into(),
                ));
            }
            bytes.truncate(skip + complete);
        }
        let data = bytes.get(skip..).unwrap_or_default();
        walk_frames(data, start_offset, |frame| {
            manifest.last_frame = Some((frame.offset, frame.header.crc));
            if frame.header.is_gap() {
                return;
            }
            let ms = frame.header.write_timestamp_ms;
            if manifest.entries_end == manifest.first_entry {
                manifest.first_write_ms = ms;
            }
            manifest.entries_end += 1;
            manifest.last_write_ms = ms;
            manifest.max_write_ms = manifest.max_write_ms.max(ms);
            range.push_record(&frame);
        })
        .map_err(|err| local_damage(segment, err.offset, err.reason))?;
        hasher.update(&bytes);
        let to = plan.from + bytes.len() as u64;
        let head = log.tree_head(Some(range.size()))?;
        if head.root != range.root() {
            return Err(local_damage(
                segment,
                start_offset,
                format!(
                    "the records give root {}, the log's tree says {}",
                    range.root(),
                    head.root
                ),
            ));
        }
        // The manifest this one replaces stops being named by the next catalog.
        let mut retired: Vec<String> = match continuing {
            Some(_) => self
                .catalog
                .as_ref()
                .and_then(|(catalog, _)| catalog.segments.last())
                .map(|entry| entry.manifest.clone())
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let pieces_before = manifest.pieces.len();
        if to > plan.from {
            if pieces_before >= self.options.pieces_max {
                retired.extend(manifest.pieces.drain(..).map(|p| p.key));
                let whole = read_range(&segment.path, 0, to)?;
                manifest.pieces.push(self.put_piece(segment.base, 0, &whole, report)?);
            } else {
                manifest.pieces.push(self.put_piece(segment.base, plan.from, &bytes, report)?);
            }
        }
        manifest.sealed = plan.sealed;
        manifest.image_bytes = to;
        manifest.end_offset = segment.base + (to - HEADER);
        manifest.sha256 = crate::rollup::Hash(hasher.clone().finalize().into());
        manifest.tree_head = head;
        manifest.prev_manifest_sha256 = prev_sha;
        let key = manifest_key(segment.base, manifest.end_offset, manifest.sealed, &self.keys);
        let encoded = encode_object(&manifest)?;
        let manifest_sha = sha256(&encoded);
        self.create(&key, encoded, report)?;
        let entry = CatalogEntry {
            base_offset: manifest.base_offset,
            end_offset: manifest.end_offset,
            first_entry: manifest.first_entry,
            entries_end: manifest.entries_end,
            max_write_ms: manifest.max_write_ms,
            sealed: manifest.sealed,
            manifest: key,
            manifest_sha256: manifest_sha,
        };
        report.segments_shipped += 1;
        report.records_shipped += manifest.entries_end
            - continuing.map_or(manifest.first_entry, |l| l.manifest.entries_end);
        self.last = Some(Last {
            manifest,
            hasher: Some(hasher),
            range_end: Some(range),
            sha: manifest_sha,
        });
        Ok((entry, retired))
    }

    /// Stores image bytes starting at file position `start` of segment `base` as one piece.
    fn put_piece(
        &self,
        base: u64,
        start: u64,
        bytes: &[u8],
        report: &mut ShipReport,
    ) -> Result<Piece> {
        let end = start + bytes.len() as u64;
        let raw_sha = sha256(bytes);
        let (codec, stored) = match self.options.zstd_level {
            Some(level) => {
                let stored = zstd::bulk::compress(bytes, level)
                    .map_err(|err| ArchiveError::Encode { reason: format!("zstd: {err}") })?;
                (Codec::Zstd, stored)
            }
            None => (Codec::None, bytes.to_vec()),
        };
        let stored_sha = if codec == Codec::None { raw_sha } else { sha256(&stored) };
        let piece = Piece {
            key: piece_key(base, start, end, &self.keys, codec),
            start,
            end,
            sha256: raw_sha,
            codec,
            stored_bytes: stored.len() as u64,
            stored_sha256: stored_sha,
        };
        report.bytes_shipped += bytes.len() as u64;
        self.create(&piece.key, stored, report)?;
        Ok(piece)
    }

    /// Writes a new object; a key that exists already is a conflict (keys carry the run id).
    fn create(&self, key: &str, bytes: Vec<u8>, report: &mut ShipReport) -> Result<()> {
        report.bytes_stored += bytes.len() as u64;
        report.objects_written += 1;
        if self.store.create(key, bytes)? {
            Ok(())
        } else {
            Err(ArchiveError::Conflict {
                key: key.to_string(),
                reason: "an object with this run's key exists already".to_string(),
            })
        }
    }

    /// Publishes the next catalog, then deletes what the catalog before the previous one
    /// stopped naming.
    fn publish(
        &mut self,
        log_id: u64,
        segments: Vec<CatalogEntry>,
        retired: Vec<String>,
    ) -> Result<()> {
        let (seq, prev) = match &self.catalog {
            Some((catalog, sha)) => (catalog.seq + 1, Some(*sha)),
            None => (0, None),
        };
        let head = match &self.last {
            Some(last) => last.manifest.tree_head,
            None => TreeHead {
                tree_size: 0,
                root: crate::rollup::empty_root(),
                end_offset: 0,
                last_write_timestamp_ms: 0,
            },
        };
        let catalog = Catalog {
            format: CATALOG_FORMAT.to_string(),
            version: OBJECT_VERSION,
            seq,
            log_id,
            writer: self.run.clone(),
            written_at_ms: now_ms(),
            segments,
            head,
            prev_catalog_sha256: prev,
        };
        let key = catalog_key(seq);
        let bytes = encode_object(&catalog)?;
        let sha = sha256(&bytes);
        if !self.store.create(&key, bytes)? {
            return Err(ArchiveError::Conflict {
                key,
                reason: "another writer published this catalog first".to_string(),
            });
        }
        self.catalog = Some((catalog, sha));
        let mut retired = retired;
        if seq >= 2 {
            retired.push(catalog_key(seq - 2));
        }
        self.retired.push_back((seq, retired));
        while self.retired.front().is_some_and(|(s, _)| *s < seq) {
            if let Some((_, keys)) = self.retired.pop_front() {
                for key in keys {
                    // Garbage left behind is harmless; a failure here must not fail the round.
                    let _ = self.store.delete(&key);
                }
            }
        }
        Ok(())
    }
}

/// Image bytes `[from, to)` of one segment, and whether it is sealed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    from: u64,
    to: u64,
    sealed: bool,
}

fn local_damage(segment: &LocalSegment, offset: u64, reason: String) -> ArchiveError {
    ArchiveError::LocalDamage { segment: segment.path.clone(), offset, reason }
}

fn read_header(path: &Path, base: u64) -> Result<SegmentHeader> {
    let bytes = read_range(path, 0, HEADER)?;
    SegmentHeader::decode(&bytes).map_err(|err| ArchiveError::LocalDamage {
        segment: path.to_path_buf(),
        offset: base,
        reason: err.to_string(),
    })
}

/// A manifest for a segment with nothing shipped yet, starting at the tree `range`.
fn empty_manifest(log_id: u64, base: u64, file_bytes: u64, range: &CompactRange) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT.to_string(),
        version: OBJECT_VERSION,
        log_id,
        base_offset: base,
        file_bytes,
        sealed: false,
        image_bytes: 0,
        end_offset: base,
        sha256: sha256(b""),
        first_entry: range.size(),
        entries_end: range.size(),
        first_write_ms: 0,
        last_write_ms: 0,
        max_write_ms: 0,
        last_frame: None,
        tree_before: range.roots().to_vec(),
        tree_head: TreeHead {
            tree_size: range.size(),
            root: range.root(),
            end_offset: base,
            last_write_timestamp_ms: 0,
        },
        pieces: Vec::new(),
        prev_manifest_sha256: None,
    }
}

/// The tree's compact range before the first record of `segment`, from the log's own tree
/// (the path of that record's inclusion proof in the tree that ends with it).
fn range_before(log: &Log, segment: &LocalSegment) -> Result<CompactRange> {
    let mut offset = segment.base;
    let first = loop {
        match log.read_at(offset) {
            Ok(record) => break record.offset,
            Err(StorageError::Gap { end, .. }) if end > offset => offset = end,
            Err(err) => return Err(err.into()),
        }
    };
    let index = log.inclusion_proof(first, None)?.leaf_index;
    let proof = log.inclusion_proof(first, Some(index + 1))?;
    CompactRange::from_last_inclusion_path(index, &proof.audit_path).ok_or_else(|| {
        local_damage(segment, first, "the log's inclusion proof does not fit its tree".into())
    })
}

/// Continues from the backup's last segment: the local segment must hold the same bytes.
fn resume_from_local(
    local: &LocalSegment,
    manifest: Manifest,
    sha: crate::rollup::Hash,
) -> Result<Last> {
    let image =
        read_range(&local.path, 0, manifest.image_bytes).map_err(|_| ArchiveError::Diverged {
            reason: format!(
                "the log's segment at {} is shorter than the {} bytes the backup holds",
                local.base, manifest.image_bytes
            ),
        })?;
    if sha256(&image) != manifest.sha256 {
        return Err(ArchiveError::Diverged {
            reason: format!(
                "the log's segment at {} differs from the backup's copy (repaired or replaced?)",
                local.base
            ),
        });
    }
    let mut range = CompactRange::from_roots(manifest.first_entry, manifest.tree_before.clone())
        .ok_or_else(|| ArchiveError::damaged("manifest", "tree_before does not fit first_entry"))?;
    let data = image.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
    walk_frames(data, local.base, |frame| {
        if !frame.header.is_gap() {
            range.push_record(&frame);
        }
    })
    .map_err(|err| local_damage(local, err.offset, err.reason))?;
    if range.root() != manifest.tree_head.root {
        return Err(ArchiveError::Diverged {
            reason: format!("the segment at {} does not give the backup's tree", local.base),
        });
    }
    let mut hasher = Sha256::new();
    hasher.update(&image);
    Ok(Last { manifest, hasher: Some(hasher), range_end: Some(range), sha })
}
