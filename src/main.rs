//! `kvs-infer`: command line, startup order and exit codes.
//!
//! Exit codes: 0 success; 1 invalid config, failed startup, or unhealthy (`healthcheck`);
//! 2 usage errors (clap) and commands not available yet; 86 a GPU fault (the GPU lost while
//! serving, or a required GPU not usable at startup); 130 a second signal during the drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kvs_infer::config::{self, CameraSpec, DEFAULT_CONFIG_FILE, EnvOverrides};
use kvs_infer::health::Health;
use kvs_infer::healthcheck::{self, Probe};
use kvs_infer::infer::engine::Engine;
use kvs_infer::media::image::RgbImage;
use kvs_infer::media::inspect::{InspectOptions, inspect};
use kvs_infer::metrics;
use kvs_infer::pipeline::{self, camera::CameraContext};
use kvs_infer::sink::local::LocalSink;
use kvs_infer::startup::{self, ServeContext};
use kvs_infer_common::telemetry;

/// Inference service for Kinesis Video Streams: ONNX detection and OCR on live camera video,
/// with a staged /healthz for ECS and the ALB.
#[derive(Debug, Parser)]
#[command(name = "kvs-infer", version)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short, env = "CONFIG_FILE", default_value = DEFAULT_CONFIG_FILE, global = true)]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default): health and metrics server, models, cameras.
    Serve,
    /// Validate a configuration file (default: --config) and print every problem; exit 0 if valid, 1 if not.
    CheckConfig {
        /// The file to check.
        file: Option<PathBuf>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::CheckConfig { file } => check_config(file.unwrap_or(cli.config)),
        Command::Healthcheck { port, timeout, url } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}/healthz"));
            run_healthcheck(&url, timeout)
        }
        Command::Inspect { input, decode } => run_inspect(&input, decode),
        Command::Infer { images, concurrency, timing } => {
            run_infer(&cli.config, &images, usize::from(concurrency), timing)
        }
        Command::RunFile { file } => run_file(&cli.config, file),
    }
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load_file(path, &EnvOverrides::from_process_env()).map_err(|e| {
        eprintln!("invalid configuration {}:", path.display());
        for problem in e.problems() {
            eprintln!("  {problem}");
        }
        ExitCode::FAILURE
    })
}

fn check_config(path: PathBuf) -> ExitCode {
    match load(&path) {
        Ok(cfg) => {
            println!("{}: valid ({} camera(s), {} model(s))", path.display(), cfg.cameras.len(), cfg.models.len());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run_infer(config_path: &std::path::Path, images: &[PathBuf], concurrency: usize, timing: bool) -> ExitCode {
    let (_config, camera, runtime, engine) = match camera_command("infer", config_path) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        // With --timing, images are decoded before the clock starts (images/s then measures
        // the models and their processing, as the reference benchmarks do).
        let decoded: std::collections::HashMap<PathBuf, RgbImage> = if timing {
            let paths = images.to_vec();
            tokio::task::spawn_blocking(move || {
                paths.iter().filter_map(|p| Some((p.clone(), RgbImage::decode(&std::fs::read(p).ok()?).ok()?))).collect()
            })
            .await
            .unwrap_or_default()
        } else {
            Default::default()
        };
        let decoded = std::sync::Arc::new(decoded);
        let analyze = |path: PathBuf| {
            let (engine, camera, decoded) = (engine.clone(), camera.clone(), decoded.clone());
            tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
                let img = match decoded.get(&path) {
                    Some(img) => img.clone(),
                    None => {
                        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                        RgbImage::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
                    }
                };
                let a = engine.analyze(&camera, &img).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(serde_json::json!({ "image": path.display().to_string(), "detections": a.detections, "texts": a.texts }))
            })
        };
        let mut failed = false;
        let mut report = |result: Result<Result<serde_json::Value, String>, tokio::task::JoinError>| match result {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => {
                eprintln!("infer: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("infer: {e}");
                failed = true;
            }
        };
        // The first image warms up allocations; timing starts after it.
        let (first, rest) = images.split_first().map_or((None, &[][..]), |(f, r)| (Some(f), r));
        if let Some(first) = first {
            report(analyze(first.clone()).await);
        }
        let started = std::time::Instant::now();
        let mut in_flight = tokio::task::JoinSet::new();
        for path in rest {
            if in_flight.len() >= concurrency
                && let Some(done) = in_flight.join_next().await
            {
                report(done.and_then(|r| r));
            }
            let task = analyze(path.clone());
            in_flight.spawn(task);
        }
        while let Some(done) = in_flight.join_next().await {
            report(done.and_then(|r| r));
        }
        if timing && !rest.is_empty() {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("timing: {} image(s) in {secs:.3} s = {:.2} images/s (concurrency {concurrency}, after 1 warm-up image)", rest.len(), rest.len() as f64 / secs);
        }
        if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    })
}

