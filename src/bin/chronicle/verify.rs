//! `chronicle verify`: the full integrity report of a log, without changing anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chronicle::{Log, RecoveryMode, StorageError};
use serde::Serialize;

use crate::output::{bytes, progress, CliError};

/// Arguments of `chronicle verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Checks every segment header, every frame, the segment chain, gaps a \
    repair left, the index file against the log, the Merkle tree's stored pages and the \
    consumer positions. Changes nothing.\n\
Exit status: 0 healthy, 1 problems found, 2 the log could not be read (usage or access).\n\n\
Examples:\n  chronicle verify data/orders\n  chronicle verify data/orders --json | jq .findings")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    /// Records are damaged or cannot be read.
    Error,
    /// A derived file (index, pages, consumer position) is wrong; the records are intact.
    Warning,
    /// Normal after a crash or a repair; nothing to mend.
    Info,
}

/// One thing the checks found.
#[derive(Debug, Serialize)]
struct Finding {
    severity: Severity,
    /// What was checked: `open`, `frames`, `gap`, `torn-tail`, `index`, `pages`, `consumer`.
    check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    dir: String,
    healthy: bool,
    segments: usize,
    records: u64,
    payload_bytes: u64,
    end_offset: u64,
    findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, severity: Severity, check: &'static str, message: String) -> &mut Finding {
        self.findings.push(Finding { severity, check, segment: None, offset: None, message });
        let last = self.findings.len() - 1;
        &mut self.findings[last]
    }

    /// Records a library error as an error finding, with its segment and offset if it has them.
    fn error(&mut self, check: &'static str, err: &StorageError) {
        let (segment, offset) = match err {
            StorageError::Corruption { segment, offset, .. } => {
                (Some(segment.display().to_string()), Some(*offset))
            }
            StorageError::BrokenChain { segment, .. } => {
                (Some(segment.display().to_string()), None)
            }
            _ => (None, None),
        };
        let finding = self.add(Severity::Error, check, err.to_string());
        finding.segment = segment;
        finding.offset = offset;
    }
}

/// Whether an error means the log could not be read at all (exit 2), rather than that it is
/// damaged (a finding).
fn is_access_error(err: &StorageError) -> bool {
    !matches!(
        err,
        StorageError::Corruption { .. }
            | StorageError::BrokenChain { .. }
            | StorageError::Gap { .. }
    )
}

