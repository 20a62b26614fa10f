//! Configuration: YAML file + environment overrides → `validate()` → typed [`Config`].
//!
//! Loading happens in three steps, and nothing starts until all three pass:
//! 1. parse the YAML into [`schema::RawConfig`], collecting every unknown key with its path;
//! 2. apply the environment overrides the ECS task definition uses ([`EnvOverrides`]);
//! 3. [`validate::validate`] the values and [`validate::check_paths`] the files they name.
//!
//! Every problem found is reported as `path: message`, e.g.
//! `cameras[2].roi[0]: polygon needs >= 3 points, got 2`.

pub mod auth;
pub mod fleet;
pub mod location;
pub mod media;
pub mod motion;
pub mod parse;
pub mod read_once;
pub mod schema;
pub mod start;
pub mod text_rules;
pub mod tracking;
pub mod validate;
pub mod watchlist;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use location::ConfigLocation;
pub use schema::*;

/// The embedded default: one camera on a local MKV, CPU, local sinks.
pub const DEFAULT_CONFIG_FILE: &str = "config/local.yaml";

/// A camera's id: metric label, KDS partition key, folder name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CameraId(pub String);

/// A model's id, the key under `models:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ModelId(pub String);

impl fmt::Display for CameraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid configuration. Only [`load_file`] / [`load_str`] make one.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub logging: LoggingConfig,
    pub health: HealthConfig,
    pub runtime: RuntimeConfig,
    pub aws: AwsConfig,
    pub media: MediaConfig,
    pub models: BTreeMap<ModelId, ModelSpec>,
    pub cameras: Vec<CameraSpec>,
    pub sinks: SinksConfig,
    pub outbox: OutboxConfig,
    pub fleet: Option<FleetConfig>,
    /// Checked list specs; their entries are read at startup (`cli`), into each camera's
    /// `watchlists`.
    pub watchlists: Vec<watchlist::WatchlistSpec>,
}

/// A validated model.
#[derive(Debug, Clone)]
pub enum ModelSpec {
    Yolo(YoloSpec),
    Ocr(OcrSpec),
}

#[derive(Debug, Clone)]
pub struct YoloSpec {
    pub path: PathBuf,
    /// `None`: take `imgsz` from the model's metadata.
    pub input_size: Option<u32>,
    pub confidence: f32,
    pub iou: f32,
    pub classes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OcrSpec {
    pub det: OcrDetConfig,
    pub cls: Option<OcrClsConfig>,
    pub rec: OcrRecConfig,
}

/// A validated camera.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub id: CameraId,
    pub source: SourceSpec,
    pub target_fps: f64,
    pub keyframes_only: bool,
    pub detect: Vec<ModelId>,
    pub ocr: Option<CameraOcr>,
    pub roi: Vec<Zone>,
    pub anchor: Anchor,
    pub filters: BTreeMap<String, LabelFilter>,
    pub tracking: TrackingConfig,
    /// The demuxer's limits (`media:`), the same for every camera.
    pub media: MediaConfig,
    pub decoder: CameraDecoder,
    /// Resolved `tracking.idle_end`.
    pub idle_end: std::time::Duration,
    /// Resolved `max_lag` and `skip_after`.
    pub catch_up: CatchUp,
    /// Checked `motion:`.
    pub motion: motion::MotionSettings,
    /// Built `ocr.text_rules` (`None`: every reading counts, as read).
    pub text_rules: Option<std::sync::Arc<text_rules::TextRules>>,
    /// What its pictures hide.
    pub privacy: PrivacyConfig,
    /// Names of the watchlists the camera checks (validated against `watchlists:`).
    pub watchlist_names: Vec<String>,
    /// Those lists, once read (empty until the command that runs the camera reads them).
    pub watchlists: Vec<std::sync::Arc<watchlist::Watchlist>>,
}

/// How a camera behind live catches up (see `cameras[].max_lag`, `cameras[].skip_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub max_lag: std::time::Duration,
    pub skip_after: std::time::Duration,
}

impl Default for CatchUp {
    fn default() -> Self {
        Self { max_lag: validate::DEFAULT_MAX_LAG, skip_after: validate::DEFAULT_SKIP_AFTER }
    }
}

