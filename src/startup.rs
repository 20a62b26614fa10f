//! `serve`: the order the service comes up in, and how it goes down.
//!
//! The HTTP server binds first, so `/healthz` answers (503, naming the stage) while models load:
//! a slow start is visible, never mistaken for a dead task. Then, each a health stage:
//! `gpu` (NVML probe), `models_loaded` (ONNX Runtime sessions), `warmed_up` (forward passes),
//! `ready`. On SIGTERM or SIGINT the service stops being ready at once and drains within
//! `health.drain_timeout`; a second signal exits immediately.

use anyhow::{Context, bail};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::sync::Arc;

use crate::config::{Config, ExecutionProviderKind, SourceSpec};
use crate::health::gpu::{self, GpuProbe};
use crate::health::{Health, Stage, StageState};
use crate::infer::engine::{self, Engine};
use crate::infer::runtime::ActiveProvider;
use crate::infer::watchdog::Watchdog;
use crate::pipeline::supervisor::Supervisor;
use crate::server::{self, AppState};
use crate::sink::SinkContext;
use crate::sink::outbox::Outbox;

/// Events waiting for the sinks; cameras wait (never drop) when it is full.
const EVENT_QUEUE: usize = 256;

/// How long open HTTP connections get to finish once the drain is over.
const SERVER_STOP: std::time::Duration = std::time::Duration::from_secs(1);

/// Liveness components that mean the GPU (not the application) failed.
const GPU_FAULTS: [&str; 2] = ["gpu", "cuda"];

/// How `serve` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A signal, then a drain.
    Drained,
    /// The GPU failed; the service drained and should exit with [`kvs_infer_common::exit::GPU_FAULT`].
    GpuFault(String),
}

/// What `serve` needs. Built by `main` after the config is valid.
pub struct ServeContext {
    pub config: Config,
    pub health: Health,
    pub metrics: PrometheusHandle,
}

/// Runs the service until a shutdown signal (or a GPU fault), then drains.
pub async fn serve(ctx: ServeContext) -> anyhow::Result<Outcome> {
    let ServeContext { config, health, metrics } = ctx;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone(), health.clone()));
    let gpu_fault = Arc::new(std::sync::OnceLock::new());
    if config.health.exit_on_gpu_fault {
        tokio::spawn(watch_gpu_faults(health.clone(), shutdown.clone(), gpu_fault.clone()));
    }

    let addr = (config.server.host.as_str(), config.server.port);
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot bind {}:{}", addr.0, addr.1))?;
    info!(addr = %listener.local_addr()?, "HTTP server listening");
    let state = AppState::new(health.subscribe(), metrics, config.server.max_request_bytes);
    let infer_target = state.infer.clone();
    // The HTTP server outlives the drain: the load balancer keeps seeing 503 `draining` (not a
    // refused connection) and Prometheus can scrape the last numbers until the pipelines are done.
    let server_stop = CancellationToken::new();
    let server = spawn_server(listener, state, server_stop.clone());

    // The outbox first: a backlog from the last run is delivered as soon as the sinks start,
    // and a service that cannot keep results durably must not report ready.
    let outbox = match open_outbox(&config).await {
        Ok(outbox) => outbox,
        Err(e) => return Err(abort(&shutdown, &server_stop, server, e).await),
    };

    let mut steps = ServiceStartup::new(config.clone());
    let started = tokio::select! {
        result = run_stages(&health, &mut steps) => Some(result),
        () = shutdown.cancelled() => None,
    };
    let mut pipelines = None;
    match started {
        Some(Ok(Started { engine, worker, gpu })) => {
            spawn_monitors(&config, &health, worker, gpu, shutdown.clone());
            if let Some(camera) = config.cameras.first() {
                let _ = infer_target.set(crate::server::InferTarget { engine: engine.clone(), camera: camera.clone() });
            }
            info!(time_to_ready_seconds = health.snapshot().time_to_ready_seconds, "ready");
            match start_pipelines(&config, engine, outbox, shutdown.clone(), &health).await {
                Ok(p) => pipelines = Some(p),
                Err(e) => return Err(abort(&shutdown, &server_stop, server, e).await),
            }
            shutdown.cancelled().await;
        }
        Some(Err(e)) => {
            // A GPU that the config requires but that is not usable is a GPU fault, not a bad
            // release: exit with kvs_infer_common::exit::GPU_FAULT so recovery tooling diagnoses the instance.
            let gpu_failed =
                health.snapshot().stages.iter().any(|s| s.stage == Stage::Gpu && s.state == StageState::Failed);
            let e = abort(&shutdown, &server_stop, server, e).await;
            if gpu_failed {
                return Ok(Outcome::GpuFault(format!("startup failed in the gpu stage: {e:#}")));
            }
            return Err(e);
        }
        None => info!("shutdown requested during startup"),
    }

    info!(timeout = ?config.health.drain_timeout, "draining");
    let drained = async {
        if let Some(pipelines) = pipelines {
            pipelines.finish().await;
        }
    };
    match tokio::time::timeout(config.health.drain_timeout, drained).await {
        Ok(()) => info!("drained; bye"),
        Err(_) => warn!("drain timed out; exiting with work in flight (the outbox keeps every event)"),
    }
    server_stop.cancel();
    match tokio::time::timeout(SERVER_STOP, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
        Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
        Err(_) => warn!("HTTP connections still open; closing them"),
    }
    Ok(match gpu_fault.get() {
        Some(reason) => Outcome::GpuFault(reason.clone()),
        None => Outcome::Drained,
    })
}

