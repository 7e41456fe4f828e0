//! `chronicle index status|rebuild|checkpoint`: the event log's index file.

use std::path::PathBuf;

use chronicle::{EventLog, IndexOptions, IndexReport};

use crate::output::{progress, CliResult};

/// Arguments of `chronicle index`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Whether the index file matches the log and how much of the log it covers (read-only).
    #[command(after_help = "Example:\n  chronicle index status data/orders --json")]
    Status(Target),
    /// Rebuild the index from the whole log and save it (takes the writer's lock).
    #[command(after_help = "Example:\n  chronicle index rebuild data/orders")]
    Rebuild(Target),
    /// Catch the index up with the log and save it (takes the writer's lock).
    #[command(after_help = "Example:\n  chronicle index checkpoint data/orders")]
    Checkpoint(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The log directory.
    dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle index …`.
pub fn run(args: &Args) -> CliResult {
    match &args.action {
        Action::Status(target) => {
            let log = crate::open::events_read_only(&target.dir)?;
            print(target, "status", log.index_report(), &log, None);
        }
        Action::Rebuild(target) => {
            let bar = progress("rebuilding the index from the log");
            // Asked for by hand: an index file lost after retention is rebuilt too, forgetting
            // the aggregates whose events were all removed (IndexOptions docs).
            let options = IndexOptions { rebuild_after_retention: true, ..IndexOptions::default() };
            let mut log =
                EventLog::open_with_index_options(&target.dir, crate::open::options(), options)?;
            let start = log.log().start_offset();
            let read = log.rebuild_index_from(start)?;
            log.checkpoint()?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let report = log.index_report().clone();
            print(target, "rebuilt", &report, &log, Some(read));
            log.close()?;
        }
        Action::Checkpoint(target) => {
            let mut log = crate::open::events(&target.dir)?;
            log.checkpoint()?;
            let report = log.index_report().clone();
            print(target, "saved", &report, &log, None);
            log.close()?;
        }
    }
    Ok(())
}

fn print(target: &Target, done: &str, report: &IndexReport, log: &EventLog, read: Option<u64>) {
    let index = log.index();
    if target.json {
        let line = serde_json::json!({
            "action": done,
            "index_file": log.index_path().display().to_string(),
            "loaded_from_file": report.loaded,
            "rebuilt_because": report.rebuilt_because,
            "records_replayed_on_open": report.records_replayed,
            "records_read_by_rebuild": read,
            "records_indexed": index.records(),
            "records_not_events": report.records_not_events,
            "covered_end": index.covered_end(),
            "log_end": log.end_offset(),
            "aggregates": index.aggregate_ids().count(),
            "event_types": index.event_types().count(),
            "namespaces": index.namespaces().count(),
        });
        println!("{line}");
        return;
    }
    println!("index {done}: {}", log.index_path().display());
    match &report.rebuilt_because {
        None if report.loaded => println!(
            "  loaded from the file, caught up by reading {} records",
            report.records_replayed
        ),
        None => println!("  built from the log"),
        Some(why) => println!("  the file was not used: {why}"),
    }
    if let Some(read) = read {
        println!("  rebuilt from {read} records");
    }
    println!("  records indexed:  {}", index.records());
    println!("  not events:       {}", report.records_not_events);
    println!("  covers up to:     {} (log end {})", index.covered_end(), log.end_offset());
    println!("  aggregates:       {}", index.aggregate_ids().count());
    println!("  event types:      {}", index.event_types().count());
    println!("  namespaces:       {}", index.namespaces().count());
}
