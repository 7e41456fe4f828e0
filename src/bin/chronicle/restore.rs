//! `chronicle restore`: rebuild a log from a backup, whole or up to a point.

use std::path::PathBuf;
use std::process::ExitCode;

use chronicle::archive::{self, RestoreOptions, RestorePoint};

use crate::backup::{cli_error, StoreArgs};
use crate::output::{bytes, progress, CliError};

/// Arguments of `chronicle restore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Restores into a new directory (it must not exist, or be empty) from the \
    latest catalog, reading only the catalog, the manifests and the segment objects the point \
    needs. Every digest, link, frame and tree head is checked before a byte is written; the log \
    is built beside DIR and renamed to it at the end, so a failed restore leaves nothing. The \
    restored log's tree head is compared with the one the backup records for that point.\n\
Exit status: 0 restored, 1 the backup is damaged (the message names the object), 2 usage or \
access errors.\n\n\
Examples:\n  chronicle restore s3://backups/orders data/orders\n  \
chronicle restore s3://backups/orders data/orders-at-noon --until-ms 1796000000000\n  \
chronicle restore file:///mnt/backup/orders /tmp/orders --until-offset 1048576 --json")]
pub struct Args {
    /// The backup's URL.
    url: String,
    /// The directory to restore into.
    dir: PathBuf,
    /// Restore only the records at offsets below this one (a batch it cuts is left out).
    #[arg(long, value_name = "OFFSET", conflicts_with = "until_ms")]
    until_offset: Option<u64>,
    /// Restore only the records written at or before this time (milliseconds since the Unix
    /// epoch), up to the first that was not.
    #[arg(long, value_name = "MS")]
    until_ms: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle restore`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let point = match (args.until_offset, args.until_ms) {
        (Some(offset), _) => RestorePoint::Offset(offset),
        (None, Some(ms)) => RestorePoint::Time(ms),
        (None, None) => RestorePoint::Latest,
    };
    let options = RestoreOptions { point, store_options: args.store.options()?, check_log: true };
    let bar = progress("restoring");
    let result = archive::restore(&args.url, &args.dir, &options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(|err| cli_error(&err))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::Failed(format!("cannot encode the report: {err}")))?;
        println!("{text}");
    } else {
        println!(
            "restored {} segment(s), offsets {} to {}, {} records, into {}",
            report.segments,
            report.start_offset,
            report.end_offset,
            report.head.tree_size - report.first_entry,
            args.dir.display()
        );
        println!("  tree head: size {} root {}", report.head.tree_size, report.head.root);
        println!("  read:      {} objects, {}", report.objects_read, bytes(report.bytes_read));
    }
    Ok(ExitCode::SUCCESS)
}
