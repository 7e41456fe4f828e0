//! Carrying out a repair planned by [`salvage::plan_repair`]: each damaged span is copied
//! beside the log and replaced by a gap frame (salvage), or the log is cut at the first break
//! (truncate). Whatever a repair takes out of a segment is kept, byte for byte, in a file next
//! to it before the segment changes.

use std::fs;
use std::path::{Path, PathBuf};

use super::recovery::{examine_after_chain, SegmentView};
use super::salvage::{self, Break, Refusal, RepairPlan};
use super::{DamagedSpan, RecoveryMode, RepairReport, DROPPED_SUFFIX};
use crate::atomic_file::write_atomically;
use crate::error::{Result, StorageError};
use crate::format::{
    decode_frame, encode_frame_header, DurableRecord, FrameRead, FLAG_GAP, FORMAT_VERSION_GAPS,
    FRAME_HEADER_LEN,
};
use crate::segment::{sync_dir, Segment};

/// Suffix (before the offset) of the file that keeps a damaged span's bytes.
pub(crate) const DAMAGED_SUFFIX: &str = ".damaged-";
/// Suffix (before the offset) of the file that keeps the bytes a truncation cut.
pub(crate) const CUT_SUFFIX: &str = ".cut-";

/// Plans the repair of `segments` (every header valid, in order) with the durable record
/// `recorded`. A truncation cuts what a salvage refuses: segments that do not continue the
/// chain are set aside, and a sealed segment that ends inside a batch is cut before it.
///
/// # Errors
/// [`StorageError::BrokenChain`] or [`StorageError::Corruption`] for what a salvage cannot
/// mend; [`StorageError::Io`] if a segment cannot be read or a truncation's cut fails.
pub(super) fn plan(
    dir: &Path,
    segments: &mut Vec<Segment>,
    recorded: Option<&DurableRecord>,
    mode: RecoveryMode,
    cut_before: &mut RepairReport,
) -> Result<RepairPlan> {
    let mut recorded = recorded;
    let mut last_cut = None;
    loop {
        let refusal = match plan_once(segments, recorded) {
            Ok(plan) => return Ok(plan),
            Err(refusal) => refusal,
        };
        if mode != RecoveryMode::Truncate {
            return Err(refusal_error(segments, refusal));
        }
        let (index, pos) = match refusal {
            Refusal::Broken { index, .. } => {
                let prev = index.saturating_sub(1);
                let end = segments[index].base_offset() - segments[prev].base_offset();
                (prev, end.min(segments[prev].capacity()))
            }
            Refusal::Unmendable { index, pos, .. } => (index, pos),
            Refusal::Unreadable { .. } => return Err(refusal_error(segments, refusal)),
        };
        // A cut that changed nothing would be planned again: refuse instead.
        if last_cut == Some((index, pos)) {
            return Err(refusal_error(segments, refusal));
        }
        last_cut = Some((index, pos));
        // The durable record claims what the cut removes: it is no evidence any more.
        recorded = None;
        let at = Break {
            index,
            start: pos,
            end: None,
            kind: crate::format::FormatError::Other(String::new()),
            complete_before: pos,
            proven: true,
        };
        truncate(dir, segments, &at, cut_before)?;
        cut_before.truncated_at = Some(segments[index].base_offset() + pos);
    }
}

/// Plans a repair of `segments` in `mode` without changing anything, and reports it.
///
/// # Errors
/// As [`plan`] (a truncation that would have to cut a sealed segment ending inside a batch
/// is reported as the error a salvage gives).
pub(super) fn plan_read_only(
    segments: &mut [Segment],
    recorded: Option<&DurableRecord>,
    mode: RecoveryMode,
) -> Result<RepairReport> {
    let mut end = segments.len();
    loop {
        match plan_once(&mut segments[..end], recorded) {
            Ok(plan) => {
                let mut planned = report(&segments[..end], &plan, mode);
                if end < segments.len() {
                    let cut_at = segments[end].base_offset();
                    planned.truncated_at =
                        Some(planned.truncated_at.map_or(cut_at, |t| t.min(cut_at)));
                    planned
                        .segments_dropped
                        .extend(segments[end..].iter().map(|s| s.path().to_path_buf()));
                }
                return Ok(planned);
            }
            Err(Refusal::Broken { index, .. }) if mode == RecoveryMode::Truncate && index > 0 => {
                end = index;
            }
            Err(refusal) => return Err(refusal_error(segments, refusal)),
        }
    }
}

