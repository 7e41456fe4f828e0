//! Pure scans over segment data: walking the frame chain, telling a torn tail from damage,
//! and planning what recovery must do. Nothing here does I/O or changes bytes; `open` acts on
//! the [`Plan`].
//!
//! # The rule
//!
//! After a crash, only bytes written since the last completed sync can be missing or torn,
//! and they can be torn in any pattern (the kernel writes dirty pages back in any order).
//! Every frame records how far the log was durable when it was written, and every segment
//! header records how far it was durable when the segment was created. So:
//!
//! 1. The largest durable point any intact frame or the last header records, `E`, is a point
//!    before which nothing can be torn. Recovery walks frames only from `E` on: its cost is
//!    proportional to what was written since the last sync, not to the log's size.
//! 2. Walking from `E`, the first position `D` where no intact frame continues the chain is
//!    where the log ends, unless some intact frame found after `D` records a durable point
//!    beyond `D`: then the bytes at `D` had been synced and were damaged afterwards, which no
//!    crash explains, and recovery refuses (or, when asked to repair, truncates).
//! 3. A batch whose last frame is missing is dropped whole.

use crate::format::{
    decode_frame, probe_frame, DurableRecord, FormatError, FrameHeader, FrameRead, SegmentHeader,
    FLAG_BATCH_CONTINUES, FRAME_ALIGN, FRAME_HEADER_LEN, NO_PREVIOUS_FRAME,
};

/// Bytes examined at once when looking for non-zero data after the end of the chain.
const ZERO_CHECK_CHUNK: usize = 4096;

fn index_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// What a walk over consecutive frames found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainWalk {
    /// Valid frames walked, including any of an incomplete trailing batch, and gaps.
    pub frames: u64,
    /// Gap frames among them (records a repair took out).
    pub gaps: u64,
    /// Data position just after the last frame that completes a record or batch.
    pub complete_end: u64,
    /// Frames after `complete_end`: members of a batch whose last frame is missing.
    pub incomplete_frames: u64,
    /// Data position where the walk stopped.
    pub chain_end: u64,
    /// Why it stopped, if a frame failed to decode (`None`: a zero length, or the end).
    pub stop: Option<FormatError>,
    /// Header of the last complete frame.
    pub last_complete: Option<FrameHeader>,
    /// The largest durable point any walked frame records (0 if none).
    pub max_durable_end: u64,
}

impl ChainWalk {
    /// A walk from data position `start` that found no frame there.
    fn ended_at(start: u64) -> ChainWalk {
        ChainWalk {
            frames: 0,
            gaps: 0,
            complete_end: start,
            incomplete_frames: 0,
            chain_end: start,
            stop: None,
            last_complete: None,
            max_durable_end: 0,
        }
    }
}

/// Walks frames from data position `start` (a frame boundary) through `data`, which begins
/// at logical offset `base`, until a zero length field, the end of `data`, or an invalid frame.
pub(crate) fn walk_chain(data: &[u8], base: u64, start: u64) -> ChainWalk {
    let mut walk = ChainWalk::ended_at(start);
    while let Some(rest) = data.get(index_of(walk.chain_end)..) {
        match decode_frame(rest, base + walk.chain_end) {
            Ok(FrameRead::End) => break,
            Ok(FrameRead::Frame(frame)) => {
                walk.frames += 1;
                walk.gaps += u64::from(frame.header.is_gap());
                walk.chain_end += frame.header.stride();
                walk.max_durable_end = walk.max_durable_end.max(frame.header.durable_end());
                if frame.header.flags & FLAG_BATCH_CONTINUES == 0 {
                    walk.complete_end = walk.chain_end;
                    walk.incomplete_frames = 0;
                    walk.last_complete = Some(frame.header);
                } else {
                    walk.incomplete_frames += 1;
                }
            }
            Err(kind) => {
                walk.stop = Some(kind);
                break;
            }
        }
    }
    walk
}

