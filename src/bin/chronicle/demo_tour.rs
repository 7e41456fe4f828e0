//! The second half of `chronicle demo`: the capabilities beyond appending and replaying, each
//! exercised and checked on the demo's log, with what it measured.

use std::thread;
use std::time::{Duration, Instant};

use chronicle::{Event, EventLog, ExpectedVersion, Next};

use crate::output::{duration, per_second, CliError};

/// One line of the demo's closing table: what was measured, and the figure.
pub type Row = (String, String);

fn failed(what: impl Into<String>) -> CliError {
    CliError::Failed(format!("verification failed: {}", what.into()))
}

/// Loads one aggregate through the index and checks its events and their versions.
pub fn aggregate_query(log: &EventLog, id: u64, rows: &mut Vec<Row>) -> Result<(), CliError> {
    println!("loading aggregate {id} through the index …");
    let began = Instant::now();
    let events = log.load_aggregate(id)?;
    let took = began.elapsed();
    for (version, envelope) in (0u64..).zip(&events) {
        if envelope.event.aggregate_id != Some(id) || envelope.aggregate_version != Some(version) {
            return Err(failed(format!("aggregate {id}'s event {version} at {}", envelope.offset)));
        }
    }
    println!(
        "  {} events with versions 0 to {}, in {}",
        events.len(),
        events.len().saturating_sub(1),
        duration(took)
    );
    rows.push((
        "load one aggregate".into(),
        format!("{} ({} events)", duration(took), events.len()),
    ));
    Ok(())
}

/// Makes an inclusion proof for the record at `offset` and verifies it against the head.
pub fn proof(log: &EventLog, offset: u64, rows: &mut Vec<Row>) -> Result<(), CliError> {
    println!("proving that the event at offset {offset} is in the log (RFC 9162) …");
    let began = Instant::now();
    let head = log.log().tree_head(None)?;
    let hashed = began.elapsed();
    let began = Instant::now();
    let proof = log.log().inclusion_proof(offset, Some(head.tree_size))?;
    proof.verify(Some(&head.root))?;
    let proved = began.elapsed();
    println!(
        "  tree of {} entries, root {}; head in {}, proof of {} hashes made and verified in {}",
        head.tree_size,
        head.root,
        duration(hashed),
        proof.audit_path.len(),
        duration(proved)
    );
    rows.push(("inclusion proof, made and verified".into(), duration(proved)));
    Ok(())
}

/// A follower thread receives live events as this thread appends them; checks it gets every
/// one, in order.
pub fn follow(log: &mut EventLog, events: &[Event], rows: &mut Vec<Row>) -> Result<(), CliError> {
    println!("following the log live while appending {} events …", events.len());
    let mut follower = log.follow(log.end_offset());
    let expected = events.len();
    let receiver = thread::spawn(move || {
        let mut received = Vec::with_capacity(expected);
        while received.len() < expected {
            match follower.next_timeout(Duration::from_secs(10)) {
                Next::Record(envelope) => received.push((envelope.offset, Instant::now())),
                Next::CaughtUp => {}
                Next::TimedOut | Next::Stopped | Next::Error(_) => break,
            }
        }
        received
    });
    let mut sent = Vec::with_capacity(expected);
    for event in events {
        let at = Instant::now();
        sent.push((log.append(event)?, at));
        // Paced, so that most deliveries include a wake-up.
        thread::sleep(Duration::from_micros(50));
    }
    let received = receiver.join().map_err(|_| failed("the follower thread panicked"))?;
    if received.len() != sent.len()
        || received.iter().zip(&sent).any(|((got, _), (want, _))| got != want)
    {
        return Err(failed(format!(
            "the follower received {} of {} events",
            received.len(),
            sent.len()
        )));
    }
    let mut delays: Vec<Duration> = received
        .iter()
        .zip(&sent)
        .map(|((_, got), (_, at))| got.saturating_duration_since(*at))
        .collect();
    delays.sort_unstable();
    let median = delays.get(delays.len() / 2).copied().unwrap_or_default();
    println!(
        "  every event delivered once, in order; append to delivery median {}",
        duration(median)
    );
    rows.push(("append to live delivery (median)".into(), duration(median)));
    Ok(())
}

/// Four threads race on one aggregate with expected versions, each append durable, then many
/// threads append durably through one shared handle (group commit). Returns the log.
pub fn many_writers(log: EventLog, rows: &mut Vec<Row>) -> Result<EventLog, CliError> {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 100;
    println!("{THREADS} threads appending durably with expected versions on one aggregate …");
    let shared = log.into_shared();
    let aggregate = u64::MAX;
    let syncs_before = shared.sync_count();
    let began = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || -> Result<(u64, u64), CliError> {
                let (mut won, mut conflicts) = (0, 0);
                while won < PER_THREAD {
                    let current = shared.aggregate_version(aggregate)?;
                    let expected =
                        current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let event = Event::builder("demo.counted")
                        .aggregate_id(aggregate)
                        .payload(t.to_le_bytes().to_vec())
                        .build();
                    match shared.append_expecting_sync(expected, &[event]) {
                        Ok(_) => won += 1,
                        Err(chronicle::StorageError::WrongExpectedVersion { .. }) => conflicts += 1,
                        Err(err) => return Err(err.into()),
                    }
                }
                Ok((won, conflicts))
            })
        })
        .collect();
    let mut conflicts = 0;
    for worker in workers {
        conflicts += worker.join().map_err(|_| failed("a writer thread panicked"))??.1;
    }
    let took = began.elapsed();
    let syncs = shared.sync_count() - syncs_before;
    let appends = THREADS * PER_THREAD;
    let versions: Vec<Option<u64>> =
        shared.load_aggregate(aggregate)?.iter().map(|e| e.aggregate_version).collect();
    if versions != (0..appends).map(Some).collect::<Vec<_>>() {
        return Err(failed("the raced aggregate's versions are not 0..n without gaps"));
    }
    println!(
        "  {appends} durable appends in {} ({:.0}/s), {conflicts} conflicts retried, {syncs} syncs; \
         versions 0 to {} without a gap",
        duration(took),
        per_second(appends as f64, took),
        appends - 1
    );
    rows.push((
        format!("{THREADS} threads, expected-version append_sync"),
        format!(
            "{:.0}/s, {:.1} appends per sync",
            per_second(appends as f64, took),
            appends as f64 / syncs.max(1) as f64
        ),
    ));
    shared.into_event_log().map_err(|_| failed("a handle of the shared log outlived its threads"))
}

/// Prints the closing table.
pub fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|(what, _)| what.chars().count()).max().unwrap_or(0);
    println!();
    println!("{:<width$}  measured", "what");
    println!("{:-<width$}  {:-<24}", "", "");
    for (what, figure) in rows {
        println!("{what:<width$}  {figure}");
    }
}
