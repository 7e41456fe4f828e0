//! `chronicle ship`: ship a log continuously, so that another machine can restore it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::archive::{ArchiveError, BackupOptions, Shipper};

use crate::backup::{cli_error, print_shipped, StoreArgs};
use crate::output::{progress, CliError};

/// Arguments of `chronicle ship`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Every interval: reopens the log read-only, ships the segments sealed \
    since and the durable part of the active one, and publishes a new catalog; a round counts \
    only once its objects and the catalog are durable in the store. Holds the destination's \
    lease while it runs: a second shipper is refused. A store that cannot be reached is tried \
    again next round; anything else stops it. Stops on Ctrl-C or SIGTERM (after the \
    round in progress) and gives the lease up; a shipper killed otherwise leaves a lease that a \
    new one on the same host takes over at once, or others after it expires.\n\
Exit status: 0 stopped, 1 the log or the backup is damaged or diverges, 2 usage or access \
errors (also: another shipper holds the destination).\n\n\
Examples:\n  chronicle ship data/orders s3://backups/orders\n  \
chronicle ship data/orders /mnt/backup/orders --interval-ms 500 --json\n  \
chronicle ship data/orders s3://backups/orders --once")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// The destination URL.
    url: String,
    /// Milliseconds between rounds.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    interval_ms: u64,
    /// Ship one round and exit.
    #[arg(long)]
    once: bool,
    /// Compress segment objects with zstd at this level (1 to 22).
    #[arg(long, value_name = "LEVEL")]
    zstd: Option<i32>,
    /// Set this consumer's position to the end of what the destination holds after each
    /// round, so that retention keeps what is not shipped yet.
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print one JSON object per round that shipped something.
    #[arg(long)]
    json: bool,
}

/// Sets the returned flag on SIGINT or SIGTERM.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let stop = Arc::clone(&stop);
        let _ = std::thread::Builder::new().name("chronicle-signals".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async move {
                let kind = tokio::signal::unix::SignalKind::from_raw(signal);
                if let Ok(mut stream) = tokio::signal::unix::signal(kind) {
                    stream.recv().await;
                    stop.store(true, Ordering::Release);
                }
            });
        });
    }
    stop
}

/// Sleeps until `interval` after `started`, or until `stop` is set.
fn wait(started: Instant, interval: Duration, stop: &AtomicBool) {
    while started.elapsed() < interval && !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20).min(interval));
    }
}

/// Runs `chronicle ship`.
pub fn run(args: &Args) -> Result<ExitCode, CliError> {
    let options = BackupOptions {
        zstd_level: args.zstd,
        store_options: args.store.options()?,
        consumer: args.consumer.clone(),
        ..BackupOptions::default()
    };
    let stop = stop_flag();
    let mut shipper = Shipper::new(&args.url, options).map_err(|err| cli_error(&err))?;
    let bar = progress("shipping");
    let interval = Duration::from_millis(args.interval_ms);
    let result = (|| -> Result<(), CliError> {
        loop {
            let started = Instant::now();
            let log = crate::open::read_only(&args.dir)?;
            let shipped = shipper.ship(&log);
            drop(log);
            let report = match shipped {
                // The store could not be reached: the next round tries again (from what the
                // store holds), unless this was the only round.
                Err(err @ ArchiveError::Store { .. }) if !args.once => {
                    eprintln!("warning: {err}; trying again in {} ms", args.interval_ms);
                    wait(started, interval, &stop);
                    if stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    continue;
                }
                result => result.map_err(|err| cli_error(&err))?,
            };
            if report.catalogs_published > 0 || args.once {
                if let Some(bar) = &bar {
                    bar.suspend(|| print_shipped(&report, args.json))?;
                } else {
                    print_shipped(&report, args.json)?;
                }
            }
            if args.once {
                return Ok(());
            }
            wait(started, interval, &stop);
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
        }
    })();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let released = shipper.release().map_err(|err| cli_error(&err));
    result?;
    released?;
    Ok(ExitCode::SUCCESS)
}
