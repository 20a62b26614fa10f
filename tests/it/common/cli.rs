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
