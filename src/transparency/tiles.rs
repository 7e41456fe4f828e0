//! A log exported as a C2SP tlog-tiles directory: `checkpoint`, the hash tiles
//! `tile/<L>/<N>[.p/<W>]` and the entry bundles `tile/entries/<N>[.p/<W>]`, a static tree of
//! files that any web server can serve and any tlog-tiles client can audit.
//!
//! The hashes come from the log's stored pages (a tile is a page's children), checked as they
//! are read; every entry written is hashed and compared with its level-0 tile hash, and the
//! checkpoint's root with the log's own tree head, before anything is written. An export
//! writes only what the directory lacks: a full tile or bundle already there is kept, never
//! rewritten; partial tiles of new widths are added beside the old ones (clients holding an
//! older checkpoint still find theirs); the checkpoint is replaced last, atomically.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checkpoint::{check_origin, Checkpoint};
use super::note::SigningKey;
use crate::atomic_file::write_atomically;
use crate::error::{Result, StorageError};
use crate::format::{parse_segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN, TEMP_FILE_SUFFIX};
use crate::rollup::tiles::TreeTiles;
use crate::rollup::{hash_leaf_data, leaf_data, Hash};
use crate::segment::sync_dir;
use crate::Log;

/// Levels of the tree a tile spans (C2SP tlog-tiles: 8).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile, and entries in a full entry bundle.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Bytes of one hash in a tile.
pub const HASH_BYTES: usize = 32;
/// Bytes an entry of an entry bundle may hold: its length prefix is a big-endian u16. An
/// entry is a record's leaf data (offset and time, 16 bytes, then the payload), so the largest
/// payload that can be exported is `ENTRY_BYTES_MAX - 16` = 65,519 bytes.
pub const ENTRY_BYTES_MAX: usize = u16::MAX as usize;
/// The file name of the checkpoint in an export directory.
pub const CHECKPOINT_FILE_NAME: &str = "checkpoint";
/// Tile levels of a tree of up to `u64::MAX` entries.
const LEVELS_MAX: u32 = u64::BITS / TILE_HEIGHT;

/// The path of tile `index` of `level` holding `width` hashes (1 to 256), relative to the
/// export directory: `tile/<L>/<N>` for a full tile, `tile/<L>/<N>.p/<W>` for a partial one,
/// with `N` in groups of three digits, all but the last prefixed by `x` (1234067 is
/// `x001/x234/067`).
#[must_use]
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    format!("tile/{level}/{}", tile_name(index, width))
}

/// The path of the entry bundle holding the `width` entries from entry `256 · index`:
/// `tile/entries/<N>[.p/<W>]`, `N` as in [`tile_path`].
#[must_use]
pub fn entries_path(index: u64, width: u64) -> String {
    format!("tile/entries/{}", tile_name(index, width))
}

fn tile_name(index: u64, width: u64) -> String {
    let mut name = format!("{:03}", index % 1000);
    let mut rest = index / 1000;
    while rest > 0 {
        name = format!("x{:03}/{name}", rest % 1000);
        rest /= 1000;
    }
    if width < TILE_WIDTH {
        name.push_str(&format!(".p/{width}"));
    }
    name
}

/// What [`export_tiles`] is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct TileExport<'a> {
    /// The log's origin, the checkpoint's first line (e.g. `example.com/log42`); the same for
    /// every export of the log.
    pub origin: &'a str,
    /// The key that signs the checkpoint; without one the checkpoint is the bare note text,
    /// which no client will trust until someone signs it.
    pub key: Option<&'a SigningKey>,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Entries in the exported tree: every record the log held when the export started.
    pub tree_size: u64,
    /// The tree's root, as the checkpoint gives it.
    pub root: Hash,
    /// The size of the checkpoint the directory held before, if it held one.
    pub previous_tree_size: Option<u64>,
    /// Hash tiles written (full and partial).
    pub tiles_written: u64,
    /// Entry bundles written (full and partial).
    pub bundles_written: u64,
    /// Tiles and bundles that were already there, right, and kept untouched.
    pub files_kept: u64,
    /// Bytes written, the checkpoint's included.
    pub bytes_written: u64,
    /// Whether the checkpoint changed (an export of an unchanged log leaves it as it was).
    pub checkpoint_written: bool,
    /// Whether the checkpoint is signed.
    pub signed: bool,
}

fn export_error(out: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Export { path: out.to_path_buf(), reason: reason.into() }
}

