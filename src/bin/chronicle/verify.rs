//! `chronicle verify`: checks every record of a log without changing anything.

use std::path::PathBuf;

use chronicle::Log;

use crate::output::{bytes, CliResult};

/// Arguments of `chronicle verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
}

/// Runs `chronicle verify`: a read-only open (which checks every header and the chain between
/// segments) followed by [`Log::verify`] (every frame's checksum, offset and flags).
pub fn run(args: &Args) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let report = log.verify()?;
    println!("ok: {}", args.dir.display());
    println!("  segments:      {}", report.segments);
    println!("  records:       {}", report.records);
    println!("  payload bytes: {} ({})", report.payload_bytes, bytes(report.payload_bytes));
    println!("  end offset:    {}", log.end_offset());
    for (start, end) in &report.gaps {
        println!("  gap: offsets [{start}, {end}): records a repair found damaged and took out");
    }
    if let Some(torn) = &log.open_report().torn_tail {
        println!(
            "  note: a torn tail of {} bytes at offset {} is skipped (a writer's open cuts it)",
            torn.bytes, torn.offset
        );
    }
    Ok(())
}
