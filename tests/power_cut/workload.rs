//! What the power-cut tests append and what they expect back: a log opened as a raw [`Log`]
//! or an [`EventLog`] behind one [`Handle`], records generated from a sequence number and a
//! length (so the expected bytes need not be kept), and the [`Model`] of what was appended
//! and acknowledged.

use std::path::Path;

use chronicle::rollup::TreeHead;
use chronicle::{Event, EventLog, IndexOptions, Log, Options, Result};

/// Event types, namespaces and aggregate ids the event logs use: few, so every index list has
/// many entries.
pub const TYPES: [&str; 3] = ["placed", "paid", "shipped"];
pub const NAMESPACES: [&str; 2] = ["shop", "billing"];
pub const AGGREGATES: u64 = 5;

/// What a test expects of one record: its offset (once an append returned it), its sequence
/// number (which determines its bytes), its payload length, and the call that appended it
/// (records of one batch share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub offset: Option<u64>,
    pub seq: u64,
    pub len: usize,
    pub call: u64,
}

/// The payload bytes of record `seq`: its sequence number, then bytes derived from it (never
/// all zero).
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = seq.to_le_bytes().iter().copied().cycle().take(len.min(8)).collect();
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x as u8) | 1);
    }
    out
}

/// The event record `seq` holds in an event log.
pub fn event(seq: u64, len: usize) -> Event {
    let builder = Event::builder(TYPES[(seq % 3) as usize])
        .namespace(NAMESPACES[(seq / 3 % 2) as usize])
        .payload(payload(seq, len));
    if seq % 4 == 3 {
        builder.build() // no aggregate
    } else {
        builder.aggregate_id(seq * 7 % AGGREGATES).build()
    }
}

/// A writer: a raw log or an event log.
pub enum Handle {
    Raw(Box<Log>),
    Events(Box<EventLog>),
}

impl Handle {
    pub fn open(
        dir: &Path,
        events: bool,
        options: &Options,
        index: &IndexOptions,
    ) -> Result<Handle> {
        Ok(if events {
            Handle::Events(Box::new(EventLog::open_with_index_options(
                dir,
                options.clone(),
                index.clone(),
            )?))
        } else {
            Handle::Raw(Box::new(Log::open_with(dir, options.clone())?))
        })
    }

    pub fn log(&self) -> &Log {
        match self {
            Handle::Raw(log) => log,
            Handle::Events(events) => events.log(),
        }
    }

    pub fn end_offset(&self) -> u64 {
        self.log().end_offset()
    }

    /// Appends record `seq` of `len` bytes, through `append` or `append_sync`.
    pub fn append(&mut self, seq: u64, len: usize, sync: bool) -> Result<u64> {
        match (self, sync) {
            (Handle::Raw(log), false) => log.append(&payload(seq, len)),
            (Handle::Raw(log), true) => log.append_sync(&payload(seq, len)),
            (Handle::Events(ev), false) => ev.append(&event(seq, len)),
            (Handle::Events(ev), true) => ev.append_sync(&event(seq, len)),
        }
    }

    /// Appends records `(seq, len)` as one batch, through `append_batch` or
    /// `append_batch_sync`.
    pub fn append_batch(&mut self, recs: &[(u64, usize)], sync: bool) -> Result<Vec<u64>> {
        match self {
            Handle::Raw(log) => {
                let payloads: Vec<Vec<u8>> = recs.iter().map(|&(s, l)| payload(s, l)).collect();
                if sync {
                    log.append_batch_sync(&payloads)
                } else {
                    log.append_batch(&payloads)
                }
            }
            Handle::Events(ev) => {
                let events: Vec<Event> = recs.iter().map(|&(s, l)| event(s, l)).collect();
                let offsets = ev.append_batch(&events)?;
                if sync {
                    ev.sync()?;
                }
                Ok(offsets)
            }
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        match self {
            Handle::Raw(log) => log.sync(),
            Handle::Events(ev) => ev.sync(),
        }
    }

    pub fn close(self) -> Result<()> {
        match self {
            Handle::Raw(log) => log.close(),
            Handle::Events(ev) => ev.close(),
        }
    }

    /// Saves the index (event logs; a raw log does nothing).
    pub fn checkpoint(&mut self) -> Result<()> {
        match self {
            Handle::Raw(_) => Ok(()),
            Handle::Events(ev) => ev.checkpoint(),
        }
    }

    pub fn tree_head(&self) -> Result<TreeHead> {
        self.log().tree_head(None)
    }

    /// Retention: removes the whole segments before `offset` (`truncate_before`).
    pub fn truncate_before(&mut self, offset: u64) -> Result<chronicle::RetentionReport> {
        match self {
            Handle::Raw(log) => log.truncate_before(offset),
            Handle::Events(ev) => ev.truncate_before(offset),
        }
    }
}

/// The consumer the workload commits positions of.
pub const CONSUMER: &str = "projection";

/// What was appended and what was acknowledged, since the log was created.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Every record an append call returned, in order (the log's records if nothing is lost).
    pub recs: Vec<Rec>,
    /// Records of a call that failed: they may be in the log, after `recs`.
    pub maybe: Vec<Rec>,
    /// How many of `recs` were acknowledged as durable.
    pub acked: usize,
    pub next_seq: u64,
    pub next_call: u64,
    /// Where the log ended when it was last checked after a cut.
    pub checked_end: u64,
    /// The leaf hash and write time of each record checked after a cut (the first
    /// `verified.len()` of `recs`): the tree head over records retention removed needs them.
    pub verified: Vec<([u8; 32], u64)>,
    /// The consumer's durably committed position, if any.
    pub consumer: Option<u64>,
    /// A commit that the power may have cut: the position may be this one instead.
    pub consumer_pending: Option<u64>,
}

impl Model {
    /// The next `lens.len()` records, appended by one call.
    pub fn plan(&mut self, lens: &[usize]) -> Vec<Rec> {
        let call = self.next_call;
        self.next_call += 1;
        lens.iter()
            .map(|&len| {
                let rec = Rec { offset: None, seq: self.next_seq, len, call };
                self.next_seq += 1;
                rec
            })
            .collect()
    }

    /// Every record the log may hold, in order: those appended, then those of a failed call.
    pub fn candidates(&self) -> impl Iterator<Item = &Rec> {
        self.recs.iter().chain(&self.maybe)
    }
}
