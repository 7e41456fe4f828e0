//! The rollup of one log: its sealed pages, its right edge, and how far it has hashed; loading
//! and checking stored pages against the log, and catching up with new records.

use std::path::Path;

use super::edge::Edge;
use super::page::{Span, FANOUT};
use super::store::{BadPage, PageStore};
use super::tree::leaf_hash;
use super::Hash;
use crate::error::{Result, StorageError};

/// A record as the rollup sees it: where it is, when it was written, its payload, and where
/// the next frame starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    pub offset: u64,
    pub end: u64,
    pub write_ms: u64,
    pub payload: &'a [u8],
}

impl EntryRef<'_> {
    pub(crate) fn leaf(&self) -> Hash {
        leaf_hash(self.offset, self.write_ms, self.payload)
    }

    pub(crate) fn span(&self) -> Span {
        Span {
            first_offset: self.offset,
            last_offset: self.offset,
            end_offset: self.end,
            first_write_ms: self.write_ms,
            last_write_ms: self.write_ms,
        }
    }
}

/// Where the rollup reads records: the log layer implements it over its replay.
pub(crate) trait EntrySource {
    /// The offset of the log's first record.
    fn start_offset(&self) -> u64;
    /// The end of the records this source sees (published, or a read-only snapshot's).
    fn end_offset(&self) -> u64;
    /// The entry number of the record at [`EntrySource::start_offset`]: how many records
    /// retention removed before it (`FORMAT.md` 6.6).
    fn start_entry(&self) -> u64;
    /// Calls `visit` for each record (gaps are not entries) from `from`, a frame boundary, up
    /// to `until`, in order, until `visit` returns `false`.
    ///
    /// # Errors
    /// A replay error other than a gap.
    fn each_entry(
        &self,
        from: u64,
        until: u64,
        visit: &mut dyn FnMut(EntryRef<'_>) -> bool,
    ) -> Result<()>;
}

/// What loading found and did, for the rollup's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoadNotes {
    /// Pages dropped because they were damaged or did not match the log, and why.
    pub dropped: Option<String>,
    /// Entries covered by the pages kept.
    pub entries_kept: u64,
}

/// The rollup of one log.
#[derive(Debug)]
pub(crate) struct Rollup {
    pub(crate) log_id: u64,
    pub(crate) store: PageStore,
    pub(crate) edge: Edge,
    /// Entries hashed.
    pub(crate) entries: u64,
    /// Where the next entry's frame starts: catch-up resumes here.
    pub(crate) next_offset: u64,
    /// The offset of the log's first record: where entry 0 is.
    start_offset: u64,
    pub(crate) notes: LoadNotes,
    /// Pages rebuilt after a damaged one was found while answering.
    pub(crate) pages_rebuilt: u64,
}

impl Rollup {
    /// A rollup that keeps everything in memory and starts from nothing.
    pub(crate) fn in_memory(log_id: u64, source: &dyn EntrySource) -> Rollup {
        Rollup::from_store(PageStore::in_memory(log_id), log_id, source.start_offset())
    }

    fn from_store(store: PageStore, log_id: u64, start: u64) -> Rollup {
        Rollup {
            log_id,
            store,
            edge: Edge::default(),
            entries: 0,
            next_offset: start,
            start_offset: start,
            notes: LoadNotes::default(),
            pages_rebuilt: 0,
        }
    }

