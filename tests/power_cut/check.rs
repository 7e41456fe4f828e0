//! Checks of a recovered log that need no model: its tree head, computed here from its records
//! as FORMAT.md 12.1 defines it, and an event log's index answers against a replay.

use chronicle::rollup::{Hash, TreeHead};
use chronicle::{EventEnvelope, EventLog, Record};
use sha2::{Digest as _, Sha256};

use super::workload::{AGGREGATES, NAMESPACES, TYPES};

/// The RFC 9162 tree head of a log's records, computed from scratch (FORMAT.md 12.1).
#[derive(Debug, Default)]
pub struct HeadBuilder {
    leaves: Vec<[u8; 32]>,
    end_offset: u64,
    last_ms: u64,
}

impl HeadBuilder {
    /// A builder for a log that starts at `start`.
    pub fn new(start: u64) -> HeadBuilder {
        HeadBuilder { end_offset: start, ..HeadBuilder::default() }
    }

    /// A builder for a log that starts at `start` after retention removed the records whose
    /// leaf hashes are `removed`, the last of them written at `last_ms`.
    pub fn resume(start: u64, removed: Vec<[u8; 32]>, last_ms: u64) -> HeadBuilder {
        HeadBuilder { leaves: removed, end_offset: start, last_ms }
    }

    /// The leaf hash of each record pushed (or resumed from), in order.
    pub fn leaves(&self) -> &[[u8; 32]] {
        &self.leaves
    }

    pub fn push(&mut self, record: &Record) {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(record.offset.to_le_bytes());
        hasher.update(record.write_timestamp_ms.to_le_bytes());
        hasher.update(&*record.payload);
        self.leaves.push(hasher.finalize().into());
        self.end_offset = record.offset + ((32 + record.payload.len() as u64 + 7) & !7);
        self.last_ms = record.write_timestamp_ms;
    }

    pub fn head(&self) -> TreeHead {
        TreeHead {
            tree_size: self.leaves.len() as u64,
            root: Hash(mth(&self.leaves)),
            end_offset: self.end_offset,
            last_write_timestamp_ms: self.last_ms,
        }
    }
}

/// RFC 9162 `MTH` over leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let split = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut hasher = Sha256::new();
            hasher.update([1u8]);
            hasher.update(mth(&leaves[..split]));
            hasher.update(mth(&leaves[split..]));
            hasher.finalize().into()
        }
    }
}

/// The event log's index answers (every aggregate, type and namespace, and `load_aggregate`
/// of aggregate `id`) against the events of a replay of the whole log.
pub fn index_matches(ev: &EventLog, all: &[EventEnvelope], id: u64) -> Result<(), String> {
    let offsets = |keep: &dyn Fn(&EventEnvelope) -> bool| -> Vec<u64> {
        all.iter().filter(|e| keep(e)).map(|e| e.offset).collect()
    };
    let index = ev.index();
    // After retention the index may still list removed records (queries skip them).
    let start = ev.log().start_offset();
    let kept =
        |list: &[u64]| -> Vec<u64> { list.iter().copied().filter(|&o| o >= start).collect() };
    for a in 0..AGGREGATES {
        let want = offsets(&|e| e.event.aggregate_id == Some(a));
        let got = kept(&index.aggregate(a));
        if got != want {
            return Err(format!("index of aggregate {a}: {got:?}, replay {want:?}"));
        }
    }
    for t in TYPES {
        let want = offsets(&|e| e.event.event_type == t);
        let got = kept(index.of_type(t));
        if got != want {
            return Err(format!("index of type {t}: {got:?}, replay {want:?}"));
        }
    }
    for ns in NAMESPACES {
        let want = offsets(&|e| e.event.namespace == ns);
        let got = kept(index.in_namespace(ns));
        if got != want {
            return Err(format!("index of namespace {ns}: {got:?}, replay {want:?}"));
        }
    }
    let loaded = ev.load_aggregate(id).map_err(|e| format!("load_aggregate({id}): {e}"))?;
    let want: Vec<&EventEnvelope> =
        all.iter().filter(|e| e.event.aggregate_id == Some(id)).collect();
    if loaded.iter().collect::<Vec<_>>() != want {
        return Err(format!("load_aggregate({id}) differs from the replay's events"));
    }
    Ok(())
}
