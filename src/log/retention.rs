//! Retention: removing whole segments from the front of a log (`FORMAT.md` 6.6).
//!
//! The decision is made durable first: everything is synced, the Merkle pages over the
//! records to be removed are synced (they keep every earlier head and every later proof
//! computable), and the start record names the new first segment. Only then are the files
//! removed, and a crash in between leaves files below the start, which the next writer's
//! open removes. Readers and followers that hold a snapshot keep reading the removed
//! segments' maps, which stay valid until they let go (an unlinked file's pages stay mapped);
//! a replay asked for after the removal from an offset before the new start gets
//! `InvalidOffset`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::consumer::{self, Consumer};
use super::merkle::PageCover;
use super::start_record::{write_start_record, StartRecord};
use super::{Log, Replay};
use crate::error::{Result, StorageError};
use crate::segment::sync_dir;

/// What [`Log::truncate_before`] removed, and why it stopped where it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The log's first offset afterwards (unchanged if nothing was removed).
    pub start_offset: u64,
    /// The segment files removed, in order.
    pub segments_removed: Vec<PathBuf>,
    /// Records (and gaps) in them.
    pub records_removed: u64,
    /// Why fewer segments were removed than the offset asked for, if so: the active segment,
    /// a consumer's position, or the Merkle pages not yet covering the records.
    pub limited_by: Option<String>,
}

impl Log {
    /// Removes the whole segments whose records all lie before `offset` (the active segment
    /// is never removed), never past a consumer's stored position, and only records that the
    /// stored Merkle pages already cover, so that every earlier tree head and every proof for
    /// the remaining records stays computable (unless the tree is lost already: records were
    /// removed that no stored page covers, as [`Log::truncate_before_forced`] does on a log
    /// without pages; the pages then limit nothing). Returns what was removed and, if less than
    /// asked, why ([`RetentionReport::limited_by`]).
    ///
    /// **Durability:** on return the removal is durable; a crash part-way through is finished
    /// by the next writer's open. Replays and followers already running keep reading the
    /// removed records; new ones start at [`Log::start_offset`].
    ///
    /// # Errors
    /// [`StorageError::ReadOnly`], [`StorageError::Poisoned`]; [`StorageError::Io`] from the
    /// sync, the start record or a removal; a consumer file that cannot be read.
    pub fn truncate_before(&mut self, offset: u64) -> Result<RetentionReport> {
        self.remove_front(offset, false)
    }

    /// [`Log::truncate_before`] that ignores consumer positions and the Merkle pages: the
    /// records go even if a consumer has not read them (its next follow gets
    /// `InvalidOffset`), and if no stored page covers them, tree heads and proofs fail from
    /// then on with [`StorageError::Proof`] rather than number entries wrongly. The stored
    /// pages are first checked against the records that go; pages that cannot be (a read
    /// error in those records) are removed, with the same effect.
    ///
    /// # Errors
    /// As [`Log::truncate_before`].
    pub fn truncate_before_forced(&mut self, offset: u64) -> Result<RetentionReport> {
        self.remove_front(offset, true)
    }

    /// Why the retention policies ([`Options::retention_max_bytes`],
    /// [`Options::retention_max_age`]) last failed when a segment filled, if they did; the
    /// append that triggered them succeeded all the same.
    ///
    /// [`Options::retention_max_bytes`]: super::Options::retention_max_bytes
    /// [`Options::retention_max_age`]: super::Options::retention_max_age
    #[must_use]
    pub fn retention_error(&self) -> Option<&str> {
        self.retention_error.as_deref()
    }

    /// Runs the retention policies after the writer rolled: removes the front segments that
    /// the size and age limits let go, as [`Log::truncate_before`] would (it syncs the log).
    #[cold]
    pub(super) fn apply_retention_policies(&mut self) {
        // A shared writer's group commit may have a sync in flight, and retention syncs: it
        // runs again after the next write instead.
        if self.writer.as_ref().is_some_and(|w| w.sync_in_flight) {
            return;
        }
        self.seen_rolls = self.writer.as_ref().map_or(0, |w| w.rolls);
        let (max_bytes, max_age) =
            (self.options.retention_max_bytes, self.options.retention_max_age);
        if max_bytes.is_none() && max_age.is_none() {
            return;
        }
        let snapshot = self.shared.snapshot();
        let end = snapshot.end;
        let mut cut = snapshot.start();
        if let Some(max) = max_bytes {
            // The last segment base that still leaves at least `max` bytes from it to the end.
            if let Some(s) = snapshot.segments.iter().rev().find(|s| end - s.base_offset() >= max) {
                cut = cut.max(s.base_offset());
            }
        }
        if let Some(age) = max_age {
            let horizon = super::clock::now_ms()
                .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            // A segment's newest record is no later than its successor's creation.
            for pair in snapshot.segments.windows(2) {
                if let [_, next] = pair {
                    if next.header().created_at_ms <= horizon {
                        cut = cut.max(next.base_offset());
                    }
                }
            }
        }
        if cut > snapshot.start() {
            self.retention_error = self.truncate_before(cut).err().map(|e| e.to_string());
        }
    }

