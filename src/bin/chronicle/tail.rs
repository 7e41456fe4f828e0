//! `chronicle tail`: prints the last records of a log, or follows it as it grows.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use chronicle::{EventEnvelope, Log, Next, Record};

use crate::output::{
    event_json, event_line, quiet_broken_pipe, record_json, record_line, CliResult,
};

/// Arguments of `chronicle tail`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  chronicle tail data/orders -n 20\n  \
    chronicle tail data/orders --follow --events --json")]
pub struct Args {
    /// The log directory (opened read-only; another process may be writing it).
    dir: PathBuf,
    /// Keep printing records as they are appended, until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Start at this offset, a record boundary, instead of the last records.
    #[arg(long)]
    from: Option<u64>,
    /// How many of the last records to print when --from is not given.
    #[arg(long, short = 'n', default_value_t = 10)]
    lines: usize,
    /// Decode each record as a typed event.
    #[arg(long)]
    events: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle tail`.
pub fn run(args: &Args) -> CliResult {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    quiet_broken_pipe(tail(args, &mut out))
}

fn tail(args: &Args, out: &mut impl Write) -> CliResult {
    let log = crate::open::read_only(&args.dir)?;
    let from = match args.from {
        Some(from) => from,
        None => start_of_last(&log, args.lines)?,
    };
    let mut follow = log.follow(from);
    let wait = if args.follow { Duration::from_secs(3600) } else { Duration::ZERO };
    loop {
        match follow.next_timeout(wait) {
            Next::Record(record) => print_record(args, &record, out)?,
            Next::Error(err @ chronicle::StorageError::Gap { .. }) => {
                out.flush()?;
                eprintln!("warning: {err}");
            }
            Next::Error(err) => return Err(err.into()),
            Next::CaughtUp | Next::TimedOut => {
                out.flush()?;
                if !args.follow {
                    return Ok(());
                }
            }
            Next::Stopped => return Ok(()),
        }
    }
}

/// The offset of the `count`-th last record (the end for 0), by one pass over the offsets.
fn start_of_last(log: &Log, count: usize) -> Result<u64, chronicle::StorageError> {
    let mut last = VecDeque::with_capacity(count + 1);
    let mut replay = log.replay(log.start_offset());
    while let Some(record) = replay.next_ref() {
        match record {
            Ok(record) => last.push_back(record.offset),
            Err(chronicle::StorageError::Gap { .. }) => continue,
            Err(err) => return Err(err),
        }
        if last.len() > count {
            last.pop_front();
        }
    }
    Ok(last.front().copied().unwrap_or_else(|| log.end_offset()))
}

fn print_record(args: &Args, record: &Record, out: &mut impl Write) -> CliResult {
    if !args.events {
        if args.json {
            let line = record_json(record.offset, record.write_timestamp_ms, &record.payload);
            writeln!(out, "{line}")?;
        } else {
            let line = record_line(record.offset, record.write_timestamp_ms, &record.payload);
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let envelope = EventEnvelope::from_record(record)?;
    if args.json {
        writeln!(out, "{}", event_json(&envelope))?;
    } else {
        writeln!(out, "{}", event_line(&envelope))?;
    }
    Ok(())
}
