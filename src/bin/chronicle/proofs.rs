//! `chronicle head`, `proof`, `consistency` and `verify-proof`: the Merkle tree over a log's
//! records, its heads and proofs, as JSON that any RFC 9162 verifier can check, and heads as
//! signed checkpoints that proofs are checked against.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use chronicle::rollup::{ConsistencyProof, Hash, InclusionProof};
use chronicle::transparency::{Checkpoint, SigningKey};
use chronicle::StorageError;
use serde::Serialize;

use crate::keys;
use crate::output::{CliError, CliResult};

/// Arguments of `chronicle head`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chronicle head data/raw --json
  chronicle head data/raw --tree-size 1000 --json
  chronicle head data/raw --at-ms 1796000000000
  chronicle head data/raw --sign log42.key > checkpoint

With --sign or --origin, prints the head as a C2SP checkpoint (origin, tree size, base64
root), signed by the key if --sign is given.")]
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
    #[arg(long, conflicts_with_all = ["sign", "origin"])]
    json: bool,
    /// Print the head as a checkpoint signed with this signing key file (from `chronicle
    /// keygen`).
    #[arg(long, value_name = "KEYFILE")]
    sign: Option<PathBuf>,
    /// The checkpoint's origin (default: the signing key's name).
    #[arg(long)]
    origin: Option<String>,
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
  chronicle verify-proof proof.json --checkpoint checkpoint --key log42.pub
  chronicle verify-proof grown.json --old-checkpoint then --checkpoint now --key log42.pub

With --checkpoint, the proof must be for the tree of that signed checkpoint (the newer tree
for a consistency proof), which must verify with --key. With --old-checkpoint too, the
consistency proof shows the older checkpoint's tree is a prefix of the newer one's: the log
was only appended to between them.

Exit status: 0 the proof is valid, 1 it is not (or a checkpoint's signature, origin or tree
does not match), 2 a file or key cannot be read.")]
pub struct VerifyProofArgs {
    /// The proof, as `proof` or `consistency` print it with --json; `-` for standard input.
    file: PathBuf,
    /// A root you trust (64 hex digits): the new root for a consistency proof.
    #[arg(long)]
    root: Option<Hash>,
    /// A signed checkpoint of the proof's tree (the newer tree of a consistency proof).
    #[arg(long, value_name = "FILE", requires = "key")]
    checkpoint: Option<PathBuf>,
    /// A signed checkpoint of the older tree of a consistency proof.
    #[arg(long, value_name = "FILE", requires = "checkpoint")]
    old_checkpoint: Option<PathBuf>,
    /// The verifier key the checkpoints must be signed with: a file holding it (from
    /// `chronicle keygen`), or the key itself (<name>+<id>+<key>).
    #[arg(long, value_name = "VERIFIER")]
    key: Option<String>,
    /// The origin the checkpoints must name (default: any).
    #[arg(long, requires = "checkpoint")]
    origin: Option<String>,
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
    let key = args.sign.as_deref().map(keys::signing_key).transpose()?;
    let log = crate::open::read_only(&args.dir)?;
    let head = match args.at_ms {
        Some(at) => log.tree_head_at(at)?,
        None => log.tree_head(args.tree_size)?,
    };
    let origin = args.origin.as_deref().or(key.as_ref().map(SigningKey::name));
    if let Some(origin) = origin {
        let checkpoint = Checkpoint::new(origin, &head)?;
        let text = match &key {
            Some(key) => checkpoint.sign(key)?,
            None => checkpoint.body(),
        };
        print!("{text}");
        return Ok(());
    }
    let human = format!(
        "tree size {}\nroot {}\nend offset {}\nlast write {} ms",
        head.tree_size, head.root, head.end_offset, head.last_write_timestamp_ms
    );
    print(args.json, &head, &human)
}

