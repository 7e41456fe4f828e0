//! The naive log anyone could write in an afternoon: one file, each record written through a
//! `BufWriter` as `[len: u32 LE][crc32: u32 LE][payload]`, a sync being `flush` followed by
//! `File::sync_data` (fdatasync). Opening scans the whole file, checking every CRC, to find
//! where the valid records end (a torn tail is cut there), as a correct naive log must.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use super::{batches, Engine, Res, Writer};
use crate::workload::{Plan, Pool, Verifier};

pub struct Baseline;

const FILE_NAME: &str = "log.dat";
const BUFFER_BYTES: usize = 1 << 20;
const HEADER_BYTES: usize = 8;

pub struct BaselineWriter {
    file: BufWriter<File>,
}

impl BaselineWriter {
    #[inline]
    fn write_record(&mut self, payload: &[u8]) -> Res<()> {
        let len = u32::try_from(payload.len())?;
        let mut header = [0u8; HEADER_BYTES];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.file.write_all(&header)?;
        self.file.write_all(payload)?;
        Ok(())
    }

    fn sync(&mut self) -> Res<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        Ok(())
    }
}

/// Reads records from the start of `file`, handing each valid payload to `visit`; returns the
/// end of the last valid record.
fn scan(file: File, mut visit: impl FnMut(&[u8])) -> Res<u64> {
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
    let mut payload = Vec::new();
    let mut end = 0u64;
    loop {
        let mut header = [0u8; HEADER_BYTES];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::UnexpectedEof => return Ok(end),
            Err(err) => return Err(err.into()),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        payload.resize(len, 0);
        match reader.read_exact(&mut payload) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::UnexpectedEof => return Ok(end),
            Err(err) => return Err(err.into()),
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(end);
        }
        visit(&payload);
        end += (HEADER_BYTES + len) as u64;
    }
}

impl Engine for Baseline {
    const NAME: &'static str = "bufwriter+crc";
    const DURABILITY: &'static str = "flush of the `BufWriter`, then `File::sync_data` \
        (fdatasync). Reaches the disk. The file grows with every write (no preallocation).";

    type Writer = BaselineWriter;

    fn create(dir: &Path, _plan: &Plan) -> Res<BaselineWriter> {
        let file = File::create(dir.join(FILE_NAME))?;
        // Make the new file's directory entry durable, as a careful log would.
        File::open(dir)?.sync_all()?;
        Ok(BaselineWriter { file: BufWriter::with_capacity(BUFFER_BYTES, file) })
    }

    fn reopen(dir: &Path, _plan: &Plan) -> Res<BaselineWriter> {
        let path = dir.join(FILE_NAME);
        let end = scan(File::open(&path)?, |_| {})?;
        let mut file = OpenOptions::new().write(true).open(&path)?;
        if file.metadata()?.len() != end {
            file.set_len(end)?;
        }
        file.seek(SeekFrom::Start(end))?;
        Ok(BaselineWriter { file: BufWriter::with_capacity(BUFFER_BYTES, file) })
    }

    fn replay(dir: &Path, _plan: &Plan, check: &mut Verifier) -> Res<()> {
        scan(File::open(dir.join(FILE_NAME))?, |payload| check.check(payload))?;
        Ok(())
    }
}

impl Writer for BaselineWriter {
    fn append_then_sync(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.write_record(pool.stamp(index))?;
        }
        self.sync()
    }

    fn append_each_durable(&mut self, pool: &mut Pool, indexes: Range<u64>) -> Res<()> {
        for index in indexes {
            self.write_record(pool.stamp(index))?;
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
            for index in range {
                self.write_record(pool.stamp(index))?;
            }
            self.sync()?;
        }
        Ok(())
    }

    fn close(mut self) -> Res<()> {
        self.sync()
    }
}
