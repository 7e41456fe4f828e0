//! `chronicle replay` (alias `dump`): a log's events, or its raw records, with filters.

use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::path::PathBuf;

use chronicle::{EventEnvelope, EventLog, Record};

use crate::output::{
    event_json, event_line, progress, quiet_broken_pipe, record_json, record_line, CliError,
    CliResult,
};

/// Arguments of `chronicle replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chronicle replay data/orders --aggregate 42\n  \
    chronicle replay data/orders --type order.paid --since-ms 1764892800000 --json\n  \
    chronicle replay data/a --json | chronicle append data/b")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Start at this offset, which must be a record boundary (default: the first record).
    #[arg(long)]
    from: Option<u64>,
    /// Stop before the first record whose offset is at or after this one.
    #[arg(long)]
    until: Option<u64>,
    /// Only events of this aggregate (answered from the aggregate index).
    #[arg(long, value_name = "ID")]
    aggregate: Option<u64>,
    /// Only events of this type (answered from the type index).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only events in this namespace (answered from the namespace index).
    #[arg(long)]
    namespace: Option<String>,
    /// Only events written at or after this time, in milliseconds since the Unix epoch.
    #[arg(long, value_name = "MS")]
    since_ms: Option<u64>,
    /// Only events written before this time, in milliseconds since the Unix epoch.
    #[arg(long, value_name = "MS")]
    until_ms: Option<u64>,
    /// Print at most this many.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per line: an event's fields as `append` reads them, plus `offset`,
    /// `write_timestamp_ms` and `aggregate_version`; a record that is not an event as
    /// `{"offset", "write_timestamp_ms", "len", "payload_hex"}`.
    #[arg(long)]
    json: bool,
    /// Show every record raw, without decoding events.
    #[arg(long, conflicts_with_all = ["aggregate", "event_type", "namespace", "since_ms", "until_ms"])]
    raw: bool,
    /// Accepted for compatibility: events are decoded whenever a record is one.
    #[arg(long, hide = true)]
    events: bool,
}

impl Args {
    fn filtered(&self) -> bool {
        self.aggregate.is_some()
            || self.event_type.is_some()
            || self.namespace.is_some()
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }

    /// Whether an event passes every filter and the offset bounds.
    fn keeps(&self, envelope: &EventEnvelope) -> bool {
        let event = &envelope.event;
        let at = envelope.write_timestamp_ms;
        self.from.is_none_or(|from| envelope.offset >= from)
            && self.until.is_none_or(|until| envelope.offset < until)
            && self.aggregate.is_none_or(|id| event.aggregate_id == Some(id))
            && self.event_type.as_ref().is_none_or(|t| &event.event_type == t)
            && self.namespace.as_ref().is_none_or(|n| &event.namespace == n)
            && self.since_ms.is_none_or(|ms| at >= ms)
            && self.until_ms.is_none_or(|ms| at < ms)
    }
}

/// Runs `chronicle replay`.
pub fn run(args: &Args) -> CliResult {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = replay(args, &mut out);
    quiet_broken_pipe(result.and_then(|()| out.flush().map_err(Into::into)))
}

fn replay(args: &Args, out: &mut impl Write) -> CliResult {
    let log = crate::open::events_read_only(&args.dir)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    // Replaying into a file or a pipe: a counter on the terminal, if there is one.
    let bar = if io::stdout().is_terminal() { None } else { progress("replaying") };
    let mut printer = Printer { json: args.json, out, printed: 0, limit, bar };
    if args.filtered() {
        indexed(args, &log, &mut printer)?;
    } else {
        every_record(args, &log, &mut printer)?;
    }
    if let Some(bar) = printer.bar.take() {
        bar.finish_and_clear();
    }
    if !args.json {
        writeln!(printer.out, "{} shown", printer.printed)?;
    }
    Ok(())
}

/// Every record in the offset range: an event as an event, any other record raw.
fn every_record(args: &Args, log: &EventLog, printer: &mut Printer<'_, impl Write>) -> CliResult {
    let from = args.from.unwrap_or_else(|| log.log().start_offset());
    let mut replay = log.log().replay_until(from, args.until.unwrap_or(u64::MAX));
    while !printer.full() {
        let Some(record) = replay.next() else { break };
        let record = record?;
        let event = if args.raw { None } else { EventEnvelope::from_record(&record).ok() };
        match event {
            Some(envelope) => printer.event(&envelope)?,
            None => printer.record(&record)?,
        }
    }
    Ok(())
}

/// The events that pass the filters, read through the most selective index that applies.
fn indexed(args: &Args, log: &EventLog, printer: &mut Printer<'_, impl Write>) -> CliResult {
    let from = args.from.unwrap_or(0);
    let events: Box<dyn Iterator<Item = chronicle::Result<EventEnvelope>>> =
        match (&args.aggregate, &args.event_type, &args.namespace) {
            (Some(id), _, _) => Box::new(log.aggregate_events_from(*id, from)),
            (None, Some(t), _) => Box::new(log.events_of_type(t, from)),
            (None, None, Some(n)) => Box::new(log.events_in_namespace(n, from)),
            (None, None, None) => Box::new(in_time_range(args, log)),
        };
    for envelope in events {
        if printer.full() {
            break;
        }
        let envelope = envelope?;
        if args.until.is_some_and(|until| envelope.offset >= until) {
            break;
        }
        if args.keeps(&envelope) {
            printer.event(&envelope)?;
        }
    }
    Ok(())
}

/// The events written in the time range, from the first record the time index names for its
/// start; records that are not events are passed over (the time index covers every record).
fn in_time_range<'a>(
    args: &Args,
    log: &'a EventLog,
) -> impl Iterator<Item = chronicle::Result<EventEnvelope>> + 'a {
    let index = log.index();
    let since = args.since_ms.unwrap_or(0);
    let monotonic = index.times_monotonic();
    let start = if monotonic { index.time_scan_start(since) } else { log.log().start_offset() };
    let until_ms = args.until_ms.unwrap_or(u64::MAX);
    log.log()
        .replay(start)
        // Timestamps never decrease in a monotonic log: the first one past the range ends it.
        .take_while(move |record| {
            !monotonic || record.as_ref().map_or(true, |r| r.write_timestamp_ms < until_ms)
        })
        .filter_map(|record| match record {
            Ok(record) => EventEnvelope::from_record(&record).ok().map(Ok),
            Err(err) => Some(Err(err)),
        })
}

/// Prints events and records in the chosen form, up to the limit.
struct Printer<'a, W: Write> {
    json: bool,
    out: &'a mut W,
    printed: u64,
    limit: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl<W: Write> Printer<'_, W> {
    fn full(&self) -> bool {
        self.printed >= self.limit
    }

    fn count(&mut self) {
        self.printed += 1;
        if let (Some(bar), true) = (&self.bar, self.printed.is_multiple_of(4096)) {
            bar.set_message(format!("replayed {}", self.printed));
        }
    }

    fn event(&mut self, envelope: &EventEnvelope) -> Result<(), CliError> {
        if self.json {
            writeln!(self.out, "{}", event_json(envelope))?;
        } else {
            writeln!(self.out, "{}", event_line(envelope))?;
        }
        self.count();
        Ok(())
    }

    fn record(&mut self, record: &Record) -> Result<(), CliError> {
        let (offset, at, payload) = (record.offset, record.write_timestamp_ms, &record.payload);
        if self.json {
            writeln!(self.out, "{}", record_json(offset, at, payload))?;
        } else {
            writeln!(self.out, "{}  (record)", record_line(offset, at, payload))?;
        }
        self.count();
        Ok(())
    }
}
