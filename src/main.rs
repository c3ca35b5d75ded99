//! The `calmline` binary: parses the command line and hands over to the library's commands.

use std::process::ExitCode;

use clap::Parser;

use calmline::config::Cli;

fn main() -> ExitCode {
    calmline::heap::use_one_arena();
    match calmline::cli::run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
