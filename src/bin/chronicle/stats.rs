//! `chronicle stats`: a log's segments, record counts and what a read-only open found.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chronicle::Log;

use crate::output::{
    bytes, quiet_broken_pipe, utc_timestamp, write_open_report, CliError, CliResult,
};

/// Arguments of `chronicle stats`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Reads every record (to count them and find the first and last \
    times); changes nothing.\n\nExamples:\n  chronicle stats data/orders\n  \
    chronicle stats data/orders --json")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
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
    let log = crate::open::read_only(&args.dir)?;
    let files = segment_files(&args.dir)?;
    let stats = gather(&log, &files, &args.dir)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&stats).unwrap_or_default())
            .map_err(Into::into)
    } else {
        write_table(&stats, &log, &mut out)
    };
    quiet_broken_pipe(result.and_then(|()| out.flush().map_err(Into::into)))
}

/// What `stats` reports, as its JSON form.
#[derive(Debug, serde::Serialize)]
struct Stats {
    dir: String,
    segments: Vec<SegmentStats>,
    records: u64,
    payload_bytes: u64,
    start_offset: u64,
    end_offset: u64,
    first_record: Option<RecordStats>,
    last_record: Option<RecordStats>,
    /// Bytes the directory's files take on disk (allocated blocks).
    disk_bytes: u64,
    /// Bytes of the segment files (their preallocated size).
    segment_file_bytes: u64,
    torn_tail_bytes: Option<u64>,
    index: Option<IndexStats>,
    rollup: chronicle::rollup::RollupReport,
    consumers: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct SegmentStats {
    name: String,
    base_offset: u64,
    file_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
struct RecordStats {
    offset: u64,
    write_timestamp_ms: u64,
    write_time_utc: String,
}

#[derive(Debug, serde::Serialize)]
struct IndexStats {
    loaded_from_file: bool,
    rebuilt_because: Option<String>,
    records_indexed: u64,
    covered_end: u64,
    aggregates: usize,
}

fn gather(log: &Log, files: &[SegmentFile], dir: &Path) -> Result<Stats, CliError> {
    let (mut records, mut payload_bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None, None);
    let mut replay = log.replay(log.start_offset());
    while let Some(record) = replay.next_ref() {
        match record {
            Ok(record) => {
                records += 1;
                payload_bytes += record.payload.len() as u64;
                let stats = (record.offset, record.write_timestamp_ms);
                first.get_or_insert(stats);
                last = Some(stats);
            }
            Err(chronicle::StorageError::Gap { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let record_stats = |(offset, ms): (u64, u64)| RecordStats {
        offset,
        write_timestamp_ms: ms,
        write_time_utc: utc_timestamp(ms),
    };
    let index = if dir.join(chronicle::INDEX_FILE_NAME).exists() {
        let events = crate::open::events_read_only(dir)?;
        let report = events.index_report();
        Some(IndexStats {
            loaded_from_file: report.loaded,
            rebuilt_because: report.rebuilt_because.clone(),
            records_indexed: events.index().records(),
            covered_end: events.index().covered_end(),
            aggregates: events.index().aggregate_ids().count(),
        })
    } else {
        None
    };
    Ok(Stats {
        dir: dir.display().to_string(),
        segments: files
            .iter()
            .map(|f| SegmentStats { name: f.name.clone(), base_offset: f.base, file_bytes: f.size })
            .collect(),
        records,
        payload_bytes,
        start_offset: log.start_offset(),
        end_offset: log.end_offset(),
        first_record: first.map(record_stats),
        last_record: last.map(record_stats),
        disk_bytes: disk_use(dir)?,
        segment_file_bytes: files.iter().map(|f| f.size).sum(),
        torn_tail_bytes: log.open_report().torn_tail.as_ref().map(|t| t.bytes),
        index,
        rollup: log.rollup_report(),
        consumers: log.consumers()?,
    })
}

/// Bytes the files directly in `dir` take on disk.
fn disk_use(dir: &Path) -> Result<u64, CliError> {
    use std::os::unix::fs::MetadataExt as _;
    let listing =
        |err: io::Error| CliError::Failed(format!("cannot list `{}`: {err}", dir.display()));
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(listing)? {
        let metadata = entry.map_err(listing)?.metadata().map_err(listing)?;
        if metadata.is_file() {
            total += metadata.blocks() * 512;
        }
    }
    Ok(total)
}

fn write_table(stats: &Stats, log: &Log, out: &mut impl Write) -> CliResult {
    writeln!(out, "log: {}", stats.dir)?;
    writeln!(out, "segments: {}", stats.segments.len())?;
    writeln!(out, "  {:<28}  {:>20}  {:>12}", "name", "base offset", "file bytes")?;
    for segment in &stats.segments {
        writeln!(
            out,
            "  {:<28}  {:>20}  {:>12}",
            segment.name, segment.base_offset, segment.file_bytes
        )?;
    }
    writeln!(out, "records:       {}", stats.records)?;
    writeln!(out, "payload bytes: {} ({})", stats.payload_bytes, bytes(stats.payload_bytes))?;
    writeln!(out, "start offset:  {}", stats.start_offset)?;
    writeln!(out, "end offset:    {}", stats.end_offset)?;
    for (label, record) in
        [("first record:", &stats.first_record), ("last record: ", &stats.last_record)]
    {
        if let Some(r) = record {
            writeln!(out, "{label}  offset {} at {}", r.offset, r.write_time_utc)?;
        }
    }
    writeln!(
        out,
        "disk use:      {} ({} of segment files)",
        bytes(stats.disk_bytes),
        bytes(stats.segment_file_bytes)
    )?;
    match &stats.index {
        Some(index) => writeln!(
            out,
            "index:         {} records, {} aggregates, covers to {}{}",
            index.records_indexed,
            index.aggregates,
            index.covered_end,
            index
                .rebuilt_because
                .as_ref()
                .map_or(String::new(), |why| format!(" (file not used: {why})"))
        )?,
        None => writeln!(out, "index:         no index file")?,
    }
    let rollup = &stats.rollup;
    let pages: u64 = rollup.pages.iter().map(|(stored, _)| stored).sum();
    writeln!(
        out,
        "merkle pages:  {pages} stored ({}), {} entries hashed",
        bytes(rollup.disk_bytes),
        rollup.entries_hashed
    )?;
    if !stats.consumers.is_empty() {
        writeln!(out, "consumers:     {}", stats.consumers.join(", "))?;
    }
    write_open_report(out, log.open_report())?;
    Ok(())
}
