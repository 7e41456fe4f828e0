//! Chronicle's event store ([`chronicle::EventLog`], and [`chronicle::SharedEventLog`] for many
//! writers) with its default options except the two the other workloads also change:
//! `segment_bytes` sized to hold the workload, and `zero_fill_segments` for the stores whose
//! every batch or event is durable.
//!
//! The adapter keeps one [`Event`] (one batch of them) and rewrites its fields in place for
//! each append, as SQLite binds the same values to a prepared statement: the workload's cost
//! is the store's, not the allocation of events.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use chronicle::{Event, EventLog, ExpectedVersion, Options, SharedEventLog, StorageError};

use super::events::{event_type, fill_payload, ReadEvent, Spread, PAYLOAD_BYTES};
use super::store::{Appended, EventStore, SharedStore, Sizing, StoreWriter};
use crate::engines::Res;

/// A segment size that holds the whole store with a quarter to spare: the next power of two,
/// 64 MiB to 1 GiB (1M events of 128 B: 256 MiB), as for the raw log workloads.
fn options(sizing: Sizing) -> Options {
    // A frame: a 32-byte header and the event record (the payload, its type, namespace and
    // ids, about 60 bytes), padded to 8; rounding up does no harm.
    let frame_bytes = 32 + PAYLOAD_BYTES as u64 + 64;
    let bytes = sizing.events * frame_bytes;
    Options {
        segment_bytes: (bytes + bytes / 4).next_power_of_two().clamp(64 << 20, 1 << 30),
        zero_fill_segments: sizing.syncs_often,
        ..Options::default()
    }
}

fn blank_event() -> Event {
    Event::builder(event_type(0)).aggregate_id(0).payload(vec![0u8; PAYLOAD_BYTES]).build()
}

/// Makes `event` the event of `aggregate` at `version` by `writer`.
#[inline]
fn set(event: &mut Event, aggregate: u64, version: u64, writer: u32) {
    event.aggregate_id = Some(aggregate);
    event.event_type.clear();
    event.event_type.push_str(event_type(version));
    fill_payload(&mut event.payload, aggregate, version, writer);
}

fn read_event(envelope: chronicle::EventEnvelope) -> Res<ReadEvent> {
    let offset = envelope.offset;
    Ok(ReadEvent {
        aggregate: envelope
            .event
            .aggregate_id
            .ok_or_else(|| format!("event at offset {offset} has no aggregate"))?,
        version: envelope
            .aggregate_version
            .ok_or_else(|| format!("event at offset {offset} has no version"))?,
        event_type: envelope.event.event_type,
        payload: envelope.event.payload,
    })
}

pub struct ChronicleStore {
    log: EventLog,
    batch: Vec<Event>,
}

impl EventStore for ChronicleStore {
    const NAME: &'static str = "chronicle";

    type Writer = ChronicleWriter;
    type Shared = ChronicleShared;

    fn create(dir: &Path, sizing: Sizing) -> Res<Self> {
        Self::open(dir, sizing)
    }

    fn open(dir: &Path, sizing: Sizing) -> Res<Self> {
        Ok(ChronicleStore { log: EventLog::open_with(dir, options(sizing))?, batch: Vec::new() })
    }

    fn append_then_sync(&mut self, spread: &Spread, range: Range<u64>) -> Res<()> {
        let mut event = blank_event();
        for index in range {
            let (aggregate, version) = spread.locate(index);
            set(&mut event, aggregate, version, 0);
            self.log.append(&event)?;
        }
        self.log.sync()?;
        Ok(())
    }

    fn append_batches_durable(
        &mut self,
        spread: &Spread,
        range: Range<u64>,
        batch: usize,
    ) -> Res<()> {
        self.batch.resize_with(batch, blank_event);
        for start in range.clone().step_by(batch) {
            let end = (start + batch as u64).min(range.end);
            let events = &mut self.batch[..(end - start) as usize];
            for (event, index) in events.iter_mut().zip(start..end) {
                let (aggregate, version) = spread.locate(index);
                set(event, aggregate, version, 0);
            }
            self.log.append_batch_sync(events)?;
        }
        Ok(())
    }

    fn load_timed(&mut self, aggregate: u64) -> Res<(Duration, Vec<ReadEvent>)> {
        let start = Instant::now();
        let events = self.log.load_aggregate(aggregate)?;
        let elapsed = start.elapsed();
        Ok((elapsed, events.into_iter().map(read_event).collect::<Res<_>>()?))
    }

    fn close(self) -> Res<()> {
        Ok(self.log.close()?)
    }

    fn read_all(dir: &Path, each: &mut dyn FnMut(&ReadEvent)) -> Res<()> {
        let log = EventLog::open_read_only(dir)?;
        for envelope in log.replay(log.log().start_offset()) {
            each(&read_event(envelope?)?);
        }
        Ok(())
    }

    fn create_shared(dir: &Path, sizing: Sizing) -> Res<ChronicleShared> {
        Ok(ChronicleShared(EventLog::open_with(dir, options(sizing))?.into_shared()))
    }
}

pub struct ChronicleShared(SharedEventLog);

impl SharedStore for ChronicleShared {
    type Writer = ChronicleWriter;

    fn writer(&self) -> Res<ChronicleWriter> {
        Ok(ChronicleWriter { log: self.0.clone(), event: [blank_event()] })
    }

    fn syncs(&self) -> Option<u64> {
        Some(self.0.sync_count())
    }

    fn close(self) -> Res<()> {
        match self.0.into_event_log() {
            Ok(log) => Ok(log.close()?),
            Err(_) => Err("a writer's handle is still open".into()),
        }
    }
}

pub struct ChronicleWriter {
    log: SharedEventLog,
    event: [Event; 1],
}

impl StoreWriter for ChronicleWriter {
    fn current_version(&mut self, aggregate: u64) -> Res<Option<u64>> {
        Ok(self.log.aggregate_version(aggregate)?)
    }

    fn append_expecting_durable(
        &mut self,
        aggregate: u64,
        expected: Option<u64>,
        writer: u32,
    ) -> Res<Appended> {
        let version = expected.map_or(0, |v| v + 1);
        set(&mut self.event[0], aggregate, version, writer);
        let expected = expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match self.log.append_expecting_sync(expected, &self.event) {
            Ok(_) => Ok(Appended::Durable),
            Err(StorageError::WrongExpectedVersion { .. }) => Ok(Appended::Conflict),
            Err(err) => Err(err.into()),
        }
    }

    fn append_durable(&mut self, aggregate: u64, version: u64, writer: u32) -> Res<()> {
        set(&mut self.event[0], aggregate, version, writer);
        self.log.append_sync(&self.event[0])?;
        Ok(())
    }
}
