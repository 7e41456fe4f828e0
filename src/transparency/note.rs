//! Ed25519 keys and signed notes (C2SP signed-note), in the key formats of Go's
//! `golang.org/x/mod/sumdb/note`, so that keys and notes move freely between Chronicle and the
//! tools of the transparency-log ecosystem.
//!
//! - Signing key: `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ 32-byte seed)>`.
//! - Verifier key: `<name>+<id>+<base64(0x01 ‖ 32-byte public key)>`.
//! - Key id: the first 4 bytes, big-endian, of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key), as 8
//!   lowercase hex digits in a key.
//! - A signed note: its text (ending in a newline), a blank line, then one line per signature:
//!   `— <name> <base64(key id (4 bytes, big-endian) ‖ Ed25519 signature of the text)>`.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey as DalekSigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest, Sha256};

use crate::error::{Result, StorageError};

/// The signed-note signature type of Ed25519 keys.
const ALG_ED25519: u8 = 0x01;
/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The prefix of a signing key.
const SIGNING_KEY_PREFIX: &str = "PRIVATE+KEY+";
/// Signature lines a note may carry (Go's `note.Open` allows as many; the spec asks for 16).
pub const NOTE_SIGNATURES_MAX: usize = 100;
/// Bytes a note may hold; a checkpoint is a few hundred.
pub const NOTE_BYTES_MAX: usize = 1 << 20;
/// Bytes a key file may hold.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// Whether `name` may name a key: not empty, and without spaces (any Unicode white space),
/// control characters or `+`.
#[must_use]
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The signed-note key id of the Ed25519 key `public` named `name`: the first four bytes of
/// SHA-256(name ‖ `\n` ‖ 0x01 ‖ public), big-endian.
#[must_use]
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ALG_ED25519])
        .chain_update(public)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn key_error(reason: impl Into<String>) -> StorageError {
    StorageError::Key { reason: reason.into() }
}

fn note_error(reason: impl Into<String>) -> StorageError {
    StorageError::Checkpoint { reason: reason.into() }
}

fn check_name(name: &str) -> Result<()> {
    if is_valid_key_name(name) {
        return Ok(());
    }
    Err(key_error(format!(
        "{name:?} cannot name a key: a key name is not empty and has no spaces, control \
         characters or `+`"
    )))
}

/// The 32 key bytes after the signature type byte of base64 `text`, or why not.
fn decode_key_bytes(text: &str, what: &str) -> Result<[u8; 32]> {
    let bytes =
        BASE64.decode(text).map_err(|e| key_error(format!("its {what} is not base64: {e}")))?;
    let Some((&alg, key)) = bytes.split_first() else {
        return Err(key_error(format!("its {what} is empty")));
    };
    if alg != ALG_ED25519 {
        return Err(key_error(format!(
            "its {what} is of signature type {alg:#04x}, not Ed25519 ({ALG_ED25519:#04x})"
        )));
    }
    key.try_into().map_err(|_| {
        key_error(format!("its {what} holds {} bytes, not the 32 of an Ed25519 key", key.len()))
    })
}

/// Parses the 8 hex digits of a key id.
fn parse_key_id(text: &str) -> Result<u32> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(key_error(format!("its key id {text:?} is not 8 hex digits")));
    }
    u32::from_str_radix(text, 16).map_err(|e| key_error(format!("its key id {text:?}: {e}")))
}

/// Reads a key file: at most [`KEY_FILE_BYTES_MAX`] bytes of UTF-8, trimmed.
fn read_key_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| StorageError::io("read key file", path, e))?;
    if bytes.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(key_error(format!(
            "`{}` holds {} bytes, more than a key file ({KEY_FILE_BYTES_MAX})",
            path.display(),
            bytes.len()
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| key_error(format!("`{}` is not a key file: not UTF-8", path.display())))?;
    Ok(text.trim().to_string())
}

/// An Ed25519 signing key with its name, as a log signs its checkpoints. Its `Debug` shows
/// the name and id, never the key.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    id: u32,
    key: DalekSigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}+{:08x})", self.name, self.id)
    }
}

