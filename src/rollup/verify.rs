//! Checking stored pages against the log: every page is recomputed from the records and
//! compared with the stored one, with its link to the previous page of its level.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use super::edge::Edge;
use super::page::{Page, PAGE_RECORD_LEN};
use super::state::EntrySource;
use super::store::{page_file_name, read_page};
use super::Hash;
use crate::error::Result;

/// A stored page that does not match the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageProblem {
    /// The page's level (0: pages of entries).
    pub level: u8,
    /// The page's position in its level.
    pub index: u64,
    /// The offset of the first record under the page (as the log has it).
    pub first_offset: u64,
    /// The offset of the last record under the page (as the log has it).
    pub last_offset: u64,
    /// What was wrong.
    pub problem: String,
}

/// What [`Log::verify_pages`](crate::Log::verify_pages) checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PagesReport {
    /// Entries (records) the log holds.
    pub entries: u64,
    /// Per level: the pages the log's entries fill, and the pages stored.
    pub levels: Vec<LevelPages>,
    /// Stored pages compared with the ones recomputed from the log.
    pub pages_checked: u64,
    /// Every stored page that is damaged, does not match the log, or breaks its level's chain.
    pub problems: Vec<PageProblem>,
}

/// Pages of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LevelPages {
    /// Full pages the log's entries make at this level.
    pub expected: u64,
    /// Whole page records in this level's file.
    pub stored: u64,
}

impl PagesReport {
    /// Whether every stored page that was checked is intact and matches the log.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One level's page file, as the check reads it.
struct StoredLevel {
    file: Option<File>,
    stored: u64,
    /// The hash of the stored page before the next one to check, if known.
    prev: Option<Hash>,
}

/// Recomputes every page from `source` and compares those of `level` (all by default) whose
/// index is in `pages` (all by default) with the page files in `dir`.
pub(crate) fn verify_pages(
    dir: &Path,
    log_id: u64,
    source: &dyn EntrySource,
    level: Option<u8>,
    pages: Option<Range<u64>>,
) -> Result<PagesReport> {
    let mut levels: Vec<StoredLevel> = Vec::new();
    let wanted = |l: u8, index: u64| {
        level.is_none_or(|want| want == l) && pages.as_ref().is_none_or(|r| r.contains(&index))
    };
    let open_level = |l: u8| {
        let file = File::open(dir.join(page_file_name(l))).ok();
        let len = file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        StoredLevel { file, stored: len / PAGE_RECORD_LEN as u64, prev: None }
    };
    let mut report = PagesReport::default();
    let mut edge = Edge::default();
    let end = source.end_offset();
    source.each_entry(source.start_offset(), end, &mut |entry| {
        report.entries += 1;
        edge.push(0, log_id, entry.leaf(), entry.span(), &mut |page| {
            while levels.len() <= usize::from(page.level) {
                levels.push(open_level(u8::try_from(levels.len()).unwrap_or(u8::MAX)));
            }
            let stored = &mut levels[usize::from(page.level)];
            if wanted(page.level, page.index) && page.index < stored.stored {
                report.pages_checked += 1;
                if let Some(problem) = compare(stored, page, log_id) {
                    report.problems.push(problem_of(page, problem));
                }
            } else {
                stored.prev = None;
            }
        });
        true
    })?;
    // Levels the entries fill no page of may still have stored pages.
    let top = levels.len();
    for l in top..=usize::from(super::page::LEVEL_MAX) {
        let level = open_level(u8::try_from(l).unwrap_or(u8::MAX));
        if level.stored == 0 {
            break;
        }
        levels.push(level);
    }
    for (l, stored) in levels.iter().enumerate() {
        let level_u8 = u8::try_from(l).unwrap_or(u8::MAX);
        let expected = edge.sealed_count(level_u8);
        report.levels.push(LevelPages { expected, stored: stored.stored });
        for index in expected..stored.stored {
            if wanted(level_u8, index) {
                report.problems.push(PageProblem {
                    level: level_u8,
                    index,
                    first_offset: end,
                    last_offset: end,
                    problem: "the page covers entries the log does not have".to_string(),
                });
            }
        }
    }
    Ok(report)
}

fn problem_of(page: &Page, problem: String) -> PageProblem {
    PageProblem {
        level: page.level,
        index: page.index,
        first_offset: page.span.first_offset,
        last_offset: page.span.last_offset,
        problem,
    }
}

/// What is wrong with the stored page where `expected` belongs, if anything.
fn compare(level: &mut StoredLevel, expected: &Page, log_id: u64) -> Option<String> {
    let file = level.file.as_ref()?;
    let prev = match (level.prev.take(), expected.index) {
        (Some(hash), _) => Some(hash),
        (None, 0) => Some(Hash([0; 32])),
        (None, index) => read_page(file, expected.level, index - 1, log_id).ok().map(|p| p.hash()),
    };
    let stored = match read_page(file, expected.level, expected.index, log_id) {
        Ok(stored) => stored,
        Err(bad) => return Some(bad.reason),
    };
    level.prev = Some(stored.hash());
    let problem = if prev.is_some_and(|prev| prev != stored.prev_hash) {
        "its link to the previous page of its level is broken"
    } else if stored.prev_hash != expected.prev_hash {
        "its link does not match the chain recomputed from the log"
    } else if stored.root != expected.root {
        "its root differs from the one recomputed from the log"
    } else if stored.children != expected.children {
        "a child hash differs from the one recomputed from the log"
    } else if stored.nodes != expected.nodes {
        "a stored inner node differs from the one recomputed from its children"
    } else if stored.span != expected.span {
        "its offsets or write times differ from the log's"
    } else if stored != *expected {
        "it differs from the page recomputed from the log"
    } else {
        return None;
    };
    Some(problem.to_string())
}