/// Runs `chronicle verify`; returns exit code 1 if it found problems.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let bar = progress("opening");
    let mut report = Report { dir: args.dir.display().to_string(), ..Report::default() };
    match crate::open::read_only(&args.dir) {
        Ok(log) => check_log(&log, &args.dir, &mut report, bar.as_ref())?,
        Err(err) if is_access_error(&err) => return Err(err.into()),
        Err(err) => report.error("open", &err),
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report.healthy = report.findings.iter().all(|f| f.severity == Severity::Info);
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::Failed(format!("cannot encode the report: {err}")))?;
        println!("{text}");
    } else {
        print_table(&report);
    }
    Ok(if report.healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn check_log(
    log: &Log,
    dir: &Path,
    report: &mut Report,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(), CliError> {
    report.end_offset = log.end_offset();
    if let Some(torn) = &log.open_report().torn_tail {
        let message = format!(
            "a torn tail of {} bytes that no sync acknowledged; a writer's open cuts it",
            torn.bytes
        );
        report.add(Severity::Info, "torn-tail", message).offset = Some(torn.offset);
    }
    set(bar, "checking every frame");
    // The salvage plan reads every frame of every segment and lists each damaged span.
    match Log::plan_repair(dir, RecoveryMode::Salvage) {
        Ok(plan) => {
            for span in &plan.damaged {
                let message = format!("damaged [{}, {}): {}", span.start, span.end, span.reason);
                let finding = report.add(Severity::Error, "frames", message);
                finding.segment = Some(span.segment.display().to_string());
                finding.offset = Some(span.start);
            }
        }
        Err(err) if is_access_error(&err) => return Err(err.into()),
        Err(err) => report.error("frames", &err),
    }
    match log.verify() {
        Ok(verified) => {
            report.segments = verified.segments;
            report.records = verified.records;
            report.payload_bytes = verified.payload_bytes;
            for (start, end) in verified.gaps {
                let message =
                    format!("gap [{start}, {end}): records a repair found damaged and took out");
                report.add(Severity::Info, "gap", message).offset = Some(start);
            }
        }
        // Already listed by the plan when it is damage to a frame.
        Err(err) if report.findings.iter().any(|f| f.check == "frames") => drop(err),
        Err(err) => report.error("frames", &err),
    }
    if report.findings.iter().any(|f| f.severity == Severity::Error) {
        return Ok(());
    }
    set(bar, "checking the index against the log");
    check_index(dir, report)?;
    set(bar, "checking the Merkle tree's pages");
    if log.reader().start_entry() > 0 {
        let message = "retention removed the log's first records: the pages over them cannot be \
                       recomputed, so the pages are not checked against the log"
            .to_string();
        report.add(Severity::Info, "pages", message);
    } else {
        check_pages(log, report);
    }
    for name in log.consumers()? {
        if let Err(err) = log.consumer(&name) {
            report.add(Severity::Warning, "consumer", err.to_string());
        }
    }
    Ok(())
}

fn check_pages(log: &Log, report: &mut Report) {
    match log.verify_pages(None, None) {
        Ok(pages) => {
            for problem in pages.problems {
                let message = format!(
                    "page {} of level {} (offsets {}..={}): {}",
                    problem.index,
                    problem.level,
                    problem.first_offset,
                    problem.last_offset,
                    problem.problem
                );
                report.add(Severity::Warning, "pages", message).offset = Some(problem.first_offset);
            }
        }
        Err(err) => report.error("pages", &err),
    }
}

/// Compares the stored index with one rebuilt from the log: a stored index that loads but
/// disagrees would answer queries wrongly.
fn check_index(dir: &Path, report: &mut Report) -> Result<(), CliError> {
    if !dir.join(chronicle::INDEX_FILE_NAME).exists() {
        return Ok(());
    }
    let mut events = crate::open::events_read_only(dir)?;
    let index_report = events.index_report().clone();
    if let Some(why) = &index_report.rebuilt_because {
        let message = format!("the index file is not used ({why}); a writer's open rebuilds it");
        report.add(Severity::Warning, "index", message);
        return Ok(());
    }
    let stored = events.index().clone();
    let start = events.log().start_offset();
    events.rebuild_index_from(start)?;
    if &stored != events.index() {
        let message = "the index file loads but disagrees with the log; delete it to rebuild";
        report.add(Severity::Error, "index", message.to_string());
    }
    Ok(())
}

fn set(bar: Option<&indicatif::ProgressBar>, message: &'static str) {
    if let Some(bar) = bar {
        bar.set_message(message);
    }
}

fn print_table(report: &Report) {
    let status = if report.healthy { "healthy" } else { "PROBLEMS FOUND" };
    println!("{status}: {}", report.dir);
    println!("  segments:      {}", report.segments);
    println!("  records:       {}", report.records);
    println!("  payload bytes: {} ({})", report.payload_bytes, bytes(report.payload_bytes));
    println!("  end offset:    {}", report.end_offset);
    for finding in &report.findings {
        let severity = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let place = match (&finding.segment, finding.offset) {
            (Some(segment), Some(offset)) => format!(" [{segment} at offset {offset}]"),
            (Some(segment), None) => format!(" [{segment}]"),
            (None, Some(offset)) => format!(" [offset {offset}]"),
            (None, None) => String::new(),
        };
        println!("  {severity:<7} {:<9} {}{place}", finding.check, finding.message);
    }
}
