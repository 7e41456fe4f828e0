//! Payloads, the workloads' sizes, and the check that a replay returned what was written.

use std::ops::Range;

/// Distinct payloads kept in the pool: records reuse them in turn, each stamped with its own
/// index, so every record's bytes are unique and position-checked while the pool stays small
/// enough to sit in the CPU cache (128 KiB for 128-byte records, 1 MiB for 64 KiB records).
const POOL_BYTES: usize = 1 << 20;
const POOL_SLOTS_MAX: usize = 1024;

/// The bytes written by a workload: record `i` is pool slot `i % slots` with its first 8 bytes
/// replaced by `i` (little-endian).
#[derive(Debug, Clone)]
pub struct Pool {
    record_bytes: usize,
    slots: usize,
    data: Vec<u8>,
}

impl Pool {
    /// A pool of pseudo-random payloads of `record_bytes` each (at least 8).
    pub fn new(record_bytes: usize, seed: u64) -> Pool {
        assert!(record_bytes >= 8, "a record must hold its 8-byte index");
        let slots = (POOL_BYTES / record_bytes).clamp(1, POOL_SLOTS_MAX);
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut data = vec![0u8; slots * record_bytes];
        for chunk in data.chunks_mut(8) {
            let word = splitmix64(&mut state).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Pool { record_bytes, slots, data }
    }

    fn slot(&self, index: u64) -> Range<usize> {
        let slot = (index % self.slots as u64) as usize;
        slot * self.record_bytes..(slot + 1) * self.record_bytes
    }

    /// The payload of record `index`.
    #[inline]
    pub fn stamp(&mut self, index: u64) -> &[u8] {
        let range = self.slot(index);
        let bytes = &mut self.data[range];
        bytes[..8].copy_from_slice(&index.to_le_bytes());
        bytes
    }

    /// Stamps the records of `indexes` (at most as many as the pool has slots) and returns their
    /// payloads, in order.
    pub fn stamp_range(&mut self, indexes: Range<u64>) -> Vec<&[u8]> {
        assert!(
            indexes.end - indexes.start <= self.slots as u64,
            "a batch larger than the pool would reuse a slot"
        );
        for index in indexes.clone() {
            self.stamp(index);
        }
        indexes.map(|index| &self.data[self.slot(index)]).collect()
    }

    /// Whether `payload` is exactly the bytes of record `index`.
    #[inline]
    pub fn matches(&self, index: u64, payload: &[u8]) -> bool {
        let expected = &self.data[self.slot(index)];
        payload.len() == expected.len()
            && payload[..8] == index.to_le_bytes()
            && payload[8..] == expected[8..]
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Checks, record by record, that a replay returns exactly records `0..expected`, in order.
#[derive(Debug, Clone)]
pub struct Verifier {
    pool: Pool,
    next: u64,
    first_mismatch: Option<u64>,
}

impl Verifier {
    pub fn new(pool: Pool) -> Verifier {
        Verifier { pool, next: 0, first_mismatch: None }
    }

    /// Compares the next record returned by a replay with what was written.
    #[inline]
    pub fn check(&mut self, payload: &[u8]) {
        if self.first_mismatch.is_none() && !self.pool.matches(self.next, payload) {
            self.first_mismatch = Some(self.next);
        }
        self.next += 1;
    }

    /// `Ok` if exactly `expected` records came back and all matched.
    pub fn finish(&self, expected: u64) -> Result<(), String> {
        if let Some(index) = self.first_mismatch {
            return Err(format!("record {index} differs from what was written"));
        }
        if self.next != expected {
            return Err(format!("{} records replayed, {expected} written", self.next));
        }
        Ok(())
    }
}

/// The shape of one write workload, given to engines so that they can size their files and
/// choose their settings.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub records: u64,
    pub record_bytes: usize,
    /// Whether every record or batch is made durable as it is written (a sync every few
    /// records) rather than by one sync at the end.
    pub syncs_often: bool,
}

impl Plan {
    pub fn payload_bytes(&self) -> u64 {
        self.records * self.record_bytes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_the_written_records_and_catches_a_changed_byte() {
        let mut pool = Pool::new(128, 7);
        let written: Vec<Vec<u8>> = (0..3000).map(|i| pool.stamp(i).to_vec()).collect();
        let mut verifier = Verifier::new(pool.clone());
        for payload in &written {
            verifier.check(payload);
        }
        assert_eq!(verifier.finish(3000), Ok(()));
        assert!(verifier.finish(3001).is_err());

        let mut damaged = Verifier::new(pool.clone());
        for (i, payload) in written.iter().enumerate() {
            let mut payload = payload.clone();
            if i == 1500 {
                payload[100] ^= 1;
            }
            damaged.check(&payload);
        }
        assert_eq!(damaged.finish(3000), Err("record 1500 differs from what was written".into()));

        // Records swapped in place are caught by the stamped index.
        let mut swapped = Verifier::new(pool);
        swapped.check(&written[1]);
        swapped.check(&written[0]);
        assert!(swapped.finish(2).is_err());
    }
}