/// The error for what a salvage cannot mend.
fn refusal_error(segments: &[Segment], refusal: Refusal) -> StorageError {
    let path =
        |index: usize| segments.get(index).map(|s| s.path().to_path_buf()).unwrap_or_default();
    match refusal {
        Refusal::Broken { index, reason } => StorageError::BrokenChain {
            segment: path(index),
            reason: format!("{reason}; a salvage cannot mend this (a truncation can)"),
        },
        Refusal::Unmendable { index, pos, reason } => StorageError::Corruption {
            segment: path(index),
            offset: segments.get(index).map_or(0, Segment::base_offset) + pos,
            kind: crate::format::FormatError::Other(format!(
                "a salvage cannot mend this (a truncation can): {reason}"
            )),
        },
        Refusal::Unreadable { index, kind, error } => {
            StorageError::io("read a segment", path(index), std::io::Error::new(kind, error))
        }
    }
}

/// One planning pass over `segments`.
fn plan_once(
    segments: &mut [Segment],
    recorded: Option<&DurableRecord>,
) -> std::result::Result<RepairPlan, Refusal> {
    let extents: Vec<Vec<(u64, u64)>> = segments.iter().map(|s| s.data_extents()).collect();
    let mut populators = Vec::with_capacity(segments.len());
    let views: Vec<SegmentView<'_>> = segments
        .iter_mut()
        .zip(extents)
        .map(|(s, extents)| {
            let header = *s.header();
            let (data, populator) = s.data_exclusive_populator();
            populators.push(populator);
            SegmentView { header, data, extents, read_at_open: None }
        })
        .collect();
    let mut before_scan = |index: usize, runs: &[(u64, u64)]| match populators.get(index) {
        Some(populator) => populator.populate_runs(runs, "a repair"),
        None => Ok(()),
    };
    salvage::plan_repair(&views, recorded, &mut before_scan)
}

/// An empty report for `mode`: what a truncation cut before planning goes into it.
pub(super) fn empty_report(mode: RecoveryMode) -> RepairReport {
    RepairReport {
        mode,
        applied: false,
        damaged: Vec::new(),
        records_kept: 0,
        records_dropped: 0,
        truncated_at: None,
        bytes_cut: 0,
        segments_dropped: Vec::new(),
        saved: Vec::new(),
    }
}

/// The report of `plan` for `segments` in `mode`, before anything is done.
pub(super) fn report(segments: &[Segment], plan: &RepairPlan, mode: RecoveryMode) -> RepairReport {
    let span = |b: &Break| {
        let segment = &segments[b.index];
        let base = segment.base_offset();
        DamagedSpan {
            segment: segment.path().to_path_buf(),
            start: base + b.start,
            end: base + b.end.unwrap_or(b.start),
            reason: b.kind.to_string(),
        }
    };
    let offset_of = |b: &Break| segments[b.index].base_offset() + b.complete_before;
    let mut report = RepairReport {
        mode,
        applied: false,
        damaged: Vec::new(),
        records_kept: plan.records_kept,
        records_dropped: plan.frames_after_tail,
        truncated_at: plan.torn().map(offset_of),
        bytes_cut: 0,
        segments_dropped: Vec::new(),
        saved: Vec::new(),
    };
    match mode {
        RecoveryMode::Truncate => {
            if let Some(first) = plan.breaks.first() {
                if first.proven {
                    report.damaged.push(span(first));
                }
                report.truncated_at = Some(offset_of(first));
                let total = plan.records_kept + plan.frames_after_tail;
                report.records_kept = plan.records_before_first_break;
                report.records_dropped = total.saturating_sub(plan.records_before_first_break);
                report.segments_dropped =
                    segments[first.index + 1..].iter().map(|s| s.path().to_path_buf()).collect();
            }
        }
        _ => report.damaged = plan.damaged().map(span).collect(),
    }
    report
}

