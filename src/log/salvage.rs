//! Planning a repair: every frame of every segment is checked, and each place where the chain
//! of frames breaks is classified, with the rule recovery uses (`FORMAT.md` 6.1), as damage to
//! bytes that were durable or as a torn tail a crash left. Nothing here does I/O or changes
//! bytes; `repair` acts on the [`RepairPlan`].
//!
//! Damage becomes a *gap*: one frame flagged [`FLAG_GAP`] over exactly the damaged bytes, from
//! the bad frame to the next intact frame. Frames carry their own offset inside their checksum,
//! so the next intact frame is found with certainty, and every intact record keeps its offset
//! and bytes. A torn tail is cut as any open cuts it.

use super::recovery::{walk_chain, SegmentView};
use crate::format::{
    probe_frame, DurableRecord, FormatError, FrameHeader, FRAME_ALIGN, FRAME_HEADER_LEN,
};

/// Bytes checked at once for being all zero while looking for the next intact frame.
const ZERO_RUN_CHUNK: usize = 4096;

fn index_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A place where the chain of frames breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Break {
    /// The segment, as an index into the views.
    pub index: usize,
    /// Data position of the first byte that is not an intact frame.
    pub start: u64,
    /// Data position where the damaged bytes end: the next intact frame, or where the
    /// segment's data ends (a sealed segment's end, or for the last segment the durable end the
    /// durable record names); `None` if nothing after `start` is known to be data.
    pub end: Option<u64>,
    /// Why the frame at `start` failed.
    pub kind: FormatError,
    /// Data position just after the last frame before `start` that completes a record (or a
    /// batch), or the start of the run of frames `start` ends.
    pub complete_before: u64,
    /// Whether anything records a durable point beyond `start`: then the break is damage to
    /// bytes that were on stable storage, not a torn write.
    pub proven: bool,
}

impl Break {
    /// The logical offset of the break in a segment of base `base`.
    pub(crate) fn offset(&self, base: u64) -> u64 {
        base + self.start
    }
}

/// What a repair would find and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairPlan {
    /// Every break, in offset order: first those that are damage (`proven`), then at most
    /// one that is not, where the log ends.
    pub breaks: Vec<Break>,
    /// Intact records before the first unproven break (the records a salvage keeps; gaps
    /// are not records).
    pub records_kept: u64,
    /// Intact frames after the first unproven break (dropped with the torn tail).
    pub frames_after_tail: u64,
    /// Intact records before the first break of any kind (the records a truncation keeps).
    pub records_before_first_break: u64,
    /// Sealed segments whose last frame is a gap that the next header does not name yet: a
    /// repair stopped between writing the gap and rewriting that header. The repair finishes it.
    pub relinks: Vec<usize>,
}

impl RepairPlan {
    /// The breaks that are damage.
    pub(crate) fn damaged(&self) -> impl Iterator<Item = &Break> {
        self.breaks.iter().filter(|b| b.proven)
    }

    /// The first unproven break: where the log ends, cutting a torn tail.
    pub(crate) fn torn(&self) -> Option<&Break> {
        self.breaks.iter().find(|b| !b.proven)
    }
}

/// Why a log cannot be salvaged: something no gap can mend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Segment `index` does not continue segment `index - 1`.
    Broken { index: usize, reason: String },
    /// Segment `index` holds a break at data position `pos` that a gap cannot cover.
    Unmendable { index: usize, pos: u64, reason: String },
    /// Segment `index`'s data could not be read into memory (a disk read error); `error`
    /// says which bytes.
    Unreadable { index: usize, kind: std::io::ErrorKind, error: String },
}

/// What [`plan_repair`] calls before it reads a segment: its index, and the runs of its data
/// (positions) that may hold non-zero bytes.
pub(crate) type BeforeScan<'a> = dyn FnMut(usize, &[(u64, u64)]) -> std::io::Result<()> + 'a;

/// One run of intact frames, and what it records.
struct Run {
    frames: u64,
    max_durable_end: u64,
}

