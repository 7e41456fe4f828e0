//! Opening a log: header validation, the durable record, and carrying out the recovery
//! [`Plan`] (the directory's listing and lock are `directory.rs`'s, torn creations
//! `torn_creation.rs`'s).

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::clock::{now_ms, RecordClock};
use super::directory::{list_dir, lock_or_create_dir, not_a_log, parent_dir};
use super::merkle;
use super::open_reads::{
    clean_end_holds, populate_for_scan, read_link_tail, read_recorded_frame, ReadBytes, Reading,
};
use super::recovery::{plan, walk_chain, Outcome, Plan, SegmentView};
use super::repair::{self, set_aside};
use super::start_record::{StartRecord, START_FILE_NAME};
use super::torn_creation::{drop_torn_creation, is_torn_creation};
use super::{Log, OpenReport, Options, RecoveryMode, RepairReport, Shared, TornTail, Writer};
use crate::error::{Result, StorageError};
use crate::format::{
    decode_frame, segment_file_name, DurableRecord, FrameHeader, FrameRead, SegmentHeader,
    DURABLE_FILE_NAME, DURABLE_RECORD_LEN, FORMAT_VERSION, NO_PREVIOUS_FRAME,
};
use crate::segment::{sync_dir, NewFile, Segment, SegmentWriter};

/// How many times a read-only open starts again because the directory changed while it ran.
const READ_ONLY_OPEN_ATTEMPTS: usize = 8;

/// Opens the log in `dir`; see [`Log::open_with`] and [`Log::open_read_only`].
pub(super) fn open_log(dir: &Path, options: Options, read_only: bool) -> Result<Log> {
    if !read_only {
        return open_log_once(dir, options, false);
    }
    // The writer, in another process, goes on while this open lists the directory and opens
    // each file: it creates segments (a listing made meanwhile may hold a later one and miss
    // an earlier one) and retention removes them from the front (a listed file may be gone, or
    // the start record no longer match the listing). Either makes a healthy log look broken.
    // Damage leaves the directory as it is, so an open that failed while the directory changed
    // starts again.
    let mut attempts = 1;
    loop {
        let before = directory_state(dir);
        match open_log_once(dir, options.clone(), true) {
            Err(_) if attempts < READ_ONLY_OPEN_ATTEMPTS && directory_state(dir) != before => {
                attempts += 1;
            }
            result => return result,
        }
    }
}

/// What a read-only open depends on of the directory: the start record and the segment files.
fn directory_state(dir: &Path) -> Option<(Option<StartRecord>, Vec<u64>)> {
    let listing = list_dir(dir).ok()?;
    let mut bases = listing.below_start;
    bases.extend(listing.bases);
    Some((listing.start, bases))
}