impl SigningKey {
    /// A new key named `name`, from the operating system's random generator.
    ///
    /// # Errors
    /// [`StorageError::Key`] for a name that cannot name a key ([`is_valid_key_name`]) or if
    /// the generator fails.
    pub fn generate(name: &str) -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| key_error(format!("the system's random generator failed: {e}")))?;
        SigningKey::from_seed(name, &seed)
    }

    /// The key named `name` whose Ed25519 seed (RFC 8032 private key) is `seed`.
    ///
    /// # Errors
    /// [`StorageError::Key`] for a name that cannot name a key.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SigningKey> {
        check_name(name)?;
        let key = DalekSigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(SigningKey { name: name.to_string(), id, key })
    }

    /// Parses a signing key, `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>` (surrounding
    /// white space ignored), as Go's `note.NewSigner` does.
    ///
    /// # Errors
    /// [`StorageError::Key`] saying what is wrong (never showing the key).
    pub fn parse(text: &str) -> Result<SigningKey> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(SIGNING_KEY_PREFIX) else {
            let reason = if VerifierKey::parse(text).is_ok() {
                "this is a verifier key; signing needs the signing key (PRIVATE+KEY+…)"
            } else {
                "not a signing key: it does not start with PRIVATE+KEY+"
            };
            return Err(key_error(reason));
        };
        // The base64 key may hold `+`; the name and id cannot.
        let parts: Vec<&str> = rest.splitn(3, '+').collect();
        let [name, id, key] = parts.as_slice() else {
            return Err(key_error("not a signing key: expected PRIVATE+KEY+<name>+<id>+<key>"));
        };
        check_name(name)?;
        let id = parse_key_id(id)?;
        let seed = decode_key_bytes(key, "key")?;
        let signing = SigningKey::from_seed(name, &seed)?;
        if signing.id != id {
            return Err(key_error(format!(
                "its key id {id:08x} is not that of its name and key ({:08x})",
                signing.id
            )));
        }
        Ok(signing)
    }

    /// Reads a signing key from a file (as [`SigningKey::parse`]).
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file cannot be read; [`StorageError::Key`] naming the file
    /// if it holds no signing key.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        SigningKey::parse(&read_key_file(path)?).map_err(|err| match err {
            StorageError::Key { reason } => key_error(format!("`{}`: {reason}", path.display())),
            other => other,
        })
    }

    /// The key in the signing-key format, for a key file. Keep it secret.
    #[must_use]
    pub fn to_note_key(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{SIGNING_KEY_PREFIX}{}+{:08x}+{}", self.name, self.id, BASE64.encode(bytes))
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The verifier key that checks this key's signatures.
    #[must_use]
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text` (the note text: UTF-8 ending in a newline, with no control characters but
    /// newlines and no blank last line) and returns the signed note: the text, a blank line and
    /// this key's signature line.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] if `text` is not a note text.
    pub fn sign_note(&self, text: &str) -> Result<String> {
        check_note_text(text)?;
        let mut signature = self.id.to_be_bytes().to_vec();
        signature.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        let line = format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(signature));
        Ok(format!("{text}\n{line}"))
    }
}

/// The checks a note's text must pass before it is signed.
fn check_note_text(text: &str) -> Result<()> {
    if !text.ends_with('\n') || text.ends_with("\n\n") || text == "\n" {
        return Err(note_error("a note's text ends in one newline and has no blank last line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(note_error("a note's text has no control characters but newlines"));
    }
    Ok(())
}

/// An Ed25519 verifier key with its name: what a client is given to check a log's
/// checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// The verifier-key format: `<name>+<id>+<base64(0x01 ‖ public key)>`.
impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, BASE64.encode(bytes))
    }
}

impl VerifierKey {
    /// Parses a verifier key, `<name>+<id>+<base64(0x01 ‖ public key)>` (surrounding white
    /// space ignored), as Go's `note.NewVerifier` does.
    ///
    /// # Errors
    /// [`StorageError::Key`] saying what is wrong.
    pub fn parse(text: &str) -> Result<VerifierKey> {
        let text = text.trim();
        if text.starts_with(SIGNING_KEY_PREFIX) {
            return Err(key_error(
                "this is a signing key (PRIVATE+KEY+…); checking needs the verifier key",
            ));
        }
        let parts: Vec<&str> = text.splitn(3, '+').collect();
        let [name, id, key] = parts.as_slice() else {
            return Err(key_error("not a verifier key: expected <name>+<id>+<key>"));
        };
        check_name(name)?;
        let id = parse_key_id(id)?;
        let public = decode_key_bytes(key, "key")?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| key_error("its key is not an Ed25519 public key"))?;
        if key_id(name, &public) != id {
            return Err(key_error(format!(
                "its key id {id:08x} is not that of its name and key ({:08x})",
                key_id(name, &public)
            )));
        }
        Ok(VerifierKey { name: (*name).to_string(), id, key })
    }

    /// Reads a verifier key from a file (as [`VerifierKey::parse`]).
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file cannot be read; [`StorageError::Key`] naming the file
    /// if it holds no verifier key.
    pub fn from_file(path: &Path) -> Result<VerifierKey> {
        VerifierKey::parse(&read_key_file(path)?).map_err(|err| match err {
            StorageError::Key { reason } => key_error(format!("`{}`: {reason}", path.display())),
            other => other,
        })
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Checks a signed note and returns its text. As C2SP signed-note asks, signatures by
    /// other keys are ignored, every signature by this key (same name and id) must verify,
    /// and there must be at least one.
    ///
    /// # Errors
    /// [`StorageError::Checkpoint`] saying what is wrong: a malformed note, no signature by
    /// this key, or one that does not verify.
    pub fn open<'a>(&self, note: &'a [u8]) -> Result<&'a str> {
        let (text, signatures) = split_note(note)?;
        let mut verified = 0;
        for signature in signatures.iter().filter(|s| s.name == self.name && s.id == self.id) {
            let bytes: &[u8; 64] = signature.signature.as_slice().try_into().map_err(|_| {
                note_error(format!(
                    "the signature by {} holds {} bytes, not the 64 of an Ed25519 signature",
                    self.name,
                    signature.signature.len()
                ))
            })?;
            let sig = ed25519_dalek::Signature::from_bytes(bytes);
            self.key.verify_strict(text.as_bytes(), &sig).map_err(|_| {
                note_error(format!(
                    "the signature by {}+{:08x} does not verify",
                    self.name, self.id
                ))
            })?;
            verified += 1;
        }
        if verified == 0 {
            let others: Vec<String> =
                signatures.iter().map(|s| format!("{}+{:08x}", s.name, s.id)).collect();
            return Err(note_error(format!(
                "no signature by {}+{:08x} (signed by: {})",
                self.name,
                self.id,
                others.join(", ")
            )));
        }
        Ok(text)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NoteSignature {
    name: String,
    id: u32,
    /// The signature after the key id.
    signature: Vec<u8>,
}

/// Splits a signed note into its text (with its final newline) and its signature lines,
/// checking its form as C2SP signed-note and Go's `note.Open` do. Verifies nothing.
fn split_note(note: &[u8]) -> Result<(&str, Vec<NoteSignature>)> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(note_error(format!(
            "{} bytes, more than a note may hold ({NOTE_BYTES_MAX})",
            note.len()
        )));
    }
    let note = std::str::from_utf8(note).map_err(|e| note_error(format!("not UTF-8: {e}")))?;
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(note_error("a note has no control characters but newlines"));
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(note_error(
            "no signature block (a blank line followed by signature lines); is it signed?",
        ));
    };
    let (text, block) = (&note[..=split], &note[split + 2..]);
    if block.is_empty() || !block.ends_with('\n') {
        return Err(note_error("the signature block is empty or does not end in a newline"));
    }
    let mut signatures = Vec::new();
    for line in block.lines() {
        if signatures.len() == NOTE_SIGNATURES_MAX {
            return Err(note_error(format!("more than {NOTE_SIGNATURES_MAX} signatures")));
        }
        signatures.push(parse_signature_line(line)?);
    }
    Ok((text, signatures))
}

fn parse_signature_line(line: &str) -> Result<NoteSignature> {
    let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
        return Err(note_error(format!(
            "{line:?} is not a signature line (`— <name> <base64 signature>`)"
        )));
    };
    let Some((name, encoded)) = rest.split_once(' ') else {
        return Err(note_error(format!("the signature line {line:?} has no signature")));
    };
    if !is_valid_key_name(name) {
        return Err(note_error(format!("the signature line {line:?} names no valid key")));
    }
    let bytes = BASE64.decode(encoded).map_err(|e| {
        note_error(format!("the signature by {name} is not base64 ({e}): {encoded:?}"))
    })?;
    let (Some(id), Some(signature)) = (bytes.first_chunk::<4>(), bytes.get(4..)) else {
        return Err(note_error(format!("the signature by {name} is too short for a key id")));
    };
    if signature.is_empty() {
        return Err(note_error(format!("the signature by {name} is empty")));
    }
    Ok(NoteSignature {
        name: name.to_string(),
        id: u32::from_be_bytes(*id),
        signature: signature.to_vec(),
    })
}
