//! Logging: `tracing` with a human format by default and JSON lines (for CloudWatch) on request.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for CloudWatch Logs.
    Json,
}

/// Installs the global subscriber. `level` is a `tracing` filter (already validated by config).
/// Logs go to stderr so that stdout stays free for command output (`run-file`, `inspect`).
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(with_quiet_ort(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber exists already (tests); keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

/// Why a log filter is refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Parse(#[from] tracing_subscriber::filter::ParseError),
    /// A bare word that is no level is a target with no level: it would log that target only
    /// (at every level) and silence everything else; almost always a misspelt level.
    #[error("{directive:?} is not a level (trace, debug, info, warn, error, off) nor `target=level`")]
    NoLevel { directive: String },
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks that `level` is a filter `tracing` accepts and that every directive in it names a
/// level (config validation).
pub fn check_filter(level: &str) -> Result<(), FilterError> {
    EnvFilter::try_new(level)?;
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(FilterError::NoLevel { directive: directive.to_owned() });
        }
    }
    Ok(())
}

/// ONNX Runtime logs every graph rewrite at `info`; unless the filter names `ort`, keep it at `warn`.
fn with_quiet_ort(level: &str) -> String {
    let names_ort = level.split(',').any(|d| d.trim_start().starts_with("ort"));
    if names_ort { level.to_owned() } else { format!("{level},ort=warn") }
}

#[cfg(test)]
mod tests {
    use super::{check_filter, with_quiet_ort};

    #[test]
    fn a_filter_must_name_levels() {
        for ok in ["info", "WARN", "debug,ort=warn", "kvs_infer=debug", "kvs_infer[camera]=trace,info"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["garbage", "warnning", "info,verbose"] {
            let e = check_filter(bad).expect_err(bad).to_string();
            assert!(e.contains("not a level"), "{bad}: {e}");
        }
    }

    #[test]
    fn ort_is_quiet_unless_asked_for() {
        assert_eq!(with_quiet_ort("info"), "info,ort=warn");
        assert_eq!(with_quiet_ort("debug,ort=info"), "debug,ort=info");
        assert_eq!(with_quiet_ort("kvs_infer=debug"), "kvs_infer=debug,ort=warn");
    }
}
