//! The checks that restore and verification share (`FORMAT.md` 15.7): the catalog, each
//! manifest against the catalog and the manifest before it, and each segment image against its
//! manifest, down to every frame and the tree head. Nothing is trusted before it passes.

use super::error::{ArchiveError, Result};
use super::format::{
    check_key, check_manifest_key, check_piece_key, decode_object, parse_catalog_key, sha256,
    Catalog, CatalogEntry, Codec, Manifest, CATALOGS, CATALOG_FORMAT, MANIFEST_FORMAT,
};
use super::scan::{walk_frames, CompactRange};
use super::store::Store;
use crate::format::{SegmentHeader, NO_PREVIOUS_FRAME, SEGMENT_HEADER_LEN};
use crate::rollup::{Hash, TreeHead};

const HEADER: u64 = SEGMENT_HEADER_LEN as u64;

/// The catalog with the highest sequence number, its key and its SHA-256; `None` if the
/// destination holds no catalog. Keys under `catalogs/` of another shape are ignored.
///
/// # Errors
/// [`ArchiveError::Damaged`] if that catalog does not decode or fails
/// [`check_catalog`]; store errors.
pub(crate) fn latest_catalog(store: &Store) -> Result<Option<(String, Catalog, Hash)>> {
    let keys = store.list(CATALOGS)?;
    let Some((seq, key)) = keys
        .iter()
        .filter_map(|(key, _)| parse_catalog_key(key).map(|seq| (seq, key.clone())))
        .max()
    else {
        return Ok(None);
    };
    let bytes = store.get(&key)?.ok_or_else(|| ArchiveError::Missing {
        key: key.clone(),
        named_by: "the listing of catalogs/".to_string(),
    })?;
    let catalog: Catalog = decode_object(&key, &bytes, CATALOG_FORMAT)?;
    if catalog.seq != seq {
        return Err(ArchiveError::damaged(
            &key,
            format!("seq is {}, its key says {seq}", catalog.seq),
        ));
    }
    check_catalog(&key, &catalog)?;
    Ok(Some((key, catalog, sha256(&bytes))))
}

/// Checks what a catalog says of itself: its segments tile the offsets and entries they cover,
/// only the last may be unsealed, keys are safe, and its head is the last segment's end.
///
/// # Errors
/// [`ArchiveError::Damaged`] or [`ArchiveError::UnsafeKey`] naming the catalog.
pub(crate) fn check_catalog(key: &str, catalog: &Catalog) -> Result<()> {
    let mut prev: Option<&CatalogEntry> = None;
    for (i, entry) in catalog.segments.iter().enumerate() {
        check_key(&entry.manifest)?;
        check_manifest_key(&entry.manifest, entry.base_offset, entry.end_offset, entry.sealed)
            .map_err(|err| ArchiveError::damaged(key, err.to_string()))?;
        let what = |reason: String| ArchiveError::damaged(key, format!("segment {i}: {reason}"));
        if entry.end_offset < entry.base_offset || entry.entries_end < entry.first_entry {
            return Err(what("its end lies before its start".into()));
        }
        if let Some(prev) = prev {
            if !prev.sealed {
                return Err(what("follows a segment that is not sealed".into()));
            }
            if entry.base_offset != prev.end_offset {
                return Err(what(format!(
                    "starts at offset {}, the segment before it ends at {}",
                    entry.base_offset, prev.end_offset
                )));
            }
            if entry.first_entry != prev.entries_end {
                return Err(what(format!(
                    "starts at entry {}, the segment before it ends at {}",
                    entry.first_entry, prev.entries_end
                )));
            }
        }
        prev = Some(entry);
    }
    let size = prev.map_or(0, |e| e.entries_end);
    if catalog.head.tree_size != size {
        return Err(ArchiveError::damaged(
            key,
            format!("head has {} entries, the segments end at {size}", catalog.head.tree_size),
        ));
    }
    Ok(())
}