/// One attempt of [`open_log`].
fn open_log_once(dir: &Path, options: Options, read_only: bool) -> Result<Log> {
    options.validate()?;
    let repair = options.recovery.repairs();
    if read_only && repair {
        return Err(StorageError::InvalidOptions {
            reason: "repair needs a writer, not a read-only open (Log::plan_repair shows what \
                     a repair would do without changing anything)"
                .to_string(),
        });
    }
    let lock = if read_only {
        None
    } else {
        Some(lock_or_create_dir(dir, options.create_among_other_files)?)
    };
    let mut report = OpenReport::default();
    let listing = list_dir(dir)?;
    if read_only && listing.bases.is_empty() {
        return Err(not_a_log(dir, &listing, false));
    }
    if !read_only && !listing.temps.is_empty() {
        for temp in &listing.temps {
            fs::remove_file(temp)
                .map_err(|e| StorageError::io("remove temporary file", temp, e))?;
        }
        sync_dir(dir)?;
        report.temp_files_removed = listing.temps.len();
    }
    let mut segments = Vec::with_capacity(listing.bases.len());
    // Torn creations (6.3 step 1), by base offset: the first, and any among the later segments.
    let mut torn_created: Vec<(u64, PathBuf)> = Vec::new();
    // The file of the last segment opened: the writer's, if recovery keeps that segment last.
    // Every other file is closed once mapped, so the number of segments is not limited by the
    // number of files a process may have open.
    let mut last_file: Option<(PathBuf, File)> = None;
    // Bytes the checks below read, read from each segment's file while it is open (keyed by
    // the segment's base offset), so that an open maps no page: the last frame of each
    // sealed segment, and the frame the durable record names. Repair reads through the map.
    let mut read_at_open: HashMap<u64, ReadBytes> = HashMap::new();
    for &base in &listing.bases {
        let path = dir.join(segment_file_name(base));
        if !torn_created.is_empty() {
            // Everything after a torn creation was created after it, and goes with it; so may
            // be another torn creation, whose frames are examined like the first one's.
            match Segment::open(path.clone(), base, !read_only) {
                Ok((segment, _)) => segments.push(segment),
                Err(_) if is_torn_creation(&path, base) => torn_created.push((base, path)),
                Err(err) => return Err(err),
            }
            continue;
        }
        match Segment::open(path.clone(), base, !read_only) {
            Ok((segment, file)) => {
                if let (Some(prev), Some((_, prev_file)), false) =
                    (segments.last(), &last_file, repair)
                {
                    if let Some(tail) = read_link_tail(prev, prev_file, segment.header())? {
                        read_at_open.insert(prev.base_offset(), tail);
                    }
                }
                last_file = Some((path, file));
                segments.push(segment);
            }
            Err(_) if is_torn_creation(&path, base) => torn_created.push((base, path)),
            Err(err) => return Err(err),
        }
    }
    let log_id = segments.first().map_or_else(new_log_id, |s| s.header().log_id);
    let durable_file = read_durable_file(dir);
    if let (Some(first), Some(other), false) = (segments.first(), durable_file, repair) {
        // A valid record of another log beside the segments: the segments, or the record,
        // were copied in from another log. Reading on would return that other log's records
        // as this one's (a log of one segment has no chain to catch it), so refuse.
        if other.log_id != log_id {
            return Err(StorageError::BrokenChain {
                segment: first.path().to_path_buf(),
                reason: format!(
                    "the segments belong to log {log_id:#018x}, but `{DURABLE_FILE_NAME}` was \
                     written by log {:#018x}: a segment or `{DURABLE_FILE_NAME}` from another \
                     log; if these segments are the log you want, remove `{DURABLE_FILE_NAME}`",
                    other.log_id
                ),
            });
        }
    }
    let mut recorded = durable_file.filter(|record| record.log_id == log_id);
    // What `DURABLE` holds, whatever recovery below makes of it: a writer must clear a clean
    // end in it before it writes anything. (A repair deletes it.)
    let mut durable_on_disk = recorded;
    if let (Some(record), Some((path, file)), Some(last), false) =
        (&recorded, &last_file, segments.last(), repair)
    {
        if path.as_path() == last.path() {
            if let Some(bytes) = read_recorded_frame(last, file, record)? {
                read_at_open.insert(last.base_offset(), bytes);
            }
        }
    }
    if let Some((base, path)) = torn_created.first() {
        let first_torn = segments.iter().position(|s| s.base_offset() > *base);
        let later = first_torn.map_or_else(Vec::new, |i| segments.split_off(i));
        if segments.is_empty() {
            // The first segment of a log is created synced, so it cannot be a torn creation;
            // without any intact segment before it, offsets cannot be recovered.
            return Err(StorageError::BrokenChain {
                segment: path.clone(),
                reason: "the log's first segment has no header".to_string(),
            });
        }
        drop_torn_creation(dir, &torn_created, later, recorded.as_ref(), read_only, &mut report)?;
    }
    check_log_start(dir, &listing, segments.first(), log_id, read_only)?;

    if repair && !segments.is_empty() {
        // A repair checks every frame, with the durable record as evidence of what was
        // durable; then the record goes (it may name bytes the repair changed), and the
        // recovery below finds an intact chain and cuts any torn tail as every open does.
        let mut cut = repair::empty_report(options.recovery);
        let planned =
            repair::plan(dir, &mut segments, recorded.as_ref(), options.recovery, &mut cut)?;
        let done = repair::apply(dir, &mut segments, &planned, options.recovery, cut)?;
        remove_durable_record(dir)?;
        recorded = None;
        durable_on_disk = None;
        report.repair = Some(done);
    }

    let recovered = if segments.is_empty() {
        None
    } else {
        let reading = Reading { read_at_open: &read_at_open, checks: options.read_checks };
        Some(recover(dir, &mut segments, recorded.as_ref(), &reading, read_only, &mut report)?)
    };

    let (end, last_frame, known_durable) = match &recovered {
        Some(r) => (r.end, r.last_frame, r.known_durable),
        None => (0, None, 0),
    };
    // A truncation's log ends where recovery found its end after the cut (a cut at a broken
    // link leaves the previous segment's chain to find it).
    if let Some(repair) = report.repair.as_mut().filter(|r| r.truncated_at.is_some()) {
        if repair.mode == RecoveryMode::Truncate {
            repair.truncated_at = Some(end);
        }
    }
    let last_segment = segments.pop();
    let mut all: Vec<Arc<Segment>> = segments.into_iter().map(Arc::new).collect();
    let active = match last_segment {
        Some(last) if read_only => {
            all.push(Arc::new(last));
            None
        }
        Some(last) => Some(match last_file {
            Some((path, file)) if path == last.path() => SegmentWriter::new(last, file)?,
            // Recovery set the segment that file belongs to aside.
            _ => SegmentWriter::reopen(last)?,
        }),
        // Refused above; kept so that a read-only open never creates anything.
        None if read_only => None,
        None => {
            if let Some(start) = &listing.start {
                // Only torn creations from the start on: the log the record speaks of is gone,
                // and a new one is not made over it (FORMAT.md 6.6).
                return Err(StorageError::BrokenChain {
                    segment: dir.join(START_FILE_NAME),
                    reason: format!(
                        "the log begins at offset {} by its start record, but no segment from \
                         there on could be read",
                        start.start_offset
                    ),
                });
            }
            let header = SegmentHeader {
                version: FORMAT_VERSION,
                flags: 0,
                created_at_ms: now_ms(),
                base_offset: 0,
                prev_last_frame_offset: NO_PREVIOUS_FRAME,
                prev_last_frame_crc: 0,
                durable_offset: 0,
                log_id,
            };
            report.created = true;
            // A record left by an earlier log would name another log beside the new one's
            // segments, which an open refuses: it goes first, durably.
            if durable_file.is_some() {
                remove_durable_record(dir)?;
            }
            let new =
                NewFile { bytes: options.segment_bytes, zero_fill: options.zero_fill_segments };
            let first = Segment::create(dir, new, header, true)?;
            // The log's directory is new too (made by `lock_or_create_dir`, or empty and
            // likely just made by the caller), and syncing it makes its entries durable, not
            // its own entry in its parent: without this, a power loss could take the whole
            // directory, records acknowledged by `append_sync` with it (found by the power-cut
            // tests, `tests/power_cut_defects.rs`).
            sync_dir(parent_dir(dir))?;
            Some(first)
        }
    };
    let sealed = all.clone();
    if let Some(active) = &active {
        all.push(Arc::clone(active.segment()));
    }
    report.segments = all.len();
    report.end_offset = end;
    let tail = read_only.then(|| super::tail::Tail::new(last_frame.map(|h| (h.offset, h.crc))));
    let shared =
        Arc::new(Shared::new(dir.to_path_buf(), all.into(), end, known_durable, log_id, tail));
    // Before anything reads the log through `shared` (the pages' catch-up, an index's).
    shared.read_checks.store(options.read_checks, std::sync::atomic::Ordering::Relaxed);
    let writer = match (active, lock) {
        (Some(active), Some(lock)) => {
            let base = active.segment().base_offset();
            // The surviving records may be only in the page cache (the previous writer may
            // have crashed before syncing). Sync everything after the known durable point
            // now, so every frame written from here on truthfully records what is durable.
            let unsynced_sealed = sealed
                .iter()
                .zip(sealed.iter().skip(1).map(|s| s.base_offset()).chain(std::iter::once(base)))
                .filter(|(segment, next_base)| {
                    *next_base > known_durable.max(segment.base_offset())
                })
                .map(|(segment, next_base)| {
                    let from = known_durable.saturating_sub(segment.base_offset());
                    (Arc::clone(segment), from, next_base - segment.base_offset())
                })
                .collect();
            let pos = end - base;
            // A segment this open made zero-filled needs no zeroing ahead of its syncs.
            let zeroed_pos = if report.created && options.zero_fill_segments {
                active.segment().capacity()
            } else {
                pos
            };
            let mut writer = Writer {
                active,
                pos,
                synced_pos: known_durable.saturating_sub(base).min(pos),
                zeroed_pos,
                synced_end: known_durable.min(end),
                unsynced_sealed,
                unsynced_created: Vec::new(),
                last_frame: last_frame.map_or((NO_PREVIOUS_FRAME, 0), |h| (h.offset, h.crc)),
                clock: RecordClock::new(last_frame.map_or(0, |h| h.write_timestamp_ms)),
                poisoned: None,
                shared: Arc::clone(&shared),
                segment_bytes: options.segment_bytes,
                record_bytes_max: options.effective_record_bytes_max(),
                log_id,
                pager: None,
                pager_tried: false,
                fill_requested: 0,
                write_behind_requested: 0,
                spare_requested: false,
                write_behind: options.write_behind,
                prepare_next_segment: options.prepare_next_segment,
                zero_fill_segments: options.zero_fill_segments,
                durable_on_disk,
                dirty_past_end: false,
                rolls: 0,
                sync_in_flight: false,
                _lock: lock,
                #[cfg(test)]
                fail_next_sync: false,
                #[cfg(test)]
                panic_next_sync: false,
                #[cfg(test)]
                fail_next_zero_ahead: false,
                #[cfg(test)]
                fail_frame_after: None,
            };
            writer.sync()?;
            writer.publish();
            // Recovery may have used evidence it then removed (a stray frame's durable point,
            // a set-aside segment's header); everything up to the end is durable now, so record
            // that, and the next open reaches the same conclusion without the evidence.
            let recorded_end = recorded.map_or(0, |r| r.durable_end);
            if recorded_end != end && (report.torn_tail.is_some() || known_durable < end) {
                writer.write_durable_record(false)?;
            }
            Some(writer)
        }
        _ => None,
    };
    if !read_only {
        // The hashing thread hashes records before they are synced, so after a crash pages
        // may lie over records the crash took, whether recovery cut a torn tail or found
        // only zeros (or no file) where they were: every page past the end goes now, before
        // anything is appended where those records were (the pages are loaded, and checked
        // against the log, only later, and a new record can match a stale page's last entry).
        report.merkle_pages_dropped = merkle::forget_pages_from(dir, log_id, end)?;
    }
    if let Some(repair) = report.repair.as_ref().filter(|r| r.applied) {
        // The entries from the first repaired offset on changed: stored pages over them go.
        let damaged = repair.damaged.iter().map(|span| span.start);
        if let Some(first) = damaged.chain(repair.truncated_at).min() {
            report.merkle_pages_dropped += merkle::forget_pages_from(dir, log_id, first)?;
        }
    }
    if let Some(start) = listing.start.filter(|_| !report.created) {
        shared.start_entry.store(start.start_entry, std::sync::atomic::Ordering::Release);
    }
    let mut log = Log {
        rollup: None,
        shared,
        writer,
        options,
        report,
        seen_rolls: 0,
        retention_error: None,
        retention_floor: None,
    };
    if log.options.merkle_rollup {
        log.rollup = Some(merkle::RollupHandle::start(log.reader(), log_id, !read_only)?);
    }
    Ok(log)
}

