//! The sealed pages of each level: page files beside the segments (`rollup-{level}.pages`, a
//! fixed-size record per page, `FORMAT.md` 12.3), and pages held in memory where nothing may
//! be written (a read-only open, a log without stored pages) or a write failed.
//!
//! Page files hold derived data: they are written with plain `pwrite` and never synced, since
//! the log can always rebuild them. What makes that safe is on the reading side: every record
//! is checked (CRC-32, header hash, level, index, log id) each time it is read, a load keeps
//! only the valid prefix of each file, and a cut is synced so that pages that were dropped can
//! never come back after a power loss.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::page::{entries_per_page, Page, PageError, HEADER_READ_LEN, LEVEL_MAX, PAGE_RECORD_LEN};
use super::Hash;

/// The file name of the pages of `level`.
pub fn page_file_name(level: u8) -> String {
    format!("rollup-{level}.pages")
}

/// Whether `name` is the name of a page file.
pub fn is_page_file_name(name: &str) -> bool {
    (0..=LEVEL_MAX).any(|level| name == page_file_name(level))
}

/// A page that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPage {
    pub level: u8,
    pub index: u64,
    pub reason: String,
}

/// One level's pages.
#[derive(Debug, Default)]
struct Level {
    file: Option<File>,
    /// Valid records at the start of the file.
    on_disk: u64,
    /// Pages after those, kept in memory.
    memory: Vec<Arc<Page>>,
    /// Why a writable store holds the file open only to read (it would not open for
    /// writing): its pages are read, but nothing is written to it, and a cut fails.
    write_refused: Option<String>,
}

/// The sealed pages of every level.
#[derive(Debug)]
pub(crate) struct PageStore {
    dir: Option<PathBuf>,
    writable: bool,
    log_id: u64,
    levels: Vec<Level>,
    /// The last error writing a page file, if any (the page was kept in memory instead).
    pub(crate) write_error: Option<String>,
}

impl PageStore {
    /// A store that keeps every page in memory and touches no file.
    pub(crate) fn in_memory(log_id: u64) -> PageStore {
        PageStore { dir: None, writable: false, log_id, levels: Vec::new(), write_error: None }
    }