/// Reads the manifest `entry` names and checks it against the catalog `catalog_key`.
///
/// # Errors
/// [`ArchiveError::Missing`], [`ArchiveError::Damaged`] naming the manifest,
/// [`ArchiveError::UnsupportedVersion`], store errors.
pub(crate) fn fetch_manifest(
    store: &Store,
    catalog_key: &str,
    entry: &CatalogEntry,
) -> Result<Manifest> {
    let key = &entry.manifest;
    check_key(key)?;
    let bytes = store.get(key)?.ok_or_else(|| ArchiveError::Missing {
        key: key.clone(),
        named_by: catalog_key.to_string(),
    })?;
    let found = sha256(&bytes);
    if found != entry.manifest_sha256 {
        return Err(ArchiveError::damaged(
            key,
            format!("SHA-256 is {found}, the catalog says {}", entry.manifest_sha256),
        ));
    }
    let manifest: Manifest = decode_object(key, &bytes, MANIFEST_FORMAT)?;
    let summary = (
        manifest.base_offset,
        manifest.end_offset,
        manifest.first_entry,
        manifest.entries_end,
        manifest.max_write_ms,
        manifest.sealed,
    );
    let listed = (
        entry.base_offset,
        entry.end_offset,
        entry.first_entry,
        entry.entries_end,
        entry.max_write_ms,
        entry.sealed,
    );
    if summary != listed {
        return Err(ArchiveError::damaged(
            key,
            format!("says {summary:?}, the catalog {listed:?}"),
        ));
    }
    check_manifest(key, &manifest)?;
    Ok(manifest)
}

/// Checks what a manifest says of itself.
fn check_manifest(key: &str, m: &Manifest) -> Result<()> {
    let bad = |reason: String| Err(ArchiveError::damaged(key, reason));
    if m.image_bytes < HEADER || m.end_offset != m.base_offset + (m.image_bytes - HEADER) {
        return bad(format!(
            "image of {} bytes does not end at offset {}",
            m.image_bytes, m.end_offset
        ));
    }
    if m.file_bytes < m.image_bytes || m.file_bytes > crate::format::SEGMENT_BYTES_MAX {
        return bad(format!(
            "file of {} bytes cannot hold its {}-byte image",
            m.file_bytes, m.image_bytes
        ));
    }
    if m.tree_head.tree_size != m.entries_end {
        return bad(format!(
            "tree head has {} entries, not {}",
            m.tree_head.tree_size, m.entries_end
        ));
    }
    if CompactRange::from_roots(m.first_entry, m.tree_before.clone()).is_none() {
        return bad("tree_before does not have one root per bit of first_entry".into());
    }
    let mut at = 0;
    for piece in &m.pieces {
        check_piece_key(key, m.base_offset, piece)?;
        if piece.start != at || piece.end <= piece.start {
            return bad(format!("piece {:?} does not start at position {at}", piece.key));
        }
        if piece.codec == Codec::None
            && (piece.stored_bytes != piece.end - piece.start
                || piece.stored_sha256 != piece.sha256)
        {
            return bad(format!(
                "piece {:?} is stored as is but its stored form differs",
                piece.key
            ));
        }
        at = piece.end;
    }
    if at != m.image_bytes {
        return bad(format!("pieces end at position {at}, the image at {}", m.image_bytes));
    }
    Ok(())
}

/// Checks that manifest `m` (key `key`) continues `prev`, the previous segment's manifest,
/// whose object hashes to `prev_sha`: the hash chain, the offsets, the entries and the tree.
/// For the backup's first manifest (`prev` is `None`) only what it says of itself is checked.
///
/// # Errors
/// [`ArchiveError::Damaged`] naming `key`.
pub(crate) fn check_link(key: &str, m: &Manifest, prev: Option<(&Manifest, Hash)>) -> Result<()> {
    let bad = |reason: String| Err(ArchiveError::damaged(key, reason));
    let Some((p, prev_sha)) = prev else {
        if m.prev_manifest_sha256.is_some() {
            return bad("the backup's first manifest names a previous one".into());
        }
        return Ok(());
    };
    if m.prev_manifest_sha256 != Some(prev_sha) {
        return bad(format!(
            "names previous manifest {:?}, the one before it in the catalog hashes to {prev_sha}",
            m.prev_manifest_sha256.map(|h| h.to_string())
        ));
    }
    if m.log_id != p.log_id {
        return bad(format!("log {:016x}, the previous segment's is {:016x}", m.log_id, p.log_id));
    }
    if !p.sealed || m.base_offset != p.end_offset || m.first_entry != p.entries_end {
        return bad(format!(
            "starts at offset {} entry {}, the previous segment ends at offset {} entry {}{}",
            m.base_offset,
            m.first_entry,
            p.end_offset,
            p.entries_end,
            if p.sealed { "" } else { " and is not sealed" }
        ));
    }
    let before =
        CompactRange::from_roots(m.first_entry, m.tree_before.clone()).map(|range| range.root());
    if before != Some(p.tree_head.root) {
        return bad("tree_before does not give the previous segment's tree head".into());
    }
    Ok(())
}

