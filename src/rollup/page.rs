//! A sealed page of the Merkle rollup and its fixed-size record on disk (`FORMAT.md` 12.3).
//!
//! A level-0 page covers 256 consecutive entries and a level-(L+1) page 256 consecutive
//! level-L pages, so a page's root is a node of the tree at height `8 (L + 1)`. A page keeps
//! its 256 children (leaf hashes at level 0, the roots of the pages below otherwise) and its
//! inner nodes at heights 4 to 7, so that any perfect subtree inside it is at most 7 node
//! hashes away. Its header links it to the previous page of its level by hash.
//!
//! Decoding trusts nothing: the CRC-32 over the whole record, the header hash, the magic, the
//! version, the level, the page index and the log id are all checked, and every error says
//! which.

use sha2::{Digest, Sha256};

use super::tree::node_hash;
use super::Hash;

/// Entries (level 0) or pages of the level below (levels above) under one page.
pub(crate) const FANOUT: usize = 256;
/// `log2(FANOUT)`: a page spans this many heights of the tree.
pub(crate) const PAGE_HEIGHT: u32 = 8;
/// The lowest inner height a page stores; the heights below it are recomputed from children.
pub(crate) const STORED_HEIGHT_MIN: u32 = 4;
/// Highest level a page may have: a level-7 page covers 2^64 entries.
pub(crate) const LEVEL_MAX: u8 = 7;

/// First four bytes of every page record.
pub(crate) const PAGE_MAGIC: [u8; 4] = *b"CHRP";
/// The page record version this code writes and reads.
pub(crate) const PAGE_VERSION: u16 = 1;

/// Bytes of the header the page hash covers (everything before the hash).
const HASHED_HEADER_LEN: usize = 136;
/// Bytes of the header with its hash: what [`Page::decode_header`] reads.
pub(crate) const HEADER_READ_LEN: usize = HASHED_HEADER_LEN + 32;
/// Where the children start.
const CHILDREN_AT: usize = HEADER_READ_LEN;
/// Inner nodes stored: heights 4, 5, 6, 7 (16 + 8 + 4 + 2).
const STORED_NODES: usize = 30;
/// Where the stored inner nodes start.
const NODES_AT: usize = CHILDREN_AT + FANOUT * 32;
/// Where the CRC-32 is.
const CRC_AT: usize = NODES_AT + STORED_NODES * 32;
/// Bytes of one page record: header, hash, children, inner nodes, CRC and 4 reserved bytes.
pub(crate) const PAGE_RECORD_LEN: usize = CRC_AT + 8;

/// What a page says about the entries under it, besides its hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    /// Offset of the first entry.
    pub first_offset: u64,
    /// Offset of the last entry.
    pub last_offset: u64,
    /// Offset just after the last entry's frame.
    pub end_offset: u64,
    /// Write time of the first entry.
    pub first_write_ms: u64,
    /// Write time of the last entry.
    pub last_write_ms: u64,
}

impl Span {
    /// The span of `self` followed by `later`.
    pub(crate) fn joined(self, later: Span) -> Span {
        Span {
            first_offset: self.first_offset,
            first_write_ms: self.first_write_ms,
            last_offset: later.last_offset,
            end_offset: later.end_offset,
            last_write_ms: later.last_write_ms,
        }
    }
}

/// A sealed page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub level: u8,
    /// The page's position in its level.
    pub index: u64,
    pub log_id: u64,
    pub span: Span,
    /// The root of the page's subtree.
    pub root: Hash,
    /// The hash of the previous page of the same level (zeros for the first).
    pub prev_hash: Hash,
    /// The 256 children, left to right.
    pub children: Vec<Hash>,
    /// Inner nodes at heights 4..=7, lowest height first, left to right.
    pub nodes: Vec<Hash>,
}

/// Why a page record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageError(pub String);

impl Page {
    /// Seals a page over `children` (exactly [`FANOUT`]): computes its inner nodes and root.
    #[cfg(test)]
    pub(crate) fn seal(
        level: u8,
        index: u64,
        log_id: u64,
        span: Span,
        prev_hash: Hash,
        children: Vec<Hash>,
    ) -> Page {
        let (nodes, root) = inner_nodes(&children);
        Page { level, index, log_id, span, root, prev_hash, children, nodes }
    }

