//! `chronicle keygen`: an Ed25519 key pair for signing checkpoints, in the signed-note key
//! formats; and the reading of key files for `head --sign`, `tiles --sign` and
//! `verify-proof --key`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chronicle::transparency::{SigningKey, VerifierKey};

use crate::output::{CliError, CliResult};

/// Arguments of `chronicle keygen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  chronicle keygen example.com/log42
  chronicle keygen example.com/log42 --out keys/log42

Writes PREFIX.key, the signing key (PRIVATE+KEY+<name>+<id>+<key>, mode 0600: keep it
secret), and PREFIX.pub, the verifier key (<name>+<id>+<key>) that clients check checkpoints
with. Never overwrites a file.")]
pub struct Args {
    /// The key's name: the log's origin, a schema-less URL such as example.com/log42.
    name: String,
    /// Where to write the key pair, as PREFIX.key and PREFIX.pub (default: the name with every
    /// character other than letters, digits, `.`, `-` and `_` made `_`).
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
}

/// Runs `chronicle keygen`.
pub fn run(args: &Args) -> CliResult {
    let key = SigningKey::generate(&args.name)?;
    let prefix = args.out.clone().unwrap_or_else(|| {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        PathBuf::from(args.name.chars().map(|c| if safe(c) { c } else { '_' }).collect::<String>())
    });
    let (private, public) = (with_suffix(&prefix, "key"), with_suffix(&prefix, "pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(CliError::Input(format!(
                "`{}` exists; keygen never overwrites a key (choose another --out)",
                path.display()
            )));
        }
    }
    write_new(&private, &key.to_note_key(), 0o600)?;
    let verifier = key.verifier().to_string();
    write_new(&public, &verifier, 0o644)?;
    println!("signing key:  {} (keep it secret)", private.display());
    println!("verifier key: {}", public.display());
    println!("{verifier}");
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes a new file (never replacing one) with `mode`, then syncs it.
fn write_new(path: &Path, text: &str, mode: u32) -> CliResult {
    let failed =
        |e: std::io::Error| CliError::Input(format!("cannot write `{}`: {e}", path.display()));
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(failed)?;
    file.write_all(format!("{text}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(failed)
}

/// Reads the signing key in `path`.
pub fn signing_key(path: &Path) -> Result<SigningKey, CliError> {
    Ok(SigningKey::from_file(path)?)
}

/// A verifier key given as a file that holds it, or as the key itself.
pub fn verifier_key(arg: &str) -> Result<VerifierKey, CliError> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(VerifierKey::from_file(path)?);
    }
    VerifierKey::parse(arg).map_err(|err| {
        CliError::Input(format!("--key `{arg}` is neither a file nor a verifier key ({err})"))
    })
}
