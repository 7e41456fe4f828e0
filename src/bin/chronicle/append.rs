//! `chronicle append`: events as JSON lines on standard input, appended to a log.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;

use chronicle::{Event, EventLog};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::output::{CliError, CliResult};
use crate::payload;

/// Arguments of `chronicle append`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Each line is one event, e.g.\n  \
    {\"event_type\":\"order.placed\",\"aggregate_id\":42,\"payload\":{\"qty\":1}}\n\
Fields: event_type (required), namespace (default \"default\"), schema_id (default \"\"),\n\
schema_version (default 1), aggregate_id, and at most one of payload (any JSON value, stored\n\
as MessagePack), payload_text (stored as UTF-8) and payload_base64 (raw bytes). offset,\n\
write_timestamp_ms and aggregate_version, which `replay --json` prints, are accepted and\n\
ignored: the log assigns them.\n\n\
Examples:\n  \
    echo '{\"event_type\":\"ping\"}' | chronicle append data/events --sync\n  \
    chronicle replay data/a --json | chronicle append data/b --batch --sync")]
pub struct Args {
    /// The log directory (created if it does not exist or is empty).
    dir: PathBuf,
    /// Make the events durable before exiting (one sync at the end).
    #[arg(long)]
    sync: bool,
    /// Append the whole input as one atomic batch: nothing is appended if any line is bad.
    #[arg(long)]
    batch: bool,
}

/// One input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    event_type: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    schema_id: String,
    #[serde(default = "default_schema_version")]
    schema_version: u32,
    #[serde(default)]
    aggregate_id: Option<u64>,
    /// Present (even as `null`) or absent, told apart.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Value>,
    #[serde(default)]
    payload_text: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    // Assigned by the log; accepted so that `replay --json` output can be appended as it is.
    #[serde(default, rename = "offset")]
    _offset: Option<u64>,
    #[serde(default, rename = "write_timestamp_ms")]
    _write_timestamp_ms: Option<u64>,
    #[serde(default, rename = "aggregate_version")]
    _aggregate_version: Option<u64>,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_schema_version() -> u32 {
    1
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Parses line `number` (counting from 1) into an event.
fn parse(number: usize, line: &str) -> Result<Event, CliError> {
    let bad = |column: usize, reason: String| {
        CliError::Input(format!("line {number}, column {column}: {reason}"))
    };
    let parsed: EventLine = serde_json::from_str(line).map_err(|err| {
        // serde_json's message ends with its own position, given here as line and column.
        let message = err.to_string();
        let message = message.split(" at line ").next().unwrap_or_default().to_string();
        bad(err.column(), message)
    })?;
    let payload = payload::from_json(
        parsed.payload.as_ref(),
        parsed.payload_text.as_deref(),
        parsed.payload_base64.as_deref(),
    )
    .map_err(|reason| bad(1, reason))?;
    Ok(Event {
        event_type: parsed.event_type,
        namespace: parsed.namespace,
        schema_id: parsed.schema_id,
        schema_version: parsed.schema_version,
        aggregate_id: parsed.aggregate_id,
        payload,
    })
}

/// Runs `chronicle append`.
pub fn run(args: &Args) -> CliResult {
    let stdin = io::stdin();
    run_on(args, stdin.lock())
}

fn run_on(args: &Args, input: impl BufRead) -> CliResult {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.batch {
        // Every line is parsed before the log is opened: a bad one appends nothing.
        let mut events = Vec::new();
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|err| CliError::Input(format!("line {}: {err}", i + 1)))?;
            if !line.trim().is_empty() {
                events.push(parse(i + 1, &line)?);
            }
        }
        let mut log = crate::open::events(&args.dir)?;
        let offsets =
            if args.sync { log.append_batch_sync(&events)? } else { log.append_batch(&events)? };
        for offset in offsets {
            writeln!(out, "{offset}")?;
        }
        out.flush()?;
        return Ok(log.close()?);
    }
    let mut log = crate::open::events(&args.dir)?;
    let appended = append_lines(&mut log, input, &mut out);
    // What was appended before a bad line stays, and is made durable if asked.
    let synced = if args.sync { log.sync().map_err(CliError::from) } else { Ok(()) };
    let closed = log.close().map_err(CliError::from);
    out.flush()?;
    appended.and(synced).and(closed)
}

fn append_lines(log: &mut EventLog, input: impl BufRead, out: &mut impl Write) -> CliResult {
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|err| CliError::Input(format!("line {}: {err}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let offset = log.append(&parse(i + 1, &line)?)?;
        writeln!(out, "{offset}")?;
    }
    Ok(())
}