/// Plans recovery of `segments` (at least one) and carries out its end, or fails with the
/// damage or broken chain it found.
fn recover(
    dir: &Path,
    segments: &mut Vec<Segment>,
    recorded: Option<&DurableRecord>,
    reading: &Reading<'_>,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<Recovered> {
    // Only the last segment's tail is examined on every open, so only it is asked for its
    // data extents and scanned without readahead. A sealed segment's tail is examined only
    // after a crash that tore it; it is then read whole, which costs time, not correctness.
    let last_index = segments.len() - 1;
    // With a clean end recorded, the tail is not scanned (unless the record proves wrong,
    // when readahead merely brings in more zero pages): no advice needed. With read checks,
    // a clean end is taken only once it is seen to hold (from bytes read into memory first),
    // so that a record proven wrong has the tail read into memory before it is examined.
    let clean = match recorded.filter(|r| r.clean_end) {
        Some(record) if reading.checks => clean_end_holds(segments, record, reading)?,
        Some(_) => true,
        None => false,
    };
    if let (Some(last), false) = (segments.last(), clean) {
        last.advise_scan(true);
    }
    if reading.checks && !clean {
        populate_for_scan(segments, recorded)?;
    }
    let plan = {
        let views: Vec<SegmentView<'_>> = segments
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                // A clean end recorded for the log spares the examination of the last
                // segment's tail, and so the listing of its extents; should the record
                // prove wrong, the whole region is examined.
                let extents = if i == last_index && !clean {
                    s.data_extents()
                } else {
                    vec![(0, s.capacity())]
                };
                let read_at_open = reading
                    .read_at_open
                    .get(&s.header().base_offset)
                    .map(|(pos, bytes)| (*pos, bytes.as_slice()));
                SegmentView { header: *s.header(), data: s.data_exclusive(), extents, read_at_open }
            })
            .collect();
        plan(&views, recorded)
    };
    if let (Some(last), false) = (segments.get(last_index), clean) {
        last.advise_scan(false);
    }
    match plan.outcome.clone() {
        Outcome::End { index, end, dirty_end } => {
            apply_end(dir, segments, &plan, index, end, dirty_end, read_only, report)
        }
        Outcome::Damaged { index, offset, kind, .. } => Err(StorageError::Corruption {
            segment: segments[index].path().to_path_buf(),
            offset,
            kind,
        }),
        Outcome::Broken { index, reason } => {
            Err(StorageError::BrokenChain { segment: segments[index].path().to_path_buf(), reason })
        }
    }
}

