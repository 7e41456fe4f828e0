//! Chronicle: an embeddable, append-only, segmented log with explicit durability.
#![deny(unsafe_code)]

pub mod error;
mod event;
mod event_log;
#[cfg(feature = "internals")]
pub mod format;
#[cfg(not(feature = "internals"))]
mod format;
mod log;
#[allow(unsafe_code)]
mod segment;

pub use error::{Result, StorageError};
pub use event::{encode_payload, Event, EventBuilder, EventEnvelope};
pub use event_log::{EventLog, EventReplay};
pub use format::FormatError;
pub use log::{
    Log, LogReader, OpenReport, Options, Payload, Record, RecordRef, RecoveryMode, RepairReport,
    Replay, TornTail, VerifyReport, DROPPED_SUFFIX, RECORD_BYTES_MAX_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};
