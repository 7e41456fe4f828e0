//! `chronicle truncate-before`: retention by hand.

use std::path::PathBuf;

use chronicle::INDEX_FILE_NAME;

use crate::output::CliResult;

/// Arguments of `chronicle truncate-before`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Removes the whole segments whose records all lie before OFFSET (never \
    the active one), never past a consumer's stored position and only records the Merkle \
    pages already cover, unless --force. Durable on return; takes the writer's lock.\n\n\
Examples:\n  chronicle truncate-before data/orders 1048576\n  \
    chronicle truncate-before data/orders 1048576 --json")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Remove the segments whose records all lie before this offset.
    offset: u64,
    /// Ignore consumer positions and the Merkle pages (tree heads and proofs then fail if no
    /// stored page covers the removed records).
    #[arg(long)]
    force: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle truncate-before`. An event log (a directory with an index file) is opened
/// as one, so that its index is saved before anything is removed.
pub fn run(args: &Args) -> CliResult {
    let report = if args.dir.join(INDEX_FILE_NAME).exists() {
        let mut log = crate::open::events(&args.dir)?;
        let report = match args.force {
            true => log.truncate_before_forced(args.offset)?,
            false => log.truncate_before(args.offset)?,
        };
        log.close()?;
        report
    } else {
        let mut log = crate::open::writer(&args.dir)?;
        let report = match args.force {
            true => log.truncate_before_forced(args.offset)?,
            false => log.truncate_before(args.offset)?,
        };
        log.close()?;
        report
    };
    if args.json {
        let line = serde_json::json!({
            "start_offset": report.start_offset,
            "segments_removed": report.segments_removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "records_removed": report.records_removed,
            "limited_by": report.limited_by,
        });
        println!("{line}");
        return Ok(());
    }
    println!(
        "removed {} segments ({} records); the log now begins at offset {}",
        report.segments_removed.len(),
        report.records_removed,
        report.start_offset
    );
    if let Some(why) = &report.limited_by {
        println!("stopped before offset {}: {why}", args.offset);
    }
    Ok(())
}
