//! Backups, restore and continuous shipping of a log to object storage (the `archive`
//! feature).
//!
//! A backup is a set of objects under one URL (`file://`, `s3://`, `gs://` and
//! `az://`; a plain path is a local directory): the
//! segments' bytes, one manifest per segment (its offsets, entries, SHA-256, the tree head at
//! its end, and the hash of the previous segment's manifest), and a catalog that lists the
//! manifests. `FORMAT.md` section 15 specifies every object.
//!
//! ```no_run
//! use chronicle::archive::{self, BackupOptions, RestoreOptions, RestorePoint};
//! use chronicle::Log;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Log::open_read_only("data/orders")?;
//! let shipped = archive::backup(&log, "s3://backups/orders", BackupOptions::default())?;
//! println!("backed up to offset {}", shipped.end_offset);
//!
//! let check = archive::verify_backup("s3://backups/orders", &[])?;
//! assert!(check.problems.is_empty());
//!
//! let options = RestoreOptions { point: RestorePoint::Offset(4096), ..RestoreOptions::default() };
//! archive::restore("s3://backups/orders", "data/orders-restored", &options)?;
//! # Ok(())
//! # }
//! ```
//!
//! **Incremental.** A backup ships only what the destination lacks: sealed segments not yet
//! there, then the durable part of the active one (only bytes on stable storage are shipped).
//! A segment is shipped as its header and data up to its last frame, never the preallocated
//! zeros after it; a segment that grows is shipped as pieces (new bytes only), stored again as
//! one piece when it has [`BackupOptions::pieces_max`].
//!
//! **Atomic.** Objects are written once, under keys no other run uses, and a new catalog, the
//! only object that names them, is written last under the next sequence number, with a
//! conditional put that fails if that number is taken. A crash leaves the previous catalog in
//! force and, at worst, objects nothing names.
//!
//! **Fail closed.** Restore and [`verify_backup`] check every digest, link, frame and tree
//! head before they use a byte, and name the object that fails.
//!
//! **One writer.** A backup or [`Shipper`] holds the destination's lease (`lease.json`, a
//! conditional put) while it writes; a second one is refused with [`ArchiveError::Leased`].
//!
//! All calls are synchronous: each runs its requests on a current-thread tokio runtime of its
//! own, and must not be called from inside an async runtime.

mod check;
mod error;
mod format;
mod lease;
mod restore;
mod scan;
mod ship;
mod store;
mod verify;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use error::{ArchiveError, Result};
pub use format::{Codec, OBJECT_VERSION};
pub use ship::Shipper;

use crate::rollup::TreeHead;
use crate::Log;

/// Options of a backup or a shipper.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Store segment pieces compressed with zstd at this level (1 to 22), with the SHA-256 of
    /// both forms in the manifest; `None` stores them as they are. Default: `None`.
    pub zstd_level: Option<i32>,
    /// Configuration of the object store, as `object_store` keys (`aws_endpoint`,
    /// `aws_access_key_id`, `aws_region`, `aws_allow_http`, …); see [`store_options_from_env`].
    /// Default: none.
    pub store_options: Vec<(String, String)>,
    /// Pieces a growing segment may be stored in; the next shipment of it stores its whole
    /// shipped part again as one piece. Default 8, minimum 1.
    pub pieces_max: usize,
    /// How long the destination's lease lasts unless renewed (each round renews it once a third
    /// of this has passed). Default 30 s, minimum 1 s.
    pub lease_duration: Duration,
    /// Within one round (a first backup, say), publish a catalog after each sealed segment
    /// once this many bytes were shipped since the last one, so that a crash loses at most
    /// about this much work. Default 1 GiB.
    pub catalog_every_bytes: u64,
    /// A consumer (`Log::consumer`) whose position is set to the end of what the destination
    /// holds after each round that publishes a catalog, so that retention, which keeps what a
    /// registered consumer has not passed, never removes a segment before it is shipped.
    /// Default: none.
    pub consumer: Option<String>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            zstd_level: None,
            store_options: Vec::new(),
            pieces_max: 8,
            lease_duration: Duration::from_secs(30),
            catalog_every_bytes: 1 << 30,
            consumer: None,
        }
    }
}

impl BackupOptions {
    fn check(&self) -> Result<()> {
        let invalid =
            |reason: String| ArchiveError::Log(crate::StorageError::InvalidOptions { reason });
        if self.zstd_level.is_some_and(|level| !(1..=22).contains(&level)) {
            return Err(invalid("zstd_level must be from 1 to 22".into()));
        }
        if self.pieces_max == 0 {
            return Err(invalid("pieces_max must be at least 1".into()));
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(invalid("lease_duration must be at least 1 s".into()));
        }
        Ok(())
    }
}

