//! A transparency log anyone can audit: signed checkpoints of a log's Merkle tree, and the
//! whole tree exported as a C2SP tlog-tiles directory.
//!
//! - Keys ([`SigningKey`], [`VerifierKey`]) are Ed25519 keys in the formats of Go's
//!   `golang.org/x/mod/sumdb/note`, and notes are C2SP signed notes, so the ecosystem's
//!   verifiers read what Chronicle signs.
//! - A [`Checkpoint`] (C2SP tlog-checkpoint) is a tree head as a note: origin, tree size and
//!   base64 root, signed. It checks inclusion and consistency proofs
//!   ([`Checkpoint::check_inclusion`], [`Checkpoint::check_consistency`]).
//! - [`export_tiles`] writes a log as a static tlog-tiles directory (`checkpoint`,
//!   `tile/<L>/<N>`, `tile/entries/<N>`), incrementally: later exports add what is new.
//!
//! The conventions (origin, keys, entries, tiles, what happens to records too large for an
//! entry bundle) are in `FORMAT.md`, section 14.
//!
//! ```
//! use chronicle::transparency::{Checkpoint, SigningKey};
//! use chronicle::Log;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut log = Log::open(dir.path().join("log"))?;
//! let offset = log.append(b"hello")?;
//! let key = SigningKey::generate("example.com/log42")?;
//! let head = log.tree_head(None)?;
//! let signed = Checkpoint::new("example.com/log42", &head)?.sign(&key)?;
//!
//! // A client holding only the verifier key and the signed checkpoint:
//! let checkpoint = Checkpoint::open(signed.as_bytes(), &key.verifier())?;
//! checkpoint.check_inclusion(&log.inclusion_proof(offset, None)?)?;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod note;
mod tiles;

pub use checkpoint::{is_valid_origin, Checkpoint};
pub use note::{
    is_valid_key_name, key_id, SigningKey, VerifierKey, NOTE_BYTES_MAX, NOTE_SIGNATURES_MAX,
};
pub use tiles::{
    entries_path, export_tiles, tile_path, ExportReport, TileExport, CHECKPOINT_FILE_NAME,
    ENTRY_BYTES_MAX, HASH_BYTES, TILE_HEIGHT, TILE_WIDTH,
};

#[cfg(test)]
mod tests;
