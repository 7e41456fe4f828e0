//! How the commands open a log: always with read checks (`Options::read_checks`), so that a
//! disk read error under a segment's map is reported as an error naming the segment and the
//! bytes, not a `SIGBUS` that kills the command. A command is often what someone runs on a
//! log they suspect; replay pays 3–23 % for it.

use std::path::Path;

use chronicle::{EventLog, Log, Options, Result};

/// The options every command opens a log with, before its own.
pub fn options() -> Options {
    Options { read_checks: true, ..Options::default() }
}

/// The log in `dir`, read-only.
pub fn read_only(dir: impl AsRef<Path>) -> Result<Log> {
    Log::open_read_only_with(dir, options())
}

/// The event log in `dir`, read-only.
pub fn events_read_only(dir: impl AsRef<Path>) -> Result<EventLog> {
    EventLog::open_read_only_with(dir, options())
}

/// The log in `dir`, for writing.
pub fn writer(dir: impl AsRef<Path>) -> Result<Log> {
    Log::open_with(dir, options())
}

/// The event log in `dir`, for writing.
pub fn events(dir: impl AsRef<Path>) -> Result<EventLog> {
    EventLog::open_with(dir, options())
}
