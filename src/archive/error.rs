//! The archive's error type: what went wrong, and which object, segment or offset it concerns.

use std::path::PathBuf;

use crate::error::StorageError;

/// A failed backup, verification, restore or shipment.
///
/// [`ArchiveError::is_damage`] tells the failures that mean "the backup (or the log) is not
/// what it should be" from those that mean "it could not be reached or used".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The local log refused or failed.
    #[error(transparent)]
    Log(#[from] StorageError),
    /// A local file or directory operation failed.
    #[error("I/O error while trying to {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The URL or the store options are not usable.
    #[error("destination `{url}`: {reason}")]
    Destination {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A request to the object store failed (network, permissions, a missing bucket).
    #[error("object store: cannot {op} `{key}`: {reason}")]
    Store {
        /// `get`, `put`, `create`, `delete` or `list`.
        op: &'static str,
        /// The object's key relative to the backup's root.
        key: String,
        /// The store's error.
        reason: String,
    },
    /// The destination holds no catalog.
    #[error("no backup at `{url}`: it holds no catalog")]
    NoBackup {
        /// The URL.
        url: String,
    },
    /// An object a catalog or manifest names is not in the store.
    #[error("backup object `{key}` is missing (named by `{named_by}`)")]
    Missing {
        /// The missing object's key.
        key: String,
        /// The catalog or manifest that names it.
        named_by: String,
    },
    /// An object is not what it should be: a digest, a length, a link or a field is wrong.
    #[error("backup object `{object}` is damaged: {reason}")]
    Damaged {
        /// The object's key.
        object: String,
        /// What is wrong, with the expected and found values.
        reason: String,
    },
    /// An object of a newer (or unknown) version of the backup format.
    #[error("backup object `{object}` has version {version}, which this build does not read")]
    UnsupportedVersion {
        /// The object's key.
        object: String,
        /// Its version.
        version: u32,
    },
    /// A key that could name something outside the backup or the restore directory.
    #[error("refusing object key {key:?}: {reason}")]
    UnsafeKey {
        /// The key as found.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// Another shipper holds the destination's lease.
    #[error(
        "another shipper holds the lease of this destination: run {owner} (pid {pid} on \
         {host:?}) until {expires_ms} ms since the epoch"
    )]
    Leased {
        /// Its run id.
        owner: String,
        /// Its host.
        host: String,
        /// Its process id.
        pid: u32,
        /// When its lease lapses unless renewed.
        expires_ms: u64,
    },
    /// Another writer published a catalog this one did not expect: shipping stops rather than
    /// interleave with it.
    #[error("conflict at `{key}`: {reason}")]
    Conflict {
        /// The object that was taken.
        key: String,
        /// What happened.
        reason: String,
    },
    /// The local log does not continue the backup (another log, or one repaired or cut back
    /// below what was shipped).
    #[error("the log does not continue the backup: {reason}")]
    Diverged {
        /// What differs.
        reason: String,
    },
    /// A segment of the local log cannot be shipped as it is.
    #[error("segment `{}` at log offset {offset}: {reason}", segment.display())]
    LocalDamage {
        /// The segment file.
        segment: PathBuf,
        /// The logical offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The restore point or target is not usable.
    #[error("cannot restore: {reason}")]
    InvalidRestore {
        /// Why.
        reason: String,
    },
    /// An object could not be encoded.
    #[error("cannot encode a backup object: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
}

impl ArchiveError {
    /// Whether this error reports damage (to the backup or to the local log) rather than a
    /// failure to reach or use something: the CLI exits with 1 for damage and 2 otherwise.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        match self {
            ArchiveError::Missing { .. }
            | ArchiveError::Damaged { .. }
            | ArchiveError::UnsafeKey { .. }
            | ArchiveError::Diverged { .. }
            | ArchiveError::LocalDamage { .. } => true,
            ArchiveError::Log(err) => {
                matches!(err, StorageError::Corruption { .. } | StorageError::BrokenChain { .. })
            }
            _ => false,
        }
    }

    /// The object the error names, if it names one.
    #[must_use]
    pub fn object(&self) -> Option<&str> {
        match self {
            ArchiveError::Missing { key, .. }
            | ArchiveError::Store { key, .. }
            | ArchiveError::UnsafeKey { key, .. }
            | ArchiveError::Conflict { key, .. } => Some(key),
            ArchiveError::Damaged { object, .. }
            | ArchiveError::UnsupportedVersion { object, .. } => Some(object),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchiveError::Io { op, path: path.into(), source }
    }

    pub(crate) fn damaged(object: &str, reason: impl Into<String>) -> Self {
        ArchiveError::Damaged { object: object.to_string(), reason: reason.into() }
    }
}

/// The archive's result type.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;