/// What lies after the end of a frame chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AfterChain {
    /// Data position just past the last non-zero byte at or after the chain's end (equal to
    /// the chain's end when everything after it is zero).
    pub dirty_end: u64,
    /// Intact frames found after the chain's end.
    pub stray_frames: u64,
    /// The largest durable point those frames record, with the offset of that frame.
    pub max_durable: Option<(u64, u64)>,
}

impl AfterChain {
    /// The offset of a stray frame proving that the bytes at logical offset `damage` were
    /// durable before it was written, so their loss is damage rather than a torn write.
    pub(crate) fn proves_durable(&self, damage: u64) -> Option<u64> {
        self.max_durable.filter(|&(durable, _)| durable > damage).map(|(_, at)| at)
    }
}

/// Examines `data[chain_end..]` for non-zero bytes and for intact frames (frames whose stored
/// offset matches their position and whose checksum holds). Only the runs listed in
/// `extents` (data positions that may hold non-zero bytes, in order) are read.
pub(crate) fn examine_after_chain(
    data: &[u8],
    base: u64,
    chain_end: u64,
    extents: &[(u64, u64)],
) -> AfterChain {
    let mut after = AfterChain { dirty_end: chain_end, stray_frames: 0, max_durable: None };
    let mut pos = index_of(chain_end);
    for &(start, end) in extents {
        pos = pos.max(index_of(start) / FRAME_ALIGN * FRAME_ALIGN);
        let end = index_of(end).min(data.len());
        while pos < end {
            pos = examine_chunk(data, base, pos, end, &mut after);
        }
    }
    after
}

/// Examines one chunk starting at `pos` (at most [`ZERO_CHECK_CHUNK`] bytes, not past `end`)
/// and returns where to continue.
fn examine_chunk(
    data: &[u8],
    base: u64,
    mut pos: usize,
    end: usize,
    after: &mut AfterChain,
) -> usize {
    let chunk_end = ((pos / ZERO_CHECK_CHUNK + 1) * ZERO_CHECK_CHUNK).min(end);
    let chunk = data.get(pos..chunk_end).unwrap_or_default();
    // An OR-fold has no early exit, so it vectorises; most chunks are all zero.
    if chunk.iter().fold(0u8, |acc, &b| acc | b) == 0 {
        return chunk_end;
    }
    while pos < chunk_end {
        let word_end = (pos + FRAME_ALIGN).min(data.len());
        if data.get(pos..word_end).is_some_and(|w| w.iter().any(|&b| b != 0)) {
            after.dirty_end = after.dirty_end.max(word_end as u64);
        }
        let rest = data.get(pos..).unwrap_or_default();
        if let Some(frame) = probe_frame(rest, base + pos as u64) {
            after.stray_frames += 1;
            let frame_end = (pos as u64 + frame.header.stride()).min(data.len() as u64);
            after.dirty_end = after.dirty_end.max(frame_end);
            let durable = frame.header.durable_end();
            if after.max_durable.is_none_or(|(best, _)| durable > best) {
                after.max_durable = Some((durable, frame.header.offset));
            }
            pos = index_of(frame_end);
        } else {
            pos += FRAME_ALIGN;
        }
    }
    pos
}

/// One segment as recovery sees it: its header, its whole data region, and the runs of that
/// region that may hold non-zero bytes.
pub(crate) struct SegmentView<'a> {
    pub header: SegmentHeader,
    pub data: &'a [u8],
    pub extents: Vec<(u64, u64)>,
    /// Data bytes the opener read from the file, with the data position they start at: the
    /// frame the next segment's header names as this segment's last (which the chain check
    /// reads), or, in the last segment, the frame the durable record names and the length
    /// field after it (which a clean open reads). Reading them through the map instead would
    /// map a page, and with it up to a large folio (2 MiB), of every segment. Ranges outside
    /// these bytes are read from `data`.
    pub read_at_open: Option<(u64, &'a [u8])>,
}

