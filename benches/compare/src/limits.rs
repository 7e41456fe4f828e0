//! The machine's own limits, measured with plain system calls on the same filesystem as the
//! engines' logs: what no engine can beat without cheating on durability.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{fallocate, FallocateFlags};

use crate::engines::Res;
use crate::stats::Samples;

/// Bytes written by the sequential-write measurements: about what the 128-byte and the
/// 64 KiB append workloads write (the virtual disk's speed depends on how much is written).
/// The smaller file is also the one read back by the page-cache measurement.
pub const SEQUENTIAL_BYTES: usize = 128 << 20;
pub const SEQUENTIAL_LARGE_BYTES: usize = 640 << 20;
const CHUNK_BYTES: usize = 1 << 20;
/// Size of one durable write: one 128-byte record.
const SMALL_WRITE_BYTES: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// MB/s of `write` (1 MiB at a time) of [`SEQUENTIAL_BYTES`] to a new file, ending with
    /// one fdatasync.
    pub sequential_write: Samples,
    /// The same with [`SEQUENTIAL_LARGE_BYTES`].
    pub sequential_write_large: Samples,
    /// Operations per second of a 128-byte `pwrite` + fdatasync, at consecutive offsets of a
    /// file preallocated with `fallocate` (the blocks are allocated but unwritten, as in a
    /// Chronicle segment).
    pub fdatasync_fallocated: Samples,
    /// As above on a file whose blocks were already written (zeros) and synced, as in an
    /// okaywal segment: the filesystem has no extent to convert.
    pub fdatasync_overwrite: Samples,
    /// Records per second when each fdatasync covers one `pwrite` of `batch` 128-byte records
    /// on a fallocated file.
    pub batch_fdatasync: Samples,
    /// As above on an already-written file.
    pub batch_fdatasync_overwrite: Samples,
    pub batch: usize,
    /// MB/s of `read` (1 MiB at a time) of a file that is in the page cache.
    pub page_cache_read: Samples,
}

fn fill(buffer: &mut [u8], seed: u64) {
    let mut state = seed;
    for chunk in buffer.chunks_mut(8) {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let word = state.to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

fn sync_dir(dir: &Path) -> Res<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes `bytes` to a new file and fdatasyncs it; returns MB/s.
fn sequential_write(path: &Path, chunk: &[u8], bytes: usize) -> Res<f64> {
    let _ = std::fs::remove_file(path);
    crate::settle();
    let start = Instant::now();
    let mut file = File::create(path)?;
    for _ in 0..bytes / chunk.len() {
        file.write_all(chunk)?;
    }
    file.sync_data()?;
    Ok(mb_per_s(bytes as f64, start.elapsed()))
}

fn page_cache_read(path: &Path, buffer: &mut [u8]) -> Res<f64> {
    let start = Instant::now();
    let mut file = File::open(path)?;
    let mut total = 0usize;
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let elapsed = start.elapsed();
    if total != SEQUENTIAL_BYTES {
        return Err(format!("read {total} bytes back, wrote {SEQUENTIAL_BYTES}").into());
    }
    Ok(mb_per_s(total as f64, elapsed))
}

/// A file of `bytes` in `dir`, either fallocated (unwritten extents) or written with zeros,
/// synced with its directory entry.
fn prepared_file(dir: &Path, name: &str, bytes: u64, zero_filled: bool) -> Res<File> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let file = File::options().read(true).write(true).create_new(true).open(&path)?;
    if zero_filled {
        let zeros = vec![0u8; CHUNK_BYTES];
        let mut written = 0;
        while written < bytes {
            file.write_all_at(&zeros, written)?;
            written += zeros.len() as u64;
        }
    } else {
        fallocate(&file, FallocateFlags::empty(), 0, bytes)?;
    }
    file.sync_all()?;
    sync_dir(dir)?;
    crate::settle();
    Ok(file)
}

/// `ops` writes of `write.len()` bytes at consecutive offsets, each followed by fdatasync;
/// returns operations per second.
fn write_fdatasync(file: &File, write: &[u8], ops: u64) -> Res<f64> {
    let start = Instant::now();
    for op in 0..ops {
        file.write_all_at(write, op * write.len() as u64)?;
        file.sync_data()?;
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

fn mb_per_s(bytes: f64, elapsed: Duration) -> f64 {
    bytes / 1e6 / elapsed.as_secs_f64()
}

/// Measures every limit once in `dir` (on the engines' filesystem) and adds the results to
/// `limits`. `sync_ops` is the number of fdatasyncs in each latency measurement. The run calls
/// this once per repetition, between the engines, so that the limits see the same conditions.
pub fn measure_into(limits: &mut Limits, dir: &Path, sync_ops: u64) -> Res<()> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    fill(&mut chunk, 1);
    let sequential = dir.join("sequential.dat");
    let large = sequential_write(&sequential, &chunk, SEQUENTIAL_LARGE_BYTES)?;
    limits.sequential_write_large.push(large);
    std::fs::remove_file(&sequential)?;
    limits.sequential_write.push(sequential_write(&sequential, &chunk, SEQUENTIAL_BYTES)?);
    // The file just written and synced is in the page cache; read it once to be sure.
    page_cache_read(&sequential, &mut chunk)?;
    limits.page_cache_read.push(page_cache_read(&sequential, &mut chunk)?);
    std::fs::remove_file(&sequential)?;

    let mut small = vec![0u8; SMALL_WRITE_BYTES];
    fill(&mut small, 2);
    let mut batch_write = vec![0u8; SMALL_WRITE_BYTES * limits.batch];
    fill(&mut batch_write, 3);
    let file_bytes = (sync_ops * batch_write.len() as u64).max(1 << 20);
    let file = prepared_file(dir, "fallocated.dat", file_bytes, false)?;
    limits.fdatasync_fallocated.push(write_fdatasync(&file, &small, sync_ops)?);
    let file = prepared_file(dir, "overwrite.dat", file_bytes, true)?;
    limits.fdatasync_overwrite.push(write_fdatasync(&file, &small, sync_ops)?);
    let file = prepared_file(dir, "batch.dat", file_bytes, false)?;
    let batches_per_s = write_fdatasync(&file, &batch_write, sync_ops / 2)?;
    limits.batch_fdatasync.push(batches_per_s * limits.batch as f64);
    let file = prepared_file(dir, "batch-overwrite.dat", file_bytes, true)?;
    let batches_per_s = write_fdatasync(&file, &batch_write, sync_ops / 2)?;
    limits.batch_fdatasync_overwrite.push(batches_per_s * limits.batch as f64);
    for name in ["fallocated.dat", "overwrite.dat", "batch.dat", "batch-overwrite.dat"] {
        std::fs::remove_file(dir.join(name))?;
    }
    crate::settle();
    Ok(())
}
