//! `chronicle completions SHELL` and `chronicle man`: generated from the CLI's definitions.

use std::io;

use clap::CommandFactory;

use crate::output::CliResult;

/// Arguments of `chronicle completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  chronicle completions bash > /etc/bash_completion.d/chronicle")]
pub struct Args {
    /// The shell to write completions for.
    shell: clap_complete::Shell,
}

/// Writes the completion script for the shell to standard output.
pub fn completions(args: &Args) -> CliResult {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "chronicle", &mut io::stdout());
    Ok(())
}

/// Writes the man page (roff) to standard output.
pub fn man() -> CliResult {
    let page = clap_mangen::Man::new(crate::Cli::command());
    page.render(&mut io::stdout())?;
    Ok(())
}
