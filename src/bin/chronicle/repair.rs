//! `chronicle repair`: shows what a repair would do, asks, then salvages the log (every intact
//! record kept, each damaged span replaced by a gap) or, with `--truncate`, cuts it at the
//! first damage.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chronicle::{Log, Options, RecoveryMode, RepairReport};

use crate::output::{bytes, write_open_report, CliError};

/// Exit status: damage was found and repaired.
const EXIT_REPAIRED: u8 = 3;
/// Exit status: damage was found and nothing was changed (`--dry-run`, or the answer was no).
const EXIT_DAMAGE_LEFT: u8 = 4;

/// Arguments of `chronicle repair`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle repair data/events --dry-run   # show what would be done, change nothing
  chronicle repair data/events --yes       # salvage without asking
  chronicle repair data/events --truncate  # cut the log at the first damage instead

Exit status: 0 no damage found (a torn tail a crash left may have been cut, as any open cuts
it); 1 an error; 3 damage found and repaired; 4 damage found and nothing changed.")]
pub struct Args {
    /// The log directory (it must hold a log; repair never creates one).
    dir: PathBuf,
    /// Show what the repair would do and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Repair without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Cut the log at the first damage instead of salvaging: every record after it is
    /// dropped (its bytes are kept beside the log).
    #[arg(long)]
    truncate: bool,
}

/// Runs `chronicle repair`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let mode = if args.truncate { RecoveryMode::Truncate } else { RecoveryMode::Salvage };
    let plan = Log::plan_repair(&args.dir, mode)?;
    let mut out = io::stdout().lock();
    if !plan.damage_found() {
        match plan.truncated_at {
            Some(offset) => writeln!(
                out,
                "no damage found; a torn tail at offset {offset} ({} intact records of an \
                 unfinished write) will be cut, as any writer's open cuts it",
                plan.records_dropped
            )?,
            None => writeln!(out, "nothing to repair: every record is intact")?,
        }
        if args.dry_run || plan.truncated_at.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    } else {
        writeln!(out, "damage found in `{}`:", args.dir.display())?;
        write_repair_report(&mut out, &plan)?;
        if args.dry_run {
            writeln!(out, "dry run: nothing was changed")?;
            return Ok(ExitCode::from(EXIT_DAMAGE_LEFT));
        }
        if !args.yes && !confirm(&mut out)? {
            writeln!(out, "nothing was changed")?;
            return Ok(ExitCode::from(EXIT_DAMAGE_LEFT));
        }
    }
    let options = Options { recovery: mode, ..crate::open::options() };
    let log = Log::open_with(&args.dir, options)?;
    let report = log.open_report().clone();
    log.close()?;
    let damaged = report.repair.as_ref().is_some_and(RepairReport::damage_found);
    if let Some(repair) = report.repair.as_ref().filter(|_| damaged) {
        writeln!(out, "repaired:")?;
        write_repair_report(&mut out, repair)?;
    }
    write_open_report(&mut out, &report)?;
    Ok(if damaged { ExitCode::from(EXIT_REPAIRED) } else { ExitCode::SUCCESS })
}

/// Asks on the terminal whether to go ahead; refuses when there is no terminal to ask on.
fn confirm(out: &mut impl Write) -> Result<bool, CliError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Failed(
            "refusing to repair without confirmation: run again with --yes (or --dry-run)"
                .to_string(),
        ));
    }
    write!(out, "apply this repair? [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Prints what a repair found, or did: each damaged span, then what is kept and lost.
fn write_repair_report(out: &mut impl Write, report: &RepairReport) -> io::Result<()> {
    for span in &report.damaged {
        writeln!(
            out,
            "  damaged: offsets [{}, {}) ({}) in {}: {}",
            span.start,
            span.end,
            bytes(span.end - span.start),
            span.segment.display(),
            span.reason
        )?;
    }
    let action = match report.mode {
        RecoveryMode::Truncate => "the log is cut at the first damage",
        _ => "each damaged span becomes a gap; every intact record keeps its offset",
    };
    writeln!(out, "  action:          {action}")?;
    writeln!(out, "  records kept:    {}", report.records_kept)?;
    writeln!(
        out,
        "  records lost:    at least {} in damaged spans, {} intact records dropped",
        report.damaged.len(),
        report.records_dropped
    )?;
    if let Some(offset) = report.truncated_at {
        writeln!(out, "  log ends at:     {offset} ({} cut)", bytes(report.bytes_cut))?;
    }
    for path in &report.segments_dropped {
        writeln!(out, "  segment set aside: {}", path.display())?;
    }
    for path in &report.saved {
        writeln!(out, "  bytes kept in:   {}", path.display())?;
    }
    Ok(())
}