    /// Loads the page files of `dir` (writing to them if `writable`), keeps the pages that
    /// match `source` and rebuilds the right edge; the entries after them are left for
    /// [`Rollup::catch_up`].
    ///
    /// # Errors
    /// A replay error of `source`.
    pub(crate) fn load(
        dir: &Path,
        log_id: u64,
        writable: bool,
        source: &dyn EntrySource,
    ) -> Result<Rollup> {
        let (store, cut) = PageStore::open(dir, log_id, writable);
        let mut rollup = Rollup::from_store(store, log_id, source.start_offset());
        let mut dropped: Vec<String> = cut.into_iter().collect();
        // The level-0 pages that still match the log form a prefix: find its end.
        let count = rollup.store.count(0);
        let mut good = count;
        if count > 0 && !rollup.page_matches_log(count - 1, source)? {
            let (mut lo, mut hi) = (0, count - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if rollup.page_matches_log(mid, source)? {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            good = lo;
        }
        if good < count {
            dropped.push(format!(
                "level-0 pages {good}..{count} do not match the log's records (the log was cut \
                 or repaired after they were written)"
            ));
        }
        rollup.reset_to(good * FANOUT as u64);
        rollup.notes = LoadNotes {
            dropped: (!dropped.is_empty()).then(|| dropped.join("; ")),
            entries_kept: rollup.entries,
        };
        Ok(rollup)
    }

    /// Whether level-0 page `index` ends where the log has a record with the page's last leaf
    /// hash, followed by a frame boundary at the page's end offset. A page that cannot be read
    /// does not match, nor one whose last entry is no record of the log (a writer's open drops
    /// the pages past the end, but a read-only handle does not, and a page may come from
    /// elsewhere: the pages are loaded at the first query or hashing).
    /// A page whose last entry retention removed matches: its checksum vouches for it, and it
    /// holds the only hashes of those records (and so the matching pages stay a prefix).
    ///
    /// # Errors
    /// A replay error of `source` other than a page naming no record there.
    fn page_matches_log(&self, index: u64, source: &dyn EntrySource) -> Result<bool> {
        let Ok(page) = self.store.read(0, index) else {
            return Ok(false);
        };
        let (span, last_leaf) = (page.span, page.children.last().copied());
        if span.end_offset > source.end_offset() {
            return Ok(false);
        }
        if span.last_offset < source.start_offset() {
            return Ok(true);
        }
        let mut matches = false;
        let walked = source.each_entry(span.last_offset, span.end_offset, &mut |entry| {
            matches = entry.offset == span.last_offset
                && entry.end == span.end_offset
                && entry.write_ms == span.last_write_ms
                && Some(entry.leaf()) == last_leaf;
            false
        });
        match walked {
            Ok(()) => Ok(matches),
            Err(StorageError::InvalidOffset { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Keeps the pages over the first `entries` entries (rounded down to whole level-0 pages)
    /// and rebuilds the right edge from the pages of the levels below each.
    pub(crate) fn reset_to(&mut self, entries: u64) {
        let pages0 = entries / FANOUT as u64;
        self.store.truncate(pages0 * FANOUT as u64);
        while let Err(bad) = self.rebuild_edge() {
            self.drop_from(&bad);
        }
    }

    /// Drops a page that cannot be read, with what depends on it: a level-0 page and every
    /// page after it; a page above level 0 and every level above 0 (rebuilt from level 0).
    fn drop_from(&mut self, bad: &BadPage) {
        if bad.level == 0 {
            self.store.truncate(super::page::first_entry(0, bad.index));
        } else {
            self.store.truncate_upper();
        }
    }

    /// Recovers from a damaged page found while answering: drops it (see
    /// [`Rollup::drop_from`]), rebuilds the edge, and hashes the log again up to where the
    /// rollup was.
    ///
    /// # Errors
    /// A replay error of `source`.
    pub(crate) fn recover_from(&mut self, bad: &BadPage, source: &dyn EntrySource) -> Result<()> {
        let (before, until) = (self.store.counts(), self.next_offset);
        self.drop_from(bad);
        while let Err(bad) = self.rebuild_edge() {
            self.drop_from(&bad);
        }
        let after = self.store.counts();
        let lost: u64 = before
            .iter()
            .zip(after.iter().chain(std::iter::repeat(&(0, 0))))
            .map(|(b, a)| (b.0 + b.1).saturating_sub(a.0 + a.1))
            .sum();
        self.pages_rebuilt += lost;
        self.notes.dropped =
            Some(format!("level {} page {}: {}", bad.level, bad.index, bad.reason));
        self.catch_up(source, until)
    }

    fn rebuild_edge(&mut self) -> std::result::Result<(), BadPage> {
        // Each level above 0 must hold exactly the pages the level below fills; if one lost
        // pages (a file deleted or damaged), the levels above 0 are rebuilt from level 0.
        let levels = self.store.levels();
        let consistent = (1..=levels)
            .all(|level| self.store.count(level) == self.store.count(level - 1) / FANOUT as u64);
        if !consistent {
            self.store.truncate_upper();
        }
        let mut sealed = Vec::new();
        for level in 0..self.store.levels().max(1) {
            sealed.push((self.store.count(level), self.store.last_hash(level)?));
        }
        let mut edge = Edge::after(sealed);
        // The open page of level L + 1 holds the roots of the level-L pages not under one.
        let rebuild_from = |level: u8| match consistent {
            true => self.store.count(level + 1) * FANOUT as u64,
            false if level == 0 => 0,
            false => u64::MAX,
        };
        let mut new_pages = Vec::new();
        for level in 0..self.store.levels() {
            for index in rebuild_from(level)..self.store.count(level) {
                let page = self.store.read_header(level, index)?;
                edge.push(level + 1, self.log_id, page.root, page.span, &mut |sealed| {
                    new_pages.push(sealed.clone());
                });
            }
        }
        // Pages sealed above come out in order within each level.
        for page in &new_pages {
            self.store.append(page);
        }
        let pages0 = self.store.count(0);
        self.entries = pages0 * FANOUT as u64;
        self.next_offset = match pages0 {
            0 => self.start_offset,
            n => self.store.read_header(0, n - 1)?.span.end_offset,
        };
        self.edge = edge;
        Ok(())
    }

    /// Hashes the records from where the rollup stopped up to `until`, sealing and storing
    /// the pages that fill.
    ///
    /// # Errors
    /// A replay error of `source`.
    pub(crate) fn catch_up(&mut self, source: &dyn EntrySource, until: u64) -> Result<()> {
        if until <= self.next_offset {
            return Ok(());
        }
        // Entries removed by retention can be neither hashed nor skipped: the stored pages
        // must cover them, or every entry number after them would be wrong.
        let removed = source.start_entry();
        if self.entries < removed {
            return Err(StorageError::Proof {
                reason: format!(
                    "the log's first {removed} records were removed by retention and the stored \
                     pages cover only {}: the Merkle tree cannot be computed",
                    self.entries
                ),
            });
        }
        let Rollup { store, edge, entries, next_offset, log_id, .. } = self;
        source.each_entry(*next_offset, until, &mut |entry| {
            edge.push(0, *log_id, entry.leaf(), entry.span(), &mut |page| store.append(page));
            *entries += 1;
            *next_offset = entry.end;
            true
        })
    }

    /// Bytes of memory the rollup holds: its open pages and any pages kept in memory.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.edge.memory_bytes() as u64 + self.store.memory_bytes()
    }
}
