//! The power-cut filesystem's contents, kept in memory: for every file its current bytes and
//! its durable bytes (a copy taken at `fsync`), for every directory its current entries and
//! its durable entries (a copy taken at `fsync` of the directory). A power cut
//! ([`Tree::after_cut`]) keeps only what was durable, or, in the partial mode, what was
//! durable plus any subset of what was written since, the way a disk may have written back
//! some of its cache before the power went.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// Pages of unsynced data that a partial cut keeps or drops one by one.
pub const PAGE: u64 = 4096;
/// Sectors: a page a partial cut tears keeps a whole number of them.
const SECTOR: u64 = 512;
/// The root directory's inode number (FUSE's).
pub const ROOT: u64 = 1;

/// An errno value, as the FUSE replies carry it.
pub type Errno = i32;

/// What a power cut keeps of the data not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing: every file reverts to its durable bytes, every directory to its durable
    /// entries.
    Strict,
    /// Some of it, chosen by the seed: of every file written since its last `fsync`, the
    /// size is the durable or the current one and each written page is old, new, or torn at a
    /// sector; of every directory changed since its last `fsync`, a prefix of the changes in
    /// the order they were made (a rename is one change, so it is whole or absent).
    Partial { seed: u64 },
}

#[derive(Debug, Clone, Default)]
pub struct FileData {
    /// What reads see now.
    pub bytes: Vec<u8>,
    /// What the last `fsync` made durable (empty for a file never synced).
    pub durable: Vec<u8>,
    /// Pages written since the last `fsync`.
    pub dirty: BTreeSet<u64>,
    /// Whether the size changed since the last `fsync`.
    pub size_dirty: bool,
}

/// One change of a directory's entries, kept until the directory is synced.
#[derive(Debug, Clone)]
pub enum DirOp {
    Insert(OsString, u64),
    Remove(OsString),
    /// A rename inside the directory (replacing any entry of the new name).
    Rename(OsString, OsString),
}

#[derive(Debug, Clone, Default)]
pub struct DirData {
    pub entries: BTreeMap<OsString, u64>,
    pub durable: BTreeMap<OsString, u64>,
    /// Changes since the last `fsync` of the directory, in order.
    pub log: Vec<DirOp>,
    pub parent: u64,
}

#[derive(Debug, Clone)]
pub enum Kind {
    File(FileData),
    Dir(DirData),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// The name it was last given, for fault rules and reports.
    pub name: OsString,
    pub perm: u16,
    pub mtime: SystemTime,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(f) => f.bytes.len() as u64,
            Kind::Dir(_) => 4096,
        }
    }
}