/// Exports the tree over every record of `log` to `out` (created if missing) as a C2SP
/// tlog-tiles directory, writing only what `out` lacks, and the checkpoint last.
///
/// Entry `i` of the export is the `i`-th record's leaf data (`FORMAT.md` 12.1: offset and
/// write time, 8 bytes each, little-endian, then the payload), so that each entry hashes to
/// its leaf of the log's tree.
///
/// # Errors
/// - [`StorageError::Export`], with nothing written: a record too large for an entry bundle
///   (its offset and entry index are named; see [`ENTRY_BYTES_MAX`]); `out` holding a
///   checkpoint that cannot be read, of another origin, or of a tree this log's tree does not
///   extend (another log's export, or this log was repaired since); another export to `out`
///   running; stored pages that disagree with the log's head.
/// - [`StorageError::Checkpoint`] for an origin Chronicle does not write
///   ([`is_valid_origin`](super::is_valid_origin)).
/// - [`StorageError::Io`] naming the file that could not be read or written; what was
///   written stays consistent (tiles are immutable and the checkpoint was not replaced).
/// - A replay error if a record cannot be read.
pub fn export_tiles(log: &Log, out: &Path, export: &TileExport<'_>) -> Result<ExportReport> {
    check_origin(export.origin)?;
    fs::create_dir_all(out).map_err(|e| StorageError::io("create export directory", out, e))?;
    let _lock = lock_dir(out)?;
    if !log.is_read_only() {
        // A writer's rollup hashes what its thread has not yet and stores the pages, so that
        // the tree below reads them rather than hashing again.
        log.tree_head(None)?;
    }
    let reader = log.reader();
    let mut tree = TreeTiles::load(log.dir(), log_id_of(log.dir())?, &reader)?;
    let size = tree.size();
    let head = log.tree_head(Some(size))?;
    if tree.root(size)? != head.root {
        return Err(export_error(
            out,
            "the log's stored tree disagrees with its head; run `chronicle verify-pages`",
        ));
    }
    let checkpoint = Checkpoint::new(export.origin, &head)?;
    let checkpoint_path = out.join(CHECKPOINT_FILE_NAME);
    let (previous, old_text) = previous_checkpoint(out, &checkpoint_path, &checkpoint, &mut tree)?;
    let published = previous.as_ref().map_or(0, |p| p.tree_size);

    let plan = plan(out, size, published)?;
    check_entry_sizes(out, &mut tree, &plan)?;
    let mut files = Files::new(out);
    for tile in &plan {
        export_tile(&mut tree, tile, &mut files)?;
    }
    files.sync()?;

    let text = match export.key {
        Some(key) => checkpoint.sign(key)?,
        None => checkpoint.body(),
    };
    let checkpoint_written = old_text.as_deref() != Some(text.as_bytes());
    if checkpoint_written {
        write_atomically(&checkpoint_path, text.as_bytes())?;
        files.bytes += text.len() as u64;
    }
    Ok(ExportReport {
        tree_size: size,
        root: head.root,
        previous_tree_size: previous.map(|p| p.tree_size),
        tiles_written: files.tiles,
        bundles_written: files.bundles,
        files_kept: files.kept,
        bytes_written: files.bytes,
        checkpoint_written,
        signed: export.key.is_some(),
    })
}

/// Takes an exclusive lock on the directory itself (released when the handle drops), so that
/// two exports cannot interleave their writes.
fn lock_dir(out: &Path) -> Result<File> {
    let dir = File::open(out).map_err(|e| StorageError::io("open export directory", out, e))?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(fs::TryLockError::WouldBlock) => {
            Err(export_error(out, "another export to this directory is running"))
        }
        Err(fs::TryLockError::Error(e)) => Err(StorageError::io("lock export directory", out, e)),
    }
}

/// The log id in the segment headers of the log in `dir` (the first segment that reads).
fn log_id_of(dir: &Path) -> Result<u64> {
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list log directory", dir, e))?;
    let mut bases: Vec<u64> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str().and_then(parse_segment_file_name))
        .collect();
    bases.sort_unstable();
    for base in bases {
        let path = dir.join(crate::format::segment_file_name(base));
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        if File::open(&path).and_then(|mut file| file.read_exact(&mut header)).is_err() {
            continue;
        }
        if let Ok(header) = SegmentHeader::decode(&header) {
            return Ok(header.log_id);
        }
    }
    Err(StorageError::NotALogDirectory {
        path: dir.to_path_buf(),
        found: "no segment header that reads".to_string(),
    })
}