    /// A page from the rows of a full [`OpenPage`](super::edge::OpenPage): `rows[h]` holds
    /// the nodes at height `h` (0 to 7), so only the root is left to hash.
    pub(crate) fn from_rows(
        level: u8,
        index: u64,
        log_id: u64,
        span: Span,
        prev_hash: Hash,
        mut rows: Vec<Vec<Hash>>,
    ) -> Page {
        debug_assert!(rows.len() == PAGE_HEIGHT as usize && rows[0].len() == FANOUT);
        let top = rows.last().map(|row| fold_perfect(row)).unwrap_or_else(super::empty_root);
        let nodes = rows.iter().skip(STORED_HEIGHT_MIN as usize).flatten().copied().collect();
        let children = rows.first_mut().map(std::mem::take).unwrap_or_default();
        Page { level, index, log_id, span, root: top, prev_hash, children, nodes }
    }

    /// Whether the children hash to the stored inner nodes and root (255 node hashes).
    pub(crate) fn is_consistent(&self) -> bool {
        inner_nodes(&self.children) == (self.nodes.clone(), self.root)
    }

    /// The index of the first entry under this page.
    pub(crate) fn first_entry(&self) -> u64 {
        first_entry(self.level, self.index)
    }

    /// The page's own hash: SHA-256 over its header (`FORMAT.md` 12.3), which holds its root
    /// and the previous page's hash, so a level's pages form a hash chain.
    pub(crate) fn hash(&self) -> Hash {
        let mut header = [0u8; HASHED_HEADER_LEN];
        self.write_header(&mut header);
        Hash(Sha256::digest(header).into())
    }

    /// The root of the perfect subtree of height `height` (0 to 8) whose leftmost child is
    /// `child` (a multiple of `2^height`).
    pub(crate) fn node(&self, height: u32, child: usize) -> Hash {
        if height >= PAGE_HEIGHT {
            return self.root;
        }
        let at = child >> height;
        if height >= STORED_HEIGHT_MIN {
            // Rows of heights 4.. are stored one after another: 16, 8, 4, 2 nodes.
            let row_start: usize = (STORED_HEIGHT_MIN..height).map(|h| FANOUT >> h).sum();
            return self.nodes.get(row_start + at).copied().unwrap_or_else(super::empty_root);
        }
        let width = 1usize << height;
        let leaves = self.children.get(child..child + width).unwrap_or_default();
        fold_perfect(leaves)
    }

    fn write_header(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&PAGE_MAGIC);
        out[4..6].copy_from_slice(&PAGE_VERSION.to_le_bytes());
        out[6] = self.level;
        out[7] = 0;
        let fields = [
            self.log_id,
            self.index,
            self.first_entry(),
            self.span.first_offset,
            self.span.last_offset,
            self.span.end_offset,
            self.span.first_write_ms,
            self.span.last_write_ms,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        out[72..104].copy_from_slice(&self.root.0);
        out[104..136].copy_from_slice(&self.prev_hash.0);
    }

    /// The page's record on disk.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; PAGE_RECORD_LEN];
        self.write_header(&mut out[..HASHED_HEADER_LEN]);
        out[HASHED_HEADER_LEN..CHILDREN_AT].copy_from_slice(&self.hash().0);
        for (i, child) in self.children.iter().take(FANOUT).enumerate() {
            out[CHILDREN_AT + 32 * i..CHILDREN_AT + 32 * (i + 1)].copy_from_slice(&child.0);
        }
        for (i, node) in self.nodes.iter().take(STORED_NODES).enumerate() {
            out[NODES_AT + 32 * i..NODES_AT + 32 * (i + 1)].copy_from_slice(&node.0);
        }
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the record of page `index` of `level` of the log `log_id`.
    ///
    /// # Errors
    /// A [`PageError`] naming the first check that failed.
    pub(crate) fn decode(
        bytes: &[u8],
        level: u8,
        index: u64,
        log_id: u64,
    ) -> Result<Page, PageError> {
        let fail = |what: String| Err(PageError(what));
        if bytes.len() != PAGE_RECORD_LEN {
            return fail(format!("{} bytes, not {PAGE_RECORD_LEN}", bytes.len()));
        }
        let stored_crc = u32::from_le_bytes(array(&bytes[CRC_AT..]));
        let crc = crc32fast::hash(&bytes[..CRC_AT]);
        if stored_crc != crc {
            return fail(format!(
                "checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
            ));
        }
        if bytes[CRC_AT + 4..].iter().any(|&b| b != 0) {
            return fail("a reserved byte after the checksum is not zero".to_string());
        }
        let header = Page::decode_header(&bytes[..HEADER_READ_LEN], level, index, log_id)?;
        Ok(Page {
            children: (0..FANOUT).map(|i| Hash(array(&bytes[CHILDREN_AT + 32 * i..]))).collect(),
            nodes: (0..STORED_NODES).map(|i| Hash(array(&bytes[NODES_AT + 32 * i..]))).collect(),
            ..header
        })
    }