/// Every inode of one filesystem. Inodes are never freed while it is mounted (an unlinked
/// file may still be open or mapped); a cut keeps only those reachable through durable
/// entries.
#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: HashMap<u64, Node>,
    pub next_ino: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty root directory.
    pub fn new() -> Tree {
        let root = Node {
            kind: Kind::Dir(DirData { parent: ROOT, ..DirData::default() }),
            name: OsString::from("/"),
            perm: 0o755,
            mtime: SystemTime::now(),
        };
        Tree { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1 }
    }

    pub fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    pub fn dir(&self, ino: u64) -> Result<&DirData, Errno> {
        match &self.node(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirData, Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn file(&self, ino: u64) -> Result<&FileData, Errno> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        match &mut node.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.entries.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The name of `ino` (its last one), as a string for rules and reports.
    pub fn name(&self, ino: u64) -> String {
        self.nodes.get(&ino).map_or_else(String::new, |n| n.name.to_string_lossy().into_owned())
    }

    /// Makes a new file or directory `name` in `parent`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        perm: u16,
    ) -> Result<u64, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let kind = if dir {
            Kind::Dir(DirData { parent, ..DirData::default() })
        } else {
            Kind::File(FileData::default())
        };
        let node = Node { kind, name: name.to_owned(), perm, mtime: SystemTime::now() };
        self.nodes.insert(ino, node);
        let d = self.dir_mut(parent)?;
        d.entries.insert(name.to_owned(), ino);
        d.log.push(DirOp::Insert(name.to_owned(), ino));
        Ok(ino)
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Errno> {
        let bytes = &self.file(ino)?.bytes;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        Ok(&bytes[start..end])
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = start + data.len();
        if end > f.bytes.len() {
            f.bytes.resize(end, 0);
            f.size_dirty = true;
        }
        f.bytes[start..end].copy_from_slice(data);
        if !data.is_empty() {
            f.dirty.extend(offset / PAGE..=(end as u64 - 1) / PAGE);
        }
        Ok(())
    }

    /// Sets the size (truncate or extend with zeros).
    pub fn resize(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        let len = usize::try_from(len).map_err(|_| libc::EFBIG)?;
        if len != f.bytes.len() {
            let from = len.min(f.bytes.len()) as u64;
            let to = len.max(f.bytes.len()) as u64;
            f.bytes.resize(len, 0);
            f.size_dirty = true;
            // The pages whose bytes changed (cut off, or zeros where a shorter file had
            // none), so that a partial cut may keep either version of them.
            f.dirty.extend(from / PAGE..to.div_ceil(PAGE));
        }
        Ok(())
    }

    /// `fsync`/`fdatasync`: the file's bytes and size become durable.
    pub fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        f.durable.clone_from(&f.bytes);
        f.dirty.clear();
        f.size_dirty = false;
        Ok(())
    }

    /// `fsync` of a directory: its entries become durable.
    pub fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        let d = self.dir_mut(ino)?;
        d.durable.clone_from(&d.entries);
        d.log.clear();
        Ok(())
    }

    /// Removes the entry `name` of `parent`: a file (`dir` false) or an empty directory.
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.kind, dir) {
            (Kind::File(_), true) => return Err(libc::ENOTDIR),
            (Kind::Dir(_), false) => return Err(libc::EISDIR),
            (Kind::Dir(d), true) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        let d = self.dir_mut(parent)?;
        d.entries.remove(name);
        d.log.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    /// `rename`, in one directory or across two, replacing any file of the new name.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let moving_dir = self.node(ino)?.is_dir();
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            match (&self.node(old)?.kind, moving_dir) {
                (Kind::Dir(_), false) => return Err(libc::EISDIR),
                (Kind::File(_), true) => return Err(libc::ENOTDIR),
                (Kind::Dir(d), true) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        if parent == new_parent {
            let d = self.dir_mut(parent)?;
            d.entries.remove(name);
            d.entries.insert(new_name.to_owned(), ino);
            d.log.push(DirOp::Rename(name.to_owned(), new_name.to_owned()));
        } else {
            self.dir_mut(new_parent)?; // checked before anything changes
            let from = self.dir_mut(parent)?;
            from.entries.remove(name);
            from.log.push(DirOp::Remove(name.to_owned()));
            let to = self.dir_mut(new_parent)?;
            to.entries.insert(new_name.to_owned(), ino);
            to.log.push(DirOp::Insert(new_name.to_owned(), ino));
        }
        let node = self.node_mut(ino)?;
        node.name = new_name.to_owned();
        if let Kind::Dir(d) = &mut node.kind {
            d.parent = new_parent;
        }
        Ok(())
    }

    /// What is left after a power cut: only the inodes reachable from the root through the
    /// entries that survive, each with the bytes that survive, all of it durable.
    pub fn after_cut(&self, mode: CutMode) -> Tree {
        let mut rng = match mode {
            CutMode::Strict => None,
            CutMode::Partial { seed } => Some(SplitMix(seed)),
        };
        let mut out = Tree { nodes: HashMap::new(), next_ino: self.next_ino };
        let mut stack = vec![(ROOT, ROOT)];
        while let Some((ino, parent)) = stack.pop() {
            // A directory renamed across directories may survive under both names; it is
            // kept once.
            let (Some(node), false) = (self.nodes.get(&ino), out.nodes.contains_key(&ino)) else {
                continue;
            };
            let mut node = node.clone();
            match &mut node.kind {
                Kind::File(f) => {
                    let bytes = match &mut rng {
                        None => f.durable.clone(),
                        Some(rng) => f.partial(rng),
                    };
                    *f = FileData { durable: bytes.clone(), bytes, ..FileData::default() };
                }
                Kind::Dir(d) => {
                    let entries = match &mut rng {
                        None => d.durable.clone(),
                        Some(rng) => d.partial(rng),
                    };
                    stack.extend(entries.values().map(|&child| (child, ino)));
                    *d = DirData { durable: entries.clone(), entries, log: Vec::new(), parent };
                }
            }
            out.nodes.insert(ino, node);
        }
        out
    }

    /// Names, sizes and durability of every file and directory reachable from the root, for
    /// failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![(ROOT, String::new())];
        let mut seen = BTreeSet::new();
        while let Some((ino, path)) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            match self.nodes.get(&ino).map(|n| &n.kind) {
                Some(Kind::Dir(d)) => {
                    let pending = if d.log.is_empty() { "" } else { " (unsynced changes)" };
                    out.push_str(&format!("{path}/{pending}\n"));
                    for (name, &child) in d.entries.iter().rev() {
                        let durable = if d.durable.get(name) == Some(&child) { "" } else { "*" };
                        let name = name.to_string_lossy();
                        stack.push((child, format!("{path}/{name}{durable}")));
                    }
                }
                Some(Kind::File(f)) => out.push_str(&format!(
                    "{path}: {} bytes, {} durable, {} unsynced pages\n",
                    f.bytes.len(),
                    f.durable.len(),
                    f.dirty.len()
                )),
                None => out.push_str(&format!("{path}: missing inode {ino}\n")),
            }
        }
        out
    }
}

