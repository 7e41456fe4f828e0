//! The events of the event-store workload: which aggregate and version each one has, its
//! payload, and the check that a store read back holds exactly what was written.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

/// Payload bytes of every event.
pub const PAYLOAD_BYTES: usize = 128;

/// The stamp at the start of every payload: aggregate id (8 bytes), version (8), writer (4),
/// little-endian; the rest is filler chosen by aggregate and version.
const STAMP_BYTES: usize = 20;
const FILLER_SLOTS: usize = 64;

/// Event types, by version: an aggregate's events cycle through them.
pub const EVENT_TYPES: [&str; 4] = ["item.added", "item.removed", "price.changed", "order.placed"];

pub fn event_type(version: u64) -> &'static str {
    EVENT_TYPES[(version % EVENT_TYPES.len() as u64) as usize]
}

/// The order in which a round visits the aggregates: slot `s` of round `r` goes to aggregate
/// `(s × STRIDE + r × ROUND_SHIFT) mod aggregates`. STRIDE is prime (coprime with any count
/// that is not its multiple); the shift makes each round's order start elsewhere.
const STRIDE: u64 = 7919;
const ROUND_SHIFT: u64 = 104_729;

/// Where the events of the bulk workloads go: `events` events in rounds of one event per
/// aggregate, so each of the `aggregates` aggregates gets `events / aggregates` events, and
/// consecutive events go to aggregates far apart (as in a store serving many entities at
/// once). Event `i` is in round `i / aggregates`, which is its version.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub events: u64,
    pub aggregates: u64,
}

impl Spread {
    pub fn new(events: u64, aggregates: u64) -> Spread {
        assert!(aggregates > 0 && events.is_multiple_of(aggregates), "whole rounds only");
        // STRIDE is prime, so this makes it coprime with the count: each round then visits
        // every aggregate once, whatever the shift.
        assert!(!aggregates.is_multiple_of(STRIDE), "the stride must be coprime with the count");
        Spread { events, aggregates }
    }

    /// The aggregate and version of event `index`.
    #[inline]
    pub fn locate(&self, index: u64) -> (u64, u64) {
        let (round, slot) = (index / self.aggregates, index % self.aggregates);
        let aggregate = (slot * STRIDE + round * ROUND_SHIFT) % self.aggregates;
        (aggregate, round)
    }

    pub fn events_per_aggregate(&self) -> u64 {
        self.events / self.aggregates
    }
}

fn filler() -> &'static [[u8; PAYLOAD_BYTES - STAMP_BYTES]; FILLER_SLOTS] {
    static FILLER: OnceLock<[[u8; PAYLOAD_BYTES - STAMP_BYTES]; FILLER_SLOTS]> = OnceLock::new();
    FILLER.get_or_init(|| {
        let mut state = 0x5eed_u64;
        let mut slots = [[0u8; PAYLOAD_BYTES - STAMP_BYTES]; FILLER_SLOTS];
        for byte in slots.iter_mut().flatten() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *byte = (state >> 56) as u8;
        }
        slots
    })
}

fn filler_slot(aggregate: u64, version: u64) -> usize {
    (aggregate.wrapping_mul(31).wrapping_add(version) % FILLER_SLOTS as u64) as usize
}

/// Writes the payload of the event of `aggregate` at `version` written by `writer` into
/// `payload` (which must be [`PAYLOAD_BYTES`] long).
#[inline]
pub fn fill_payload(payload: &mut [u8], aggregate: u64, version: u64, writer: u32) {
    payload[..8].copy_from_slice(&aggregate.to_le_bytes());
    payload[8..16].copy_from_slice(&version.to_le_bytes());
    payload[16..20].copy_from_slice(&writer.to_le_bytes());
    payload[STAMP_BYTES..].copy_from_slice(&filler()[filler_slot(aggregate, version)]);
}

/// The writer stamped in a payload, if the payload is exactly what [`fill_payload`] writes
/// for that aggregate and version.
fn payload_writer(payload: &[u8], aggregate: u64, version: u64) -> Option<u32> {
    if payload.len() != PAYLOAD_BYTES
        || payload[..8] != aggregate.to_le_bytes()
        || payload[8..16] != version.to_le_bytes()
        || payload[STAMP_BYTES..] != filler()[filler_slot(aggregate, version)]
    {
        return None;
    }
    Some(u32::from_le_bytes(payload[16..20].try_into().expect("4 bytes")))
}

/// One event as read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    pub aggregate: u64,
    pub version: u64,
    pub event_type: String,
    pub payload: Vec<u8>,
}

/// Who wrote which event: the writer of every event, by aggregate and version.
pub enum Writers {
    /// Every event by writer 0.
    One,
    /// Aggregate `a` by writer `a / per_writer`.
    Owned { per_writer: u64 },
    /// As recorded by the writers as they succeeded.
    Recorded(HashMap<(u64, u64), u32>),
}

impl Writers {
    fn of(&self, aggregate: u64, version: u64) -> Option<u32> {
        match self {
            Writers::One => Some(0),
            Writers::Owned { per_writer } => u32::try_from(aggregate / per_writer).ok(),
            Writers::Recorded(map) => map.get(&(aggregate, version)).copied(),
        }
    }
}

/// What a store must hold after a workload: how many events each aggregate has, and who
/// wrote each.
pub struct Expected {
    pub counts: HashMap<u64, u64>,
    pub writers: Writers,
}

impl Expected {
    /// Aggregates `aggregates`, each with `count` events, written as `writers` says.
    pub fn uniform(aggregates: Range<u64>, count: u64, writers: Writers) -> Expected {
        Expected { counts: aggregates.map(|a| (a, count)).collect(), writers }
    }

