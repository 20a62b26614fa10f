//! The command line: one file per command, each returning `anyhow::Result<ExitCode>`; `main`
//! only parses and prints what failed.
//!
//! Exit codes: 0 success; 1 invalid config, failed startup, or unhealthy (`healthcheck`); 2 usage
//! errors (clap); 86 a GPU fault (the GPU lost while serving, or a required GPU not usable at
//! startup); 130 a second signal during the drain.

pub mod check_config;
pub mod evaluate;
pub mod healthcheck;
pub mod infer;
pub mod inspect;
pub mod remote_config;
pub mod run_file;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, CameraSpec, Config, ConfigLocation, DEFAULT_CONFIG_FILE, EnvOverrides};
use crate::infer::engine::Engine;
use crate::infer::worker::Worker;
use crate::media::decode::{DecoderSettings, probe_nvdec, select};

/// Inference service for Kinesis Video Streams: ONNX detection and OCR on live camera video,
/// with a staged /healthz for ECS and the ALB.
#[derive(Debug, Parser)]
#[command(name = "kvs-infer", version)]
pub struct Cli {
    /// The YAML configuration: a file, an SSM parameter (ssm:/name) or an S3 object
    /// (s3://bucket/key); remote ones are fetched with the SDK's credentials and region.
    #[arg(long, short, env = "CONFIG_FILE", default_value = DEFAULT_CONFIG_FILE, global = true)]
    pub config: ConfigLocation,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default): health and metrics server, models, cameras.
    Serve,
    /// Validate a configuration file (default: --config) and print every problem; exit 0 if valid, 1 if not.
    CheckConfig {
        /// The config to check: a file, ssm:/name or s3://bucket/key.
        file: Option<ConfigLocation>,
    },
    /// Probe /healthz on the local port for the container health check; exit 0 on 200, else 1.
    Healthcheck {
        /// Port the service listens on.
        #[arg(long, env = "HTTP_PORT", default_value_t = 8080)]
        port: u16,
        /// Give up after this long (e.g. 3s, 500ms).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Probe this URL instead of http://127.0.0.1:PORT/healthz.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print one JSON line per fragment of an MKV/KVS stream (a file, or - for stdin), then a summary.
    ///
    /// Damage is reported on stderr and counted; the exit code is 1 only if the input cannot be read.
    Inspect {
        /// MKV file, or - for standard input (e.g. a saved GetMedia response).
        input: String,
        /// Also decode the H.264 video and count decoded frames.
        #[arg(long)]
        decode: bool,
    },
    /// Run the first camera's models of the config on still images (PNG/JPEG); one JSON line each.
    ///
    /// Lines are `{"image", "detections": [{"label", "score", "box"}], "texts": [{"text", "score",
    /// "quad"}]}` in pixel coordinates of the input. Exit 1 if any image could not be processed.
    Infer {
        /// Images to analyse.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Images in flight at once; the worker batches their model runs together.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Print images/s on stderr: images are decoded first, and the clock starts after the
        /// first image (warm-up) is done.
        #[arg(long)]
        timing: bool,
    },
    /// Process one MKV file through the first camera's pipeline and print its events as JSON lines.
    RunFile {
        /// The MKV (H.264) file.
        file: PathBuf,
    },
    /// Run the first camera's pipeline over a video and score its events against ground truth.
    ///
    /// Prints plates read exactly, misread and missed, junk and extra tracks, by tag (README,
    /// "Evaluate"); exit 1 when --min-recall or --max-junk is not met.
    Evaluate {
        /// Ground truth: JSON with each plate's text and the frames (or seconds) it is visible.
        #[arg(long)]
        truth: PathBuf,
        /// The MKV file.
        video: PathBuf,
        /// Print the score as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit 1 when the share of plates read exactly is below this (0..1).
        #[arg(long)]
        min_recall: Option<f64>,
        /// Exit 1 when more tracks than this match no plate.
        #[arg(long)]
        max_junk: Option<usize>,
    },
}

/// Runs the command `cli` names (`serve` when none).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(&cli.config),
        Command::CheckConfig { file } => check_config::run(&file.unwrap_or(cli.config)),
        Command::Healthcheck { port, timeout, url } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}/healthz"));
            healthcheck::run(&url, timeout)
        }
        Command::Inspect { input, decode } => inspect::run(&input, decode),
        Command::Infer { images, concurrency, timing } => {
            infer::run(&cli.config, &images, usize::from(concurrency), timing)
        }
        Command::RunFile { file } => run_file::run(&cli.config, file),
        Command::Evaluate { truth, video, json, min_recall, max_junk } => {
            evaluate::run(&cli.config, evaluate::Evaluate { truth, video, json, min_recall, max_junk })
        }
    }
}

/// A configuration that could not be read or did not validate: every problem, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {location}:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct InvalidConfig {
    pub location: ConfigLocation,
    pub problems: Vec<String>,
}

