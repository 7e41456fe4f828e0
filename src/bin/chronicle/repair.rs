//! `chronicle repair`: opens a log with [`RecoveryMode::Repair`], which truncates it at the
//! first damaged record.

use std::io;
use std::path::PathBuf;

use chronicle::{Log, Options, RecoveryMode};

use crate::output::{write_open_report, CliError, CliResult};
use crate::stats::segment_files;

/// Arguments of `chronicle repair`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory (it must exist; repair never creates a log).
    dir: PathBuf,
}

/// Runs `chronicle repair`.
pub fn run(args: &Args) -> CliResult {
    // A writer's open creates a missing log; a repair of a mistyped path should not.
    if !args.dir.is_dir() || segment_files(&args.dir)?.is_empty() {
        return Err(CliError::Failed(format!(
            "`{}` holds no Chronicle segment files",
            args.dir.display()
        )));
    }
    let options = Options { recovery: RecoveryMode::Repair, ..Options::default() };
    let log = Log::open_with(&args.dir, options)?;
    let report = log.open_report().clone();
    log.close()?;
    match (&report.repair, &report.torn_tail) {
        (Some(repair), _) => println!(
            "repaired: log truncated at offset {} ({}); {} bytes dropped, {} segments set aside",
            repair.offset,
            repair.reason,
            repair.bytes_dropped,
            repair.segments_dropped.len()
        ),
        (None, Some(torn)) => println!(
            "torn tail cut: {} bytes at offset {} ({} intact frames dropped, {} segments set \
             aside); no damage found",
            torn.bytes,
            torn.offset,
            torn.frames_dropped,
            torn.segments_dropped.len()
        ),
        (None, None) => println!("nothing to repair: every record is intact"),
    }
    write_open_report(&mut io::stdout().lock(), &report)?;
    Ok(())
}