/// Checks every frame of `views` (segments in order, headers already validated) and plans
/// the repair. `recorded` is the log's durable record, if it has a usable one: its durable
/// end is evidence too. `before_scan(index, runs)` is called before segment `index`'s data is
/// read, with the runs of it (data positions) that may hold non-zero bytes, to read them into
/// memory (so that a disk read error is an error, not a `SIGBUS`, and only one segment is read
/// ahead of the scan at a time).
pub(crate) fn plan_repair(
    views: &[SegmentView<'_>],
    recorded: Option<&DurableRecord>,
    before_scan: &mut BeforeScan<'_>,
) -> Result<RepairPlan, Refusal> {
    check_headers(views)?;
    let recorded_end = recorded.map_or(0, |r| r.durable_end);
    let mut breaks = Vec::new();
    let mut runs: Vec<(usize, Run)> = Vec::new(); // (number of breaks before the run, run)
    let mut relinks = Vec::new();
    for (index, view) in views.iter().enumerate() {
        let base = view.header.base_offset;
        let sealed_end = views.get(index + 1).map(|next| next.header.base_offset - base);
        let data_end = sealed_end.unwrap_or(view.data.len() as u64);
        let written: Vec<(u64, u64)> = view
            .extents
            .iter()
            .map(|&(start, end)| (start, end.min(data_end)))
            .filter(|&(start, end)| start < end)
            .collect();
        before_scan(index, &written).map_err(|error| Refusal::Unreadable {
            index,
            kind: error.kind(),
            error: error.to_string(),
        })?;
        let data = view.data.get(..index_of(data_end)).unwrap_or(view.data);
        let mut pos = 0;
        loop {
            let walk = walk_chain(data, base, pos);
            let last_complete = walk.last_complete;
            runs.push((
                breaks.len(),
                Run { frames: walk.frames - walk.gaps, max_durable_end: walk.max_durable_end },
            ));
            let at = walk.chain_end;
            // Any intact frame after the break is evidence, and ends the damaged span.
            let next_intact = next_intact_frame(data, base, at.saturating_add(FRAME_ALIGN as u64));
            let stopped = walk.stop.clone();
            let end = match (next_intact, sealed_end) {
                (Some(next), _) => Some(next),
                (None, Some(end)) if at < end => Some(end),
                (None, Some(_)) => None,
                // The last segment: data is known up to the durable end the record names.
                (None, None) if recorded_end > base + at => Some(
                    (recorded_end - base).min(data_end) / FRAME_ALIGN as u64 * FRAME_ALIGN as u64,
                ),
                (None, None) => None,
            };
            let is_break = stopped.is_some() || end.is_some();
            if !is_break {
                if let Some(next) = views.get(index + 1) {
                    if check_link(index, walk.complete_end, data_end, last_complete, next)? {
                        relinks.push(index);
                    }
                }
                break;
            }
            // Zeros where frames should be: say what shows they should.
            let kind = stopped.unwrap_or(match (next_intact, sealed_end) {
                (Some(next), _) => FormatError::DamagedBeforeValidData { next_valid: base + next },
                (None, Some(end)) => FormatError::UnexpectedEnd { expected_end: base + end },
                (None, None) => FormatError::LostDurableData { durable_end: recorded_end },
            });
            if let Some(end) = end {
                if end - at < FRAME_HEADER_LEN as u64 {
                    return Err(Refusal::Unmendable {
                        index,
                        pos: at,
                        reason: format!(
                            "the damaged span [{}, {}) is shorter than a frame header",
                            base + at,
                            base + end
                        ),
                    });
                }
            }
            breaks.push(Break {
                index,
                start: at,
                end,
                kind,
                complete_before: walk.complete_end,
                proven: false,
            });
            match end {
                Some(end) if end < data_end => pos = end,
                _ => break,
            }
        }
    }

    // Evidence after each break: the durable record, the header of every later segment, and
    // every intact frame after it. Walk backwards keeping the largest seen.
    let mut evidence = recorded_end;
    let mut header_evidence = vec![0u64; views.len() + 1];
    for index in (0..views.len()).rev() {
        header_evidence[index] = header_evidence[index + 1].max(views[index].header.durable_offset);
    }
    let mut run_iter = runs.iter().rev().peekable();
    for (number, brk) in breaks.iter_mut().enumerate().rev() {
        while let Some((_, run)) = run_iter.next_if(|(before, _)| *before > number) {
            evidence = evidence.max(run.max_durable_end);
        }
        let later_headers = header_evidence[brk.index + 1];
        let base = views[brk.index].header.base_offset;
        brk.proven = evidence.max(later_headers) > brk.offset(base);
    }
    // Everything after the first unproven break is a torn tail: later breaks do not matter.
    if let Some(first_torn) = breaks.iter().position(|b| !b.proven) {
        breaks.truncate(first_torn + 1);
    }
    let torn_at = breaks.iter().position(|b| !b.proven);
    let (mut records_kept, mut frames_after_tail) = (0, 0);
    for (before, run) in &runs {
        let kept = torn_at.is_none_or(|t| *before <= t);
        if kept {
            records_kept += run.frames;
        } else {
            frames_after_tail += run.frames;
        }
    }
    // Frames of an unfinished batch before the torn break are dropped with it.
    if let Some(torn) = torn_at.and_then(|t| breaks.get(t)) {
        let unfinished = unfinished_batch(views, torn);
        records_kept = records_kept.saturating_sub(unfinished);
        frames_after_tail += unfinished;
    }
    let before_first: u64 =
        runs.iter().filter(|(before, _)| *before == 0).map(|(_, r)| r.frames).sum();
    let records_before_first_break =
        before_first.saturating_sub(breaks.first().map_or(0, |b| unfinished_batch(views, b)));
    Ok(RepairPlan { breaks, records_kept, frames_after_tail, records_before_first_break, relinks })
}

/// Frames of an unfinished batch just before `brk`: dropped if the log is cut there.
fn unfinished_batch(views: &[SegmentView<'_>], brk: &Break) -> u64 {
    let Some(view) = views.get(brk.index) else { return 0 };
    let data = view.data.get(..index_of(brk.start)).unwrap_or(view.data);
    let walk = walk_chain(data, view.header.base_offset, brk.complete_before);
    walk.frames - walk.gaps
}

/// The headers' chain: the same log, and each base inside the previous segment.
fn check_headers(views: &[SegmentView<'_>]) -> Result<(), Refusal> {
    for index in 1..views.len() {
        let (prev, next) = (&views[index - 1].header, &views[index].header);
        if next.log_id != prev.log_id {
            return Err(Refusal::Broken {
                index,
                reason: format!(
                    "log id {:#018x} differs from the previous segment's {:#018x}: the segment \
                     belongs to another log",
                    next.log_id, prev.log_id
                ),
            });
        }
        let data_end = next.base_offset.saturating_sub(prev.base_offset);
        if data_end == 0 || data_end > views[index - 1].data.len() as u64 {
            return Err(Refusal::Broken {
                index,
                reason: format!(
                    "base offset {} does not fall inside the previous segment (base {}); a \
                     segment is missing or out of place",
                    next.base_offset, prev.base_offset
                ),
            });
        }
    }
    Ok(())
}

/// The data position of the first intact frame at or after `from` (8-aligned) in `data`,
/// which starts at logical offset `base`. All-zero stretches are skipped a chunk at a time.
pub(crate) fn next_intact_frame(data: &[u8], base: u64, from: u64) -> Option<u64> {
    let mut pos = index_of(from.next_multiple_of(FRAME_ALIGN as u64));
    while pos < data.len() {
        let chunk_end = ((pos / ZERO_RUN_CHUNK + 1) * ZERO_RUN_CHUNK).min(data.len());
        if data.get(pos..chunk_end).is_some_and(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0) {
            pos = chunk_end;
            continue;
        }
        while pos < chunk_end {
            if probe_frame(data.get(pos..).unwrap_or_default(), base + pos as u64).is_some() {
                return Some(pos as u64);
            }
            pos += FRAME_ALIGN;
        }
    }
    None
}

/// Checks that sealed segment `index`, whose chain of intact frames reached `complete_end`
/// with `last` its last complete frame, ends where the next segment begins and is the
/// segment that `next`'s header names. Returns `true` if `last` is a gap over the frame the
/// header names: the header still has to be rewritten to name the gap.
fn check_link(
    index: usize,
    complete_end: u64,
    data_end: u64,
    last: Option<FrameHeader>,
    next: &SegmentView<'_>,
) -> Result<bool, Refusal> {
    if complete_end != data_end {
        return Err(Refusal::Unmendable {
            index,
            pos: complete_end,
            reason: "a sealed segment ends inside a batch".to_string(),
        });
    }
    let h = &next.header;
    let named = (h.prev_last_frame_offset, h.prev_last_frame_crc);
    let found = last.map(|f| (f.offset, f.crc));
    if let Some(gap) = last.filter(|f| f.is_gap() && found != Some(named)) {
        if (gap.offset..gap.offset + gap.stride()).contains(&named.0) {
            return Ok(true);
        }
    }
    if found.is_some_and(|found| found != named) {
        return Err(Refusal::Broken {
            index: index + 1,
            reason: format!(
                "header names the previous segment's last frame as offset {} with checksum \
                 {:#010x}, which that segment does not end with: it is not the segment this one \
                 followed",
                named.0, named.1
            ),
        });
    }
    Ok(false)
}
