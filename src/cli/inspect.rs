//! `kvs-infer inspect FILE|- [--decode]`: one JSON line per fragment, then a summary; damage on
//! stderr with its offsets.

use std::process::ExitCode;

use anyhow::Context;

use crate::media::inspect::{InspectOptions, inspect};

/// Exit 0 even when the input is damaged; an input that cannot be read is the error.
pub fn run(input: &str, decode: bool) -> anyhow::Result<ExitCode> {
    let opts = InspectOptions { decode, ..InspectOptions::default() };
    let (stdout, stderr) = (std::io::stdout().lock(), std::io::stderr());
    if input == "-" {
        inspect(std::io::stdin().lock(), stdout, stderr, opts).context("inspect: standard input")?;
    } else {
        let file = std::fs::File::open(input).with_context(|| format!("inspect: cannot open {input}"))?;
        inspect(std::io::BufReader::new(file), stdout, stderr, opts).with_context(|| format!("inspect: {input}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