impl FileData {
    /// The bytes a partial cut leaves: the durable ones, with the size and some of the pages
    /// written since taken from the current ones.
    fn partial(&self, rng: &mut SplitMix) -> Vec<u8> {
        let len = if self.size_dirty && rng.below(2) == 0 {
            self.bytes.len()
        } else {
            self.durable.len()
        };
        let mut out = self.durable.clone();
        out.resize(len, 0);
        // How this file's pages fare: none written back, all, or each by chance.
        let policy = rng.below(3);
        for &page in &self.dirty {
            let start = page * PAGE;
            if start >= len as u64 {
                break;
            }
            let end = (start + PAGE).min(len as u64);
            let keep = match policy {
                0 => 0,
                1 => end - start,
                _ => match rng.below(4) {
                    0 | 1 => 0,
                    2 => end - start,
                    // Torn: the first sectors are new, the rest old.
                    _ => (rng.below(PAGE / SECTOR - 1) + 1) * SECTOR,
                },
            };
            let keep_end = (start + keep).min(end) as usize;
            let (from, to) = (start as usize, keep_end);
            // Bytes past the current end (a file cut shorter since its last sync) were
            // zeroed by the truncation, so a page written back holds zeros there.
            let written = self.bytes.len().clamp(from, to);
            if let Some(current) = self.bytes.get(from..written) {
                out[from..written].copy_from_slice(current);
            }
            out[written..to].fill(0);
        }
        out
    }
}

impl DirData {
    /// The entries a partial cut leaves: the durable ones with a prefix of the later changes.
    fn partial(&self, rng: &mut SplitMix) -> BTreeMap<OsString, u64> {
        let mut entries = self.durable.clone();
        let applied = rng.below(self.log.len() as u64 + 1) as usize;
        for op in &self.log[..applied] {
            match op {
                DirOp::Insert(name, ino) => {
                    entries.insert(name.clone(), *ino);
                }
                DirOp::Remove(name) => {
                    entries.remove(name);
                }
                DirOp::Rename(from, to) => {
                    if let Some(ino) = entries.remove(from) {
                        entries.insert(to.clone(), ino);
                    }
                }
            }
        }
        entries
    }
}

/// SplitMix64, as `tests/common`'s `Rng` (this module does not depend on it).
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file truncated below its durable size: every page a partial cut leaves is the
    /// durable one, zeros (the truncation written back), or torn between them at a sector.
    #[test]
    fn a_partial_cut_of_a_file_truncated_since_its_sync_keeps_old_or_zeroed_pages() {
        let pages = 3;
        let old = vec![0xAA; (pages * PAGE) as usize];
        let file = FileData {
            bytes: Vec::new(),
            durable: old.clone(),
            dirty: (0..pages).collect(),
            size_dirty: true,
        };
        let (mut shorter, mut zeroed, mut torn) = (0, 0, 0);
        for seed in 0..400 {
            let out = file.partial(&mut SplitMix(seed));
            if out.is_empty() {
                shorter += 1;
                continue;
            }
            assert_eq!(out.len(), old.len(), "seed {seed}");
            for page in out.chunks(PAGE as usize) {
                let zeros = page.iter().take_while(|&&b| b == 0).count();
                assert!(page[zeros..].iter().all(|&b| b == 0xAA), "seed {seed}: mixed page");
                assert_eq!(zeros % SECTOR as usize, 0, "seed {seed}: torn inside a sector");
                match zeros {
                    0 => {}
                    z if z == page.len() => zeroed += 1,
                    _ => torn += 1,
                }
            }
        }
        assert!(shorter > 0 && zeroed > 0 && torn > 0, "{shorter} {zeroed} {torn}");
    }
}
