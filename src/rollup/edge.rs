//! The right edge of the rollup: at each level, the page still filling, held in memory with
//! every node of its subtrees computed as its children arrive.

use super::page::{Page, Span, FANOUT, PAGE_HEIGHT};
use super::tree::node_hash;
use super::Hash;

/// A page of one level that is not full yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenPage {
    /// `rows[h]` holds the roots of the complete perfect subtrees of height `h` inside the
    /// page, left to right; `rows[0]` are the children.
    rows: Vec<Vec<Hash>>,
    /// What the children cover, once there is one.
    span: Option<Span>,
}

impl OpenPage {
    /// Children so far.
    pub(crate) fn len(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    pub(crate) fn span(&self) -> Option<Span> {
        self.span
    }

    /// Adds a child covering `span`; returns the rows and span once the page is full (and
    /// starts the next page empty).
    pub(crate) fn push(&mut self, child: Hash, span: Span) -> Option<(Vec<Vec<Hash>>, Span)> {
        if self.rows.is_empty() {
            self.rows =
                (0..PAGE_HEIGHT as usize).map(|h| Vec::with_capacity(FANOUT >> h)).collect();
        }
        self.span = Some(self.span.map_or(span, |s| s.joined(span)));
        let mut node = child;
        let mut height = 0;
        loop {
            self.rows[height].push(node);
            let row = &self.rows[height];
            if row.len() % 2 == 1 || height + 1 == PAGE_HEIGHT as usize {
                break;
            }
            node = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            height += 1;
        }
        if self.len() < FANOUT {
            return None;
        }
        let span = self.span.take().unwrap_or_default();
        Some((std::mem::take(&mut self.rows), span))
    }

    /// The root of the complete perfect subtree of height `height` starting at child `child`,
    /// if the page holds it.
    pub(crate) fn node(&self, height: u32, child: usize) -> Option<Hash> {
        self.rows.get(height as usize)?.get(child >> height).copied()
    }

    /// Bytes of memory the page holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.rows.iter().map(|row| row.capacity() * 32).sum()
    }
}

/// The open pages of every level, and the hash of the last sealed page of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edge {
    pub(crate) open: Vec<OpenPage>,
    /// Per level: the sealed pages so far, and the hash of the last one (zeros for none).
    pub(crate) sealed: Vec<(u64, Hash)>,
}

impl Edge {
    /// An edge after `sealed[l]` pages of each level `l`, whose last pages hash to the
    /// given hashes.
    pub(crate) fn after(sealed: Vec<(u64, Hash)>) -> Edge {
        Edge { open: vec![OpenPage::default(); sealed.len().max(1)], sealed }
    }

    /// The open page of `level` (empty if that level has none yet).
    pub(crate) fn open_page(&self, level: u8) -> Option<&OpenPage> {
        self.open.get(usize::from(level))
    }

    /// Sealed pages of `level`.
    pub(crate) fn sealed_count(&self, level: u8) -> u64 {
        self.sealed.get(usize::from(level)).map_or(0, |s| s.0)
    }

    /// Adds a child to the open page of `level`; calls `sealed` with every page this seals
    /// (the level's page first, then those above it that fill in turn).
    pub(crate) fn push(
        &mut self,
        level: u8,
        log_id: u64,
        child: Hash,
        span: Span,
        sealed: &mut dyn FnMut(&Page),
    ) {
        let (mut level, mut child, mut span) = (usize::from(level), child, span);
        loop {
            if self.open.len() <= level {
                self.open.resize_with(level + 1, OpenPage::default);
            }
            if self.sealed.len() <= level {
                self.sealed.resize(level + 1, (0, Hash([0; 32])));
            }
            let Some((rows, page_span)) = self.open[level].push(child, span) else {
                return;
            };
            let (count, prev) = self.sealed[level];
            let level_u8 = u8::try_from(level).unwrap_or(u8::MAX);
            let page = Page::from_rows(level_u8, count, log_id, page_span, prev, rows);
            self.sealed[level] = (count + 1, page.hash());
            sealed(&page);
            (child, span) = (page.root, page_span);
            level += 1;
        }
    }

    /// Bytes of memory the open pages hold.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.open.iter().map(OpenPage::memory_bytes).sum()
    }
}
