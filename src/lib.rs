//! Chronicle: an embeddable, append-only, segmented log with explicit durability.
#![deny(unsafe_code)]

mod atomic_file;
pub mod error;
mod event;
mod event_log;
#[cfg(feature = "internals")]
pub mod format;
#[cfg(not(feature = "internals"))]
mod format;
#[doc(hidden)] pub mod fuzzing;
mod index;
mod log;
#[allow(unsafe_code)]
mod segment;

pub use error::{Result, StorageError};
pub use event::{encode_payload, Event, EventBuilder, EventEnvelope};
pub use event_log::{EventLog, EventReplay, IndexedEvents, TimeRangeEvents};
pub use format::FormatError;
pub use index::{
    load_index, save_index, AggregateIndex, IndexOptions, IndexReport, CHECKPOINT_BYTES_DEFAULT,
    INDEX_FILE_NAME, INDEX_MAGIC, INDEX_VERSION,
};
pub use log::{
    Log, LogReader, OpenReport, Options, Payload, Record, RecordRef, RecoveryMode, RepairReport,
    Replay, TornTail, VerifyReport, DROPPED_SUFFIX, RECORD_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};
