//! Checkpoints (C2SP tlog-checkpoint): a tree head as the text of a signed note.
//!
//! ```text
//! example.com/log42                                  origin
//! 1000                                               tree size, decimal
//! 8mD2EjmzWgU1zvdyPpRxJVjxUWLVEtgnNm3WgTObsrU=       root hash, base64
//!                                                    blank line
//! — example.com/log42 Az3grl…                        signature lines
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::note::{SigningKey, VerifierKey};
use crate::error::{Result, StorageError};
use crate::rollup::{empty_root, ConsistencyProof, Hash, InclusionProof, TreeHead};

fn checkpoint_error(reason: impl Into<String>) -> StorageError {
    StorageError::Checkpoint { reason: reason.into() }
}

/// Whether Chronicle writes `origin` as a checkpoint's origin: not empty, and without spaces
/// (any Unicode white space), control characters or `+`, as C2SP tlog-checkpoint recommends
/// (a schema-less URL such as `example.com/log42`).
#[must_use]
pub fn is_valid_origin(origin: &str) -> bool {
    super::note::is_valid_key_name(origin)
}

/// [`is_valid_origin`], or why not.
pub(crate) fn check_origin(origin: &str) -> Result<()> {
    if is_valid_origin(origin) {
        return Ok(());
    }
    Err(checkpoint_error(format!(
        "{origin:?} cannot be an origin: an origin is not empty and has no spaces, control \
         characters or `+` (e.g. example.com/log42)"
    )))
}

/// A tree head as a checkpoint: the log's origin, the tree's size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log: the same for every checkpoint of one log, different from every other
    /// log's.
    pub origin: String,
    /// Entries in the tree.
    pub tree_size: u64,
    /// The tree's root (RFC 9162 `MTH`).
    pub root: Hash,
    /// Extension lines after the root, if the checkpoint had any (Chronicle writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint of `head` for the log named `origin`.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] for an origin Chronicle does not write
    /// ([`is_valid_origin`]).
    pub fn new(origin: &str, head: &TreeHead) -> Result<Checkpoint> {
        check_origin(origin)?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            tree_size: head.tree_size,
            root: head.root,
            extensions: Vec::new(),
        })
    }

    /// The note text: origin, tree size and base64 root, each on its own line (then any
    /// extension lines).
    #[must_use]
    pub fn body(&self) -> String {
        let mut text =
            format!("{}\n{}\n{}\n", self.origin, self.tree_size, BASE64.encode(self.root.0));
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The checkpoint signed by `key`: the signed note of [`Checkpoint::body`].
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] if the body is not a note text (an extension line that
    /// is empty or holds a control character).
    pub fn sign(&self, key: &SigningKey) -> Result<String> {
        key.sign_note(&self.body())
    }

    /// Parses a checkpoint's note text (strictly: the size in decimal without leading zeros,
    /// the root as the base64 of 32 bytes, no empty line).
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] saying which line is wrong.
    pub fn parse_body(text: &str) -> Result<Checkpoint> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(checkpoint_error("its text does not end in a newline"));
        };
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(checkpoint_error("fewer than three lines (origin, tree size, root)"));
        };
        if origin.is_empty() {
            return Err(checkpoint_error("its origin line is empty"));
        }
        let canonical = size == "0" || !size.starts_with('0');
        let tree_size = match size.parse::<u64>() {
            Ok(n) if canonical && size.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(checkpoint_error(format!(
                    "its tree size line {size:?} is not a decimal number without leading zeros"
                )));
            }
        };
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Hash)
            .ok_or_else(|| {
                checkpoint_error(format!("its root line {root:?} is not the base64 of 32 bytes"))
            })?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(checkpoint_error("it has an empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_string(), tree_size, root, extensions })
    }

    /// Checks a signed checkpoint with `key` and parses it. Signatures by other keys (witness
    /// cosignatures, say) are ignored.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`]: a malformed note or text, no signature by `key`, or one
    /// that does not verify.
    pub fn open(note: &[u8], key: &VerifierKey) -> Result<Checkpoint> {
        Checkpoint::parse_body(key.open(note)?)
    }

    /// Parses a checkpoint without checking any signature: a signed note's text, or a bare
    /// note text (an unsigned checkpoint). For a checkpoint whose origin is to be trusted, use
    /// [`Checkpoint::open`].
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] if it is neither.
    pub fn parse_unverified(note: &[u8]) -> Result<Checkpoint> {
        // The text ends at the last blank line, if there is one (the signature block follows).
        let text = match note.windows(2).rposition(|pair| pair == b"\n\n") {
            Some(split) => &note[..=split],
            None => note,
        };
        let text =
            std::str::from_utf8(text).map_err(|e| checkpoint_error(format!("not UTF-8: {e}")))?;
        Checkpoint::parse_body(text)
    }

    /// Checks that the checkpoint is of the log named `origin`.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] naming both origins.
    pub fn check_origin(&self, origin: &str) -> Result<()> {
        if self.origin != origin {
            return Err(checkpoint_error(format!(
                "its origin is {:?}, not the expected {origin:?}",
                self.origin
            )));
        }
        Ok(())
    }

    /// Checks that `proof` proves its record is in the tree of this checkpoint: the proof is
    /// for this tree size and root, and it verifies.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] if it is for another tree; [`StorageError::Proof`] if it
    /// does not verify.
    pub fn check_inclusion(&self, proof: &InclusionProof) -> Result<()> {
        if proof.tree_size != self.tree_size {
            return Err(checkpoint_error(format!(
                "the proof is for a tree of {} entries, the checkpoint for {}",
                proof.tree_size, self.tree_size
            )));
        }
        proof.verify(Some(&self.root))
    }

    /// Checks that `proof` shows this checkpoint's tree is a prefix of `newer`'s (the log was
    /// only appended to between them): same origin, the proof's sizes and roots are the two
    /// checkpoints', and it verifies. Equal trees need no proof (`None`).
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] if the checkpoints or the proof do not fit together;
    /// [`StorageError::Proof`] if the proof does not verify.
    pub fn check_consistency(
        &self,
        newer: &Checkpoint,
        proof: Option<&ConsistencyProof>,
    ) -> Result<()> {
        newer.check_origin(&self.origin)?;
        if self.tree_size > newer.tree_size {
            return Err(checkpoint_error(format!(
                "the older checkpoint has {} entries, more than the newer one's {}",
                self.tree_size, newer.tree_size
            )));
        }
        let Some(proof) = proof else {
            // The empty tree is a prefix of every tree.
            let empty = self.tree_size == 0 && self.root == empty_root();
            if empty || (self.tree_size == newer.tree_size && self.root == newer.root) {
                return Ok(());
            }
            return Err(checkpoint_error("checkpoints of different trees need a proof"));
        };
        if (proof.old_size, proof.new_size) != (self.tree_size, newer.tree_size) {
            return Err(checkpoint_error(format!(
                "the proof is between trees of {} and {} entries, the checkpoints of {} and {}",
                proof.old_size, proof.new_size, self.tree_size, newer.tree_size
            )));
        }
        proof.verify(Some((&self.root, &newer.root)))
    }
}