/// Runs `chronicle proof`.
pub fn proof(args: &ProofArgs) -> CliResult {
    let log = crate::open::read_only(&args.dir)?;
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
    let log = crate::open::read_only(&args.dir)?;
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
    let what = match &proof {
        AnyProof::Inclusion(_) => "inclusion",
        AnyProof::Consistency(_) => "consistency",
    };
    let checkpoints = match read_checkpoints(args) {
        Ok(checkpoints) => checkpoints,
        Err(Unusable::Unreadable(reason)) => {
            eprintln!("error: {reason}");
            return ExitCode::from(2);
        }
        Err(Unusable::Invalid(reason)) => {
            println!("invalid {what} proof: {reason}");
            return ExitCode::from(1);
        }
    };
    let checked = check(&proof, args.root.as_ref(), &checkpoints);
    match checked {
        Ok(()) => {
            let against = match &checkpoints.new {
                Some(c) => format!(
                    " for the signed checkpoint of {} at tree size {}",
                    c.origin, c.tree_size
                ),
                None => String::new(),
            };
            println!("valid {what} proof{against}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            println!("invalid {what} proof: {err}");
            ExitCode::from(1)
        }
    }
}

/// Checks `proof` alone, against a trusted `root` if given, and against the checkpoints.
fn check(
    proof: &AnyProof,
    root: Option<&Hash>,
    checkpoints: &Checkpoints,
) -> Result<(), StorageError> {
    match (proof, &checkpoints.old, &checkpoints.new) {
        (AnyProof::Inclusion(_), Some(_), _) => Err(StorageError::Checkpoint {
            reason: "--old-checkpoint is for consistency proofs".to_string(),
        }),
        (AnyProof::Inclusion(p), None, new) => {
            p.verify(root)?;
            new.as_ref().map_or(Ok(()), |new| new.check_inclusion(p))
        }
        (AnyProof::Consistency(p), old, new) => {
            p.verify(root.map(|new| (&p.old_root, new)))?;
            match (old, new) {
                (Some(old), Some(new)) => old.check_consistency(new, Some(p)),
                (None, Some(new)) if p.new_size != new.tree_size => Err(StorageError::Checkpoint {
                    reason: format!(
                        "the proof's newer tree has {} entries, the checkpoint's {}",
                        p.new_size, new.tree_size
                    ),
                }),
                (None, Some(new)) => p.verify(Some((&p.old_root, &new.root))),
                (_, None) => Ok(()),
            }
        }
    }
}

/// The checkpoints `verify-proof` was given, each opened with the verifier key.
struct Checkpoints {
    new: Option<Checkpoint>,
    old: Option<Checkpoint>,
}

/// Why a checkpoint cannot be used: it (or the key) cannot be read, or it does not verify.
enum Unusable {
    Unreadable(String),
    Invalid(String),
}

fn read_checkpoints(args: &VerifyProofArgs) -> Result<Checkpoints, Unusable> {
    let Some(new_path) = &args.checkpoint else {
        return Ok(Checkpoints { new: None, old: None });
    };
    let key = args.key.as_deref().unwrap_or_default();
    let key = keys::verifier_key(key).map_err(|e| Unusable::Unreadable(e.to_string()))?;
    let open = |path: &PathBuf| -> Result<Checkpoint, Unusable> {
        let name = path.display();
        let bytes = std::fs::read(path)
            .map_err(|e| Unusable::Unreadable(format!("cannot read checkpoint `{name}`: {e}")))?;
        Checkpoint::parse_unverified(&bytes)
            .map_err(|e| Unusable::Unreadable(format!("cannot read `{name}`: {e}")))?;
        let checkpoint = Checkpoint::open(&bytes, &key)
            .map_err(|e| Unusable::Invalid(format!("`{name}`: {e}")))?;
        if let Some(origin) = &args.origin {
            checkpoint
                .check_origin(origin)
                .map_err(|e| Unusable::Invalid(format!("`{name}`: {e}")))?;
        }
        Ok(checkpoint)
    };
    let new = open(new_path)?;
    let old = args.old_checkpoint.as_ref().map(open).transpose()?;
    Ok(Checkpoints { new: Some(new), old })
}