/// Carries out `plan` on `segments` in `mode`: a salvage writes a gap over each damaged span
/// (a torn tail after them is left to the recovery that follows); a truncation cuts at the
/// first break. Returns the report, with what was saved and set aside.
///
/// # Errors
/// [`StorageError::Io`] if copying, writing or syncing fails: the log may then hold some of
/// the gaps, each complete, and the copies of every span already replaced.
pub(super) fn apply(
    dir: &Path,
    segments: &mut Vec<Segment>,
    plan: &RepairPlan,
    mode: RecoveryMode,
    cut_before: RepairReport,
) -> Result<RepairReport> {
    let mut report = report(segments, plan, mode);
    report.applied = true;
    for &index in &plan.relinks {
        relink(segments, index)?;
    }
    report.saved.extend(cut_before.saved);
    report.segments_dropped.extend(cut_before.segments_dropped);
    report.bytes_cut += cut_before.bytes_cut;
    if report.truncated_at.is_none() {
        report.truncated_at = cut_before.truncated_at;
    }
    match mode {
        RecoveryMode::Truncate => {
            if let Some(first) = plan.breaks.first() {
                truncate(dir, segments, first, &mut report)?;
            }
        }
        _ => {
            for brk in plan.damaged() {
                if let Some(end) = brk.end {
                    write_gap(segments, brk, end, &mut report)?;
                }
            }
        }
    }
    Ok(report)
}

/// Copies data bytes `[start, end)` of `segment` to `{segment}{suffix}{offset:020}`, whole
/// and durably (temporary file, sync, rename, directory sync). A copy already there is kept: it
/// is what an interrupted repair saved before it changed the bytes, which may since have been
/// partly overwritten.
fn save_bytes(segment: &mut Segment, start: u64, end: u64, suffix: &str) -> Result<PathBuf> {
    let offset = segment.base_offset() + start;
    let mut name = segment.path().as_os_str().to_owned();
    name.push(format!("{suffix}{offset:020}"));
    let path = PathBuf::from(name);
    if path.exists() {
        return Ok(path);
    }
    let data = segment.data_exclusive();
    let bytes = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| data.get(s..e))
        .unwrap_or_default();
    write_atomically(&path, bytes)?;
    Ok(path)
}

/// Replaces data bytes `[brk.start, end)` of segment `brk.index` with a gap frame, after
/// saving them; raises the segment's version, and renames the previous segment's last frame
/// in the next header when the gap ends a sealed segment.
fn write_gap(
    segments: &mut [Segment],
    brk: &Break,
    end: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let timestamp = timestamp_before(segments, brk.index, brk.start);
    let next_base = segments.get(brk.index + 1).map(Segment::base_offset);
    let segment = &mut segments[brk.index];
    report.saved.push(save_bytes(segment, brk.start, end, DAMAGED_SUFFIX)?);
    let offset = segment.base_offset() + brk.start;
    let len = usize::try_from(end - brk.start).unwrap_or(usize::MAX);
    let mut frame = vec![0u8; len];
    let payload_len = len.saturating_sub(FRAME_HEADER_LEN);
    let header = encode_frame_header(
        offset,
        timestamp,
        0,
        FLAG_GAP,
        &frame[FRAME_HEADER_LEN..][..payload_len],
    );
    frame[..FRAME_HEADER_LEN].copy_from_slice(&header);
    if segment.header().version < FORMAT_VERSION_GAPS {
        let mut raised = *segment.header();
        raised.version = FORMAT_VERSION_GAPS;
        segment.rewrite_header_exclusive(raised)?;
    }
    segment.write_exclusive(brk.start, &frame)?;
    // A crash between the gap and this rewrite leaves a header naming a frame inside the gap,
    // which the next repair recognises and finishes ([`RepairPlan::relinks`]).
    if next_base == Some(segment.base_offset() + end) {
        let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        name_last_frame(segments, brk.index + 1, offset, crc)?;
    }
    Ok(())
}