/// Reads (a file) or fetches (an SSM parameter, an S3 object) the config, and validates it with
/// the process environment's overrides.
pub fn load_config(location: &ConfigLocation) -> Result<Config, InvalidConfig> {
    let env = EnvOverrides::from_process_env();
    let invalid = |problems| InvalidConfig { location: location.clone(), problems };
    let loaded = match location {
        ConfigLocation::File(path) => config::load_file(path, &env),
        remote => {
            let bytes = remote_config::fetch(remote).map_err(|e| invalid(vec![e.to_string()]))?;
            check_digest(&bytes, std::env::var("CONFIG_SHA256").ok().as_deref()).map_err(|e| invalid(vec![e]))?;
            config::load_bytes(&bytes, &remote.to_string(), &env)
        }
    };
    let mut config = loaded.map_err(|e| invalid(e.problems()))?;
    read_watchlists(&mut config).map_err(invalid)?;
    read_token(&mut config).map_err(|e| invalid(vec![e]))?;
    Ok(config)
}

/// The config fetched must be the one the task definition was rendered with (`CONFIG_SHA256`,
/// which `ecs/deploy.sh` sets): a mismatch (the parameter rewritten under a running revision)
/// fails startup naming both digests instead of running new code with another config.
fn check_digest(bytes: &[u8], expected: Option<&str>) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    let Some(expected) = expected.map(str::trim).filter(|e| !e.is_empty()) else { return Ok(()) };
    let actual: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(format!("the config fetched has sha256 {actual}, but CONFIG_SHA256 (the task definition's) is {expected}"))
    }
}

/// The text at `location`: a file, or fetched from SSM or S3 like the config.
fn read_text(location: &ConfigLocation) -> Result<String, String> {
    match location {
        ConfigLocation::File(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        remote => remote_config::fetch(remote)
            .map_err(|e| e.to_string())
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| format!("{remote} is not UTF-8 text"))),
    }
}

/// Reads `server.auth.token_from` (a file, or fetched from SSM or S3 like the config).
fn read_token(config: &mut Config) -> Result<(), String> {
    let Some(auth) = &config.server.auth else { return Ok(()) };
    let at = |e: String| format!("server.auth.token_from: {e}");
    let location: ConfigLocation =
        auth.token_from.parse().map_err(|e: config::location::LocationError| at(e.to_string()))?;
    let text = read_text(&location).map_err(at)?;
    config.server.token = Some(config::auth::ApiToken::parse(&text).map_err(at)?);
    tracing::info!(from = %location, "API token read: /v1/infer and /ui require it");
    Ok(())
}

/// Reads every watchlist's entries (a file, or fetched from SSM or S3 like the config) into the
/// cameras that check it; every list that cannot be read is a problem naming it.
fn read_watchlists(config: &mut Config) -> Result<(), Vec<String>> {
    let mut lists = config::watchlist::Watchlists::new();
    let mut problems = Vec::new();
    for spec in &config.watchlists {
        let text = spec.from.as_ref().map(read_text).transpose();
        match text.map(|t| spec.build(t.as_deref()).map_err(|e| e.to_string())) {
            Ok(Ok(list)) => {
                tracing::info!(list = %list.name, entries = list.len(), "watchlist read");
                lists.insert(spec.name.clone(), std::sync::Arc::new(list));
            }
            Ok(Err(problem)) => problems.push(problem),
            Err(problem) => problems.push(format!("watchlists.{}.from: {problem}", spec.name)),
        }
    }
    for camera in &mut config.cameras {
        camera.watchlists = camera.watchlist_names.iter().filter_map(|n| lists.get(n).cloned()).collect();
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The decoder a command's camera runs on: `runtime.decoder` resolved as `serve` resolves it
/// (NVDEC under `auto` only with the CUDA provider), with the camera's threads.
pub fn decoder_settings(config: &Config, camera: &CameraSpec) -> anyhow::Result<DecoderSettings> {
    let cuda = config.runtime.execution_provider != crate::config::ExecutionProviderKind::Cpu;
    let choice = select::choose(config.runtime.decoder, cuda, probe_nvdec).context("runtime.decoder")?;
    tracing::info!(decoder = choice.backend.name(), reason = choice.reason, "video decoder chosen");
    let (threads, frame_threads) = (camera.decoder.threads, camera.decoder.frame_threads);
    Ok(DecoderSettings { backend: choice.backend, threads, frame_threads })
}

/// What the commands that run a camera's models share: the valid config, its first camera,
/// logging, an async runtime, and the models loaded behind a worker.
pub struct CameraCommand {
    pub config: Config,
    pub camera: CameraSpec,
    pub runtime: tokio::runtime::Runtime,
    pub engine: Engine,
    /// Kept for the command's life: the worker serves the engine.
    pub worker: Worker,
}

impl CameraCommand {
    pub fn start(config_path: &ConfigLocation) -> anyhow::Result<Self> {
        let config = load_config(config_path)?;
        kvs_infer_common::telemetry::init(&config.logging.level, config.logging.format);
        let camera = config.cameras.first().cloned().context("the config has no camera")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // The worker's batcher is a task on this runtime; it keeps running after block_on returns.
        let (engine, worker) = runtime.block_on(Engine::load(&config.runtime, &config.models))?;
        Ok(Self { config, camera, runtime, engine, worker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_config_must_be_the_one_the_task_definition_names() {
        // sha256("abc")
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(check_digest(b"abc", Some(abc)).is_ok());
        assert!(check_digest(b"abc", Some(&abc.to_uppercase())).is_ok());
        assert!(check_digest(b"abc", None).is_ok() && check_digest(b"abc", Some("")).is_ok(), "not set: not checked");
        let e = check_digest(b"abd", Some(abc)).expect_err("another config");
        assert!(e.contains(abc) && e.contains("CONFIG_SHA256"), "{e}");
    }
}