impl SegmentView<'_> {
    fn base(&self) -> u64 {
        self.header.base_offset
    }

    /// Data bytes `[start, end)`: from [`SegmentView::read_at_open`] if they lie inside it,
    /// else from the map; `None` if the range is not inside the data region.
    fn bytes(&self, start: u64, end: u64) -> Option<&[u8]> {
        if let Some((pos, read)) = self.read_at_open {
            if pos <= start && start <= end && end - pos <= read.len() as u64 {
                return read.get(index_of(start - pos)..index_of(end - pos));
            }
        }
        self.data.get(index_of(start)..index_of(end))
    }

    /// Whether a walk of the chain from data position `start` ends at once: the length field
    /// there is zero, or the data region ends before a frame header would fit. As
    /// [`walk_chain`] would find, but read through [`SegmentView::bytes`].
    fn chain_ends_at(&self, start: u64) -> bool {
        let end = start.saturating_add(FRAME_HEADER_LEN as u64).min(self.data.len() as u64);
        let Some(bytes) = self.bytes(start.min(end), end) else { return false };
        matches!(decode_frame(bytes, self.base() + start), Ok(FrameRead::End))
    }
}

/// What recovery must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The log ends at data position `end` of segment `index`. Bytes `[end, dirty_end)` of
    /// that segment are a torn tail to zero (none if equal), and every later segment holds
    /// only unacknowledged data to set aside.
    End { index: usize, end: u64, dirty_end: u64 },
    /// Durable data was damaged: the frame at logical `offset` in segment `index` (data
    /// position `pos`) is bad, and something written later records it as durable.
    Damaged { index: usize, pos: u64, offset: u64, kind: FormatError },
    /// The segment headers do not describe one chain: `index` does not continue `index - 1`.
    Broken { index: usize, reason: String },
}

/// Recovery's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub outcome: Outcome,
    /// Frames verified.
    pub frames_scanned: u64,
    /// Data bytes read.
    pub bytes_scanned: u64,
    /// Intact frames after the end that will be dropped (unfinished batches, frames written
    /// after a lost one, frames in later segments).
    pub frames_dropped: u64,
    /// The last complete frame before the end, if the walk saw one.
    pub last_complete: Option<FrameHeader>,
    /// The offset before which everything was known durable (a lower bound).
    pub known_durable: u64,
    /// The durable record's clean end was trusted: the rest of the last segment was not
    /// examined.
    pub clean_end: bool,
}

