//! `chronicle`: the command-line tool for Chronicle logs.
//!
//! Each subcommand lives in its own module and only calls the public API of the `chronicle`
//! crate; the tool holds no engine logic. Errors are printed as `error: <message>` and end the
//! process with exit code 1.

#![deny(unsafe_code)]

mod demo;
mod dump;
mod output;
mod pages;
mod proofs;
mod repair;
mod stats;
mod tail;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect, check and repair Chronicle logs, or run a demonstration.
#[derive(Debug, Parser)]
#[command(name = "chronicle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append, reopen and replay a log of typed events, verifying every record, and print
    /// throughput and latency.
    Demo(demo::Args),
    /// Print the records of a log.
    Dump(dump::Args),
    /// Check every record of a log (read-only); exit code 1 on corruption.
    Verify(verify::Args),
    /// Print a log's segments, record counts and what a read-only open found.
    Stats(stats::Args),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let success = |result: output::CliResult| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Demo(args) => success(demo::run(&args)),
        Command::Dump(args) => success(dump::run(&args)),
        Command::Verify(args) => success(verify::run(&args)),
        Command::Stats(args) => success(stats::run(&args)),
        Command::Repair(args) => repair::run(&args),
        Command::Head(args) => success(proofs::head(&args)),
        Command::Proof(args) => success(proofs::proof(&args)),
        Command::Consistency(args) => success(proofs::consistency(&args)),
        Command::Tail(args) => success(tail::run(&args)),
        Command::VerifyProof(args) => Ok(proofs::verify_proof(&args)),
        Command::VerifyPages(args) => pages::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
