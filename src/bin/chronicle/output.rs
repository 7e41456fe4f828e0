//! What the subcommands share: the tool's error type and the formatting of reports, bytes
//! and times. Nothing here reads a log.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use chronicle::{EventEnvelope, OpenReport, StorageError};

/// Why a subcommand failed.
#[derive(Debug)]
pub enum CliError {
    /// The library refused or failed.
    Storage(StorageError),
    /// Writing the output failed (other than the reader going away).
    Output(io::Error),
    /// A check made by the tool itself failed, e.g. the demo's replay did not match.
    Failed(String),
    /// The input or the arguments are wrong (a malformed line of `append`, say).
    Input(String),
}

impl CliError {
    /// The exit status for this error: 1 when the log has a problem (damage found, a check
    /// failed), 2 when it could not be used at all (usage, access, bad input), as `verify`
    /// documents for every subcommand.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Storage(
                StorageError::Corruption { .. }
                | StorageError::BrokenChain { .. }
                | StorageError::Gap { .. }
                | StorageError::IndexLost { .. },
            )
            | CliError::Failed(_) => 1,
            CliError::Storage(_) | CliError::Output(_) | CliError::Input(_) => 2,
        }
    }
}

/// A spinner with a message on standard error, if standard error is a terminal (never in
/// pipes, files or tests): for steps that may take more than a second.
pub fn progress(message: &'static str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Storage(err) => err.fmt(f),
            CliError::Output(err) => write!(f, "cannot write output: {err}"),
            CliError::Failed(msg) | CliError::Input(msg) => f.write_str(msg),
        }
    }
}

impl From<StorageError> for CliError {
    fn from(err: StorageError) -> Self {
        CliError::Storage(err)
    }
}

impl From<io::Error> for CliError {
    fn from(err: io::Error) -> Self {
        CliError::Output(err)
    }
}

/// The result of a subcommand.
pub type CliResult = Result<(), CliError>;

/// Treats a closed output pipe (`chronicle dump … | head`) as a normal end.
pub fn quiet_broken_pipe(result: CliResult) -> CliResult {
    match result {
        Err(CliError::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Up to `max` leading bytes as lowercase hex, with `…` when there are more.
/// Payload bytes shown at the end of a record's or an event's line.
pub const HEX_BYTES: usize = 16;

/// A record as `dump` and `tail` print it: offset, time, length, first bytes.
pub fn record_line(offset: u64, write_timestamp_ms: u64, payload: &[u8]) -> String {
    format!(
        "{:>14}  {:<24}  {:>8}  {}",
        offset,
        utc_timestamp(write_timestamp_ms),
        payload.len(),
        hex_prefix(payload, HEX_BYTES)
    )
}

/// An event as `replay` and `tail --events` print it in a table: its aggregate as `id@version`.
pub fn event_line(envelope: &EventEnvelope) -> String {
    let event = &envelope.event;
    let aggregate = match (event.aggregate_id, envelope.aggregate_version) {
        (Some(id), Some(version)) => format!("{id}@{version}"),
        (Some(id), None) => id.to_string(),
        (None, _) => "-".to_string(),
    };
    format!(
        "{:>14}  {}  type={} namespace={} schema={}@{} aggregate={} payload={}",
        envelope.offset,
        utc_timestamp(envelope.write_timestamp_ms),
        event.event_type,
        event.namespace,
        event.schema_id,
        event.schema_version,
        aggregate,
        crate::payload::table_cell(&event.payload)
    )
}

/// An event as one JSON object: the fields `append` reads, plus what the log assigned.
pub fn event_json(envelope: &EventEnvelope) -> serde_json::Value {
    let event = &envelope.event;
    let mut object = serde_json::Map::new();
    object.insert("offset".into(), envelope.offset.into());
    object.insert("write_timestamp_ms".into(), envelope.write_timestamp_ms.into());
    object.insert("event_type".into(), event.event_type.clone().into());
    object.insert("namespace".into(), event.namespace.clone().into());
    object.insert("schema_id".into(), event.schema_id.clone().into());
    object.insert("schema_version".into(), event.schema_version.into());
    object.insert("aggregate_id".into(), event.aggregate_id.into());
    if let Some(version) = envelope.aggregate_version {
        object.insert("aggregate_version".into(), version.into());
    }
    crate::payload::put_json(&mut object, &event.payload);
    serde_json::Value::Object(object)
}

/// A raw record as one JSON object (`tail --json`; `replay --json` for records that are not
/// events).
pub fn record_json(offset: u64, write_timestamp_ms: u64, payload: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "offset": offset,
        "write_timestamp_ms": write_timestamp_ms,
        "len": payload.len(),
        "payload_hex": hex::encode(payload),
    })
}

pub fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(max * 2 + 3);
    for byte in bytes.iter().take(max) {
        out.push_str(&format!("{byte:02x}"));
    }
    if bytes.len() > max {
        out.push('…');
    }
    out
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn utc_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A byte count with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration in the unit that reads best.
pub fn duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// `count / elapsed` per second, guarding against a zero elapsed time.
pub fn per_second(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

/// Prints what a log's open found and did.
pub fn write_open_report(out: &mut impl Write, report: &OpenReport) -> io::Result<()> {
    writeln!(out, "open report:")?;
    writeln!(out, "  segments:            {}", report.segments)?;
    writeln!(out, "  created:             {}", report.created)?;
    writeln!(out, "  records scanned:     {}", report.records_scanned)?;
    writeln!(
        out,
        "  bytes scanned:       {} ({})",
        report.bytes_scanned,
        bytes(report.bytes_scanned)
    )?;
    writeln!(out, "  end offset:          {}", report.end_offset)?;
    writeln!(out, "  temp files removed:  {}", report.temp_files_removed)?;
    match &report.torn_tail {
        Some(torn) => {
            writeln!(
                out,
                "  torn tail:           {} bytes cut at offset {} ({} intact frames dropped)",
                torn.bytes, torn.offset, torn.frames_dropped
            )?;
            for path in &torn.segments_dropped {
                writeln!(out, "  segment set aside:   {}", path.display())?;
            }
        }
        None => writeln!(out, "  torn tail:           none")?,
    }
    if report.merkle_pages_dropped > 0 {
        writeln!(
            out,
            "  merkle pages:        {} level-0 pages over lost or repaired records dropped",
            report.merkle_pages_dropped
        )?;
    }
    match &report.repair {
        Some(repair) if repair.damage_found() => {
            writeln!(out, "  repair:              {} damaged spans", repair.damaged.len())?;
            for span in &repair.damaged {
                writeln!(
                    out,
                    "  damaged:             [{}, {}): {}",
                    span.start, span.end, span.reason
                )?;
            }
        }
        _ => writeln!(out, "  repair:              none")?,
    }
    Ok(())
}