/// The cameras and sinks of a running service.
struct Pipelines {
    cameras: JoinHandle<()>,
    sinks: JoinHandle<()>,
}

impl Pipelines {
    /// Cameras stop (at shutdown, or at the end of non-looping files); then the dispatcher
    /// finishes and the sinks flush what they can.
    async fn finish(self) {
        let _ = self.cameras.await;
        let _ = self.sinks.await;
    }
}

/// Starts the sinks (dispatcher, outbox delivery) and every camera.
async fn start_pipelines(
    config: &Config,
    engine: Engine,
    outbox: Arc<Outbox>,
    shutdown: CancellationToken,
    health: &Health,
) -> anyhow::Result<Pipelines> {
    let needs_aws = crate::sink::configured(&config.sinks).iter().any(|s| *s != "local")
        || config.cameras.iter().any(|c| matches!(c.source, SourceSpec::Kvs { .. }));
    let sdk = if needs_aws { Some(crate::aws::sdk_config(&config.aws).await) } else { None };
    let sinks = crate::sink::start(SinkContext {
        config,
        sdk: sdk.as_ref(),
        outbox,
        health: health.clone(),
        queue: EVENT_QUEUE,
        shutdown: shutdown.clone(),
    })
    .context("cannot start the sinks")?;
    let supervisor = Supervisor { engine, events: sinks.events, shutdown, sdk, health: health.clone() };
    let cameras = supervisor.start(config.cameras.clone());
    Ok(Pipelines { cameras, sinks: sinks.done })
}

fn spawn_server(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, server::app(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
    })
}

/// Startup failed: stop everything started so far and the HTTP server, then hand the error back.
async fn abort(
    shutdown: &CancellationToken,
    server_stop: &CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    error: anyhow::Error,
) -> anyhow::Error {
    shutdown.cancel();
    server_stop.cancel();
    let _ = server.await;
    error
}