/// The checkpoint `out` holds (with its bytes), checked against the tree: same origin, and a
/// tree this log's tree extends.
fn previous_checkpoint(
    out: &Path,
    path: &Path,
    new: &Checkpoint,
    tree: &mut TreeTiles<'_>,
) -> Result<(Option<Checkpoint>, Option<Vec<u8>>)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(StorageError::io("read checkpoint", path, e)),
    };
    let old = Checkpoint::parse_unverified(&bytes).map_err(|err| {
        export_error(
            out,
            format!("its `checkpoint` cannot be read ({err}); remove it or export elsewhere"),
        )
    })?;
    if old.origin != new.origin {
        return Err(export_error(
            out,
            format!("it holds the export of origin {:?}, not {:?}", old.origin, new.origin),
        ));
    }
    let extends = old.tree_size <= new.tree_size && tree.root(old.tree_size)? == old.root;
    if !extends {
        return Err(export_error(
            out,
            format!(
                "its checkpoint (tree size {}) is not of a prefix of this log's tree (size {}): \
                 it was exported from another log, or this log was repaired or cut since, and a \
                 log must never publish a tree inconsistent with one it published",
                old.tree_size, new.tree_size
            ),
        ));
    }
    Ok((Some(old), Some(bytes)))
}

/// What the directory holds of one file the tree needs.
#[derive(Debug)]
enum Held {
    /// Nothing (or a full tile of the wrong length): write it.
    Missing,
    /// A full tile the previous checkpoint covers: keep it, never rewrite it.
    Kept,
    /// A file the previous checkpoint does not cover: keep it if it holds the right bytes.
    Check,
}

/// A tile the tree needs, and at level 0 the entry bundle beside it.
#[derive(Debug)]
struct PlannedTile {
    level: u8,
    index: u64,
    width: u64,
    tile: Held,
    bundle: Option<Held>,
}

impl PlannedTile {
    fn complete(&self) -> bool {
        matches!(self.tile, Held::Kept) && matches!(self.bundle, None | Some(Held::Kept))
    }
}

/// Every tile (and bundle) of the tree of `size` entries, with what `out` holds of each;
/// `published` entries are covered by the checkpoint `out` holds. Level 0 first.
fn plan(out: &Path, size: u64, published: u64) -> Result<Vec<PlannedTile>> {
    let mut plan = Vec::new();
    for level in 0..LEVELS_MAX {
        let hashes = size.checked_shr(TILE_HEIGHT * level).unwrap_or(0);
        if hashes == 0 {
            break;
        }
        let level_u8 = u8::try_from(level).unwrap_or(u8::MAX);
        let full = hashes / TILE_WIDTH;
        let partial = hashes % TILE_WIDTH;
        let span = TILE_WIDTH.checked_shl(TILE_HEIGHT * level).unwrap_or(u64::MAX);
        let tiles = (0..full).map(|index| (index, TILE_WIDTH));
        for (index, width) in tiles.chain((partial > 0).then_some((full, partial))) {
            let covered =
                width == TILE_WIDTH && index.saturating_add(1).saturating_mul(span) <= published;
            let hash_bytes = width * HASH_BYTES as u64;
            let tile =
                held(&out.join(tile_path(level_u8, index, width)), covered, Some(hash_bytes))?;
            let bundle = match level {
                0 => Some(held(&out.join(entries_path(index, width)), covered, None)?),
                _ => None,
            };
            plan.push(PlannedTile { level: level_u8, index, width, tile, bundle });
        }
    }
    Ok(plan)
}

fn held(path: &Path, covered: bool, len: Option<u64>) -> Result<Held> {
    if covered {
        return Ok(match fs::metadata(path) {
            Ok(meta) if meta.is_file() && len.is_none_or(|len| meta.len() == len) => Held::Kept,
            _ => Held::Missing,
        });
    }
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(Held::Check),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Held::Missing),
        Err(e) => Err(StorageError::io("look at tile", path, e)),
    }
}

/// Refuses the export, before anything is written, if an entry of a bundle to write is too
/// large for its u16 length prefix.
fn check_entry_sizes(out: &Path, tree: &mut TreeTiles<'_>, plan: &[PlannedTile]) -> Result<()> {
    for tile in plan.iter().filter(|t| matches!(t.bundle, Some(Held::Missing | Held::Check))) {
        let mut entry = tile.index * TILE_WIDTH;
        tree.each_entry(tile.index, width_usize(tile.width), &mut |record| {
            let len = 16 + record.payload.len();
            if len > ENTRY_BYTES_MAX {
                return Err(export_error(
                    out,
                    format!(
                        "the record at offset {} (entry {entry}) has a payload of {} bytes, and \
                         an entry bundle holds entries of at most {ENTRY_BYTES_MAX} bytes \
                         (payloads of at most {} bytes after the 16 bytes of offset and time); \
                         nothing was written",
                        record.offset,
                        record.payload.len(),
                        ENTRY_BYTES_MAX - 16
                    ),
                ));
            }
            entry += 1;
            Ok(())
        })?;
    }
    Ok(())
}

fn width_usize(width: u64) -> usize {
    usize::try_from(width).unwrap_or(usize::MAX)
}

