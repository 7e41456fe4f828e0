//! Torn creations (`FORMAT.md` 6.3 step 1): segment files a power loss left without a header
//! because they were created after the last sync, and what an open does with them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::recovery::{examine_after_chain, walk_chain};
use super::repair::set_aside;
use super::{OpenReport, TornTail};
use crate::error::{Result, StorageError};
use crate::format::{DurableRecord, FormatError, FRAME_ALIGN, OFFSET_LIMIT, SEGMENT_HEADER_LEN};
use crate::segment::{sync_dir, Segment};

/// Whether the segment file at `path`, whose name gives base offset `base` and whose header
/// failed to decode, is what a power loss leaves of a segment created without syncing: a file
/// shorter than its header, or a header of zeros (its page never reached the disk). Only at a
/// base a segment can have: below [`OFFSET_LIMIT`] and aligned, so that the offsets its frames
/// are checked against do not overflow.
pub(super) fn is_torn_creation(path: &Path, base: u64) -> bool {
    use std::io::Read as _;
    if base >= OFFSET_LIMIT || !base.is_multiple_of(FRAME_ALIGN as u64) {
        return false;
    }
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
    // Only the header is read: the file may be gigabytes long.
    match File::open(path).and_then(|f| f.take(SEGMENT_HEADER_LEN as u64).read_to_end(&mut header))
    {
        Ok(len) => len < SEGMENT_HEADER_LEN || header.iter().all(|&b| b == 0),
        Err(_) => false,
    }
}

/// Sets aside the torn creations `torn` (base offset and path, in order; the first one is the
/// first torn creation of the log) and every other segment after the first (`later`), which
/// were all created after the last sync, unless something records a durable point past the
/// first one's base: then its header was durable and is damaged, which is corruption. A
/// read-only open just leaves them out.
pub(super) fn drop_torn_creation(
    dir: &Path,
    torn: &[(u64, PathBuf)],
    mut later: Vec<Segment>,
    recorded: Option<&DurableRecord>,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<()> {
    let Some((base, path)) = torn.first() else { return Ok(()) };
    let base = *base;
    let mut evidence = recorded.map_or(0, |r| r.durable_end);
    let mut frames = 0;
    // The torn files' own frames (read, not mapped: they have no valid header), checked
    // against the base offsets their names give, can show that a sync followed their
    // creation, which would have made the first one's header durable.
    for (torn_base, torn_path) in torn {
        let Ok(bytes) = fs::read(torn_path) else { continue };
        let data = bytes.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
        // The data region, as for any segment: whole frame alignment units.
        let data = data.get(..data.len() / FRAME_ALIGN * FRAME_ALIGN).unwrap_or_default();
        let whole = [(0, data.len() as u64)];
        let walk = walk_chain(data, *torn_base, 0);
        let after = examine_after_chain(data, *torn_base, walk.chain_end, &whole);
        evidence = evidence.max(walk.max_durable_end);
        evidence = evidence.max(after.max_durable.map_or(0, |(durable, _)| durable));
        frames += walk.frames + after.stray_frames;
    }
    for segment in &mut later {
        evidence = evidence.max(segment.header().durable_offset);
        let (base, extents) = (segment.base_offset(), segment.data_extents());
        let path = segment.path().to_path_buf();
        let (data, populator) = segment.data_exclusive_populator();
        // Read into memory before the walk reads it, so that a disk read error is an error.
        populator
            .populate_runs(&extents, "a torn creation's check")
            .map_err(|e| StorageError::io("read a segment", path, e))?;
        let walk = walk_chain(data, base, 0);
        let after = examine_after_chain(data, base, walk.chain_end, &extents);
        evidence = evidence.max(walk.max_durable_end);
        evidence = evidence.max(after.max_durable.map_or(0, |(durable, _)| durable));
        frames += walk.frames + after.stray_frames;
    }
    if evidence > base {
        return Err(StorageError::Corruption {
            segment: path.clone(),
            offset: base,
            kind: FormatError::LostDurableData { durable_end: evidence },
        });
    }
    let mut paths = torn.to_vec();
    paths.extend(later.iter().map(|s| (s.base_offset(), s.path().to_path_buf())));
    paths.sort_unstable();
    drop(later);
    let mut dropped = Vec::new();
    for (_, path) in paths {
        dropped.push(if read_only { path } else { set_aside(&path)? });
    }
    if !read_only {
        sync_dir(dir)?;
    }
    report.torn_tail = Some(TornTail {
        offset: base,
        bytes: 0,
        frames_dropped: frames,
        segments_dropped: dropped,
    });
    Ok(())
}