/// A GPU liveness failure starts the drain, so the process exits with [`kvs_infer_common::exit::GPU_FAULT`]
/// instead of waiting for health checks to have it killed.
async fn watch_gpu_faults(health: Health, shutdown: CancellationToken, fault: Arc<std::sync::OnceLock<String>>) {
    let mut rx = health.subscribe();
    loop {
        let found = rx
            .borrow_and_update()
            .liveness_failures
            .iter()
            .find(|(k, _)| GPU_FAULTS.contains(&k.as_str()))
            .map(|(k, r)| format!("{k}: {r}"));
        if let Some(reason) = found {
            tracing::error!(reason, exit_code = kvs_infer_common::exit::GPU_FAULT, "GPU fault: draining, then exiting");
            let _ = fault.set(reason);
            health.start_draining();
            shutdown.cancel();
            return;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// First SIGTERM/SIGINT: not ready, drain. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken, health: Health) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the service");
            return;
        }
    };
    let mut signals = 0;
    loop {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            r = tokio::signal::ctrl_c() => {
                if r.is_err() { return; }
                info!("SIGINT");
            }
        }
        signals += 1;
        if signals == 1 {
            health.start_draining();
            shutdown.cancel();
        } else {
            warn!("second signal: exiting without finishing the drain");
            std::process::exit(i32::from(kvs_infer_common::exit::FORCED));
        }
    }
}

/// Liveness sources that run for the life of the service: the stall/CUDA watchdog on the
/// inference worker, and the GPU telemetry loop when there is a GPU.
fn spawn_monitors(
    config: &Config,
    health: &Health,
    worker: crate::infer::worker::InferHandle,
    monitor: Option<Box<dyn gpu::GpuMonitor>>,
    shutdown: CancellationToken,
) {
    let watchdog =
        Watchdog { stats: worker.stats().clone(), stall_after: config.health.stall_after, health: health.clone() };
    tokio::spawn(watchdog.run(crate::infer::watchdog::TICK, shutdown.clone()));
    if let Some(monitor) = monitor
        && let Err(e) = gpu::spawn_telemetry(monitor, config.health.gpu_poll_interval, health.clone(), shutdown)
    {
        warn!(error = %e, "cannot start the GPU telemetry thread");
    }
}

/// Opens (or creates) the durable outbox with a cursor for every configured sink.
async fn open_outbox(config: &Config) -> anyhow::Result<Arc<Outbox>> {
    let (dir, max) = (config.outbox.dir.clone(), config.outbox.max_bytes);
    let names = crate::sink::configured(&config.sinks);
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&dir, max, &names)).await??;
    let stats = outbox.stats();
    info!(path = %outbox.path().display(), records = stats.records, bytes = stats.bytes, "outbox open");
    Ok(Arc::new(outbox))
}

/// The work behind the startup stages. `serve` runs [`ServiceStartup`]; tests substitute steps
/// that take as long as they like (under paused time) to check what `/healthz` says meanwhile.
pub trait StartupSteps {
    type Output;
    /// Stage `gpu`: the detail shown for the stage when it passes.
    fn gpu(&mut self, health: &Health) -> impl std::future::Future<Output = anyhow::Result<String>> + Send;
    /// Stage `models_loaded`.
    fn load_models(&mut self, health: &Health) -> impl std::future::Future<Output = anyhow::Result<String>> + Send;
    /// Stage `warmed_up`: the running service's handle and the stage's detail.
    fn warm_up(
        &mut self,
        health: &Health,
    ) -> impl std::future::Future<Output = anyhow::Result<(Self::Output, String)>> + Send;
}

/// Runs the stages in order: `gpu` → `models_loaded` → `warmed_up` → `ready`. A failure marks its
/// stage failed (with the error chain in the body) and ends startup.
pub async fn run_stages<S: StartupSteps>(health: &Health, steps: &mut S) -> anyhow::Result<S::Output> {
    health.complete(Stage::Starting, None);
    let failed = |stage: Stage, e: anyhow::Error| {
        health.fail(stage, format!("{e:#}"));
        e
    };
    health.begin(Stage::Gpu);
    let detail = steps.gpu(health).await.map_err(|e| failed(Stage::Gpu, e))?;
    health.complete(Stage::Gpu, Some(detail));
    health.begin(Stage::ModelsLoaded);
    let detail = steps.load_models(health).await.map_err(|e| failed(Stage::ModelsLoaded, e))?;
    health.complete(Stage::ModelsLoaded, Some(detail));
    health.begin(Stage::WarmedUp);
    let (output, detail) = steps.warm_up(health).await.map_err(|e| failed(Stage::WarmedUp, e))?;
    health.complete(Stage::WarmedUp, Some(detail));
    health.complete(Stage::Ready, None);
    Ok(output)
}

