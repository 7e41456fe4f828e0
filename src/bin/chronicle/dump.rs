//! `chronicle dump`: prints records, raw or decoded as events.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use chronicle::{EventLog, Log};

use crate::output::{event_line, quiet_broken_pipe, record_line, CliResult};

/// Arguments of `chronicle dump`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Start at this offset, which must be a record boundary (default: the first record).
    #[arg(long)]
    from: Option<u64>,
    /// Stop before the first record whose offset is at or after this one.
    #[arg(long)]
    until: Option<u64>,
    /// Print at most this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Decode each record as a typed event.
    #[arg(long)]
    events: bool,
}

/// Runs `chronicle dump`.
pub fn run(args: &Args) -> CliResult {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result =
        if args.events { dump_events(args, &mut out) } else { dump_records(args, &mut out) };
    quiet_broken_pipe(result.and_then(|()| out.flush().map_err(Into::into)))
}

fn dump_records(args: &Args, out: &mut impl Write) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let from = args.from.unwrap_or_else(|| log.start_offset());
    let until = args.until.unwrap_or(u64::MAX);
    let limit = args.limit.unwrap_or(u64::MAX);
    writeln!(out, "{:>14}  {:<24}  {:>8}  first bytes", "offset", "timestamp (UTC)", "length")?;
    let mut replay = log.replay_until(from, until);
    let mut printed = 0u64;
    while printed < limit {
        let Some(record) = replay.next_ref() else {
            break;
        };
        let record = record?;
        writeln!(out, "{}", record_line(record.offset, record.write_timestamp_ms, record.payload))?;
        printed += 1;
    }
    writeln!(out, "{printed} records")?;
    Ok(())
}

fn dump_events(args: &Args, out: &mut impl Write) -> CliResult {
    let log = EventLog::open_read_only(&args.dir)?;
    let from = args.from.unwrap_or_else(|| log.log().start_offset());
    let until = args.until.unwrap_or(u64::MAX);
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    for envelope in log.replay_until(from, until) {
        if printed >= limit {
            break;
        }
        writeln!(out, "{}", event_line(&envelope?))?;
        printed += 1;
    }
    writeln!(out, "{printed} events")?;
    Ok(())
}