/// Plans a repair of the log in `dir` without changing anything; see
/// [`Log::plan_repair`](super::Log::plan_repair).
pub(super) fn plan_repair(dir: &Path, mode: RecoveryMode) -> Result<RepairReport> {
    if !mode.repairs() {
        return Err(StorageError::InvalidOptions {
            reason: "plan_repair needs RecoveryMode::Salvage or RecoveryMode::Truncate".to_string(),
        });
    }
    let listing = list_dir(dir)?;
    if listing.bases.is_empty() {
        return Err(not_a_log(dir, &listing, false));
    }
    let mut segments = Vec::with_capacity(listing.bases.len());
    let mut torn_created = Vec::new();
    for &base in &listing.bases {
        let path = dir.join(segment_file_name(base));
        if !torn_created.is_empty() {
            torn_created.push(path);
            continue;
        }
        match Segment::open(path.clone(), base, false) {
            Ok((segment, _file)) => segments.push(segment),
            // What a power cut leaves of a new segment: it and every later one are set aside
            // by the open that follows (or refused, if something shows they were durable).
            Err(_) if is_torn_creation(&path, base) && !segments.is_empty() => {
                torn_created.push(path)
            }
            Err(err) => return Err(err),
        }
    }
    let log_id = segments.first().map_or(0, |s| s.header().log_id);
    let recorded = read_durable_file(dir).filter(|record| record.log_id == log_id);
    let planned = repair::plan_read_only(&mut segments, recorded.as_ref(), mode)?;
    let mut report = planned;
    report.segments_dropped.extend(torn_created);
    Ok(report)
}