    /// Opens the page files of `dir` (opened for writing if `writable`, creating them when
    /// first needed; a file that will not open for writing is read, and a cut it needs
    /// fails, setting `write_error`) and keeps the valid prefix of each: whole records that
    /// decode, and at most `256 ×` the pages of the level below. Returns the store and a
    /// description of what was cut, if anything.
    pub(crate) fn open(dir: &Path, log_id: u64, writable: bool) -> (PageStore, Option<String>) {
        let mut store = PageStore {
            dir: Some(dir.to_path_buf()),
            writable,
            log_id,
            levels: Vec::new(),
            write_error: None,
        };
        let mut cuts = Vec::new();
        // Every level's file is looked at, even above a missing one: a file left above a gap
        // is cut back below (no level may hold more than the level below it fills).
        for level in 0..=LEVEL_MAX {
            let path = dir.join(page_file_name(level));
            let (file, write_refused) = if writable {
                match OpenOptions::new().read(true).write(true).open(&path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        // Not ours to write (another user's file, say): its pages are read
                        // all the same, so that a cut it needs is seen, and fails.
                        let refused = format!("{} does not open for writing: {e}", path.display());
                        (File::open(&path), Some(refused))
                    }
                    opened => (opened, None),
                }
            } else {
                (File::open(&path), None)
            };
            let file = match file {
                Ok(file) => file,
                Err(e) => {
                    // A file this process may not even read can still hold pages that a later
                    // open with the right to read them would load: for a writer, that is a
                    // cut that cannot be made. Other errors (no file, no descriptor left)
                    // leave the file as it is.
                    if writable && e.kind() == ErrorKind::PermissionDenied {
                        store.write_error = Some(format!(
                            "{} does not open: {e}; pages kept in memory",
                            path.display()
                        ));
                    }
                    store.levels.push(Level::default());
                    continue;
                }
            };
            let len = file.metadata().map_or(0, |m| m.len());
            let mut on_disk = len / PAGE_RECORD_LEN as u64;
            // A torn or damaged record at the end goes, and so does any after it.
            while on_disk > 0 {
                match read_page(&file, level, on_disk - 1, log_id) {
                    Ok(_) => break,
                    Err(bad) => {
                        cuts.push(format!("level {level} page {}: {}", on_disk - 1, bad.reason));
                        on_disk -= 1;
                    }
                }
            }
            store.levels.push(Level {
                file: Some(file),
                on_disk,
                memory: Vec::new(),
                write_refused,
            });
        }
        // A level cannot hold more pages than the one below it fills.
        for level in 1..store.levels.len() {
            let below = store.levels[level - 1].on_disk / 256;
            if store.levels[level].on_disk > below {
                cuts.push(format!("level {level}: more pages than level {} fills", level - 1));
                store.levels[level].on_disk = below;
            }
        }
        for level in 0..store.levels.len() {
            store.cut_file(level);
        }
        let cut = (!cuts.is_empty()).then(|| cuts.join("; "));
        (store, cut)
    }

    /// Sealed pages of `level`.
    pub(crate) fn count(&self, level: u8) -> u64 {
        self.levels.get(usize::from(level)).map_or(0, |l| l.on_disk + l.memory.len() as u64)
    }

    /// Makes the pages written to the files durable (each file's data, then the directory,
    /// whose entries for new page files are otherwise not synced: pages are derived and are
    /// normally rebuilt after a loss) and returns how many level-0 pages are on disk. For
    /// retention, which removes the records those pages were derived from.
    ///
    /// # Errors
    /// The operating system's error.
    pub(crate) fn make_durable(&self) -> std::io::Result<u64> {
        for level in &self.levels {
            if let Some(file) = &level.file {
                file.sync_data()?;
            }
        }
        if let Some(dir) = &self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(self.levels.first().map_or(0, |l| l.on_disk))
    }

    /// Levels that hold at least one page.
    pub(crate) fn levels(&self) -> u8 {
        let held = self.levels.iter().take_while(|l| l.on_disk + l.memory.len() as u64 > 0);
        u8::try_from(held.count()).unwrap_or(LEVEL_MAX)
    }

    /// Page `index` of `level`, checked.
    ///
    /// # Errors
    /// A [`BadPage`] if it does not exist or its record is damaged.
    pub(crate) fn read(&self, level: u8, index: u64) -> Result<Arc<Page>, BadPage> {
        let l = self.level(level, index)?;
        if index < l.on_disk {
            let file = l.file.as_ref().ok_or_else(|| missing(level, index))?;
            return read_page(file, level, index, self.log_id).map(Arc::new);
        }
        let at = usize::try_from(index - l.on_disk).unwrap_or(usize::MAX);
        l.memory.get(at).cloned().ok_or_else(|| missing(level, index))
    }

    /// The header of page `index` of `level` (without children or nodes), checked by its hash.
    ///
    /// # Errors
    /// As [`PageStore::read`].
    pub(crate) fn read_header(&self, level: u8, index: u64) -> Result<Arc<Page>, BadPage> {
        let l = self.level(level, index)?;
        if index >= l.on_disk {
            return self.read(level, index);
        }
        let file = l.file.as_ref().ok_or_else(|| missing(level, index))?;
        let mut bytes = [0u8; HEADER_READ_LEN];
        let at = index.saturating_mul(PAGE_RECORD_LEN as u64);
        file.read_exact_at(&mut bytes, at).map_err(|e| bad(level, index, format!("read: {e}")))?;
        Page::decode_header(&bytes, level, index, self.log_id)
            .map(Arc::new)
            .map_err(|PageError(reason)| bad(level, index, reason))
    }

    /// How many level-0 pages, from the first, have a header for which `holds` is true (a
    /// binary search: `holds` must be true of a prefix of the pages and false after it).
    ///
    /// # Errors
    /// As [`PageStore::read_header`].
    pub(crate) fn partition_point0(&self, holds: impl Fn(&Page) -> bool) -> Result<u64, BadPage> {
        let (mut lo, mut hi) = (0, self.count(0));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if holds(self.read_header(0, mid)?.as_ref()) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    fn level(&self, level: u8, index: u64) -> Result<&Level, BadPage> {
        self.levels.get(usize::from(level)).ok_or_else(|| missing(level, index))
    }

    /// Adds the next page of its level: to the level's file if the store writes and nothing
    /// of that level is held in memory, else to memory.
    pub(crate) fn append(&mut self, page: &Page) {
        let level = usize::from(page.level);
        while self.levels.len() <= level {
            let file = self.create_file(self.levels.len());
            self.levels.push(Level { file, on_disk: 0, memory: Vec::new(), write_refused: None });
        }
        if self.writable && self.levels[level].file.is_none() && self.levels[level].on_disk == 0 {
            self.levels[level].file = self.create_file(level);
        }
        let l = &mut self.levels[level];
        debug_assert_eq!(page.index, l.on_disk + l.memory.len() as u64);
        if self.writable && l.memory.is_empty() {
            if let Some(refused) = &l.write_refused {
                self.write_error = Some(format!("{refused}; pages kept in memory"));
            } else if let Some(file) = &l.file {
                let at = l.on_disk.saturating_mul(PAGE_RECORD_LEN as u64);
                match file.write_all_at(&page.encode(), at) {
                    Ok(()) => {
                        l.on_disk += 1;
                        return;
                    }
                    Err(e) => {
                        self.write_error = Some(format!(
                            "writing page {} of level {level}: {e}; kept in memory",
                            page.index
                        ));
                    }
                }
            }
        }
        self.levels[level].memory.push(Arc::new(page.clone()));
    }

    fn create_file(&mut self, level: usize) -> Option<File> {
        let dir = self.dir.as_ref()?;
        let level = u8::try_from(level).ok()?;
        let path = dir.join(page_file_name(level));
        if !self.writable {
            return File::open(path).ok();
        }
        // Only a level with no valid page gets a new file, so whatever the name held goes.
        match OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                self.write_error =
                    Some(format!("creating {}: {e}; pages kept in memory", path.display()));
                None
            }
        }
    }

    /// Keeps the pages that cover only the first `entries` entries (a multiple of 256 or not),
    /// at every level. The cut is synced.
    pub(crate) fn truncate(&mut self, entries: u64) {
        for level in 0..self.levels.len() {
            let level_u8 = u8::try_from(level).unwrap_or(LEVEL_MAX);
            let keep = entries / entries_per_page(level_u8);
            let l = &mut self.levels[level];
            if keep < l.on_disk {
                l.on_disk = keep;
                l.memory.clear();
            } else {
                let in_memory = usize::try_from(keep - l.on_disk).unwrap_or(usize::MAX);
                l.memory.truncate(in_memory);
            }
            self.cut_file(level);
        }
    }

    /// Drops every page of the levels above 0 (the cuts are synced).
    pub(crate) fn truncate_upper(&mut self) {
        for level in 1..self.levels.len() {
            self.levels[level].on_disk = 0;
            self.levels[level].memory.clear();
            self.cut_file(level);
        }
    }

    /// Cuts the file of `level` to its valid records (and syncs the cut), if the store writes.
    fn cut_file(&mut self, level: usize) {
        let Some(l) = self.levels.get(level) else {
            return;
        };
        let (Some(file), true) = (&l.file, self.writable) else {
            return;
        };
        let keep = l.on_disk.saturating_mul(PAGE_RECORD_LEN as u64);
        if file.metadata().map_or(true, |m| m.len() > keep) {
            if let Some(refused) = &l.write_refused {
                self.write_error =
                    Some(format!("cannot cut the pages of level {level}: {refused}"));
                return;
            }
            let cut = file.set_len(keep).and_then(|()| file.sync_all());
            if let Err(e) = cut {
                self.write_error = Some(format!("cutting the pages of level {level}: {e}"));
            }
        }
    }

    /// The hash of the last page of `level` (zeros if it has none).
    ///
    /// # Errors
    /// As [`PageStore::read`].
    pub(crate) fn last_hash(&self, level: u8) -> Result<Hash, BadPage> {
        match self.count(level) {
            0 => Ok(Hash([0; 32])),
            n => Ok(self.read_header(level, n - 1)?.hash()),
        }
    }

    /// Pages of each level in files, and in memory.
    pub(crate) fn counts(&self) -> Vec<(u64, u64)> {
        self.levels.iter().map(|l| (l.on_disk, l.memory.len() as u64)).collect()
    }

    /// Bytes the page files hold (valid records).
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.on_disk * PAGE_RECORD_LEN as u64).sum()
    }

    /// Bytes of pages held in memory.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.memory.len() as u64 * PAGE_RECORD_LEN as u64).sum()
    }
}

/// Reads and checks page `index` of `level` from `file`.
pub(crate) fn read_page(file: &File, level: u8, index: u64, log_id: u64) -> Result<Page, BadPage> {
    let mut bytes = vec![0u8; PAGE_RECORD_LEN];
    let at = index.saturating_mul(PAGE_RECORD_LEN as u64);
    file.read_exact_at(&mut bytes, at).map_err(|e| bad(level, index, format!("read: {e}")))?;
    Page::decode(&bytes, level, index, log_id)
        .map_err(|PageError(reason)| bad(level, index, reason))
}

fn bad(level: u8, index: u64, reason: String) -> BadPage {
    BadPage { level, index, reason }
}

fn missing(level: u8, index: u64) -> BadPage {
    bad(level, index, "no such page".to_string())
}
