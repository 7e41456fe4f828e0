//! `chronicle stats`: a log's segments, record counts and what a read-only open found.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chronicle::Log;

use crate::output::{bytes, quiet_broken_pipe, write_open_report, CliError, CliResult};

/// Arguments of `chronicle stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
}

/// A segment file as the directory lists it.
pub struct SegmentFile {
    /// The file name, `{base:020}.seg`.
    pub name: String,
    /// The base offset its name states.
    pub base: u64,
    /// The file's size in bytes, header included.
    pub size: u64,
}

/// The segment files in `dir`, sorted by base offset. Only names; the log validates contents.
pub fn segment_files(dir: &Path) -> Result<Vec<SegmentFile>, CliError> {
    let listing =
        |err: io::Error| CliError::Failed(format!("cannot list `{}`: {err}", dir.display()));
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse() else { continue };
        let size = entry.metadata().map_err(listing)?.len();
        files.push(SegmentFile { name, base, size });
    }
    files.sort_by_key(|f| f.base);
    Ok(files)
}

/// Runs `chronicle stats`.
pub fn run(args: &Args) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let files = segment_files(&args.dir)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = write_stats(&log, &files, &mut out);
    quiet_broken_pipe(result.and_then(|()| out.flush().map_err(Into::into)))
}

fn write_stats(log: &Log, files: &[SegmentFile], out: &mut impl Write) -> CliResult {
    writeln!(out, "log: {}", log.dir().display())?;
    writeln!(out, "segments: {}", files.len())?;
    writeln!(out, "  {:<28}  {:>20}  {:>12}", "name", "base offset", "file bytes")?;
    let mut file_bytes = 0;
    for file in files {
        writeln!(out, "  {:<28}  {:>20}  {:>12}", file.name, file.base, file.size)?;
        file_bytes += file.size;
    }
    writeln!(out, "file bytes:   {file_bytes} ({})", bytes(file_bytes))?;
    writeln!(out, "start offset: {}", log.start_offset())?;
    writeln!(out, "end offset:   {}", log.end_offset())?;
    let data = log.end_offset() - log.start_offset();
    writeln!(out, "data bytes:   {data} ({})", bytes(data))?;
    write_open_report(out, log.open_report())?;
    out.flush()?;
    // Counting records reads every frame; a damaged one ends the count with its error.
    let report = log.verify()?;
    writeln!(out, "records:       {}", report.records)?;
    writeln!(out, "payload bytes: {} ({})", report.payload_bytes, bytes(report.payload_bytes))?;
    Ok(())
}