    pub fn events(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Checks, event by event in log order, that a store holds exactly what was written: each
/// aggregate's versions 0, 1, 2, … without a gap or a repeat, each event's type and payload
/// those of its aggregate and version, written by the right writer, and every aggregate's
/// count as expected.
pub struct Checker<'a> {
    expected: &'a Expected,
    next_version: HashMap<u64, u64>,
    events: u64,
    first_error: Option<String>,
}

impl<'a> Checker<'a> {
    pub fn new(expected: &'a Expected) -> Checker<'a> {
        Checker { expected, next_version: HashMap::new(), events: 0, first_error: None }
    }

    pub fn check(&mut self, event: &ReadEvent) {
        let position = self.events;
        self.events += 1;
        if self.first_error.is_some() {
            return;
        }
        let next = self.next_version.entry(event.aggregate).or_insert(0);
        let error = if event.version != *next {
            Some(format!("version {} where {} was due", event.version, *next))
        } else if event.event_type != event_type(event.version) {
            Some(format!("type {:?}", event.event_type))
        } else {
            match payload_writer(&event.payload, event.aggregate, event.version) {
                None => Some("a payload different from what was written".to_string()),
                Some(writer)
                    if Some(writer) != self.expected.writers.of(event.aggregate, event.version) =>
                {
                    Some(format!("the payload of writer {writer}"))
                }
                Some(_) => None,
            }
        };
        *next += 1;
        if let Some(error) = error {
            self.first_error = Some(format!(
                "event {position} (aggregate {}, version {}): {error}",
                event.aggregate, event.version
            ));
        }
    }

    /// `Ok` if every event checked out and every aggregate has its expected count.
    pub fn finish(self) -> Result<(), String> {
        if let Some(error) = self.first_error {
            return Err(error);
        }
        let expected = self.expected.events();
        if self.events != expected {
            return Err(format!("{} events read back, {expected} written", self.events));
        }
        for (aggregate, &count) in &self.expected.counts {
            let found = self.next_version.get(aggregate).copied().unwrap_or(0);
            if found != count {
                return Err(format!("aggregate {aggregate}: {found} events, {count} written"));
            }
        }
        Ok(())
    }
}

/// Checks the events of one aggregate as a load returned them: versions `0..count` in order,
/// each with its type and payload.
pub fn check_load(
    aggregate: u64,
    loaded: &[ReadEvent],
    count: u64,
    writers: &Writers,
) -> Result<(), String> {
    let expected =
        Expected { counts: HashMap::from([(aggregate, count)]), writers: clone(writers) };
    let mut checker = Checker::new(&expected);
    for event in loaded {
        if event.aggregate != aggregate {
            return Err(format!(
                "load of aggregate {aggregate} returned aggregate {}",
                event.aggregate
            ));
        }
        checker.check(event);
    }
    checker.finish().map_err(|e| format!("load of aggregate {aggregate}: {e}"))
}

fn clone(writers: &Writers) -> Writers {
    match writers {
        Writers::One => Writers::One,
        Writers::Owned { per_writer } => Writers::Owned { per_writer: *per_writer },
        Writers::Recorded(map) => Writers::Recorded(map.clone()),
    }
}

/// A small pseudo-random generator (splitmix64), so every run samples the same aggregates.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (slightly biased for huge `n`, which does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(aggregate: u64, version: u64, writer: u32) -> ReadEvent {
        let mut payload = vec![0u8; PAYLOAD_BYTES];
        fill_payload(&mut payload, aggregate, version, writer);
        ReadEvent { aggregate, version, event_type: event_type(version).to_string(), payload }
    }

    #[test]
    fn every_aggregate_gets_one_event_per_round() {
        let spread = Spread::new(10_000 * 3, 10_000);
        let mut seen = HashMap::new();
        for i in 0..spread.events {
            let (aggregate, version) = spread.locate(i);
            assert_eq!(version, i / 10_000);
            let next = seen.entry(aggregate).or_insert(0);
            assert_eq!(*next, version, "aggregate {aggregate}");
            *next += 1;
        }
        assert_eq!(seen.len(), 10_000);
        // Consecutive events go to aggregates far apart.
        assert_eq!(spread.locate(1).0.abs_diff(spread.locate(0).0), 7919);
    }

    #[test]
    fn checker_accepts_what_was_written_and_catches_each_kind_of_difference() {
        let expected = Expected::uniform(0..2, 2, Writers::One);
        let good = [read(0, 0, 0), read(1, 0, 0), read(1, 1, 0), read(0, 1, 0)];
        let run = |events: &[ReadEvent]| {
            let mut checker = Checker::new(&expected);
            events.iter().for_each(|e| checker.check(e));
            checker.finish()
        };
        assert_eq!(run(&good), Ok(()));
        assert!(run(&good[..3]).unwrap_err().contains("3 events read back, 4 written"));
        let mut gap = good.clone();
        gap[2] = read(1, 2, 0);
        assert!(run(&gap).unwrap_err().contains("version 2 where 1 was due"));
        let mut damaged = good.clone();
        damaged[3].payload[100] ^= 1;
        assert!(run(&damaged).unwrap_err().contains("payload different"));
        let mut retyped = good.clone();
        retyped[0].event_type = "other".into();
        assert!(run(&retyped).unwrap_err().contains("type"));
        let mut stranger = good.clone();
        stranger[1] = read(1, 0, 3);
        assert!(run(&stranger).unwrap_err().contains("writer 3"));
    }
}