/// What one backup, or one round of a [`Shipper`], did. Everything it counts is durable in
/// the store when it is returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShipReport {
    /// The run id of the backup or shipper.
    pub run_id: String,
    /// Segments (or growing parts of one) shipped.
    pub segments_shipped: u64,
    /// Records shipped.
    pub records_shipped: u64,
    /// Bytes of segment images shipped (before compression).
    pub bytes_shipped: u64,
    /// Bytes written to the store (pieces as stored, and manifests).
    pub bytes_stored: u64,
    /// Objects written, catalog not included.
    pub objects_written: u64,
    /// Catalogs published (0 if there was nothing new; more than 1 for a round longer than
    /// [`BackupOptions::catalog_every_bytes`]).
    pub catalogs_published: u64,
    /// The sequence number of the catalog in force.
    pub catalog_seq: Option<u64>,
    /// The offset the backup now reaches.
    pub end_offset: u64,
    /// The tree head at that offset.
    pub head: Option<TreeHead>,
}

/// One problem [`verify_backup`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object's key (empty if the problem concerns no single object).
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify_backup`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupCheck {
    /// The key of the catalog checked (the latest).
    pub catalog: Option<String>,
    /// Its sequence number.
    pub catalog_seq: Option<u64>,
    /// Segments it lists.
    pub segments: usize,
    /// Records in the segments that passed.
    pub records: u64,
    /// The offset the backup reaches.
    pub end_offset: u64,
    /// The tree head the catalog records.
    pub head: Option<TreeHead>,
    /// Objects read.
    pub objects_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Everything wrong, each naming its object. Empty for a sound backup.
    pub problems: Vec<Problem>,
    /// Manifests and pieces no manifest of the latest catalog names: left by a crash, or kept
    /// for readers of the previous catalog. Not a problem.
    pub unreferenced: Vec<String>,
}

/// Which prefix of the backed-up log to restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestorePoint {
    /// Everything the latest catalog holds.
    #[default]
    Latest,
    /// The records at offsets below this one (a batch it cuts through is left out whole).
    Offset(u64),
    /// The records written at or before this time (milliseconds since the Unix epoch), up to
    /// the first that was not (and the rest of its batch left out).
    Time(u64),
}

/// Options of [`restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The point to restore to. Default: [`RestorePoint::Latest`].
    pub point: RestorePoint,
    /// Configuration of the object store, as for [`BackupOptions::store_options`].
    pub store_options: Vec<(String, String)>,
    /// Open the restored log before returning and check its end and tree head against the
    /// backup's. Default: `true`.
    pub check_log: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { point: RestorePoint::Latest, store_options: Vec::new(), check_log: true }
    }
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The catalog restored from.
    pub catalog_seq: u64,
    /// Segment files written.
    pub segments: u64,
    /// The restored log's first offset.
    pub start_offset: u64,
    /// The restored log's end offset.
    pub end_offset: u64,
    /// The tree index of its first record in the original log.
    pub first_entry: u64,
    /// The tree head at the point restored, computed from the restored records.
    pub head: TreeHead,
    /// Objects read from the store (catalog, manifests, pieces).
    pub objects_read: u64,
    /// Bytes of pieces read.
    pub bytes_read: u64,
    /// Whether the restored log was opened and its tree head compared with `head` (not when the
    /// backup starts after the log's first entry: the restored log counts its tree from its own
    /// first record).
    pub log_checked: bool,
}

/// Backs `log` up to `url`: ships what the destination lacks and publishes a new catalog,
/// holding the destination's lease meanwhile. `log` may be a writer's or a read-only handle.
///
/// # Errors
/// As [`Shipper::new`] and [`Shipper::ship`].
pub fn backup(log: &Log, url: &str, options: BackupOptions) -> Result<ShipReport> {
    let mut shipper = Shipper::new(url, options)?;
    let shipped = shipper.ship(log);
    let released = shipper.release();
    let report = shipped?;
    released?;
    Ok(report)
}

/// Checks the backup at `url` without restoring it: the latest catalog, every manifest, piece
/// and frame it names, the hash chain and the tree heads. Damage is reported in
/// [`BackupCheck::problems`], each naming its object.
///
/// # Errors
/// [`ArchiveError::NoBackup`] if there is no catalog; store errors (the store cannot be used).
pub fn verify_backup(url: &str, store_options: &[(String, String)]) -> Result<BackupCheck> {
    verify::verify(url, store_options)
}

/// Restores the backup at `url` into the directory `target`, which must not exist (its parent
/// must) or be empty, up to [`RestoreOptions::point`]. Reads the catalog, the manifests of the
/// segments up to the point and their pieces, nothing else, and checks each before it writes a
/// byte of it; the log is built in a directory beside `target` and renamed to it at the end, so
/// a failed restore leaves nothing at `target`. The restored directory opens with `Log::open`
/// and `EventLog::open` (which rebuilds the index).
///
/// # Errors
/// [`ArchiveError::Damaged`], [`ArchiveError::Missing`], [`ArchiveError::UnsafeKey`] or
/// [`ArchiveError::UnsupportedVersion`] naming the object that fails;
/// [`ArchiveError::InvalidRestore`] for a point outside the backup or a non-empty target;
/// [`ArchiveError::NoBackup`]; store and I/O errors.
pub fn restore(
    url: &str,
    target: impl AsRef<Path>,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    restore::restore(url, target.as_ref(), options)
}

/// The store options found in the environment: every variable whose name starts with `AWS_`,
/// `GOOGLE_` or `AZURE_`, lowercased, as `object_store`'s builders read them
/// (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, …).
#[must_use]
pub fn store_options_from_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
