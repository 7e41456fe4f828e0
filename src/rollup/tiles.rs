//! Read-only access to a log's stored tree, tile by tile, for an export in the C2SP tlog-tiles
//! layout (`crate::transparency`).
//!
//! A tile and a page are the same thing: tile `N` of level `L` holds the hashes of the subtrees
//! of `256^L` entries under page `N` of level `L`, which are that page's children. So a full
//! tile is read from the stored page, and the partial tile at the right edge from the open
//! page. Nothing here writes a page file: the pages are loaded read-only, and the entries the
//! page files do not cover yet are hashed in memory, as a read-only open of the log does.

use super::page::{Span, FANOUT};
use super::query::{Pages, QueryError};
use super::state::{EntryRef, EntrySource, Rollup};
use super::store::BadPage;
use super::{tree, Hash};
use crate::error::{Result, StorageError};

/// Damaged pages a tile read recovers from before it gives up (as a query does).
const RECOVERIES_MAX: usize = 16;

/// The tree over every entry of a log, as its pages hold it.
pub(crate) struct TreeTiles<'a> {
    rollup: Rollup,
    source: &'a dyn EntrySource,
}

impl<'a> TreeTiles<'a> {
    /// Loads the pages of the log in `dir` (whose segments carry `log_id`) without writing to
    /// them, keeps those that match `source`, and hashes the entries after them up to
    /// `source`'s end, in memory.
    ///
    /// # Errors
    /// A replay error of `source`.
    pub(crate) fn load(
        dir: &std::path::Path,
        log_id: u64,
        source: &'a dyn EntrySource,
    ) -> Result<TreeTiles<'a>> {
        let mut rollup = Rollup::load(dir, log_id, false, source)?;
        rollup.catch_up(source, source.end_offset())?;
        Ok(TreeTiles { rollup, source })
    }

    /// Entries in the tree: every record `source` held when loaded.
    pub(crate) fn size(&self) -> u64 {
        self.rollup.entries
    }

    /// Runs `read` until no damaged page gets in its way: a damaged page is dropped (in memory
    /// only), rebuilt from the log, and `read` asked again.
    fn answer<T>(&mut self, read: impl Fn(&Rollup) -> Result<T, QueryError>) -> Result<T> {
        for _ in 0..RECOVERIES_MAX {
            match read(&self.rollup) {
                Ok(answer) => return Ok(answer),
                Err(QueryError::Log(err)) => return Err(err),
                Err(QueryError::Page(bad)) => self.rollup.recover_from(&bad, self.source)?,
            }
        }
        Err(StorageError::Proof {
            reason: "the rollup's pages kept failing their checks while being rebuilt".to_string(),
        })
    }

    /// The root of the tree over the first `size` entries (at most [`TreeTiles::size`]).
    ///
    /// # Errors
    /// [`StorageError::Proof`] for a larger size.
    pub(crate) fn root(&mut self, size: u64) -> Result<Hash> {
        if size > self.size() {
            return Err(not_hashed(format!("tree size {size} is larger than {}", self.size())));
        }
        self.answer(|rollup| tree::root(&Pages::new(rollup), size))
    }

    /// The first `width` hashes of tile `index` of `level`: the roots of the subtrees of
    /// `256^level` entries under page `index` of `level`, left to right. A stored page is
    /// checked first (its children hash to its root), and so is every hash above level 0
    /// against the stored root of the page below it.
    ///
    /// # Errors
    /// [`StorageError::Proof`] if the tree does not hold `width` such subtrees there yet.
    pub(crate) fn tile(&mut self, level: u8, index: u64, width: usize) -> Result<Vec<Hash>> {
        self.answer(|rollup| tile_hashes(rollup, level, index, width))
    }

    /// Calls `visit` with each of the `width` first entries of level-0 tile `index` (entries
    /// `256 · index` onwards), in order.
    ///
    /// # Errors
    /// A replay error, the first error `visit` returns, or [`StorageError::Proof`] if the log
    /// does not hold those entries where the tree says.
    pub(crate) fn each_entry(
        &mut self,
        index: u64,
        width: usize,
        visit: &mut dyn FnMut(EntryRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let span = self.answer(|rollup| span0(rollup, index))?;
        let Some(span) = span else {
            return Err(not_hashed(format!("level-0 tile {index} holds no entry yet")));
        };
        let (mut seen, mut failed) = (0usize, None);
        self.source.each_entry(span.first_offset, self.rollup.next_offset, &mut |entry| {
            if seen == 0
                && (entry.offset, entry.write_ms) != (span.first_offset, span.first_write_ms)
            {
                failed = Some(not_hashed(format!(
                    "the first entry of level-0 tile {index} is not at offset {}",
                    span.first_offset
                )));
                return false;
            }
            if let Err(err) = visit(entry) {
                failed = Some(err);
                return false;
            }
            seen += 1;
            seen < width
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
        if seen < width {
            return Err(not_hashed(format!(
                "level-0 tile {index} has {seen} entries in the log, not {width}"
            )));
        }
        Ok(())
    }
}

/// The span of level-0 page `index`: from its header if sealed, else the open page's.
fn span0(rollup: &Rollup, index: u64) -> Result<Option<Span>, QueryError> {
    if index < rollup.store.count(0) {
        return Ok(Some(rollup.store.read_header(0, index)?.span));
    }
    if index > rollup.store.count(0) {
        return Ok(None);
    }
    Ok(rollup.edge.open_page(0).and_then(|open| open.span()))
}

fn tile_hashes(
    rollup: &Rollup,
    level: u8,
    index: u64,
    width: usize,
) -> Result<Vec<Hash>, QueryError> {
    let sealed = rollup.store.count(level);
    let hashes = if index < sealed {
        let page = rollup.store.read(level, index)?;
        if !page.is_consistent() {
            let reason = "its children do not hash to its root".to_string();
            return Err(QueryError::Page(BadPage { level, index, reason }));
        }
        page.children.iter().take(width).copied().collect::<Vec<_>>()
    } else if index == sealed {
        let open = rollup.edge.open_page(level);
        (0..width).filter_map(|child| open.and_then(|open| open.node(0, child))).collect()
    } else {
        Vec::new()
    };
    if hashes.len() < width {
        let reason = format!("tile {index} of level {level} does not hold {width} hashes yet");
        return Err(QueryError::Log(not_hashed(reason)));
    }
    // Above level 0, every hash is the root of a page of the level below: check it against
    // that page's own header, which is stored (and checksummed) apart from this page.
    if let Some(below) = level.checked_sub(1) {
        for (child, hash) in hashes.iter().enumerate() {
            let under = index.saturating_mul(FANOUT as u64).saturating_add(child as u64);
            if rollup.store.read_header(below, under)?.root != *hash {
                let reason = format!("child {child} is not the root of page {under} below it");
                return Err(QueryError::Page(BadPage { level, index, reason }));
            }
        }
    }
    Ok(hashes)
}

fn not_hashed(reason: String) -> StorageError {
    StorageError::Proof { reason }
}
