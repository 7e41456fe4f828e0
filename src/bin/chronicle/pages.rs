//! `chronicle verify-pages`: checks the Merkle tree's stored pages against the log.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::{CliError, CliResult};

/// Arguments of `chronicle verify-pages`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle verify-pages data/raw
  chronicle verify-pages data/raw --level 0 --json

Exit status: 0 every stored page matches the log, 1 a page does not (or the log cannot be
read).")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Check only the pages of this level (0: pages of records).
    #[arg(long, value_name = "L")]
    level: Option<u8>,
    /// Print one JSON object: the whole report.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle verify-pages`: a read-only open, then [`Log::verify_pages`], which
/// recomputes every page from the records and compares each stored one.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let log = crate::open::read_only(&args.dir)?;
    let report = log.verify_pages(args.level, None)?;
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        print_human(args, &report)?;
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_human(args: &Args, report: &chronicle::rollup::PagesReport) -> CliResult {
    let verdict = if report.is_clean() { "ok" } else { "damaged pages" };
    println!("{verdict}: {}", args.dir.display());
    println!("  entries:       {}", report.entries);
    println!("  pages checked: {}", report.pages_checked);
    for (level, pages) in report.levels.iter().enumerate() {
        println!(
            "  level {level}: {} pages stored, {} full pages in the log",
            pages.stored, pages.expected
        );
    }
    for bad in &report.problems {
        println!(
            "  level {} page {} (offsets {} to {}): {}",
            bad.level, bad.index, bad.first_offset, bad.last_offset, bad.problem
        );
    }
    Ok(())
}
