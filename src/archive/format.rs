//! The objects a backup is made of (`FORMAT.md` 15): the key layout, the manifest, the catalog
//! and the lease, their JSON forms and the digest line that ends each of them. Pure encoding
//! and decoding over byte slices; nothing here touches the store.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{ArchiveError, Result};
use crate::rollup::{Hash, TreeHead};

/// The `format` field of a manifest.
pub const MANIFEST_FORMAT: &str = "chronicle-segment-manifest";
/// The `format` field of a catalog.
pub const CATALOG_FORMAT: &str = "chronicle-backup-catalog";
/// The `format` field of a lease.
pub const LEASE_FORMAT: &str = "chronicle-ship-lease";
/// The version this build writes, and the only one it reads, of each of the three objects.
pub const OBJECT_VERSION: u32 = 1;
/// What starts the last line of every manifest, catalog and lease: the SHA-256 of the bytes
/// before that line follows, as 64 lowercase hex digits, then a newline.
pub const DIGEST_LINE_PREFIX: &str = "sha256:";

/// The folder of catalogs: `catalogs/{seq:020}.json`.
pub const CATALOGS: &str = "catalogs";
/// The folder of manifests: `manifests/{base:020}-{end:020}-{open|sealed}-{run}.json`.
pub const MANIFESTS: &str = "manifests";
/// The folder of segment pieces:
/// `segments/{base:020}-{start:010}-{end:010}-{run}.seg` (`.seg.zst` when compressed).
pub const SEGMENTS: &str = "segments";
/// The lease object of the destination's one shipper.
pub const LEASE_KEY: &str = "lease.json";
/// A run id: 16 lowercase hex digits, random per backup run or shipper.
pub const RUN_ID_LEN: usize = 16;

/// How a piece's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// The bytes as they are in the segment file.
    None,
    /// One zstd frame (RFC 8878) holding them.
    Zstd,
}

impl Codec {
    fn suffix(self) -> &'static str {
        match self {
            Codec::None => ".seg",
            Codec::Zstd => ".seg.zst",
        }
    }
}

/// One stored object holding bytes `[start, end)` of a segment's image (its file from position
/// 0: the 64-byte header, then the data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    /// The object's key, relative to the backup's root.
    pub key: String,
    /// First file position it holds.
    pub start: u64,
    /// File position after the last byte it holds.
    pub end: u64,
    /// SHA-256 of the `end - start` bytes it holds.
    pub sha256: Hash,
    /// How they are stored.
    pub codec: Codec,
    /// Length of the stored object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored object (equal to `sha256` for [`Codec::None`]).
    pub stored_sha256: Hash,
}

/// What a backup knows of one segment (`FORMAT.md` 15.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`OBJECT_VERSION`].
    pub version: u32,
    /// The `log_id` of the log's segment headers.
    pub log_id: u64,
    /// The segment's base offset.
    pub base_offset: u64,
    /// The length of the segment file, preallocation included: what restore makes it.
    pub file_bytes: u64,
    /// Whether the segment was sealed (a later segment followed it) when this was shipped.
    pub sealed: bool,
    /// Bytes of the image shipped: the header and the data up to `end_offset`.
    pub image_bytes: u64,
    /// The offset after the last shipped frame: `base_offset + image_bytes - 64`.
    pub end_offset: u64,
    /// SHA-256 of the whole shipped image.
    pub sha256: Hash,
    /// The tree index of the segment's first record (records before it in the log).
    pub first_entry: u64,
    /// `first_entry` plus the records shipped (gaps are not records).
    pub entries_end: u64,
    /// Write time of the first record shipped; 0 if none.
    pub first_write_ms: u64,
    /// Write time of the last record shipped; 0 if none.
    pub last_write_ms: u64,
    /// The largest write time of a record shipped; 0 if none.
    pub max_write_ms: u64,
    /// The offset and `crc` field of the last frame shipped (record or gap), if any: what the
    /// next segment's header names.
    pub last_frame: Option<(u64, u32)>,
    /// The compact range of the tree over entries `[0, first_entry)`: the roots of its perfect
    /// subtrees, largest first.
    pub tree_before: Vec<Hash>,
    /// The tree head at `entries_end` (`Log::tree_head(Some(entries_end))`).
    pub tree_head: TreeHead,
    /// The objects holding the image, in order, back to back from position 0.
    pub pieces: Vec<Piece>,
    /// SHA-256 of the previous segment's manifest object; `None` for the backup's first.
    pub prev_manifest_sha256: Option<Hash>,
}