/// Where a recovered log ends.
struct Recovered {
    /// The end offset.
    end: u64,
    /// The last complete frame before the end, anywhere in the log.
    last_frame: Option<FrameHeader>,
    known_durable: u64,
}

/// Carries out [`Outcome::End`]: zeroes the torn bytes of segment `index` (a writer only),
/// sets later segments aside, and publishes every remaining segment's data.
#[allow(clippy::too_many_arguments)]
fn apply_end(
    dir: &Path,
    segments: &mut Vec<Segment>,
    plan: &Plan,
    index: usize,
    end: u64,
    dirty_end: u64,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<Recovered> {
    report.records_scanned += plan.frames_scanned;
    report.bytes_scanned += plan.bytes_scanned;
    report.clean_close = plan.clean_end;
    let later: Vec<Segment> = segments.drain(index + 1..).collect();
    let mut segments_dropped = Vec::new();
    for segment in later {
        let path = segment.path().to_path_buf();
        drop(segment);
        if read_only {
            segments_dropped.push(path);
        } else {
            segments_dropped.push(set_aside(&path)?);
        }
    }
    if !read_only && !segments_dropped.is_empty() {
        sync_dir(dir)?;
    }
    let Some(last) = segments.get_mut(index) else {
        return Err(StorageError::InvalidOffset {
            offset: end,
            reason: "recovery lost its segment".to_string(),
        });
    };
    let base = last.base_offset();
    // A torn creation set aside before planning is part of the same torn tail.
    let earlier = report.torn_tail.take();
    if dirty_end > end || plan.frames_dropped > 0 || !segments_dropped.is_empty() {
        report.torn_tail = Some(TornTail {
            offset: base + end,
            bytes: dirty_end.saturating_sub(end),
            frames_dropped: plan.frames_dropped,
            segments_dropped,
        });
    }
    if let Some(earlier) = earlier {
        let tail = report.torn_tail.get_or_insert(TornTail {
            offset: base + end,
            bytes: 0,
            frames_dropped: 0,
            segments_dropped: Vec::new(),
        });
        tail.frames_dropped += earlier.frames_dropped;
        tail.segments_dropped.extend(earlier.segments_dropped);
    }
    if !read_only && dirty_end > end {
        last.zero_exclusive(end, dirty_end)?;
    }
    last.set_published_exclusive(end);
    let last_frame = match plan.last_complete {
        Some(header) if header.offset + header.stride() == base + end => Some(header),
        _ => last_frame_before(segments, index, end),
    };
    for i in 1..segments.len() {
        let next_base = segments[i].base_offset();
        let segment = &mut segments[i - 1];
        let data_end = next_base - segment.base_offset();
        segment.set_published_exclusive(data_end);
    }
    Ok(Recovered { end: base + end, last_frame, known_durable: plan.known_durable })
}

/// The last complete frame before data position `end` of segment `index`, found by walking
/// that segment (or, if it is empty, from the link to the previous one).
fn last_frame_before(segments: &mut [Segment], index: usize, end: u64) -> Option<FrameHeader> {
    if end > 0 {
        let segment = segments.get_mut(index)?;
        let base = segment.base_offset();
        let data = segment.data_exclusive();
        let bounded = data.get(..usize::try_from(end).ok()?)?;
        return walk_chain(bounded, base, 0).last_complete;
    }
    let header = *segments.get(index)?.header();
    let prev = segments.get_mut(index.checked_sub(1)?)?;
    let pos = header.prev_last_frame_offset.checked_sub(prev.base_offset())?;
    let data = prev.data_exclusive().get(usize::try_from(pos).ok()?..)?;
    match decode_frame(data, header.prev_last_frame_offset) {
        Ok(FrameRead::Frame(frame)) => Some(frame.header),
        _ => None,
    }
}

/// A fresh random log identifier. Uniqueness, not secrecy, is what matters: std's randomly
/// keyed hasher over the time and process id gives 64 well-mixed bits without a dependency.
fn new_log_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The durable record in `dir`, or `None` if there is no valid one (missing or damaged): the
/// record only adds knowledge, so doing without it is safe. The caller checks its `log_id`.
fn read_durable_file(dir: &Path) -> Option<DurableRecord> {
    // One `read` of one byte more than a record, so a longer file (which `decode` refuses) is
    // told from one of the right length without a `stat` first (as `fs::read` would make) or
    // a second `read` to see the end (as `read_to_end` would): a read of a regular file
    // returns fewer bytes than asked only at its end.
    use std::os::unix::fs::FileExt as _;
    let file = File::open(dir.join(DURABLE_FILE_NAME)).ok()?;
    let mut buffer = [0u8; DURABLE_RECORD_LEN + 1];
    let len = file.read_at(&mut buffer, 0).ok()?;
    DurableRecord::decode(buffer.get(..len)?).ok()
}

/// Checks where the log begins (`FORMAT.md` 6.6): at its start record's offset if it has one
/// (a writer then removes segment files a crash left below it), else with a first segment that
/// follows no other. A log whose first segments are missing is refused rather than read as a
/// shorter log.
fn check_log_start(
    dir: &Path,
    listing: &super::directory::Listing,
    first: Option<&Segment>,
    log_id: u64,
    read_only: bool,
) -> Result<()> {
    let Some(first) = first else { return Ok(()) };
    let broken =
        |reason: String| StorageError::BrokenChain { segment: first.path().to_path_buf(), reason };
    match listing.start {
        Some(start) if start.log_id != log_id => Err(broken(format!(
            "the start record `{START_FILE_NAME}` was written by log {:#018x}, not this log \
             ({log_id:#018x})",
            start.log_id
        ))),
        Some(start) if start.start_offset != first.base_offset() => Err(broken(format!(
            "the start record says the log begins at offset {}, but its first segment begins \
             at {}: segment files are missing",
            start.start_offset,
            first.base_offset()
        ))),
        Some(_) => {
            if !read_only && !listing.below_start.is_empty() {
                for &base in &listing.below_start {
                    let path = dir.join(segment_file_name(base));
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(StorageError::io("remove segment below the start", path, e))
                        }
                    }
                }
                sync_dir(dir)?;
            }
            Ok(())
        }
        None if first.header().prev_last_frame_offset != NO_PREVIOUS_FRAME => Err(broken(format!(
            "the first segment file begins at offset {} and follows another segment, but there \
             is no start record: the segment files before it are missing",
            first.base_offset()
        ))),
        None => Ok(()),
    }
}

/// Removes the durable record, if any, durably.
fn remove_durable_record(dir: &Path) -> Result<()> {
    let record = dir.join(DURABLE_FILE_NAME);
    match fs::remove_file(&record) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove durable record", record, e)),
    }
}
