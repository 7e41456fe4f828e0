//! okaywal 0.3: a write-ahead log of entries made of chunks; `EntryWriter::commit` flushes its
//! buffer and calls `File::sync_data` (fdatasync), so every commit is durable and there is no
//! buffered (unsynced) commit. One record is one chunk.
//!
//! Settings, chosen to favour okaywal: the segment file is preallocated (zero-filled) to hold
//! the whole workload, and that fill is made durable before the clock starts (by committing
//! an empty entry), so the timed writes overwrite allocated blocks and never extend the file;
//! checkpointing is disabled (`checkpoint_after_bytes = u64::MAX`), since a checkpointed
//! segment is recycled and could not be replayed.

use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use okaywal::{
    Configuration, Entry, EntryId, LogManager, ReadChunkResult, SegmentReader, WriteAheadLog,
};

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct OkayWal;

/// The configuration for a log in `dir` that will receive `plan`.
fn configuration(dir: &Path, plan: &Plan) -> Configuration {
    const MIB: u64 = 1 << 20;
    // Per record: a 5-byte chunk header and a 4-byte CRC; per entry: 10 bytes.
    let needed = plan.payload_bytes() + plan.records * 24 + MIB;
    let preallocate = needed.div_ceil(MIB) * MIB;
    let preallocate = u32::try_from(preallocate).unwrap_or(u32::MAX - (u32::MAX % (1 << 20)));
    Configuration::default_for(dir)
        .preallocate_bytes(preallocate)
        .checkpoint_after_bytes(u64::MAX)
        .buffer_bytes(256 << 10)
}

/// Reads every chunk of every recovered entry and checks its CRC; with a verifier, also
/// compares each chunk with what was written. Reading the chunks is also the fastest way
/// through recovery: chunks a manager leaves unread are skipped with a seek each.
#[derive(Debug)]
struct Recoverer {
    check: Option<Arc<Mutex<Verifier>>>,
    buffer: Vec<u8>,
}

impl Recoverer {
    fn new(check: Option<Arc<Mutex<Verifier>>>) -> Recoverer {
        Recoverer { check, buffer: Vec::new() }
    }
}

impl LogManager for Recoverer {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        let mut check = match &self.check {
            Some(check) => Some(check.lock().map_err(|_| io::Error::other("poisoned"))?),
            None => None,
        };
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    self.buffer.resize(chunk.bytes_remaining() as usize, 0);
                    chunk.read_exact(&mut self.buffer)?;
                    if !chunk.check_crc()? {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk CRC"));
                    }
                    if let Some(check) = check.as_mut() {
                        check.check(&self.buffer);
                    }
                }
                ReadChunkResult::EndOfEntry => return Ok(()),
                ReadChunkResult::AbortedEntry => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "aborted entry"))
                }
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        // Never called: checkpointing is disabled.
        Ok(())
    }
}

pub struct OkayWalWriter {
    wal: WriteAheadLog,
}

impl Engine for OkayWal {
    const NAME: &'static str = "okaywal";
    const DURABILITY: &'static str = "`EntryWriter::commit`: flushes its buffer and calls \
        `File::sync_data` (fdatasync), and fsyncs the directory after creating a file. Reaches \
        the disk. No unsynced commit exists, so buffered appends are chunks of one entry \
        committed once at the end.";

    type Writer = OkayWalWriter;

    fn create(dir: &Path, plan: &Plan) -> Res<OkayWalWriter> {
        let wal = configuration(dir, plan).open(Recoverer::new(None))?;
        // Make the zero-filled preallocation and the new file's directory entry durable now,
        // so that the timed commits only pay for their own bytes.
        wal.begin_entry()?.commit()?;
        Ok(OkayWalWriter { wal })
    }

    fn reopen(dir: &Path, plan: &Plan) -> Res<OkayWalWriter> {
        let wal = configuration(dir, plan).open(Recoverer::new(None))?;
        Ok(OkayWalWriter { wal })
    }

    fn replay(dir: &Path, plan: &Plan, check: &mut Verifier) -> Res<()> {
        let shared = Arc::new(Mutex::new(check.clone()));
        let wal = configuration(dir, plan).open(Recoverer::new(Some(Arc::clone(&shared))))?;
        *check = shared.lock().map_err(|_| "poisoned")?.clone();
        wal.shutdown()?;
        Ok(())
    }
}

impl Writer for OkayWalWriter {
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        let mut entry = self.wal.begin_entry()?;
        for index in indexes {
            entry.write_chunk(pool.stamp(index))?;
        }
        entry.commit()?;
        Ok(())
    }

    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            let mut entry = self.wal.begin_entry()?;
            entry.write_chunk(pool.stamp(index))?;
            entry.commit()?;
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
            let mut entry = self.wal.begin_entry()?;
            for index in range {
                entry.write_chunk(pool.stamp(index))?;
            }
            entry.commit()?;
        }
        Ok(())
    }

    fn close(self) -> Res<()> {
        // Every commit was already synced.
        Ok(self.wal.shutdown()?)
    }
}