/// One segment as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The segment's base offset.
    pub base_offset: u64,
    /// Its manifest's `end_offset`.
    pub end_offset: u64,
    /// Its manifest's `first_entry`.
    pub first_entry: u64,
    /// Its manifest's `entries_end`.
    pub entries_end: u64,
    /// Its manifest's `max_write_ms`.
    pub max_write_ms: u64,
    /// Its manifest's `sealed`.
    pub sealed: bool,
    /// The manifest's key.
    pub manifest: String,
    /// SHA-256 of the manifest object.
    pub manifest_sha256: Hash,
}

/// The list of a backup's manifests (`FORMAT.md` 15.4): the only object that names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// [`CATALOG_FORMAT`].
    pub format: String,
    /// [`OBJECT_VERSION`].
    pub version: u32,
    /// The number in the catalog's key; one more than the catalog it replaces.
    pub seq: u64,
    /// The log's `log_id`.
    pub log_id: u64,
    /// The run id of the backup or shipper that wrote it.
    pub writer: String,
    /// When it was written (milliseconds since the Unix epoch). Informational.
    pub written_at_ms: u64,
    /// The segments, in offset order, each one's data starting where the previous one's ends.
    pub segments: Vec<CatalogEntry>,
    /// The tree head at the end of the last segment (the empty tree's with no segment).
    pub head: TreeHead,
    /// SHA-256 of the catalog this one replaced; `None` for the first.
    pub prev_catalog_sha256: Option<Hash>,
}

/// The destination's lease (`FORMAT.md` 15.5): which shipper may write there, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// [`LEASE_FORMAT`].
    pub format: String,
    /// [`OBJECT_VERSION`].
    pub version: u32,
    /// The holder's run id.
    pub owner: String,
    /// The holder's host name (from `/etc/hostname` or `HOSTNAME`; may be empty).
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When the holder last took or renewed it (milliseconds since the Unix epoch).
    pub renewed_ms: u64,
    /// When it lapses unless renewed.
    pub expires_ms: u64,
}

/// SHA-256 of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// `value` as pretty JSON, a newline, and the digest line over those bytes.
///
/// # Errors
/// [`ArchiveError::Encode`] if serde cannot encode it (it always can for these types).
pub fn encode_object<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|err| ArchiveError::Encode { reason: err.to_string() })?;
    bytes.push(b'\n');
    let digest = sha256(&bytes);
    bytes.extend_from_slice(DIGEST_LINE_PREFIX.as_bytes());
    bytes.extend_from_slice(digest.to_string().as_bytes());
    bytes.push(b'\n');
    Ok(bytes)
}

/// The common head of every object, read before the rest so that another format or a newer
/// version is reported as such.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

