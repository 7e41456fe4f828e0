//! Chronicle: an embeddable, append-only, segmented log with explicit durability.
//!
//! Use it as a write-ahead log ([`Log`]: byte records) or as an event store ([`EventLog`]:
//! typed [`Event`]s with persisted indexes). Records live in preallocated, memory-mapped
//! segment files; every record has an offset, and replay streams from any offset with flat
//! memory. The on-disk format is specified byte by byte in `FORMAT.md`.
//!
//! ```
//! use chronicle::{Event, EventLog};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut log = EventLog::open(dir.path())?;
//! let placed = Event::builder("order.placed").aggregate_id(42).payload(b"{\"qty\":1}".to_vec()).build();
//! let offset = log.append(&placed)?;          // in the page cache: survives a process crash
//! log.append_sync(&placed)?;                   // on stable storage: survives power loss
//! for envelope in log.replay(offset) {
//!     let envelope = envelope?;
//!     assert_eq!(envelope.event.event_type, "order.placed");
//! }
//! log.close()?;                                // durable and unlocked
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! | call | returns when | survives a process crash | survives power loss |
//! |---|---|---|---|
//! | `append` | the record is in the page cache (copied into the map, no system call; from 16 KiB one `pwritev`) | yes | after the next sync |
//! | `append_sync` | this record and all before it are on stable storage | yes | yes |
//! | `append_batch` | as `append`; after a crash all of the batch or none of it | yes | after the next sync |
//! | `sync` | everything appended so far is on stable storage | yes | yes |
//! | `close` | everything is on stable storage and the directory is unlocked | yes | yes |
//!
//! After a failed sync the writer is poisoned: every later write fails with
//! [`StorageError::Poisoned`] until the log is reopened, because the kernel may have dropped
//! the pages it failed to write.
//!
//! # Recovery
//!
//! Opening a log scans only what was written since the last known durable point. A torn tail
//! (what a crash left of writes no sync acknowledged) is cut and reported in
//! [`OpenReport::torn_tail`]; damage to data that was durable is refused with
//! [`StorageError::Corruption`] naming the segment and offset, unless the caller asks for a
//! repair: [`RecoveryMode::Salvage`] keeps every intact record at its offset and replaces each
//! damaged span with a gap ([`StorageError::Gap`] in replay), [`RecoveryMode::Truncate`] cuts
//! the log at the first damage; both keep the bytes they take out beside the log, and
//! [`Log::plan_repair`] shows what they would do. See `FORMAT.md` for the exact rules.
//!
//! A writer creates a new log only in a directory that does not exist yet (its parent must)
//! or is empty; read-only opens never create anything, and a directory without segment files
//! is [`StorageError::NotALogDirectory`].
//!
//! # Errors
//!
//! Every fallible call returns [`StorageError`]; no input from disk or from a caller panics.
#![deny(unsafe_code)]

#[cfg(feature = "archive")]
pub mod archive;
mod atomic_file;
#[allow(unsafe_code)]
mod cpu;
pub mod error;
mod event;
mod event_follow;
mod event_log;
#[cfg(feature = "internals")]
pub mod format;
#[cfg(not(feature = "internals"))]
mod format;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod log;
pub mod rollup;
mod segment;
mod shared_event_log;
pub mod transparency;

pub use error::{Result, StorageError};
pub use event::{encode_payload, Event, EventBuilder, EventEnvelope, ExpectedVersion};
pub use event_follow::EventFollow;
pub use event_log::{EventLog, EventReplay, IndexedEvents, TimeRangeEvents};
pub use format::FormatError;
pub use index::{
    load_index, save_index, AggregateIndex, IndexOptions, IndexReport, CHECKPOINT_BYTES_DEFAULT,
    INDEX_FILE_NAME, INDEX_MAGIC, INDEX_VERSION,
};
#[cfg(feature = "async")]
pub use log::FollowStream;
pub use log::{
    Consumer, DamagedSpan, Follow, FollowStop, Log, LogReader, Next, OpenReport, Options, Payload,
    Record, RecordRef, RecoveryMode, RepairReport, Replay, RetentionReport, SharedLog, TornTail,
    VerifyReport, CONSUMER_NAME_MAX, DROPPED_SUFFIX, RECORD_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};
pub use shared_event_log::SharedEventLog;
