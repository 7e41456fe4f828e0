//! Chronicle's raw byte log ([`chronicle::Log`]) with its default options except two, each
//! the counterpart of a setting the comparison gives okaywal or commitlog:
//! - `segment_bytes` sized to hold the workload (see [`segment_bytes_for`]), as okaywal's
//!   preallocation and commitlog's index are sized to it;
//! - for the workloads that sync every record or batch, `zero_fill_segments`, the setting
//!   BENCHMARKS.md advises for such writers: each segment is zero-filled when it is made (the
//!   first by the open, before the clock starts), as okaywal's preallocated segment is.

use std::ops::Range;
use std::path::Path;

use chronicle::{Log, Options};

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct Chronicle;

/// A segment size that holds the whole workload with a quarter to spare: the next power of
/// two, from the default 64 MiB up to 1 GiB. (1M records of 128 B: 256 MiB; 10,000 of 64 KiB:
/// 1 GiB; the durable workloads: 64 MiB.)
fn segment_bytes_for(plan: &Plan) -> u64 {
    // Bytes of a frame: a 32-byte header, the payload, padding to 8 (FORMAT.md).
    let frame_bytes = (32 + plan.record_bytes as u64 + 7) & !7;
    let frames = plan.records * frame_bytes;
    (frames + frames / 4).next_power_of_two().clamp(64 << 20, 1 << 30)
}

impl Engine for Chronicle {
    const NAME: &'static str = "chronicle";
    const DURABILITY: &'static str = "`sync`/`append_sync`/`append_batch_sync`: msync(MS_SYNC) \
        of the written range, which on Linux writes the pages and runs fdatasync on the file; a \
        segment file created since the last sync is fsynced, with its directory, by that sync. \
        Reaches the disk.";

    type Writer = Log;

    fn create(dir: &Path, plan: &Plan) -> Res<Log> {
        let options = Options {
            segment_bytes: segment_bytes_for(plan),
            zero_fill_segments: plan.syncs_often,
            ..Options::default()
        };
        Ok(Log::open_with(dir, options)?)
    }

    fn reopen(dir: &Path, _plan: &Plan) -> Res<Log> {
        Ok(Log::open(dir)?)
    }

    fn replay(dir: &Path, _plan: &Plan, check: &mut Verifier) -> Res<()> {
        let log = Log::open(dir)?;
        let mut replay = log.replay(log.start_offset());
        while let Some(record) = replay.next_ref() {
            check.check(record?.payload);
        }
        Ok(())
    }
}

impl Writer for Log {
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.append(pool.stamp(index))?;
        }
        self.sync()?;
        Ok(())
    }

    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.append_sync(pool.stamp(index))?;
        }
        Ok(())
    }

    fn append_batches_durable(
        &mut self,
        pool: &mut Pool,
        indexes: Range<u64>,
        batch: usize,
    ) -> Res<()> {
        for range in batches(indexes, batch) {
            self.append_batch_sync(&pool.stamp_range(range))?;
        }
        Ok(())
    }

    fn close(self) -> Res<()> {
        Ok(Log::close(self)?)
    }
}
