//! Chronicle's raw byte log ([`chronicle::Log`]) with its default options (64 MiB segments),
//! plus, for the workloads that sync every record or batch, `zero_fill_segments`: the
//! setting BENCHMARKS.md advises for such writers, which zero-fills each segment when it is
//! made (the counterpart of okaywal's preallocated, zero-filled segment, also made before the
//! clock starts).

use std::ops::Range;
use std::path::Path;

use chronicle::{Log, Options};

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct Chronicle;

impl Engine for Chronicle {
    const NAME: &'static str = "chronicle";
    const DURABILITY: &'static str = "`sync`/`append_sync`/`append_batch_sync`: msync(MS_SYNC) \
        of the written range, which on Linux writes the pages and runs fdatasync on the file; a \
        segment file created since the last sync is fsynced, with its directory, by that sync. \
        Reaches the disk.";

    type Writer = Log;

    fn create(dir: &Path, plan: &Plan) -> Res<Log> {
        let options = Options { zero_fill_segments: plan.syncs_often, ..Options::default() };
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