/// Writes what `out` lacks of one tile and its bundle, after checking the bundle's entries
/// against the tile's hashes.
fn export_tile(tree: &mut TreeTiles<'_>, tile: &PlannedTile, files: &mut Files) -> Result<()> {
    if tile.complete() {
        files.kept += 1 + u64::from(tile.bundle.is_some());
        return Ok(());
    }
    let hashes = tree.tile(tile.level, tile.index, width_usize(tile.width))?;
    let hash_bytes: Vec<u8> = hashes.iter().flat_map(|hash| hash.0).collect();
    if let Some(bundle_held) = &tile.bundle {
        let mut bundle = Vec::new();
        let mut at = 0usize;
        let out = files.out.clone();
        tree.each_entry(tile.index, width_usize(tile.width), &mut |record| {
            let data = leaf_data(record.offset, record.write_ms, record.payload);
            let len = u16::try_from(data.len()).map_err(|_| {
                export_error(&out, format!("the record at offset {} grew too large", record.offset))
            })?;
            if hashes.get(at) != Some(&hash_leaf_data(&data)) {
                return Err(export_error(
                    &out,
                    format!(
                        "the record at offset {} does not hash to its leaf in the stored tree; \
                         run `chronicle verify-pages`",
                        record.offset
                    ),
                ));
            }
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(&data);
            at += 1;
            Ok(())
        })?;
        let path = entries_path(tile.index, tile.width);
        if files.put(&path, bundle_held, &bundle)? {
            files.bundles += 1;
        }
    }
    let path = tile_path(tile.level, tile.index, tile.width);
    if files.put(&path, &tile.tile, &hash_bytes)? {
        files.tiles += 1;
    }
    Ok(())
}

/// Files written and not yet synced at most: syncing a batch back to back costs a fraction
/// of syncing each file as it is written (the journal commits are shared).
const UNSYNCED_MAX: usize = 256;

/// The files an export writes, and the directories to sync before the checkpoint.
struct Files {
    out: PathBuf,
    dirs: BTreeSet<PathBuf>,
    /// Files written (and renamed into place) but not yet synced, with their paths.
    unsynced: Vec<(File, PathBuf)>,
    tiles: u64,
    bundles: u64,
    kept: u64,
    bytes: u64,
}

impl Files {
    fn new(out: &Path) -> Files {
        let dirs = BTreeSet::from([out.to_path_buf()]);
        let unsynced = Vec::with_capacity(UNSYNCED_MAX);
        Files { out: out.to_path_buf(), dirs, unsynced, tiles: 0, bundles: 0, kept: 0, bytes: 0 }
    }

    /// Writes `bytes` at `relative` unless `held` says the directory already has them;
    /// returns whether it wrote.
    fn put(&mut self, relative: &str, held: &Held, bytes: &[u8]) -> Result<bool> {
        let path = self.out.join(relative);
        let same = match held {
            Held::Kept => true,
            Held::Check => match fs::read(&path) {
                Ok(old) => old == bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(StorageError::io("read tile", &path, e)),
            },
            Held::Missing => false,
        };
        if same {
            self.kept += 1;
            return Ok(false);
        }
        let parent = path.parent().unwrap_or(&self.out).to_path_buf();
        fs::create_dir_all(&parent)
            .map_err(|e| StorageError::io("create tile directory", &parent, e))?;
        // The new directories' entries live in their parents: sync every one up to `out`.
        let mut dir = parent.as_path();
        while dir.starts_with(&self.out) && self.dirs.insert(dir.to_path_buf()) {
            match dir.parent() {
                Some(up) => dir = up,
                None => break,
            }
        }
        let file = write_whole(&path, bytes)?;
        self.unsynced.push((file, path));
        if self.unsynced.len() >= UNSYNCED_MAX {
            self.sync_files()?;
        }
        self.bytes += bytes.len() as u64;
        Ok(true)
    }

    fn sync_files(&mut self) -> Result<()> {
        for (file, path) in self.unsynced.drain(..) {
            file.sync_all().map_err(|e| StorageError::io("sync tile", &path, e))?;
        }
        Ok(())
    }

    /// Syncs every file written and every directory a file was written to, so that the files
    /// are durable before the checkpoint that names them.
    fn sync(&mut self) -> Result<()> {
        self.sync_files()?;
        self.dirs.iter().try_for_each(|dir| sync_dir(dir))
    }
}

/// Writes a file whole: a temporary file renamed over `path`, so that a reader never sees part
/// of it. Returns it open, for [`Files`] to sync (before the checkpoint names it: until then a
/// crash can only lose a file no checkpoint needs, which the next export writes again).
fn write_whole(path: &Path, bytes: &[u8]) -> Result<File> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(TEMP_FILE_SUFFIX);
    let temp = PathBuf::from(temp);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes).map(|()| file));
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(StorageError::io("write tile", &temp, e));
        }
    };
    fs::rename(&temp, path).map_err(|e| StorageError::io("rename tile", &temp, e))?;
    Ok(file)
}