/// Reads the pieces of `m` (key `key`) and returns its image after checking every piece's
/// stored and decoded digest and length, and the whole image's digest.
///
/// # Errors
/// [`ArchiveError::Missing`] or [`ArchiveError::Damaged`] naming the piece; store errors.
pub(crate) fn fetch_image(
    store: &Store,
    key: &str,
    m: &Manifest,
    stats: &mut Stats,
) -> Result<Vec<u8>> {
    let capacity = usize::try_from(m.image_bytes)
        .map_err(|_| ArchiveError::damaged(key, "image too large for this machine"))?;
    let mut image = Vec::with_capacity(capacity);
    for piece in &m.pieces {
        check_key(&piece.key)?;
        let stored = store.get(&piece.key)?.ok_or_else(|| ArchiveError::Missing {
            key: piece.key.clone(),
            named_by: key.to_string(),
        })?;
        stats.objects_read += 1;
        stats.bytes_read += stored.len() as u64;
        let damaged = |reason: String| ArchiveError::damaged(&piece.key, reason);
        if stored.len() as u64 != piece.stored_bytes {
            return Err(damaged(format!(
                "{} bytes, the manifest says {}",
                stored.len(),
                piece.stored_bytes
            )));
        }
        let found = sha256(&stored);
        if found != piece.stored_sha256 {
            return Err(damaged(format!(
                "SHA-256 is {found}, the manifest says {}",
                piece.stored_sha256
            )));
        }
        let len = usize::try_from(piece.end - piece.start).unwrap_or(usize::MAX);
        // A piece stored as is has the same digest in both forms (`check_manifest`): the one
        // above covers it.
        let raw = match piece.codec {
            Codec::None => stored,
            Codec::Zstd => {
                let raw = zstd::bulk::decompress(&stored, len)
                    .map_err(|err| damaged(format!("does not decompress to {len} bytes: {err}")))?;
                if raw.len() != len || sha256(&raw) != piece.sha256 {
                    return Err(damaged("its decompressed bytes do not match the manifest".into()));
                }
                raw
            }
        };
        if raw.len() != len {
            return Err(damaged(format!("holds {} bytes, not {len}", raw.len())));
        }
        image.extend_from_slice(&raw);
    }
    // An image of one piece is that piece, whose digest was checked above.
    let whole = match m.pieces.as_slice() {
        [piece] => piece.sha256,
        _ => sha256(&image),
    };
    if whole != m.sha256 {
        return Err(ArchiveError::damaged(
            key,
            "the image its pieces form does not hash to sha256",
        ));
    }
    Ok(image)
}

/// Bytes and objects read from the store.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub objects_read: u64,
    pub bytes_read: u64,
}

/// What checking an image found: if a cut was asked for, the tree head there.
#[derive(Debug, Clone)]
pub(crate) struct ImageFacts {
    pub cut: Option<TreeHead>,
}