/// What the commands that run a camera's models share: the valid config, its first camera,
/// logging, an async runtime, and the models loaded behind a worker. Errors are printed with
/// the command's name.
fn camera_command(
    name: &str,
    config_path: &std::path::Path,
) -> Result<(config::Config, CameraSpec, tokio::runtime::Runtime, Engine), ExitCode> {
    let config = load(config_path)?;
    telemetry::init(&config.logging.level, config.logging.format);
    let Some(camera) = config.cameras.first().cloned() else {
        eprintln!("{name}: the config has no camera");
        return Err(ExitCode::FAILURE);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("{name}: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })?;
    // The worker's batcher is a task on this runtime; it keeps running after block_on returns.
    let engine = runtime.block_on(start_engine(&config)).map_err(|e| {
        eprintln!("{name}: {e:#}");
        ExitCode::FAILURE
    })?;
    Ok((config, camera, runtime, engine))
}

/// ONNX Runtime, every model, and the worker; no health stages (CLI use).
async fn start_engine(config: &config::Config) -> anyhow::Result<Engine> {
    let (engine, _worker) = Engine::load(&config.runtime, &config.models).await?;
    Ok(engine)
}

fn run_file(config_path: &std::path::Path, video: PathBuf) -> ExitCode {
    let (config, camera, runtime, engine) = match camera_command("run-file", config_path) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let mut sink = match config.sinks.local.as_ref().map(LocalSink::open).transpose() {
            Ok(sink) => sink,
            Err(e) => {
                eprintln!("run-file: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let ctx = CameraContext { camera, engine, events: tx, shutdown: tokio_util::sync::CancellationToken::new() };
        let run = tokio::spawn(pipeline::camera::run_file(ctx, video, false));
        while let Some(item) = rx.recv().await {
            let event = match sink.as_mut() {
                Some(sink) => match sink.write(item) {
                    Ok(event) => event,
                    Err(e) => {
                        eprintln!("run-file: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => item.event,
            };
            println!("{}", serde_json::to_string(&event).unwrap_or_default());
        }
        match run.await {
            Ok(Ok(stats)) => {
                eprintln!(
                    "run-file: {} frames decoded, {} sampled, {} analysed, {} events",
                    stats.frames_decoded, stats.frames_sampled, stats.frames_analysed, stats.events
                );
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("run-file: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("run-file: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run_inspect(input: &str, decode: bool) -> ExitCode {
    let opts = InspectOptions { decode, ..InspectOptions::default() };
    let (stdout, stderr) = (std::io::stdout().lock(), std::io::stderr());
    let result = if input == "-" {
        inspect(std::io::stdin().lock(), stdout, stderr, opts)
    } else {
        match std::fs::File::open(input) {
            Ok(file) => inspect(std::io::BufReader::new(file), stdout, stderr, opts),
            Err(e) => {
                eprintln!("inspect: cannot open {input}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inspect: {input}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_healthcheck(url: &str, timeout: Duration) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("healthcheck: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(healthcheck::probe(url, timeout)) {
        Ok(Probe::Healthy) => ExitCode::SUCCESS,
        Ok(Probe::Unhealthy { status, body }) => {
            eprintln!("healthcheck: {url} answered {status}: {body}");
            ExitCode::FAILURE
        }
        Ok(Probe::Unreachable { reason }) => {
            eprintln!("healthcheck: {url}: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: PathBuf) -> ExitCode {
    // The clock for stage `starting` runs from here; config loading is part of it.
    let health_start = std::time::Instant::now();
    let config = match load(&config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init(&config.logging.level, config.logging.format);
    tracing::info!(
        config = %config_path.display(),
        version = env!("CARGO_PKG_VERSION"),
        load_seconds = health_start.elapsed().as_secs_f64(),
        "configuration loaded"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let ctx = ServeContext { health: Health::new(), metrics: metrics::install(), config };
        startup::serve(ctx).await
    });
    match result {
        Ok(startup::Outcome::Drained) => ExitCode::SUCCESS,
        Ok(startup::Outcome::GpuFault(reason)) => {
            tracing::error!(reason, exit_code = kvs_infer_common::exit::GPU_FAULT, "exiting after a GPU fault");
            ExitCode::from(kvs_infer_common::exit::GPU_FAULT)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "startup failed");
            ExitCode::FAILURE
        }
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
}
