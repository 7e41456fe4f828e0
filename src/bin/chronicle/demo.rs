//! `chronicle demo`: appends typed events with each durability level, reopens, replays and
//! verifies everything, and prints what it measured.
//!
//! The check is end to end: a checksum over every event's type, namespace, aggregate id and
//! payload is computed while appending and again while replaying after a reopen; the counts,
//! the first and last offsets, and the order of offsets must match too.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chronicle::{Event, EventLog};

use crate::demo_tour;
use crate::output::{bytes, duration, per_second, write_open_report, CliError, CliResult};

/// Payload bytes of each demo event.
const PAYLOAD_BYTES: usize = 100;
/// Batches appended after the synced events.
const BATCH_COUNT: u64 = 10;
/// Events per batch.
const BATCH_EVENTS: u64 = 100;
/// Distinct aggregates the events are spread over.
const AGGREGATE_COUNT: u64 = 10_000;

/// Arguments of `chronicle demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  chronicle demo\n  chronicle demo --dir /tmp/demo-log")]
pub struct Args {
    /// Log directory to use (default: a temporary directory, removed afterwards). An existing
    /// log is appended to; only the demo's own events are verified.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events appended with buffered `append`.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events appended with `append_sync`, each durable before the next.
    #[arg(long, default_value_t = 1000)]
    synced: u64,
}

/// Runs `chronicle demo`.
pub fn run(args: &Args) -> CliResult {
    let temp;
    let dir: &Path = match &args.dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().map_err(|e| {
                CliError::Failed(format!("cannot create a temporary directory: {e}"))
            })?;
            temp.path()
        }
    };
    Demo::new(dir).run(args)
}

/// The events the demo writes, and the running checksum over them.
struct Generator {
    templates: Vec<Event>,
    rng: u64,
}

impl Generator {
    fn new() -> Generator {
        let kinds = [
            ("order.placed", "shop", "order", true),
            ("order.paid", "shop", "payment", true),
            ("order.shipped", "shipping", "shipment", true),
            ("customer.seen", "accounts", "visit", false),
        ];
        let templates = kinds
            .iter()
            .map(|&(event_type, namespace, schema, _)| {
                Event::builder(event_type)
                    .namespace(namespace)
                    .schema(schema, 1)
                    .payload(vec![0u8; PAYLOAD_BYTES])
                    .build()
            })
            .collect();
        Generator { templates, rng: 0x9E37_79B9_7F4A_7C15 }
    }

    /// The event most recently filled in for number `i`.
    fn current(&self, i: u64) -> &Event {
        &self.templates[usize::try_from(i % 4).unwrap_or(0)]
    }

    /// Fills in event number `i` and returns it; deterministic in `i` and the call order.
    fn event(&mut self, i: u64) -> &Event {
        let kind = usize::try_from(i % 4).unwrap_or(0);
        let aggregate = (kind != 3).then_some(i / 4 % AGGREGATE_COUNT);
        let mut rng = self.rng;
        let event = &mut self.templates[kind];
        event.aggregate_id = aggregate;
        for chunk in event.payload.chunks_mut(8) {
            // xorshift64: cheap, deterministic, incompressible-looking bytes.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let word = rng.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.rng = rng;
        event
    }
}

/// Counts events and checksums their type, namespace, aggregate id and payload, in order.
#[derive(Clone)]
struct Tally {
    hasher: crc32fast::Hasher,
    count: u64,
    payload_bytes: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hasher: crc32fast::Hasher::new(),
            count: 0,
            payload_bytes: 0,
            first_offset: None,
            last_offset: None,
        }
    }

    fn add(&mut self, event: &Event, offset: u64) {
        self.hasher.update(event.event_type.as_bytes());
        self.hasher.update(event.namespace.as_bytes());
        match event.aggregate_id {
            Some(id) => {
                self.hasher.update(&[1]);
                self.hasher.update(&id.to_le_bytes());
            }
            None => self.hasher.update(&[0]),
        }
        self.hasher.update(&event.payload);
        self.count += 1;
        self.payload_bytes += event.payload.len() as u64;
        self.first_offset.get_or_insert(offset);
        self.last_offset = Some(offset);
    }

    fn checksum(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

struct Demo<'a> {
    dir: &'a Path,
    generator: Generator,
    tally: Tally,
    /// What the demo measured, printed as a table at the end.
    rows: Vec<demo_tour::Row>,
}