    /// Keeps retention, forced or not, from removing records at or after `floor`. An event
    /// log sets it to the end of its last durable index save: after retention, the saved index
    /// is the only record of the versions of aggregates whose events were all removed, so
    /// nothing goes that it does not describe.
    pub(crate) fn set_retention_floor(&mut self, floor: Option<u64>) {
        self.retention_floor = floor;
    }

    fn remove_front(&mut self, offset: u64, force: bool) -> Result<RetentionReport> {
        if self.writer.is_none() {
            return Err(StorageError::ReadOnly);
        }
        let snapshot = self.shared.snapshot();
        let segments = Arc::clone(&snapshot.segments);
        let start = snapshot.start();
        let mut report = RetentionReport { start_offset: start, ..RetentionReport::default() };
        // Nothing to remove (the first segment is the active one, or holds the offset): no
        // sync, and no sync of the page files, which the size and age policies would otherwise
        // pay at every roll.
        if segments.get(1).is_none_or(|second| second.base_offset() > offset) {
            return Ok(report);
        }
        let mut limit = offset;
        let mut limit_to = |at: u64, why: String, report: &mut RetentionReport| {
            if at < limit {
                limit = at;
                report.limited_by = Some(why);
            }
        };
        if let Some(last) = segments.last() {
            let why = "the active segment is never removed".to_string();
            limit_to(last.base_offset(), why, &mut report);
        }
        if let Some(floor) = self.retention_floor {
            // Even when forced: the index must describe what goes (`set_retention_floor`).
            let why = format!("the event index is saved only up to offset {floor}");
            limit_to(floor, why, &mut report);
        }
        if !force {
            for name in consumer::list(&self.shared)? {
                let position = Consumer::open(Arc::clone(&self.shared), &name)?.position();
                if let Some(position) = position {
                    let why = format!("consumer `{name}` has read up to offset {position}");
                    limit_to(position, why, &mut report);
                }
            }
            match self.durable_page_cover()? {
                PageCover::UpTo(Some(last)) => {
                    let why = format!(
                        "the stored Merkle pages cover the records before offset {last} so far"
                    );
                    limit_to(last, why, &mut report);
                }
                PageCover::UpTo(None) => {
                    let why = "no stored Merkle page covers the records yet (or the log keeps \
                               none: see truncate_before_forced)"
                        .to_string();
                    limit_to(start, why, &mut report);
                }
                PageCover::TreeLost => {}
            }
        } else {
            // The pages are not asked to cover what goes, but checked against it while it is
            // there: once loaded later, a page wholly before the start is taken as it is.
            self.check_pages_before_removal()?;
        }
        // Segments [0, keep) go: the first kept one begins at or before the limit.
        let keep = segments.iter().rposition(|s| s.base_offset() <= limit).unwrap_or(0);
        let Some(first_kept) = segments.get(keep).filter(|_| keep > 0) else {
            return Ok(report);
        };
        let new_start = first_kept.base_offset();
        self.sync()?;
        let mut removed_records = 0u64;
        let mut replay = Replay::new(snapshot.clone(), start, new_start);
        while let Some(item) = replay.next_ref() {
            match item {
                Ok(_) => removed_records += 1,
                Err(StorageError::Gap { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let start_entry = self
            .shared
            .start_entry
            .load(Ordering::Acquire)
            .checked_add(removed_records)
            .ok_or_else(|| StorageError::BrokenChain {
                segment: self.shared.dir.join(super::start_record::START_FILE_NAME),
                reason: "the start record's count of removed records overflows".to_string(),
            })?;
        let record =
            StartRecord { log_id: self.shared.log_id, start_offset: new_start, start_entry };
        write_start_record(&self.shared.dir, &record)?;
        {
            let mut list = self.shared.segments.write().unwrap_or_else(PoisonError::into_inner);
            *list = segments.get(keep..).unwrap_or_default().to_vec().into();
        }
        self.shared.start_entry.store(start_entry, Ordering::Release);
        for segment in segments.get(..keep).unwrap_or_default() {
            match std::fs::remove_file(segment.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove segment", segment.path(), e)),
            }
            report.segments_removed.push(segment.path().to_path_buf());
        }
        sync_dir(&self.shared.dir)?;
        report.start_offset = new_start;
        report.records_removed = removed_records;
        Ok(report)
    }
}