/// What a started service runs on.
pub struct Started {
    pub engine: Engine,
    pub worker: crate::infer::worker::InferHandle,
    /// The GPU monitor, when there is a GPU (its telemetry loop starts after ready).
    pub gpu: Option<Box<dyn gpu::GpuMonitor>>,
}

/// The real stages: NVML probe, ONNX Runtime sessions, warm-up runs, the inference worker.
pub struct ServiceStartup {
    config: Config,
    gpu: Option<Box<dyn gpu::GpuMonitor>>,
    models: Option<engine::Loaded>,
}

impl ServiceStartup {
    pub fn new(config: Config) -> Self {
        Self { config, gpu: None, models: None }
    }
}

impl StartupSteps for ServiceStartup {
    type Output = Started;

    async fn gpu(&mut self, health: &Health) -> anyhow::Result<String> {
        let device = self.config.runtime.device_id;
        let (probe, monitor) = tokio::task::spawn_blocking(move || gpu::probe(device)).await?;
        self.gpu = monitor;
        match (probe, self.config.runtime.execution_provider) {
            (GpuProbe::Available(info), _) => {
                health.set_info("gpu_name", info.name.clone());
                health.set_info("gpu_uuid", info.uuid.clone());
                health.set_info("nvidia_driver_version", info.driver_version.clone());
                health.set_info("cuda_driver_version", info.cuda_driver_version.clone());
                health.set_info("gpu_memory_total_bytes", info.memory_total_bytes.to_string());
                Ok(format!("{} ({}), index {}", info.name, info.uuid, info.index))
            }
            (GpuProbe::Unavailable { reason }, ExecutionProviderKind::Cuda) => {
                bail!("execution_provider is cuda but no GPU is usable: {reason}")
            }
            (GpuProbe::Unavailable { reason }, kind) => {
                let provider = if kind == ExecutionProviderKind::Auto { "auto" } else { "cpu" };
                let note = format!("no GPU ({reason}); execution_provider {provider} allows that");
                if kind == ExecutionProviderKind::Auto {
                    warn!("{note}");
                }
                Ok(note)
            }
        }
    }

    async fn load_models(&mut self, health: &Health) -> anyhow::Result<String> {
        let cfg = self.config.clone();
        let models = tokio::task::spawn_blocking(move || engine::load_models(&cfg.runtime, &cfg.models)).await??;
        health.set_info("onnxruntime_library", models.library.display().to_string());
        health.set_info("execution_provider", models.provider().name());
        if self.config.runtime.execution_provider == ExecutionProviderKind::Auto
            && models.provider() == ActiveProvider::Cpu
        {
            health.set_info("execution_provider_note", "auto: CUDA unavailable, running on the CPU");
        }
        let detail = format!("{} session(s)", models.session_count());
        self.models = Some(models);
        Ok(detail)
    }

    async fn warm_up(&mut self, _health: &Health) -> anyhow::Result<(Started, String)> {
        let mut models = self.models.take().context("warm-up before the models were loaded")?;
        let runs = self.config.runtime.warmup_runs;
        let (models, warmed) = tokio::task::spawn_blocking(move || {
            let result = engine::warm_up(&mut models, runs);
            (models, result)
        })
        .await?;
        warmed?;
        let (engine, worker) = engine::start(&self.config.runtime, models)?;
        Ok((Started { engine, worker, gpu: self.gpu.take() }, format!("{runs} run(s) per session")))
    }
}
