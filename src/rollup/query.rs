//! Heads and proofs from a [`Rollup`]: every perfect subtree root is a stored node, or at most
//! seven node hashes from one, so each answer reads a few pages and hashes a few dozen nodes.
//!
//! Entry metadata (an entry's offset, end and write time) comes from page headers where a page
//! boundary falls, and otherwise from a walk of at most 256 records from the start of the
//! entry's level-0 page.

use std::cell::RefCell;
use std::sync::Arc;

use super::page::{Page, Span, FANOUT, PAGE_HEIGHT};
use super::state::{EntrySource, Rollup};
use super::store::BadPage;
use super::tree::{self, node_hash, SubtreeRoots};
use super::{empty_root, ConsistencyProof, Hash, InclusionProof, TreeHead};
use crate::error::StorageError;

/// Why a query failed: the log (returned to the caller), or a stored page (which the caller
/// drops and rebuilds from the log before asking again).
#[derive(Debug)]
pub(crate) enum QueryError {
    Log(StorageError),
    Page(BadPage),
}

impl From<StorageError> for QueryError {
    fn from(err: StorageError) -> Self {
        QueryError::Log(err)
    }
}

impl From<BadPage> for QueryError {
    fn from(bad: BadPage) -> Self {
        QueryError::Page(bad)
    }
}

type QueryResult<T> = Result<T, QueryError>;

/// A [`Rollup`] seen as a source of subtree roots. It keeps every page it read (a query reads
/// a handful), so no page is read twice and a failed self-check can find the culprit.
pub(crate) struct Pages<'a> {
    rollup: &'a Rollup,
    cache: RefCell<Vec<Arc<Page>>>,
}

impl<'a> Pages<'a> {
    pub(crate) fn new(rollup: &'a Rollup) -> Pages<'a> {
        Pages { rollup, cache: RefCell::new(Vec::new()) }
    }

    fn page(&self, level: u8, index: u64) -> QueryResult<Arc<Page>> {
        let cached =
            self.cache.borrow().iter().find(|p| p.level == level && p.index == index).cloned();
        if let Some(page) = cached {
            return Ok(page);
        }
        let page = self.rollup.store.read(level, index)?;
        self.cache.borrow_mut().push(Arc::clone(&page));
        Ok(page)
    }

    /// The error blaming the first page read whose children do not hash to its inner nodes and
    /// root; `None` if every page read is consistent.
    fn first_inconsistent(&self) -> Option<QueryError> {
        let cache = self.cache.borrow();
        let bad = cache.iter().find(|page| !page.is_consistent())?;
        let reason = "its hashes do not agree with each other; page rebuilt".to_string();
        Some(QueryError::Page(BadPage { level: bad.level, index: bad.index, reason }))
    }

    /// The first page read whose children do not hash to its inner nodes and root, to blame
    /// for an answer that failed its self-check; else level-0 page `fallback`.
    fn culprit(&self, fallback: u64, what: &str) -> QueryError {
        let cache = self.cache.borrow();
        let bad = cache.iter().find(|page| !page.is_consistent());
        let (level, index) = bad.map_or((0, fallback), |page| (page.level, page.index));
        QueryError::Page(BadPage { level, index, reason: format!("{what}; page rebuilt") })
    }

    /// The root of the perfect subtree of `2^height` entries starting at entry `start`.
    fn perfect(&self, start: u64, height: u32) -> QueryResult<Hash> {
        let level = height / PAGE_HEIGHT;
        let within = height % PAGE_HEIGHT;
        let level_u8 = u8::try_from(level).unwrap_or(u8::MAX);
        let index = start.checked_shr(PAGE_HEIGHT * (level + 1)).unwrap_or(0);
        let child = (start.checked_shr(PAGE_HEIGHT * level).unwrap_or(0) % FANOUT as u64) as usize;
        if index < self.rollup.store.count(level_u8) {
            return Ok(self.page(level_u8, index)?.node(within, child));
        }
        let open = self.rollup.edge.open_page(level_u8);
        open.and_then(|open| open.node(within, child)).ok_or_else(|| {
            QueryError::Log(StorageError::Proof {
                reason: format!("entries from {start} are not hashed yet"),
            })
        })
    }
}

impl SubtreeRoots for Pages<'_> {
    type Error = QueryError;

    fn subtree_root(&self, start: u64, end: u64) -> QueryResult<Hash> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.perfect(start, n.trailing_zeros());
        }
        // RFC 9162 splits at the largest power of two below `n`.
        let k = 1u64 << (63 - (n - 1).leading_zeros());
        Ok(node_hash(&self.subtree_root(start, start + k)?, &self.subtree_root(start + k, end)?))
    }
}

