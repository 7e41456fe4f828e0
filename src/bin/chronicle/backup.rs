//! `chronicle backup` and `chronicle verify-backup`: back a log up to object storage, and check
//! a backup without restoring it. Shared here: the store options and the error mapping of the
//! archive subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use chronicle::archive::{self, ArchiveError, BackupCheck, BackupOptions, ShipReport};

use crate::output::{bytes, progress, CliError};

/// How to reach the store, shared by the archive subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// An `object_store` option for the destination, as KEY=VALUE (repeatable), on top of the
    /// `AWS_*`, `GOOGLE_*` and `AZURE_*` environment variables, e.g.
    /// `--store-option aws_endpoint=http://127.0.0.1:9000`.
    #[arg(long = "store-option", value_name = "KEY=VALUE")]
    pub store_options: Vec<String>,
}

impl StoreArgs {
    /// The environment's store options, then the command line's.
    pub fn options(&self) -> Result<Vec<(String, String)>, CliError> {
        let mut options = archive::store_options_from_env();
        for option in &self.store_options {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                CliError::Input(format!("--store-option {option:?} is not KEY=VALUE"))
            })?;
            options.push((key.trim().to_ascii_lowercase(), value.to_string()));
        }
        Ok(options)
    }
}

/// The CLI error for an archive error: exit 1 for damage (to the backup or the log), 2 for
/// everything else (usage, access, a lease held by another shipper).
pub fn cli_error(err: &ArchiveError) -> CliError {
    if err.is_damage() {
        CliError::Failed(err.to_string())
    } else {
        CliError::Input(err.to_string())
    }
}

/// Arguments of `chronicle backup`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Ships what the destination lacks: the sealed segments not yet there, \
    then the durable part of the active one, each with a manifest (SHA-256, offsets, entries, \
    tree head, hash of the previous manifest), then a new catalog. Reads the log read-only, so \
    a writer may be appending. URLs: file:///dir (or a plain path), s3://bucket/prefix, gs://…, az://…; \
    credentials and endpoints come from AWS_* variables or --store-option.\n\
Exit status: 0 done, 1 the log or the backup is damaged or diverges, 2 usage or access \
errors (also: another shipper holds the destination).\n\n\
Examples:\n  chronicle backup data/orders s3://backups/orders\n  \
chronicle backup data/orders /mnt/backup/orders --zstd 3 --json")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// The destination URL.
    url: String,
    /// Compress segment objects with zstd at this level (1 to 22).
    #[arg(long, value_name = "LEVEL")]
    zstd: Option<i32>,
    /// Set this consumer's position to the end of what the destination holds, so that
    /// retention keeps what is not backed up yet.
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Prints what a backup or shipping round did.
pub fn print_shipped(report: &ShipReport, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string(report)
            .map_err(|err| CliError::Failed(format!("cannot encode the report: {err}")))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "shipped {} segment part(s), {} records, {} ({} stored); catalog {} reaches offset {}",
        report.segments_shipped,
        report.records_shipped,
        bytes(report.bytes_shipped),
        bytes(report.bytes_stored),
        report.catalog_seq.map_or_else(|| "-".to_string(), |s| s.to_string()),
        report.end_offset,
    );
    if let Some(head) = &report.head {
        println!("  tree head: size {} root {}", head.tree_size, head.root);
    }
    Ok(())
}

/// Runs `chronicle backup`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let options = BackupOptions {
        zstd_level: args.zstd,
        store_options: args.store.options()?,
        consumer: args.consumer.clone(),
        ..BackupOptions::default()
    };
    let log = crate::open::read_only(&args.dir)?;
    let bar = progress("backing up");
    let result = archive::backup(&log, &args.url, options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_shipped(&result.map_err(|err| cli_error(&err))?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `chronicle verify-backup`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Reads the latest catalog and every manifest and segment object it \
    names, and checks every digest, the manifests' hash chain, every frame and each segment's \
    tree head, without restoring. Lists objects nothing names (left by a crash) as information.\n\
Exit status: 0 sound, 1 problems found (each names its object), 2 usage or access errors.\n\n\
Examples:\n  chronicle verify-backup s3://backups/orders\n  \
chronicle verify-backup file:///mnt/backup/orders --json | jq .problems")]
pub struct VerifyArgs {
    /// The backup's URL.
    url: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle verify-backup`: exit 1 if it found problems.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let bar = progress("verifying");
    let result = archive::verify_backup(&args.url, &args.store.options()?);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(|err| cli_error(&err))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::Failed(format!("cannot encode the report: {err}")))?;
        println!("{text}");
    } else {
        print_check(&args.url, &report);
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_check(url: &str, report: &BackupCheck) {
    let status = if report.problems.is_empty() { "sound" } else { "PROBLEMS FOUND" };
    println!("{status}: {url}");
    if let Some(catalog) = &report.catalog {
        println!("  catalog:      {catalog}");
    }
    println!("  segments:     {}", report.segments);
    println!("  records:      {}", report.records);
    println!("  end offset:   {}", report.end_offset);
    if let Some(head) = &report.head {
        println!("  tree head:    size {} root {}", head.tree_size, head.root);
    }
    println!("  read:         {} objects, {}", report.objects_read, bytes(report.bytes_read));
    if !report.unreferenced.is_empty() {
        println!(
            "  info          {} object(s) no manifest of this catalog names",
            report.unreferenced.len()
        );
    }
    for problem in &report.problems {
        println!("  error         {}", problem.reason);
    }
}
