//! The crate's one error type.
//!
//! Every variant says what happened and where: the operation and path for I/O, the segment
//! file and logical offset for corruption, the offending value for bad input. Nothing in this
//! crate panics on bytes read from disk or given by a caller; such input ends up here.

use std::io;
use std::path::PathBuf;

use crate::format::FormatError;

/// Everything that can go wrong in Chronicle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system call failed.
    #[error("I/O error while trying to {op} `{}`: {source}", path.display())]
    Io {
        /// What Chronicle was doing, e.g. "create segment" or "sync segment".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Bytes on disk failed validation.
    #[error("corruption in `{}` at log offset {offset}: {kind}", segment.display())]
    Corruption {
        /// The segment (or index) file that holds the damaged bytes.
        segment: PathBuf,
        /// The logical log offset of the damaged frame (or, for a header, the segment's base).
        offset: u64,
        /// What exactly was wrong.
        kind: FormatError,
    },

    /// The segments of a log do not form one unbroken sequence.
    #[error("broken segment chain at `{}`: {reason}", segment.display())]
    BrokenChain {
        /// The segment whose header does not agree with its predecessor.
        segment: PathBuf,
        /// What did not agree.
        reason: String,
    },

    /// A caller asked for an offset that is not the start of a record.
    #[error("offset {offset} is not a record boundary of this log: {reason}")]
    InvalidOffset {
        /// The offset the caller gave.
        offset: u64,
        /// Why it was refused; for an offset inside the log, the nearest record boundaries
        /// before and after it.
        reason: String,
    },

    /// Replay reached a gap: bytes a repair found damaged and took out, so the records that
    /// were in `[start, end)` are lost. The records before and after it are intact; a replay
    /// yields this once and goes on after the gap.
    #[error(
        "records lost to damage at offsets [{start}, {end}) of `{}`: a repair replaced them \
         with a gap",
        segment.display()
    )]
    Gap {
        /// The segment that holds the gap.
        segment: PathBuf,
        /// The gap's first offset.
        start: u64,
        /// The offset of the first record (or the end of the log) after it.
        end: u64,
    },

    /// A Merkle proof did not verify, or could not be made for the sizes asked for.
    #[error("proof: {reason}")]
    Proof {
        /// What did not match, or what was asked for that the log cannot prove.
        reason: String,
    },

    /// A directory that should hold a log holds none: no segment file, or other files a
    /// writer will not create a log among.
    #[error("`{}` is not a Chronicle log: {found}", path.display())]
    NotALogDirectory {
        /// The directory.
        path: PathBuf,
        /// What was found there instead.
        found: String,
    },

    /// The file does not start with Chronicle's magic bytes.
    #[error("`{}` is not a Chronicle log segment (magic bytes {found:02x?})", path.display())]
    NotALog {
        /// The file that was opened.
        path: PathBuf,
        /// The four bytes found where `CHRN` was expected.
        found: [u8; 4],
    },

    /// The file was written by a newer, incompatible version of Chronicle.
    #[error(
        "`{}` has format version {found}; this build reads versions up to {supported}",
        path.display()
    )]
    UnsupportedVersion {
        /// The file that was opened.
        path: PathBuf,
        /// The version found in the file.
        found: u16,
        /// The newest version this build understands.
        supported: u16,
    },

    /// Another writer holds the log directory's lock.
    #[error("log directory `{}` is locked by another writer", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A record (or batch) is larger than the log accepts. Nothing was written.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Bytes the caller tried to append (payload, or the whole batch's frames).
        len: u64,
        /// The largest accepted size.
        max: u64,
    },

    /// An earlier flush or sync failed; the writer refuses all further writes until the log
    /// is reopened, because the kernel may have dropped the dirty pages it failed to write.
    #[error("writer is poisoned by an earlier failed sync ({cause}); reopen the log")]
    Poisoned {
        /// The error that poisoned the writer.
        cause: String,
    },

    /// The log was opened read-only and cannot be written.
    #[error("log is open read-only")]
    ReadOnly,

    /// The options given to `open_with` are inconsistent.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// Which option and why.
        reason: String,
    },

    /// A record could not be decoded as an event.
    #[error("cannot decode the event at offset {offset}: {reason}")]
    Decode {
        /// The record's offset.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },

    /// A consumer's name is not allowed, its position file is damaged or belongs to another
    /// log, or its stored position is not a record boundary of the log (see
    /// [`Consumer`](crate::Consumer)).
    #[error("consumer `{name}`: {reason}")]
    Consumer {
        /// The consumer's name, as given.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A follower of a read-only handle found that a record it had already delivered is no
    /// longer in the log: a new writer's recovery cut it (it was never synced) and may have
    /// written other records in its place. The follow ends; start again from a position
    /// that is still in the log.
    #[error("the log was cut back behind this follower: {reason}")]
    CutBehind {
        /// The offset of the delivered record that is gone or changed.
        offset: u64,
        /// What was found there instead.
        reason: String,
    },

    /// An event log's index file is missing or unusable, and retention has removed records
    /// from the log: the file was the only record of the aggregates whose events were all
    /// removed, so it is not rebuilt without them unless
    /// [`IndexOptions::rebuild_after_retention`](crate::IndexOptions::rebuild_after_retention)
    /// says so. Restore the file (from a copy taken after the removal) or rebuild knowingly.
    #[error(
        "the event index `{}` cannot be used ({reason}), and retention removed records that \
         only it described; restore it, or open with IndexOptions::rebuild_after_retention to \
         rebuild it without them (their aggregates then start again at version 0)",
        path.display()
    )]
    IndexLost {
        /// The index file.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// An append with an expected version found the aggregate at another version; nothing
    /// was written. `actual` is the aggregate's current version (its last event's), `None` if
    /// it has no events.
    #[error(
        "aggregate {aggregate_id}: expected {expected}, found {}",
        actual.map_or_else(|| "no events".to_string(), |v| format!("version {v}"))
    )]
    WrongExpectedVersion {
        /// The aggregate appended to.
        aggregate_id: u64,
        /// What the append expected.
        expected: crate::event::ExpectedVersion,
        /// The aggregate's version when the append was checked.
        actual: Option<u64>,
    },

    /// A batch an append was given breaks a rule of that append (for an expected-version
    /// append: it is empty, or not every event belongs to the one aggregate); nothing was
    /// written.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// What is wrong with it.
        reason: String,
    },

    /// A value could not be encoded.
    #[error("cannot encode: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },

    /// A signing or verifier key (signed-note format) could not be read, or does not fit the
    /// use it was given.
    #[error("key: {reason}")]
    Key {
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint could not be read, its signature did not verify, or it does not match
    /// what it was checked against.
    #[error("checkpoint: {reason}")]
    Checkpoint {
        /// What is wrong with it.
        reason: String,
    },

    /// A tile export was refused; nothing a client relies on changed.
    #[error("tile export to `{}`: {reason}", path.display())]
    Export {
        /// The export directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io { op, path: path.into(), source }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