    /// Decodes and checks a record's header alone (its first [`HEADER_READ_LEN`] bytes): the
    /// page hash stands in for the checksum. The page comes back without children or nodes.
    ///
    /// # Errors
    /// A [`PageError`] naming the first check that failed.
    pub(crate) fn decode_header(
        bytes: &[u8],
        level: u8,
        index: u64,
        log_id: u64,
    ) -> Result<Page, PageError> {
        let fail = |what: String| Err(PageError(what));
        if bytes.len() < HEADER_READ_LEN {
            return fail(format!("{} bytes of header, not {HEADER_READ_LEN}", bytes.len()));
        }
        if bytes[0..4] != PAGE_MAGIC {
            return fail("not a Chronicle page record (bad magic)".to_string());
        }
        let version = u16::from_le_bytes(array(&bytes[4..]));
        if version != PAGE_VERSION {
            return fail(format!("page record version {version}, this build reads {PAGE_VERSION}"));
        }
        if bytes[6] != level || bytes[7] != 0 {
            return fail(format!("level byte {} or a reserved byte is wrong", bytes[6]));
        }
        let field = |i: usize| u64::from_le_bytes(array(&bytes[8 + 8 * i..]));
        let page = Page {
            level,
            index: field(1),
            log_id: field(0),
            span: Span {
                first_offset: field(3),
                last_offset: field(4),
                end_offset: field(5),
                first_write_ms: field(6),
                last_write_ms: field(7),
            },
            root: Hash(array(&bytes[72..])),
            prev_hash: Hash(array(&bytes[104..])),
            children: Vec::new(),
            nodes: Vec::new(),
        };
        if page.log_id != log_id {
            return fail(format!("belongs to log {:#018x}, not {log_id:#018x}", page.log_id));
        }
        if page.index != index || field(2) != page.first_entry() {
            return fail(format!(
                "says it is page {} (first entry {}), found where page {index} belongs",
                page.index,
                field(2)
            ));
        }
        if Hash(array(&bytes[HASHED_HEADER_LEN..])) != page.hash() {
            return fail("the page hash does not match its header".to_string());
        }
        Ok(page)
    }
}

/// The index of the first entry under page `index` of `level` (saturating past 2^64).
pub(crate) fn first_entry(level: u8, index: u64) -> u64 {
    index.saturating_mul(entries_per_page(level))
}

/// Entries under one page of `level` (saturating at `u64::MAX` for level 7).
pub(crate) fn entries_per_page(level: u8) -> u64 {
    1u64.checked_shl(PAGE_HEIGHT * (u32::from(level) + 1)).unwrap_or(u64::MAX)
}

/// The inner nodes a page stores (heights 4 to 7) over `children`, and their root.
fn inner_nodes(children: &[Hash]) -> (Vec<Hash>, Hash) {
    let mut nodes = Vec::with_capacity(STORED_NODES);
    let mut row = children.to_vec();
    let mut height = 0;
    while row.len() > 1 {
        row = row.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        height += 1;
        if (STORED_HEIGHT_MIN..PAGE_HEIGHT).contains(&height) {
            nodes.extend_from_slice(&row);
        }
    }
    let root = match row.as_slice() {
        [root] => *root,
        _ => super::empty_root(),
    };
    (nodes, root)
}

/// The root of a perfect subtree over `leaves` (a power of two of them, at least one).
pub(crate) fn fold_perfect(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => super::empty_root(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(leaves.len() / 2);
            node_hash(&fold_perfect(left), &fold_perfect(right))
        }
    }
}

/// The first `N` bytes of `bytes` (which has at least `N`; callers index within a record).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}