impl<'a> Demo<'a> {
    fn new(dir: &'a Path) -> Demo<'a> {
        Demo { dir, generator: Generator::new(), tally: Tally::new(), rows: Vec::new() }
    }

    fn run(mut self, args: &Args) -> CliResult {
        println!("chronicle demo in {}", self.dir.display());
        let mut log = EventLog::open(self.dir)?;
        let start = log.end_offset();
        let mut i = 0u64;

        // Buffered appends: in the page cache on return, no system call per event.
        progress(&format!("appending {} events with append (buffered)", args.events));
        let began = Instant::now();
        for _ in 0..args.events {
            let offset = log.append(self.generator.event(i))?;
            self.tally.add(self.generator.current(i), offset);
            i += 1;
        }
        let buffered = began.elapsed();
        let buffered_bytes = log.end_offset() - start;
        self.rows.push((
            "append (buffered)".into(),
            format!("{:.0} events/s", per_second(args.events as f64, buffered)),
        ));
        let began = Instant::now();
        log.sync()?;
        let sync_time = began.elapsed();
        println!(
            "  {} events in {}: {:.0} events/s, {:.1} MB/s of log ({}); sync() took {}",
            args.events,
            duration(buffered),
            per_second(args.events as f64, buffered),
            per_second(buffered_bytes as f64, buffered) / 1e6,
            bytes(buffered_bytes),
            duration(sync_time)
        );

        // Synced appends: each durable (msync of its range) before the call returns.
        progress(&format!("appending {} events with append_sync", args.synced));
        let mut latencies = Vec::with_capacity(usize::try_from(args.synced).unwrap_or(0));
        let began = Instant::now();
        for _ in 0..args.synced {
            let call = Instant::now();
            let offset = log.append_sync(self.generator.event(i))?;
            latencies.push(call.elapsed());
            self.tally.add(self.generator.current(i), offset);
            i += 1;
        }
        let synced = began.elapsed();
        if !latencies.is_empty() {
            latencies.sort_unstable();
            println!(
                "  {} events in {}: {:.0} events/s; latency per call median {}, p99 {}, max {}",
                args.synced,
                duration(synced),
                per_second(args.synced as f64, synced),
                duration(percentile(&latencies, 50)),
                duration(percentile(&latencies, 99)),
                duration(latencies.last().copied().unwrap_or_default())
            );
            self.rows.push((
                "append_sync latency (median, p99)".into(),
                format!(
                    "{}, {}",
                    duration(percentile(&latencies, 50)),
                    duration(percentile(&latencies, 99))
                ),
            ));
        }

        // Batches: all or nothing after a crash.
        progress(&format!(
            "appending {BATCH_COUNT} batches of {BATCH_EVENTS} events with append_batch + sync"
        ));
        let began = Instant::now();
        for _ in 0..BATCH_COUNT {
            let batch: Vec<Event> =
                (0..BATCH_EVENTS).map(|k| self.generator.event(i + k).clone()).collect();
            let offsets = log.append_batch(&batch)?;
            if offsets.len() != batch.len() {
                return Err(CliError::Failed(format!(
                    "append_batch returned {} offsets for {} events",
                    offsets.len(),
                    batch.len()
                )));
            }
            for (event, offset) in batch.iter().zip(offsets) {
                self.tally.add(event, offset);
            }
            i += BATCH_EVENTS;
        }
        log.sync()?;
        println!("  done in {}", duration(began.elapsed()));

        let end = log.end_offset();
        progress("closing");
        log.close()?;

        progress("reopening");
        let began = Instant::now();
        let log = EventLog::open(self.dir)?;
        let reopen = began.elapsed();
        println!("  reopened in {}", duration(reopen));
        let mut stdout = io::stdout().lock();
        write_open_report(&mut stdout, log.open_report())?;
        drop(stdout);
        if log.end_offset() != end {
            return Err(CliError::Failed(format!(
                "reopened log ends at offset {}, but it ended at {end} when closed",
                log.end_offset()
            )));
        }
        if let Some(torn) = &log.open_report().torn_tail {
            return Err(CliError::Failed(format!(
                "a cleanly closed log reopened with a torn tail: {torn:?}"
            )));
        }

        progress("replaying and verifying every event");
        let began = Instant::now();
        let found = replay_tally(&log, start)?;
        let replay = began.elapsed();
        println!(
            "  {} events in {}: {:.0} events/s, {:.1} MB/s of log",
            found.count,
            duration(replay),
            per_second(found.count as f64, replay),
            per_second((end - start) as f64, replay) / 1e6
        );
        self.compare(&found)?;
        println!(
            "verified: {} events ({} of payload), checksum {:#010x}, offsets {}..{}",
            found.count,
            bytes(found.payload_bytes),
            found.checksum(),
            start,
            end
        );
        self.rows.push((
            "replay".into(),
            format!("{:.0} events/s", per_second(found.count as f64, replay)),
        ));
        self.rows.push(("reopen after a clean close".into(), duration(reopen)));
        self.tour(log, found.first_offset.unwrap_or(start))
    }

    /// The capabilities beyond appending and replaying, each checked (`demo_tour.rs`).
    fn tour(mut self, log: EventLog, some_offset: u64) -> CliResult {
        let rows = &mut self.rows;
        demo_tour::aggregate_query(&log, 0, rows)?;
        demo_tour::proof(&log, some_offset, rows)?;
        let mut log = log;
        let live: Vec<Event> = (0..500).map(|k| self.generator.event(k).clone()).collect();
        demo_tour::follow(&mut log, &live, rows)?;
        let log = demo_tour::many_writers(log, rows)?;
        log.close()?;
        demo_tour::print_table(&self.rows);
        Ok(())
    }

    fn compare(&self, found: &Tally) -> CliResult {
        let expected = &self.tally;
        let mismatch = |what: &str, want: String, got: String| {
            Err(CliError::Failed(format!(
                "verification failed: {what}: appended {want}, replayed {got}"
            )))
        };
        if found.count != expected.count {
            return mismatch("event count", expected.count.to_string(), found.count.to_string());
        }
        if found.first_offset != expected.first_offset || found.last_offset != expected.last_offset
        {
            return mismatch(
                "offsets",
                format!("{:?}..={:?}", expected.first_offset, expected.last_offset),
                format!("{:?}..={:?}", found.first_offset, found.last_offset),
            );
        }
        if found.checksum() != expected.checksum() {
            return mismatch(
                "checksum",
                format!("{:#010x}", expected.checksum()),
                format!("{:#010x}", found.checksum()),
            );
        }
        Ok(())
    }
}

/// Replays every event from `start`, checking that offsets increase, and tallies them.
fn replay_tally(log: &EventLog, start: u64) -> Result<Tally, CliError> {
    let mut found = Tally::new();
    for envelope in log.replay(start) {
        let envelope = envelope?;
        if let Some(last) = found.last_offset {
            if envelope.offset <= last {
                return Err(CliError::Failed(format!(
                    "verification failed: offset {} follows offset {last}",
                    envelope.offset
                )));
            }
        }
        found.add(&envelope.event, envelope.offset);
    }
    Ok(found)
}

/// The `p`-th percentile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn progress(what: &str) {
    println!("{what} …");
    let _ = io::stdout().flush();
}