/// Checks image `image` of manifest `m` (key `key`) frame by frame: its header (a segment of
/// the manifest's log at `m.base_offset` that follows the last frame of `prev`, the previous
/// segment's manifest, if known), every frame, the record count and times, its last frame, and
/// that its records extend `tree_before` to `tree_head`. With `cut` (a data length at a batch
/// boundary), also returns the tree head there.
///
/// # Errors
/// [`ArchiveError::Damaged`] naming `key`, with the offset for a bad frame.
pub(crate) fn check_image(
    key: &str,
    m: &Manifest,
    image: &[u8],
    prev: Option<&Manifest>,
    cut: Option<u64>,
) -> Result<ImageFacts> {
    let bad = |reason: String| ArchiveError::damaged(key, reason);
    let header = SegmentHeader::decode(image.get(..SEGMENT_HEADER_LEN).unwrap_or_default())
        .map_err(|err| bad(format!("segment header: {err}")))?;
    if header.base_offset != m.base_offset || header.log_id != m.log_id {
        return Err(bad(format!(
            "segment header names base {} of log {:016x}, the manifest {} of {:016x}",
            header.base_offset, header.log_id, m.base_offset, m.log_id
        )));
    }
    if let Some(prev) = prev.map(|p| p.last_frame) {
        let named = (header.prev_last_frame_offset != NO_PREVIOUS_FRAME)
            .then_some((header.prev_last_frame_offset, header.prev_last_frame_crc));
        if named != prev {
            return Err(bad(format!(
                "segment header names previous frame {named:?}, the previous segment ends with {prev:?}"
            )));
        }
    }
    let mut range = CompactRange::from_roots(m.first_entry, m.tree_before.clone())
        .ok_or_else(|| bad("tree_before does not fit first_entry".into()))?;
    let mut at_cut = None;
    // Where the tree's last entry ends and when it was written, as the walk goes.
    let mut head_end = match prev {
        Some(p) => (p.tree_head.end_offset, p.tree_head.last_write_timestamp_ms),
        None => (m.base_offset, 0u64),
    };
    let head_known = prev.is_some() || m.first_entry == 0;
    let mut cut_head = None;
    let (mut first_ms, mut last_ms, mut max_ms, mut last_frame) = (None, 0, 0, None);
    let data = image.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
    let complete = walk_frames(data, m.base_offset, |frame| {
        if cut == Some(frame.offset - m.base_offset) {
            at_cut = Some(range.clone());
            cut_head = Some(head_end);
        }
        last_frame = Some((frame.offset, frame.header.crc));
        if frame.header.is_gap() {
            return;
        }
        let ms = frame.header.write_timestamp_ms;
        first_ms.get_or_insert(ms);
        last_ms = ms;
        max_ms = max_ms.max(ms);
        head_end = (frame.offset + frame.header.stride(), ms);
        range.push_record(&frame);
    })
    .map_err(|err| bad(format!("frame at offset {}: {}", err.offset, err.reason)))?;
    if complete != data.len() {
        return Err(bad("the image ends inside a batch".into()));
    }
    if cut == Some(data.len() as u64) {
        at_cut = Some(range.clone());
        cut_head = Some(head_end);
    }
    let facts = (range.size(), first_ms.unwrap_or(0), last_ms, max_ms, last_frame);
    let stated = (m.entries_end, m.first_write_ms, m.last_write_ms, m.max_write_ms, m.last_frame);
    if facts != stated {
        return Err(bad(format!(
            "its frames give (entries_end, first, last and max write ms, last frame) {facts:?}, \
             the manifest says {stated:?}"
        )));
    }
    if range.root() != m.tree_head.root {
        return Err(bad(format!(
            "its records give tree root {}, the manifest's tree head says {}",
            range.root(),
            m.tree_head.root
        )));
    }
    let stated_end = (m.tree_head.end_offset, m.tree_head.last_write_timestamp_ms);
    if (head_known || range.size() > m.first_entry) && head_end != stated_end {
        return Err(bad(format!(
            "its last record ends at offset {} written at {} ms, the tree head says {stated_end:?}",
            head_end.0, head_end.1
        )));
    }
    let cut = match (at_cut, cut_head) {
        (Some(range), Some((end_offset, ms))) => {
            let head = TreeHead {
                tree_size: range.size(),
                root: range.root(),
                end_offset,
                last_write_timestamp_ms: ms,
            };
            Some(head)
        }
        _ if cut.is_some() => return Err(bad("the cut is not at a frame boundary".into())),
        _ => None,
    };
    Ok(ImageFacts { cut })
}