/// Decodes an object written by [`encode_object`]: checks the digest line, then the format
/// name and version, then the fields (unknown fields are refused).
///
/// # Errors
/// [`ArchiveError::Damaged`] naming `key` for a missing or wrong digest line, malformed JSON or
/// another format; [`ArchiveError::UnsupportedVersion`] for another version.
pub fn decode_object<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
    format: &str,
) -> Result<T> {
    let damaged = |reason: String| ArchiveError::Damaged { object: key.to_string(), reason };
    let line_len = DIGEST_LINE_PREFIX.len() + 64 + 1;
    let Some(body_len) = bytes.len().checked_sub(line_len) else {
        return Err(damaged(format!("{} bytes: too short to end with a digest line", bytes.len())));
    };
    let (body, line) = bytes.split_at(body_len);
    let stated = line
        .strip_prefix(DIGEST_LINE_PREFIX.as_bytes())
        .and_then(|rest| rest.strip_suffix(b"\n"))
        .filter(|hex| hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
        .and_then(|hex| std::str::from_utf8(hex).ok())
        .and_then(|hex| hex.parse::<Hash>().ok())
        .ok_or_else(|| {
            damaged("the last line is not `sha256:` and 64 lowercase hex digits".into())
        })?;
    let computed = sha256(body);
    if stated != computed {
        return Err(damaged(format!(
            "digest line says {stated}, the bytes before it hash to {computed}"
        )));
    }
    if body.last() != Some(&b'\n') {
        return Err(damaged("the digest line does not start a line".into()));
    }
    let head: Head = serde_json::from_slice(body)
        .map_err(|err| damaged(format!("not a JSON object with format and version: {err}")))?;
    if head.format != format {
        return Err(damaged(format!("format is {:?}, expected {format:?}", head.format)));
    }
    if head.version != OBJECT_VERSION {
        return Err(ArchiveError::UnsupportedVersion {
            object: key.to_string(),
            version: head.version,
        });
    }
    serde_json::from_slice(body).map_err(|err| damaged(format!("malformed: {err}")))
}

/// The key of catalog `seq`.
#[must_use]
pub fn catalog_key(seq: u64) -> String {
    format!("{CATALOGS}/{seq:020}.json")
}

/// The sequence number a catalog key names, if it is one (`catalogs/` and 20 digits, `.json`).
#[must_use]
pub fn parse_catalog_key(key: &str) -> Option<u64> {
    let stem = key.strip_prefix(CATALOGS)?.strip_prefix('/')?.strip_suffix(".json")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// The key of a manifest for segment `base` shipped up to `end_offset` by run `run`: one run
/// may ship a segment up to the same offset twice, unsealed and then sealed.
#[must_use]
pub fn manifest_key(base: u64, end_offset: u64, sealed: bool, run: &str) -> String {
    format!("{MANIFESTS}/{base:020}-{end_offset:020}-{}-{run}.json", seal_word(sealed))
}

fn seal_word(sealed: bool) -> &'static str {
    if sealed {
        "sealed"
    } else {
        "open"
    }
}

/// The key of a piece of segment `base` holding image bytes `[start, end)`.
#[must_use]
pub fn piece_key(base: u64, start: u64, end: u64, run: &str, codec: Codec) -> String {
    format!("{SEGMENTS}/{base:020}-{start:010}-{end:010}-{run}{}", codec.suffix())
}

/// Checks that `key` is a relative key of the shape this format writes: no absolute path, no
/// `.` or `..` component, no backslash or control character. Restore and verification refuse
/// any other key before they read it (`FORMAT.md` 15.2).
///
/// # Errors
/// [`ArchiveError::UnsafeKey`] naming the key.
pub fn check_key(key: &str) -> Result<()> {
    let unsafe_key =
        |reason: &str| ArchiveError::UnsafeKey { key: key.to_string(), reason: reason.to_string() };
    if key.is_empty() || key.starts_with('/') || key.contains(':') {
        return Err(unsafe_key("an absolute path or a URL"));
    }
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(unsafe_key("an empty, `.` or `..` path component"));
    }
    if key.bytes().any(|b| b == b'\\' || b.is_ascii_control() || !b.is_ascii()) {
        return Err(unsafe_key("a backslash, control or non-ASCII character"));
    }
    Ok(())
}

/// Checks that a manifest key is the one [`manifest_key`] gives for its segment.
///
/// # Errors
/// [`ArchiveError::UnsafeKey`] or [`ArchiveError::Damaged`].
pub fn check_manifest_key(key: &str, base: u64, end_offset: u64, sealed: bool) -> Result<()> {
    check_key(key)?;
    let run = key
        .strip_prefix(&format!("{MANIFESTS}/{base:020}-{end_offset:020}-{}-", seal_word(sealed)))
        .and_then(|rest| rest.strip_suffix(".json"))
        .filter(|run| is_run_id(run));
    match run {
        Some(_) => Ok(()),
        None => Err(ArchiveError::Damaged {
            object: key.to_string(),
            reason: format!(
                "not the key of a manifest of the segment at {base} ending at {end_offset}"
            ),
        }),
    }
}