/// Rewrites the header of the segment after `index` to name `index`'s last frame, a gap.
fn relink(segments: &mut [Segment], index: usize) -> Result<()> {
    let named = segments.get(index + 1).map(|s| s.header().prev_last_frame_offset);
    let Some(segment) = segments.get_mut(index) else { return Ok(()) };
    let base = segment.base_offset();
    let data = segment.data_exclusive();
    // The gap over the named frame: walk to it.
    let mut at = 0u64;
    let mut gap = None;
    while let Some(rest) = data.get(usize::try_from(at).unwrap_or(usize::MAX)..) {
        match decode_frame(rest, base + at) {
            Ok(FrameRead::Frame(frame)) => {
                let end = base + at + frame.header.stride();
                if frame.header.is_gap() && named.is_some_and(|n| (base + at..end).contains(&n)) {
                    gap = Some((frame.header.offset, frame.header.crc));
                }
                at += frame.header.stride();
            }
            _ => break,
        }
    }
    match gap {
        Some((offset, crc)) => name_last_frame(segments, index + 1, offset, crc),
        None => Ok(()),
    }
}

/// Rewrites segment `index`'s header to name the previous segment's last frame.
fn name_last_frame(segments: &mut [Segment], index: usize, offset: u64, crc: u32) -> Result<()> {
    let Some(next) = segments.get_mut(index) else { return Ok(()) };
    let mut relinked = *next.header();
    relinked.prev_last_frame_offset = offset;
    relinked.prev_last_frame_crc = crc;
    next.rewrite_header_exclusive(relinked)
}

/// The write time of the last frame before data position `pos` of segment `index`: the
/// frames of that segment are walked, and the previous segment's last frame stands in when
/// there is none (0 for the log's first).
fn timestamp_before(segments: &mut [Segment], index: usize, pos: u64) -> u64 {
    let mut found = None;
    if let Some(segment) = segments.get_mut(index) {
        let base = segment.base_offset();
        let data = segment.data_exclusive();
        let bounded = data.get(..usize::try_from(pos).unwrap_or(usize::MAX)).unwrap_or(data);
        let mut at = 0u64;
        while let Some(rest) = bounded.get(usize::try_from(at).unwrap_or(usize::MAX)..) {
            match decode_frame(rest, base + at) {
                Ok(FrameRead::Frame(frame)) => {
                    found = Some(frame.header.write_timestamp_ms);
                    at += frame.header.stride();
                }
                _ => break,
            }
        }
    }
    if found.is_some() || index == 0 {
        return found.unwrap_or(0);
    }
    let named = segments.get(index).map(|s| s.header().prev_last_frame_offset);
    let Some((prev, named)) = segments.get_mut(index - 1).zip(named) else { return 0 };
    let base = prev.base_offset();
    let data = prev.data_exclusive();
    let frame = named
        .checked_sub(base)
        .and_then(|pos| usize::try_from(pos).ok())
        .and_then(|pos| data.get(pos..))
        .and_then(|rest| match decode_frame(rest, named) {
            Ok(FrameRead::Frame(frame)) => Some(frame.header.write_timestamp_ms),
            _ => None,
        });
    frame.unwrap_or(0)
}

/// Cuts the log at `brk`'s last complete record: the bytes from there to the end of the
/// segment's non-zero data are saved and zeroed, and every later segment is set aside.
fn truncate(
    dir: &Path,
    segments: &mut Vec<Segment>,
    brk: &Break,
    report: &mut RepairReport,
) -> Result<()> {
    for segment in segments.drain(brk.index + 1..) {
        let path = segment.path().to_path_buf();
        drop(segment);
        report.segments_dropped.retain(|p| p != &path);
        report.segments_dropped.push(set_aside(&path)?);
    }
    if let Some(segment) = segments.get_mut(brk.index) {
        let base = segment.base_offset();
        let extents = segment.data_extents();
        let pos = brk.complete_before;
        let dirty_end =
            examine_after_chain(segment.data_exclusive(), base, pos, &extents).dirty_end;
        if dirty_end > pos {
            // Saved durably, directory entry included, before the bytes it keeps are zeroed.
            report.saved.push(save_bytes(segment, pos, dirty_end, CUT_SUFFIX)?);
            report.bytes_cut += dirty_end - pos;
            segment.zero_exclusive(pos, dirty_end)?;
        }
    }
    sync_dir(dir)
}

/// Renames a segment file with [`DROPPED_SUFFIX`], so `open` ignores it but it is kept.
pub(super) fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut to = path.as_os_str().to_owned();
    to.push(DROPPED_SUFFIX);
    let to = PathBuf::from(to);
    fs::rename(path, &to).map_err(|e| StorageError::io("set aside segment", path, e))?;
    Ok(to)
}
