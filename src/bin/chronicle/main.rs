//! `chronicle`: the command-line tool for Chronicle logs.
//!
//! Each subcommand lives in its own module and only calls the public API of the `chronicle`
//! crate; the tool holds no engine logic. Errors are printed on standard error as
//! `error: <message>`. Exit status, the same for every subcommand: 0 success (a healthy log),
//! 1 problems found (damage, a failed check), 2 usage or access errors (bad arguments or
//! input, a path that is not a readable log).

#![deny(unsafe_code)]

mod append;
#[cfg(feature = "archive")]
mod backup;
mod completions;
mod demo;
mod demo_tour;
mod index;
mod keys;
mod open;
mod output;
mod pages;
mod payload;
mod proofs;
mod repair;
mod replay;
#[cfg(feature = "archive")]
mod restore;
#[cfg(feature = "archive")]
mod ship;
mod stats;
mod tail;
mod tiles;
mod truncate;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect, check and repair Chronicle logs, or run a demonstration.
#[derive(Debug, Parser)]
#[command(name = "chronicle", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append, reopen and replay a log of typed events, verifying every record, and print
    /// throughput and latency.
    Demo(demo::Args),
    /// Print a log's events (or raw records), filtered by offset, aggregate, type, namespace
    /// or time.
    #[command(alias = "dump")]
    Replay(replay::Args),
    /// Append events given as JSON lines on standard input.
    Append(append::Args),
    /// Check everything in a log (read-only); exit code 1 if problems are found.
    Verify(verify::Args),
    /// Print a log's segments, records, offsets, times, index, rollup and disk use.
    Stats(stats::Args),
    /// Show, rebuild or save the event index.
    Index(index::Args),
    /// Repair a damaged log: keep every intact record and replace each damaged span with a
    /// marked gap (or, with --truncate, cut the log at the first damage).
    Repair(repair::Args),
    /// Print the head of the Merkle tree over a log's records (RFC 9162).
    Head(proofs::HeadArgs),
    /// Print a proof that a record is in the log's tree.
    Proof(proofs::ProofArgs),
    /// Print a proof that an older tree of the log is a prefix of a newer one.
    Consistency(proofs::ConsistencyArgs),
    /// Print the last records of a log, or follow it as another process appends (--follow).
    Tail(tail::Args),
    /// Check an inclusion or consistency proof, without the log.
    VerifyProof(proofs::VerifyProofArgs),
    /// Check the Merkle tree's stored pages against the log; exit code 1 if one is wrong.
    VerifyPages(pages::Args),
    /// Make an Ed25519 key pair that signs checkpoints (signed-note key formats).
    Keygen(keys::Args),
    /// Export a log as a static C2SP tlog-tiles directory: signed checkpoint, hash tiles and
    /// entry bundles, written incrementally.
    Tiles(tiles::Args),
    /// Remove whole segments from the front of a log (retention).
    TruncateBefore(truncate::Args),
    /// Back a log up to object storage (file://, s3://): what the destination lacks, then a
    /// new catalog.
    #[cfg(feature = "archive")]
    Backup(backup::Args),
    /// Check a backup without restoring it; exit code 1 if problems are found.
    #[cfg(feature = "archive")]
    VerifyBackup(backup::VerifyArgs),
    /// Restore a log from a backup into a new directory, whole or up to an offset or a time.
    #[cfg(feature = "archive")]
    Restore(restore::Args),
    /// Ship a log continuously to object storage, until interrupted (or once).
    #[cfg(feature = "archive")]
    Ship(ship::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Print the man page (roff).
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let success = |result: output::CliResult| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Demo(args) => success(demo::run(&args)),
        Command::Replay(args) => success(replay::run(&args)),
        Command::Append(args) => success(append::run(&args)),
        Command::Verify(args) => verify::run(&args),
        Command::Stats(args) => success(stats::run(&args)),
        Command::Index(args) => success(index::run(&args)),
        Command::TruncateBefore(args) => success(truncate::run(&args)),
        Command::Completions(args) => success(completions::completions(&args)),
        Command::Man => success(completions::man()),
        Command::Repair(args) => repair::run(&args),
        Command::Head(args) => success(proofs::head(&args)),
        Command::Proof(args) => success(proofs::proof(&args)),
        Command::Consistency(args) => success(proofs::consistency(&args)),
        Command::Tail(args) => success(tail::run(&args)),
        Command::VerifyProof(args) => Ok(proofs::verify_proof(&args)),
        Command::VerifyPages(args) => pages::run(&args),
        Command::Keygen(args) => success(keys::run(&args)),
        Command::Tiles(args) => success(tiles::run(&args)),
        #[cfg(feature = "archive")]
        Command::Backup(args) => backup::run(&args),
        #[cfg(feature = "archive")]
        Command::VerifyBackup(args) => backup::verify(&args),
        #[cfg(feature = "archive")]
        Command::Restore(args) => restore::run(&args),
        #[cfg(feature = "archive")]
        Command::Ship(args) => ship::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
