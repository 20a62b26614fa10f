//! Reading what a `kvs-infer` command printed: its exit code, one JSON value per stdout line, stderr.

/// What a finished command said: exit code (-1 when killed by a signal), its JSON lines, its stderr.
pub type CliOutput = (i32, Vec<serde_json::Value>, String);

/// Splits a finished command's output; a stdout line that is not JSON fails the test, naming it.
pub fn json_lines(out: std::process::Output) -> CliOutput {
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `kvs-infer --config CONFIG run-file VIDEO`, which must exit 0: its events and stderr.
pub fn run_file(config: &std::path::Path, video: &str) -> (Vec<serde_json::Value>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("--config")
        .arg(config)
        .args(["run-file", video])
        .output()
        .expect("run-file");
    let (code, events, stderr) = json_lines(out);
    assert_eq!(code, 0, "{stderr}");
    (events, stderr)
}

/// A count from `run-file`'s summary ("run-file: N frames decoded, S sampled, A analysed, E
/// events, R recognitions saved"): `what` is the words after the number.
pub fn run_file_count(stderr: &str, what: &str) -> u64 {
    let at = stderr.find(&format!(" {what}")).unwrap_or_else(|| panic!("no '{what}' in {stderr}"));
    stderr[..at].rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count before '{what}'"))
}
