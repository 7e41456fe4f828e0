//! commitlog 0.2: segment files written with one `write` per append, plus a memory-mapped
//! offset index.
//!
//! Its `CommitLog::flush` does **not** make the records durable: for the segment it calls
//! `std::fs::File::flush`, which does nothing for a `File` (the bytes were already handed to
//! the kernel, and no fsync follows), and it msyncs only the index's *whole* pages, so the
//! entries of the last, partly filled index page (up to 511 records) are not synced either; a
//! record whose index entry is lost is unreachable after a restart. So wherever a workload
//! syncs, this adapter calls `flush` and then `sync_data` (fdatasync) on the segment file and
//! on the index file itself. Every commitlog figure in the table includes those two added
//! fdatasyncs.
//!
//! Settings: the index is created large enough for the whole workload (no resize while
//! appending); segments keep their 1 GB default, which every workload fits in (checked).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct Commitlog;

/// Bytes asked for per read: enough for many small records and for several 64 KiB ones.
const READ_LIMIT_BYTES: usize = 4 << 20;

fn options(dir: &Path, plan: &Plan) -> LogOptions {
    let mut options = LogOptions::new(dir);
    options
        .index_max_items(usize::try_from(plan.records).unwrap_or(usize::MAX / 16) + 16)
        .message_max_bytes((plan.record_bytes * 128).max(1 << 20));
    options
}

/// commitlog names its first segment and index after offset 0.
fn first_files(dir: &Path) -> [PathBuf; 2] {
    [dir.join(format!("{:020}.log", 0)), dir.join(format!("{:020}.index", 0))]
}

pub struct CommitlogWriter {
    log: CommitLog,
    dir: PathBuf,
    /// The segment and index files, opened separately so that the adapter can fdatasync them.
    files: [File; 2],
    buffer: MessageBuf,
}

impl CommitlogWriter {
    fn open(dir: &Path, plan: &Plan) -> Res<CommitlogWriter> {
        let log = CommitLog::new(options(dir, plan))?;
        let [segment, index] = first_files(dir);
        let files = [File::open(segment)?, File::open(index)?];
        Ok(CommitlogWriter { log, dir: dir.to_path_buf(), files, buffer: MessageBuf::default() })
    }

    /// commitlog's flush, then the fdatasyncs of the segment and the index that its flush
    /// leaves out.
    fn sync(&mut self) -> Res<()> {
        self.log.flush()?;
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl Engine for Commitlog {
    const NAME: &'static str = "commitlog";
    const DURABILITY: &'static str = "`CommitLog::flush`: calls `File::flush` (a no-op) on \
        the segment and msyncs only the index's whole pages, so records (and up to 511 index \
        entries) do NOT reach the disk. The comparison adds `sync_data` (fdatasync) of the \
        segment file and of the index file after every flush; the figures include both.";

    type Writer = CommitlogWriter;

    fn create(dir: &Path, plan: &Plan) -> Res<CommitlogWriter> {
        CommitlogWriter::open(dir, plan)
    }

    fn reopen(dir: &Path, plan: &Plan) -> Res<CommitlogWriter> {
        CommitlogWriter::open(dir, plan)
    }

    fn replay(dir: &Path, plan: &Plan, check: &mut Verifier) -> Res<()> {
        let log = CommitLog::new(options(dir, plan))?;
        let mut next = 0;
        loop {
            let messages = log.read(next, ReadLimit::max_bytes(READ_LIMIT_BYTES))?;
            if messages.is_empty() {
                return Ok(());
            }
            for message in messages.iter() {
                if message.offset() != next {
                    return Err(
                        format!("offset {} where {next} was expected", message.offset()).into()
                    );
                }
                check.check(message.payload());
                next += 1;
            }
        }
    }
}

impl Writer for CommitlogWriter {
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.log.append_msg(pool.stamp(index))?;
        }
        self.sync()
    }

    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.log.append_msg(pool.stamp(index))?;
            self.sync()?;
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
            self.buffer.clear();
            for index in range {
                self.buffer
                    .push(pool.stamp(index))
                    .map_err(|err| format!("commitlog batch: {err:?}"))?;
            }
            self.log.append(&mut self.buffer)?;
            self.sync()?;
        }
        Ok(())
    }

    fn close(mut self) -> Res<()> {
        self.sync()?;
        // The adapter syncs only the first segment and index: make sure there is no other.
        let segments = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "log"))
            .count();
        if segments != 1 {
            return Err(
                format!("commitlog rolled to {segments} segments; only one is synced").into()
            );
        }
        Ok(())
    }
}
