//! `kvs-infer`: parses the command line, runs the command (`kvs_infer::cli`), and turns what
//! failed into a message and exit status 1. Exit codes are listed in `kvs_infer::cli`.

use std::process::ExitCode;

use clap::Parser;
use kvs_infer::cli::{self, Cli};

fn main() -> ExitCode {
    match cli::run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // Logs go to stderr too once a command has set logging up; the message is for
            // whoever ran the command either way.
            tracing::error!(error = format!("{e:#}"), "failed");
            eprintln!("kvs-infer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
