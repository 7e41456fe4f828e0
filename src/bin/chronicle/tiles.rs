//! `chronicle tiles`: a log exported as a static C2SP tlog-tiles directory (checkpoint, hash
//! tiles and entry bundles) that any web server can serve and any tlog-tiles client audit.

use std::path::PathBuf;

use chronicle::transparency::{export_tiles, TileExport};

use crate::keys;
use crate::output::{CliError, CliResult};

/// Arguments of `chronicle tiles`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle tiles data/raw public/log42 --sign log42.key
  chronicle tiles data/raw public/log42 --sign log42.key --origin example.com/log42 --json

Writes OUT/checkpoint, OUT/tile/<L>/<N>[.p/<W>] and OUT/tile/entries/<N>[.p/<W>]. A later run
writes only what is new (full tiles are never rewritten) and replaces the checkpoint last.
Each entry is a record's offset and write time (u64 little-endian each) then its payload;
records whose payload exceeds 65,519 bytes cannot be exported (the export is refused).")]
pub struct Args {
    /// The log directory.
    dir: PathBuf,
    /// The export directory (created if missing).
    out: PathBuf,
    /// The signing key file (from `chronicle keygen`) that signs the checkpoint; without it
    /// the checkpoint is unsigned.
    #[arg(long, value_name = "KEYFILE")]
    sign: Option<PathBuf>,
    /// The log's origin, the checkpoint's first line (default: the signing key's name).
    #[arg(long)]
    origin: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `chronicle tiles`.
pub fn run(args: &Args) -> CliResult {
    let key = args.sign.as_deref().map(keys::signing_key).transpose()?;
    let origin = match (&args.origin, &key) {
        (Some(origin), _) => origin.clone(),
        (None, Some(key)) => key.name().to_string(),
        (None, None) => {
            return Err(CliError::Input(
                "an unsigned export needs --origin (a signed one takes the key's name)".into(),
            ))
        }
    };
    let log = crate::open::read_only(&args.dir)?;
    let report = export_tiles(&log, &args.out, &TileExport { origin: &origin, key: key.as_ref() })?;
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let checkpoint = match (report.checkpoint_written, report.signed) {
        (true, true) => "written, signed",
        (true, false) => "written, unsigned",
        (false, _) => "unchanged",
    };
    println!("exported {} entries of {} to {}", report.tree_size, origin, args.out.display());
    println!("root {}", report.root);
    println!(
        "{} tiles and {} entry bundles written ({} bytes), {} kept; checkpoint {checkpoint}",
        report.tiles_written, report.bundles_written, report.bytes_written, report.files_kept
    );
    Ok(())
}