/// Checks that a piece key is the one [`piece_key`] gives for its fields.
///
/// # Errors
/// [`ArchiveError::UnsafeKey`] or [`ArchiveError::Damaged`] naming `manifest`.
pub fn check_piece_key(manifest: &str, base: u64, piece: &Piece) -> Result<()> {
    check_key(&piece.key)?;
    let prefix = format!("{SEGMENTS}/{base:020}-{:010}-{:010}-", piece.start, piece.end);
    let run = piece
        .key
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(piece.codec.suffix()))
        .filter(|run| is_run_id(run));
    match run {
        Some(_) => Ok(()),
        None => Err(ArchiveError::Damaged {
            object: manifest.to_string(),
            reason: format!("piece key {:?} does not name what the piece holds", piece.key),
        }),
    }
}

/// Whether `run` is 16 lowercase hex digits.
#[must_use]
pub fn is_run_id(run: &str) -> bool {
    run.len() == RUN_ID_LEN && run.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new random run id.
#[must_use]
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(super::now_ms().into());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            format: LEASE_FORMAT.into(),
            version: OBJECT_VERSION,
            owner: "0123456789abcdef".into(),
            host: "h".into(),
            pid: 7,
            renewed_ms: 1,
            expires_ms: 2,
        }
    }

    #[test]
    fn objects_round_trip_and_every_byte_is_covered() {
        let bytes = encode_object(&lease()).unwrap();
        let back: Lease = decode_object("lease.json", &bytes, LEASE_FORMAT).unwrap();
        assert_eq!(back, lease());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(decode_object::<Lease>("k", &bad, LEASE_FORMAT).is_err(), "byte {at}");
        }
    }

    #[test]
    fn other_versions_and_formats_are_refused() {
        let mut other = lease();
        other.version = 2;
        let bytes = encode_object(&other).unwrap();
        let err = decode_object::<Lease>("k", &bytes, LEASE_FORMAT).unwrap_err();
        assert!(matches!(err, ArchiveError::UnsupportedVersion { version: 2, .. }), "{err}");
        let err = decode_object::<Lease>("k", &bytes, CATALOG_FORMAT).unwrap_err();
        assert!(matches!(err, ArchiveError::Damaged { .. }), "{err}");
    }

    #[test]
    fn keys_are_checked() {
        let run = "0123456789abcdef";
        assert_eq!(parse_catalog_key(&catalog_key(42)), Some(42));
        assert_eq!(parse_catalog_key("catalogs/42.json"), None);
        assert!(check_manifest_key(&manifest_key(8, 16, true, run), 8, 16, true).is_ok());
        assert!(check_manifest_key(&manifest_key(8, 16, true, run), 8, 24, true).is_err());
        assert!(check_manifest_key(&manifest_key(8, 16, true, run), 8, 16, false).is_err());
        for bad in ["/etc/passwd", "../x", "segments/../../x", "a//b", "s3://b/k", "a\\b", ""] {
            assert!(matches!(check_key(bad), Err(ArchiveError::UnsafeKey { .. })), "{bad}");
        }
        let piece = Piece {
            key: piece_key(8, 0, 64, run, Codec::Zstd),
            start: 0,
            end: 64,
            sha256: sha256(b""),
            codec: Codec::Zstd,
            stored_bytes: 0,
            stored_sha256: sha256(b""),
        };
        assert!(check_piece_key("m", 8, &piece).is_ok());
        assert!(check_piece_key("m", 16, &piece).is_err());
        assert!(check_piece_key("m", 8, &Piece { codec: Codec::None, ..piece }).is_err());
    }
}