/// Plans recovery of a log whose segments (at least one, bases increasing, each header
/// already validated) are `views`. `recorded` is the durable record written on close, if it
/// belongs to this log.
pub(crate) fn plan(views: &[SegmentView<'_>], recorded: Option<&DurableRecord>) -> Plan {
    let recorded_durable = recorded.map_or(0, |r| r.durable_end);
    let mut plan = Plan {
        outcome: Outcome::End { index: 0, end: 0, dirty_end: 0 },
        frames_scanned: 0,
        bytes_scanned: 0,
        frames_dropped: 0,
        last_complete: None,
        known_durable: 0,
        clean_end: false,
    };
    let Some(last_index) = views.len().checked_sub(1) else { return plan };
    for index in 1..views.len() {
        let (prev, next) = (&views[index - 1], &views[index]);
        if next.header.log_id != prev.header.log_id {
            let reason = format!(
                "log id {:#018x} differs from the previous segment's {:#018x}: the segment \
                 belongs to another log",
                next.header.log_id, prev.header.log_id
            );
            plan.outcome = Outcome::Broken { index, reason };
            return plan;
        }
        if let Err(reason) = check_bases(prev, next) {
            plan.outcome = Outcome::Broken { index, reason };
            return plan;
        }
    }

    // The last segment: its chain from the recorded durable point if there is one inside it
    // (everything before was durable and is verified by replay, not here), else from its
    // start; then whatever lies after the chain.
    let last = &views[last_index];
    let start = match recorded {
        Some(r) if r.durable_end > last.base() => {
            match check_recorded_frame(views, last_index, r) {
                Ok(frame) => {
                    plan.last_complete = frame;
                    r.durable_end - last.base()
                }
                Err((pos, kind)) => {
                    plan.outcome = Outcome::Damaged {
                        index: last_index,
                        pos,
                        offset: last.base() + pos,
                        kind,
                    };
                    return plan;
                }
            }
        }
        _ => 0,
    };
    let walk = if last.chain_ends_at(start) {
        ChainWalk::ended_at(start)
    } else {
        walk_chain(last.data, last.base(), start)
    };
    // A log closed at its recorded durable end and not written since (the record says so,
    // and the chain indeed ends there) holds only zeros after it: nothing to examine.
    plan.clean_end = recorded.is_some_and(|r| {
        r.clean_end
            && walk.frames == 0
            && walk.stop.is_none()
            && last.base() + walk.chain_end == r.durable_end
    });
    let after = if plan.clean_end {
        AfterChain { dirty_end: walk.chain_end, stray_frames: 0, max_durable: None }
    } else {
        let after = examine_after_chain(last.data, last.base(), walk.chain_end, &last.extents);
        plan.bytes_scanned +=
            last.extents.iter().map(|&(s, e)| e.saturating_sub(s.max(walk.chain_end))).sum::<u64>();
        after
    };
    plan.frames_scanned += walk.frames;
    plan.bytes_scanned += walk.chain_end - start;
    let known_durable = last
        .header
        .durable_offset
        .max(recorded_durable)
        .max(walk.max_durable_end)
        .max(after.max_durable.map_or(0, |(durable, _)| durable));
    plan.known_durable = known_durable;

    // Sealed segments: those entirely before the durable point need only their link checked;
    // from the segment holding the durable point on, every frame is walked.
    let first_walked = views.partition_point(|v| v.base() <= known_durable).saturating_sub(1);
    for index in 0..last_index {
        let (view, next) = (&views[index], &views[index + 1]);
        let data_end = next.base() - view.base();
        if index < first_walked {
            if let Err(reason) = check_link(view, next) {
                plan.outcome = match reason {
                    LinkError::Frame(pos, kind) => {
                        Outcome::Damaged { index, pos, offset: view.base() + pos, kind }
                    }
                    LinkError::Broken(reason) => Outcome::Broken { index: index + 1, reason },
                };
                return plan;
            }
            continue;
        }
        // Walked from its start even when the durable point lies inside it: a durable point
        // taken from a header or a frame's distance field is evidence, not a proven frame
        // boundary (damage could make it point anywhere), and the bytes before it must be
        // intact too. Only the durable record's point, whose frame is checked, is a start.
        let start = 0;
        let bounded = view.data.get(..index_of(data_end)).unwrap_or_default();
        let sealed = walk_chain(bounded, view.base(), start);
        plan.frames_scanned += sealed.frames;
        plan.bytes_scanned += data_end - start;
        if sealed.stop.is_none() && sealed.complete_end == data_end {
            if let Some(found) = sealed.last_complete {
                let header = next.header;
                if header.prev_last_frame_offset != found.offset
                    || header.prev_last_frame_crc != found.crc
                {
                    let reason = stale_reason(&header, &found);
                    plan.outcome = Outcome::Broken { index: index + 1, reason };
                    return plan;
                }
            }
            continue;
        }
        // The chain breaks inside a sealed segment: a torn tail that spans segments if
        // nothing after the break was durable, damage otherwise. A crash can lose the frame
        // the next header names, but cannot leave it intact in the wrong place.
        if let Err(LinkError::Broken(reason)) = check_link(view, next) {
            plan.outcome = Outcome::Broken { index: index + 1, reason };
            return plan;
        }
        let damage = view.base() + sealed.chain_end;
        let kind = sealed.stop.clone().unwrap_or(if sealed.chain_end == data_end {
            FormatError::IncompleteBatch
        } else {
            FormatError::UnexpectedEnd { expected_end: next.base() }
        });
        let tail = examine_after_chain(view.data, view.base(), sealed.chain_end, &view.extents);
        let mut proven = recorded_durable > damage || tail.proves_durable(damage).is_some();
        let mut dropped = sealed.incomplete_frames + tail.stray_frames;
        for (later_index, later) in views.iter().enumerate().skip(index + 1) {
            // The last segment was walked from its start above (a walk starts later only when
            // the durable record lies in it, and then no sealed segment is walked): reuse it.
            let (frames, max_durable, stray_proof) = if later_index == last_index {
                (
                    walk.frames + after.stray_frames,
                    walk.max_durable_end,
                    after.proves_durable(damage),
                )
            } else {
                let later_walk = walk_chain(later.data, later.base(), 0);
                let later_after = examine_after_chain(
                    later.data,
                    later.base(),
                    later_walk.chain_end,
                    &later.extents,
                );
                (
                    later_walk.frames + later_after.stray_frames,
                    later_walk.max_durable_end,
                    later_after.proves_durable(damage),
                )
            };
            dropped += frames;
            proven |= later.header.durable_offset > damage
                || max_durable > damage
                || stray_proof.is_some();
        }
        if proven {
            plan.outcome = Outcome::Damaged { index, pos: sealed.chain_end, offset: damage, kind };
        } else {
            plan.frames_dropped = dropped;
            plan.last_complete = sealed.last_complete;
            plan.outcome = Outcome::End {
                index,
                end: sealed.complete_end,
                dirty_end: tail.dirty_end.max(sealed.chain_end),
            };
        }
        return plan;
    }

    // The chain reaches the last segment intact.
    let damage = last.base() + walk.chain_end;
    let proof = match after.proves_durable(damage) {
        Some(next_valid) => Some(FormatError::DamagedBeforeValidData { next_valid }),
        None if recorded_durable > damage => {
            Some(FormatError::LostDurableData { durable_end: recorded_durable })
        }
        None => None,
    };
    if let Some(proof) = proof {
        plan.outcome = Outcome::Damaged {
            index: last_index,
            pos: walk.chain_end,
            offset: damage,
            kind: walk.stop.unwrap_or(proof),
        };
        return plan;
    }
    plan.frames_dropped = walk.incomplete_frames + after.stray_frames;
    plan.last_complete = walk.last_complete.or(plan.last_complete);
    plan.outcome = Outcome::End {
        index: last_index,
        end: walk.complete_end,
        dirty_end: after.dirty_end.max(walk.chain_end),
    };
    plan
}

/// Whether `last`, the log's last segment, ends where `recorded` says a clean close left it:
/// the record claims a clean end, the frame it names checks, and the chain ends right after
/// it. For segments whose headers form one chain, exactly what [`plan`] requires to trust a
/// clean end and spare the tail, read from the same bytes (the recorded frame and a frame
/// header's worth after it) and nothing else; where they do not, `plan` refuses the log
/// before it reads any tail.
pub(crate) fn clean_end_holds(last: &SegmentView<'_>, recorded: &DurableRecord) -> bool {
    if !recorded.clean_end {
        return false;
    }
    let start = if recorded.durable_end > last.base() {
        match check_recorded_frame(std::slice::from_ref(last), 0, recorded) {
            Ok(_) => recorded.durable_end - last.base(),
            Err(_) => return false,
        }
    } else {
        0
    };
    last.chain_ends_at(start) && last.base() + start == recorded.durable_end
}

/// Checks the frame a durable record names as the last before its durable end: it must be
/// intact, carry the recorded checksum and end exactly there. Returns it (`None` if the record
/// names no frame), or the data position in segment `index` and what is wrong.
fn check_recorded_frame(
    views: &[SegmentView<'_>],
    index: usize,
    record: &DurableRecord,
) -> Result<Option<FrameHeader>, (u64, FormatError)> {
    let view = &views[index];
    let end_pos = record.durable_end - view.base();
    if record.last_frame_offset == NO_PREVIOUS_FRAME || record.last_frame_offset < view.base() {
        // The frame lies in an earlier segment (or there is none), which is sealed and durable:
        // the segment starts at the durable end only if the record points at its base.
        return if end_pos == 0 {
            Ok(None)
        } else {
            Err((0, FormatError::LostDurableData { durable_end: record.durable_end }))
        };
    }
    let pos = record.last_frame_offset - view.base();
    let lost = || (pos, FormatError::LostDurableData { durable_end: record.durable_end });
    let bytes = view.bytes(pos, end_pos).ok_or_else(lost)?;
    match decode_frame(bytes, record.last_frame_offset) {
        Ok(FrameRead::Frame(frame))
            if frame.header.crc == record.last_frame_crc
                && pos + frame.header.stride() == end_pos
                && frame.header.flags & FLAG_BATCH_CONTINUES == 0 =>
        {
            Ok(Some(frame.header))
        }
        Ok(_) => Err(lost()),
        Err(kind) => Err((pos, kind)),
    }
}

fn check_bases(prev: &SegmentView<'_>, next: &SegmentView<'_>) -> Result<(), String> {
    let data_end = next.base().saturating_sub(prev.base());
    if data_end == 0 || data_end > prev.data.len() as u64 {
        return Err(format!(
            "base offset {} does not fall inside the previous segment (base {}, {} data bytes); \
             a segment is missing or out of place",
            next.base(),
            prev.base(),
            prev.data.len()
        ));
    }
    Ok(())
}

fn stale_reason(header: &SegmentHeader, found: &FrameHeader) -> String {
    format!(
        "header names the previous segment's last frame as offset {} with checksum {:#010x}, \
         but that segment ends with offset {} checksum {:#010x}: it is not the segment this \
         one followed",
        header.prev_last_frame_offset, header.prev_last_frame_crc, found.offset, found.crc
    )
}

enum LinkError {
    Frame(u64, FormatError),
    Broken(String),
}

/// Checks, without walking `prev`, that `next` continues it: the frame `next`'s header names
/// must be intact in `prev`, carry the named checksum, complete its batch and end exactly at
/// `next`'s base.
fn check_link(prev: &SegmentView<'_>, next: &SegmentView<'_>) -> Result<(), LinkError> {
    let h = next.header;
    let data_end = h.base_offset - prev.base();
    // An offset outside the previous segment (`NO_PREVIOUS_FRAME` among them) or between frame
    // boundaries names no frame there: the header is not the one that followed it.
    let last_pos = h
        .prev_last_frame_offset
        .checked_sub(prev.base())
        .filter(|&pos| pos < data_end && pos.is_multiple_of(FRAME_ALIGN as u64))
        .ok_or_else(|| {
            LinkError::Broken(format!(
                "header names the previous segment's last frame at offset {}, which is not a \
                 frame boundary of that segment (base {}, data up to {})",
                h.prev_last_frame_offset,
                prev.base(),
                h.base_offset
            ))
        })?;
    let bytes = prev.bytes(last_pos, data_end).unwrap_or_default();
    match decode_frame(bytes, h.prev_last_frame_offset) {
        Ok(FrameRead::Frame(frame)) => {
            if frame.header.crc != h.prev_last_frame_crc {
                return Err(LinkError::Broken(stale_reason(&h, &frame.header)));
            }
            if last_pos + frame.header.stride() != data_end {
                return Err(LinkError::Broken(format!(
                    "the previous segment's last frame ends at offset {}, not at this \
                     segment's base {}",
                    prev.base() + last_pos + frame.header.stride(),
                    h.base_offset
                )));
            }
            if frame.header.flags & FLAG_BATCH_CONTINUES != 0 {
                return Err(LinkError::Frame(last_pos, FormatError::IncompleteBatch));
            }
            Ok(())
        }
        Ok(FrameRead::End) => Err(LinkError::Frame(
            last_pos,
            FormatError::UnexpectedEnd { expected_end: h.base_offset },
        )),
        Err(kind) => Err(LinkError::Frame(last_pos, kind)),
    }
}

#[cfg(test)]
mod tests;
