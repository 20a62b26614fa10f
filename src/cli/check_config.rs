//! `kvs-infer check-config [FILE]`: validates a config and prints every problem with its path.

use crate::config::ConfigLocation;
use std::process::ExitCode;

/// Exit 0 when valid; an invalid config is the error (every problem listed), exit 1.
pub fn run(path: &ConfigLocation) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(path)?;
    println!("{}: valid ({} camera(s), {} model(s))", path, cfg.cameras.len(), cfg.models.len());
    Ok(ExitCode::SUCCESS)
}
