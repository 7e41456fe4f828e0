//! `chronicle head`, `proof`, `consistency` and `verify-proof`: the Merkle tree over a log's
//! records, its heads and proofs, as JSON that any RFC 9162 verifier can check.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use chronicle::rollup::{ConsistencyProof, Hash, InclusionProof};
use chronicle::Log;
use serde::Serialize;

use crate::output::{CliError, CliResult};

/// Arguments of `chronicle head`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle head data/raw --json
  chronicle head data/raw --tree-size 1000 --json
  chronicle head data/raw --at-ms 1796000000000")]
pub struct HeadArgs {
    /// The log directory.
    dir: PathBuf,
    /// The head of the tree over the first N records (default: all of them).
    #[arg(long, value_name = "N", conflicts_with = "at_ms")]
    tree_size: Option<u64>,
    /// The head of the largest tree whose records were all written at or before this time
    /// (milliseconds since the Unix epoch).
    #[arg(long, value_name = "MS")]
    at_ms: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `chronicle proof`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  chronicle proof data/raw --offset 4096 --json > proof.json")]
pub struct ProofArgs {
    /// The log directory.
    dir: PathBuf,
    /// The offset of the record to prove.
    #[arg(long)]
    offset: u64,
    /// The size of the tree to prove it in (default: all records).
    #[arg(long, value_name = "N")]
    tree_size: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `chronicle consistency`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  chronicle consistency data/raw --old-size 1000 --json")]
pub struct ConsistencyArgs {
    /// The log directory.
    dir: PathBuf,
    /// The size of the older tree.
    #[arg(long, value_name = "M")]
    old_size: u64,
    /// The size of the newer tree (default: all records).
    #[arg(long, value_name = "N")]
    new_size: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `chronicle verify-proof`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle verify-proof proof.json --root 5dc9…4328
  chronicle proof data/raw --offset 0 --json | chronicle verify-proof -

Exit status: 0 the proof is valid, 1 it is not, 2 it cannot be read.")]
pub struct VerifyProofArgs {
    /// The proof, as `proof` or `consistency` print it with --json; `-` for standard input.
    file: PathBuf,
    /// A root you trust (64 hex digits): the new root for a consistency proof.
    #[arg(long)]
    root: Option<Hash>,
}

fn print(json: bool, value: &impl Serialize, human: &str) -> CliResult {
    if json {
        let text = serde_json::to_string(value)
            .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        println!("{human}");
    }
    Ok(())
}

/// Runs `chronicle head`.
pub fn head(args: &HeadArgs) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let head = match args.at_ms {
        Some(at) => log.tree_head_at(at)?,
        None => log.tree_head(args.tree_size)?,
    };
    let human = format!(
        "tree size {}\nroot {}\nend offset {}\nlast write {} ms",
        head.tree_size, head.root, head.end_offset, head.last_write_timestamp_ms
    );
    print(args.json, &head, &human)
}

/// Runs `chronicle proof`.
pub fn proof(args: &ProofArgs) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let proof = log.inclusion_proof(args.offset, args.tree_size)?;
    let human = format!(
        "record at offset {} is entry {} of the tree of {} entries\nroot {}\naudit path: {} \
         hashes",
        proof.offset,
        proof.leaf_index,
        proof.tree_size,
        proof.root,
        proof.audit_path.len()
    );
    print(args.json, &proof, &human)
}

/// Runs `chronicle consistency`.
pub fn consistency(args: &ConsistencyArgs) -> CliResult {
    let log = Log::open_read_only(&args.dir)?;
    let proof = log.consistency_proof(args.old_size, args.new_size)?;
    let human = format!(
        "the tree of {} entries (root {}) is a prefix of the tree of {} (root {})\nproof: {} \
         hashes",
        proof.old_size,
        proof.old_root,
        proof.new_size,
        proof.new_root,
        proof.proof.len()
    );
    print(args.json, &proof, &human)
}

/// The proofs `verify-proof` reads, told apart by their `type`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AnyProof {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

/// Runs `chronicle verify-proof`: 0 valid, 1 invalid, 2 unreadable.
pub fn verify_proof(args: &VerifyProofArgs) -> ExitCode {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(&args.file)
    };
    let proof = match text
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<AnyProof>(&t).map_err(|e| format!("not a proof: {e}")))
    {
        Ok(proof) => proof,
        Err(reason) => {
            eprintln!("error: cannot read `{}`: {reason}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let (what, checked) = match &proof {
        AnyProof::Inclusion(p) => ("inclusion", p.verify(args.root.as_ref())),
        AnyProof::Consistency(p) => {
            ("consistency", p.verify(args.root.as_ref().map(|new| (&p.old_root, new))))
        }
    };
    match checked {
        Ok(()) => {
            println!("valid {what} proof");
            ExitCode::SUCCESS
        }
        Err(err) => {
            println!("invalid {what} proof: {err}");
            ExitCode::from(1)
        }
    }
}