#[derive(Debug, Clone)]
pub enum SourceSpec {
    File { path: PathBuf, loop_file: bool, realtime: bool },
    Kvs { stream: StreamRef, start: StartSelector, checkpoint_table: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl StreamRef {
    /// The name or ARN, as configured: the checkpoint key and the label in logs.
    pub fn label(&self) -> &str {
        match self {
            StreamRef::Name(n) | StreamRef::Arn(n) => n,
        }
    }
}

impl SourceSpec {
    /// Whether the source calls AWS.
    pub fn needs_aws(&self) -> bool {
        matches!(self, SourceSpec::Kvs { .. })
    }

    /// Whether a camera on this source runs again once its input ends (a looping file; a KVS
    /// stream, whose sessions reconnect inside the source).
    pub fn repeats(&self) -> bool {
        match self {
            SourceSpec::File { loop_file, .. } => *loop_file,
            SourceSpec::Kvs { .. } => true,
        }
    }

    /// Whether each run of the source starts its stream time over (a file does; KVS time is the
    /// producer's clock).
    pub fn restarts_timestamps(&self) -> bool {
        matches!(self, SourceSpec::File { .. })
    }
}

impl Config {
    /// Whether the configuration demands a GPU (startup fails without one).
    pub fn requires_gpu(&self) -> bool {
        self.runtime.execution_provider == ExecutionProviderKind::Cuda
    }
}

/// One problem in a configuration, with the path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The config layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {kind}, not a regular file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{origin}: {bytes} bytes is over the {max}-byte limit for a config file")]
    TooLarge { origin: String, bytes: usize, max: usize },
    #[error("{origin}: line {line}, column {column}: byte 0x{byte:02X} is not UTF-8 (save the file as UTF-8)")]
    Encoding { origin: String, line: usize, column: usize, byte: u8 },
    #[error("{origin}: line {line}: nested {depth} deep, over the limit of {max}")]
    TooDeep { origin: String, line: usize, depth: usize, max: usize },
    /// YAML syntax: names the line and column.
    #[error("{origin}: {source}")]
    Syntax {
        origin: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{origin}: {} problem(s):\n{}", violations.len(), list(violations))]
    Invalid { origin: String, violations: Vec<Violation> },
}

fn list(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("  {v}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// Every problem as `path: message` lines (one for a parse error).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { violations, .. } => violations.iter().map(ToString::to_string).collect(),
            // With the OS's reason (`No such file or directory`, `Permission denied`, ...).
            other => vec![kvs_infer_common::error_chain(other)],
        }
    }
}

/// Environment variables the ECS task definition sets. Read once in `main`; tests build them.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    /// `HTTP_PORT` → `server.port`.
    pub http_port: Option<String>,
    /// `LOG_LEVEL` → `logging.level`.
    pub log_level: Option<String>,
    /// `LOG_FORMAT` → `logging.format` (`text` or `json`).
    pub log_format: Option<String>,
    /// `AWS_REGION` → `aws.region`.
    pub aws_region: Option<String>,
}

impl EnvOverrides {
    /// Reads the process environment. Empty values count as unset.
    pub fn from_process_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            http_port: var("HTTP_PORT"),
            log_level: var("LOG_LEVEL"),
            log_format: var("LOG_FORMAT"),
            aws_region: var("AWS_REGION"),
        }
    }

    fn apply(&self, raw: &mut RawConfig, violations: &mut Vec<Violation>) {
        if let Some(port) = &self.http_port {
            match port.parse::<u16>() {
                Ok(p) => raw.server.port = p,
                Err(_) => violations.push(Violation {
                    path: "HTTP_PORT".into(),
                    message: format!("must be a port number 0-65535, got {port:?}"),
                }),
            }
        }
        if let Some(level) = &self.log_level {
            raw.logging.level.clone_from(level);
        }
        if let Some(format) = &self.log_format {
            match format.as_str() {
                "json" => raw.logging.format = LogFormat::Json,
                "text" => raw.logging.format = LogFormat::Text,
                _ => violations.push(Violation {
                    path: "LOG_FORMAT".into(),
                    message: format!("must be text or json, got {format:?}"),
                }),
            }
        }
        if let Some(region) = &self.aws_region {
            raw.aws.region = Some(region.clone());
        }
    }
}

/// Parses and validates YAML text. Does not look at the file system.
pub fn load_str(yaml: &str, origin: &str, env: &EnvOverrides) -> Result<Config, ConfigError> {
    let text = parse::check_text(yaml.as_bytes(), origin)?;
    let parse::Parsed { mut raw, problems: mut violations, removed } = parse::parse(text, origin)?;
    env.apply(&mut raw, &mut violations);
    match validate::validate(raw) {
        Ok(config) if violations.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::Invalid { origin: origin.to_owned(), violations }),
        Err(more) => {
            // A key removed after a type error took its default: what validation says about it
            // repeats the type error.
            violations.extend(more.into_iter().filter(|v| !removed.iter().any(|r| v.path.starts_with(r.as_str()))));
            Err(ConfigError::Invalid { origin: origin.to_owned(), violations })
        }
    }
}

/// Reads (at most [`parse::MAX_CONFIG_BYTES`] and one more), parses and validates a file, and
/// checks that every file it names exists.
pub fn load_file(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read { path: path.to_owned(), source };
    // Opening a FIFO would wait for a writer, forever: only regular files are read.
    let kind = std::fs::metadata(path).map_err(read_error)?.file_type();
    if !kind.is_file() {
        return Err(ConfigError::NotAFile { path: path.to_owned(), kind: file_kind(kind) });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(parse::MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read_error)?;
    load_bytes(&bytes, &path.display().to_string(), env)
}

/// What a path is, when it is not a regular file.
fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Parses and validates a config read from `origin` (a file, an SSM parameter, an S3 object),
/// and checks that every file it names exists.
pub fn load_bytes(bytes: &[u8], origin: &str, env: &EnvOverrides) -> Result<Config, ConfigError> {
    let text = parse::check_text(bytes, origin)?;
    let config = load_str(text, origin, env)?;
    let missing = validate::check_paths(&config);
    if missing.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { origin: origin.to_owned(), violations: missing })
    }
}