/// Where an entry's frame ends, and when it was written.
#[derive(Debug, Clone, Copy)]
struct EntryInfo {
    end: u64,
    write_ms: u64,
}

/// Pages that disagree with the log in a way no single page can be blamed for: all of them
/// are rebuilt.
fn disagree(what: &str) -> QueryError {
    let reason = format!("{what} found the pages disagreeing with the log");
    QueryError::Page(BadPage { level: 0, index: 0, reason })
}

fn size_error(size: u64, available: u64) -> QueryError {
    QueryError::Log(StorageError::Proof {
        reason: format!("tree size {size} is larger than the log's {available} entries"),
    })
}

impl Rollup {
    /// The span of level-0 page `index`: from its header if sealed, else the open page's.
    fn span0(&self, index: u64) -> QueryResult<Option<Span>> {
        if index < self.store.count(0) {
            return Ok(Some(self.store.read_header(0, index)?.span));
        }
        Ok(self.edge.open_page(0).and_then(|open| open.span()))
    }

    /// Walks the entries of level-0 page `page` (from its first offset) and calls `visit`
    /// with each entry's position in the page, until it returns `false`. A sealed page whose
    /// header does not lead to its first entry is blamed (and so rebuilt).
    fn walk_page(
        &self,
        source: &dyn EntrySource,
        page: u64,
        visit: &mut dyn FnMut(usize, super::state::EntryRef<'_>) -> bool,
    ) -> QueryResult<()> {
        let Some(span) = self.span0(page)? else {
            return Ok(());
        };
        // Retention may have removed the page's first entries: the walk then begins at the
        // log's first record, whose entry number the start record gives.
        let (from, mut at) = if span.first_offset < source.start_offset() {
            // A page whose entries all come after the log's first record cannot start before
            // it: its header lies.
            let Some(first) = source.start_entry().checked_sub(page * FANOUT as u64) else {
                return Err(first_entry_misplaced(page));
            };
            match usize::try_from(first).ok().filter(|&at| at < FANOUT) {
                Some(at) => (source.start_offset(), at),
                None => return Err(removed(page)),
            }
        } else {
            (span.first_offset, 0)
        };
        let mut first_ok = at > 0;
        let mut visited = false;
        let walked = source.each_entry(from, self.next_offset, &mut |entry| {
            visited = true;
            if at == 0 {
                first_ok =
                    entry.offset == span.first_offset && entry.write_ms == span.first_write_ms;
                if !first_ok {
                    return false;
                }
            }
            let more = at < FANOUT && visit(at, entry);
            at += 1;
            more
        });
        match walked {
            // A record the log cannot give on the way (damaged, or a read error) is the log's
            // problem, not the page's: dropping the page would not help, and after retention
            // could lose what no rebuild can bring back.
            Err(err) if visited || !matches!(err, StorageError::InvalidOffset { .. }) => {
                Err(QueryError::Log(err))
            }
            Err(_) => Err(first_entry_misplaced(page)),
            Ok(()) if !first_ok => Err(first_entry_misplaced(page)),
            Ok(()) => Ok(()),
        }
    }

    /// The offset, end and write time of entry `index` (which the rollup has hashed).
    fn entry_info(&self, source: &dyn EntrySource, index: u64) -> QueryResult<EntryInfo> {
        let (page, at) = (index / FANOUT as u64, (index % FANOUT as u64) as usize);
        if at == FANOUT - 1 && page < self.store.count(0) {
            // The page's header says where its last entry is: check that against the log,
            // unless retention removed that record (the header's checksum then vouches). A
            // header that puts it before the log's first record when the entry was not
            // removed lies, and is caught below.
            let span = self.store.read_header(0, page)?.span;
            if span.last_offset < source.start_offset() && index < source.start_entry() {
                return Ok(EntryInfo { end: span.end_offset, write_ms: span.last_write_ms });
            }
            let mut found = false;
            let walked = source.each_entry(span.last_offset, span.end_offset, &mut |entry| {
                found = entry.offset == span.last_offset
                    && entry.end == span.end_offset
                    && entry.write_ms == span.last_write_ms;
                false
            });
            match walked {
                Ok(()) if found => {
                    return Ok(EntryInfo { end: span.end_offset, write_ms: span.last_write_ms });
                }
                // As in `walk_page`: a record the log cannot give is not the page's fault.
                Err(err) if !matches!(err, StorageError::InvalidOffset { .. }) => {
                    return Err(QueryError::Log(err));
                }
                _ => {}
            }
            let reason = "its last entry is not where its header says".to_string();
            return Err(QueryError::Page(BadPage { level: 0, index: page, reason }));
        }
        if index < source.start_entry() {
            return Err(removed(page));
        }
        let mut found = None;
        self.walk_page(source, page, &mut |i, entry| {
            if i == at {
                found = Some(EntryInfo { end: entry.end, write_ms: entry.write_ms });
            }
            i < at
        })?;
        found.ok_or_else(|| {
            let reason = format!("entry {index} is not in the log where its page says");
            QueryError::Page(BadPage { level: 0, index: page, reason })
        })
    }

    /// The head of the tree over the first `size` entries (all hashed ones by default).
    pub(crate) fn head(
        &self,
        source: &dyn EntrySource,
        size: Option<u64>,
    ) -> QueryResult<TreeHead> {
        let size = size.unwrap_or(self.entries);
        if size > self.entries {
            return Err(size_error(size, self.entries));
        }
        if size == 0 {
            let (root, end_offset) = (empty_root(), source.start_offset());
            return Ok(TreeHead { tree_size: 0, root, end_offset, last_write_timestamp_ms: 0 });
        }
        let root = tree::root(&Pages::new(self), size)?;
        let last = self.entry_info(source, size - 1)?;
        Ok(TreeHead {
            tree_size: size,
            root,
            end_offset: last.end,
            last_write_timestamp_ms: last.write_ms,
        })
    }

    /// The root of the tree of `size` entries (at least 1), checked as [`Rollup::head`] checks
    /// it: every proof runs these checks, so that a page forged behind good checksums, which a
    /// head of the same size would find and rebuild, is rebuilt before the proof is given and
    /// not after; a proof's root is then the head's. Where the log cannot say where the last
    /// entry is, no head of that size can be given, but a proof still can: if retention
    /// removed that entry, from the pages alone (as before retention); if a record the check
    /// needs is damaged, from pages whose hashes all agree with each other. A read error
    /// fails the proof.
    fn checked_root(
        &self,
        pages: &Pages<'_>,
        source: &dyn EntrySource,
        size: u64,
    ) -> QueryResult<Hash> {
        let root = tree::root(pages, size)?;
        match self.entry_info(source, size - 1) {
            Ok(_) => Ok(root),
            Err(QueryError::Log(_)) if size - 1 < source.start_entry() => Ok(root),
            // A read error may pass, and a head of this size would then be given, perhaps after
            // finding a forged page this proof would have used: no proof now.
            Err(err @ QueryError::Log(StorageError::Io { .. })) => Err(err),
            // A damaged record: no head of this size can be given until a repair (which
            // rebuilds the pages). A forged header can send the check there, so the root
            // stands only on pages whose hashes all agree.
            Err(QueryError::Log(_)) => match pages.first_inconsistent() {
                None => Ok(root),
                Some(bad) => Err(bad),
            },
            Err(err) => Err(err),
        }
    }

    /// The head of the largest tree whose last entry was written at or before `at_ms`.
    pub(crate) fn head_at(&self, source: &dyn EntrySource, at_ms: u64) -> QueryResult<TreeHead> {
        // The first level-0 page with an entry written after `at_ms` (write times never
        // decrease, so pages are ordered by them); the open page if none is.
        let lo = self.store.partition_point0(|page| page.span.last_write_ms <= at_ms)?;
        let mut within = 0u64;
        self.walk_page(source, lo, &mut |_, entry| {
            let before = entry.write_ms <= at_ms;
            within += u64::from(before);
            before
        })?;
        let size = lo * FANOUT as u64 + within;
        let head = self.head(source, Some(size))?;
        // Self-check: the head ends at the last entry written by then (a page header forged
        // behind good checksums could mislead the search). Which page lied is unknown: every
        // page is rebuilt.
        let next_later = size >= self.entries || self.entry_info(source, size)?.write_ms > at_ms;
        if head.last_write_timestamp_ms > at_ms || !next_later {
            return Err(disagree("a head by time"));
        }
        Ok(head)
    }

    /// The index of the entry at `offset`, with its write time and payload.
    fn find_entry(
        &self,
        source: &dyn EntrySource,
        offset: u64,
    ) -> QueryResult<Option<(u64, u64, Vec<u8>)>> {
        // The first level-0 page that ends after `offset`.
        let lo = self.store.partition_point0(|page| page.span.end_offset <= offset)?;
        let mut found = None;
        self.walk_page(source, lo, &mut |at, entry| {
            if entry.offset == offset {
                let index = lo * FANOUT as u64 + at as u64;
                found = Some((index, entry.write_ms, entry.payload.to_vec()));
            }
            entry.offset < offset
        })?;
        if found.is_none() {
            // Self-check: a record that the log has at `offset` must be found.
            let mut exists = false;
            source.each_entry(offset, offset.saturating_add(1), &mut |entry| {
                exists = entry.offset == offset;
                false
            })?;
            if exists {
                return Err(disagree("finding a record's entry"));
            }
        }
        Ok(found)
    }

    /// A proof that the record at `offset` is in the tree of `size` entries (all by default).
    pub(crate) fn inclusion(
        &self,
        source: &dyn EntrySource,
        offset: u64,
        size: Option<u64>,
    ) -> QueryResult<InclusionProof> {
        let size = size.unwrap_or(self.entries);
        if size > self.entries {
            return Err(size_error(size, self.entries));
        }
        let not_an_entry =
            |reason: String| QueryError::Log(StorageError::InvalidOffset { offset, reason });
        let (index, write_ms, payload) = self
            .find_entry(source, offset)?
            .ok_or_else(|| not_an_entry("no record of the tree starts there".to_string()))?;
        if index >= size {
            return Err(not_an_entry(format!(
                "the record is entry {index}, not among the first {size} entries of the tree"
            )));
        }
        let pages = Pages::new(self);
        let page = index / FANOUT as u64;
        let leaf = pages.perfect(index, 0)?;
        if leaf != super::leaf_hash(offset, write_ms, &payload) {
            return Err(pages.culprit(page, "a stored leaf hash is not that of its record"));
        }
        let audit_path = tree::inclusion_path(&pages, index, 0, size)?;
        // Self-check: a stored node that does not match its children (a page forged with
        // good checksums) would make a path that does not lead to the tree's root.
        let root = self.checked_root(&pages, source, size)?;
        if tree::root_from_inclusion_path(index, size, &leaf, &audit_path) != Some(root) {
            return Err(pages.culprit(page, "an inclusion path did not lead to the root"));
        }
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            offset,
            write_timestamp_ms: write_ms,
            payload_hex: payload,
            leaf_hash: leaf,
            audit_path,
            root,
        })
    }

    /// A proof that the tree of `old_size` entries is a prefix of the tree of `new_size`
    /// entries (all by default).
    pub(crate) fn consistency(
        &self,
        source: &dyn EntrySource,
        old_size: u64,
        new_size: Option<u64>,
    ) -> QueryResult<ConsistencyProof> {
        let new_size = new_size.unwrap_or(self.entries);
        if new_size > self.entries {
            return Err(size_error(new_size, self.entries));
        }
        if old_size == 0 || old_size > new_size {
            return Err(QueryError::Log(StorageError::Proof {
                reason: format!(
                    "a consistency proof needs 0 < old size <= new size, not {old_size} and \
                     {new_size}"
                ),
            }));
        }
        let pages = Pages::new(self);
        let proof = match old_size == new_size {
            true => Vec::new(),
            false => tree::consistency_path(&pages, old_size, new_size)?,
        };
        let old_root = self.checked_root(&pages, source, old_size)?;
        let new_root = self.checked_root(&pages, source, new_size)?;
        // Self-check, as for inclusion proofs.
        if !tree::verify_consistency_path(old_size, new_size, &old_root, &new_root, &proof) {
            let page = (old_size - 1) / FANOUT as u64;
            return Err(pages.culprit(page, "a consistency proof did not verify"));
        }
        Ok(ConsistencyProof { old_size, new_size, old_root, new_root, proof })
    }
}

/// The error for level-0 page `page` whose header does not lead to its first entry.
fn first_entry_misplaced(page: u64) -> QueryError {
    let reason = "its first entry is not where its header says".to_string();
    QueryError::Page(BadPage { level: 0, index: page, reason })
}

/// The error for an entry whose record retention removed, inside level-0 page `page`: its
/// offset and write time are known only at the page's end. Never blamed on the page.
fn removed(page: u64) -> QueryError {
    QueryError::Log(StorageError::Proof {
        reason: format!(
            "this needs the offset or write time of a record that retention removed (in \
             level-0 page {page}); heads at multiples of 256 entries and proofs by size still \
             work"
        ),
    })
}
