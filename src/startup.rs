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

use tokio::sync::mpsc;

use crate::config::{Config, ExecutionProviderKind, SourceSpec};
use crate::health::gpu::{self, GpuProbe};
use crate::health::{Health, Stage};
use crate::infer::engine::{self, Engine};
use crate::infer::runtime::{self, ActiveProvider};
use crate::infer::session;
use crate::pipeline::camera::{CameraContext, EventWithFrame, run_file};
use crate::server::{self, AppState};
use crate::sink::local::LocalSink;

/// Restart delays of a camera whose source fails.
const RESTART_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const RESTART_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Events waiting for the sinks; cameras wait (never drop) when it is full.
const EVENT_QUEUE: usize = 256;

/// Exit status when a second signal cuts the drain short (128 + SIGINT, as shells report it).
pub const EXIT_FORCED: u8 = 130;

/// What `serve` needs. Built by `main` after the config is valid.
pub struct ServeContext {
    pub config: Config,
    pub health: Health,
    pub metrics: PrometheusHandle,
}

/// Runs the service until a shutdown signal, then drains.
pub async fn serve(ctx: ServeContext) -> anyhow::Result<()> {
    let ServeContext { config, health, metrics } = ctx;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone(), health.clone()));

    let addr = (config.server.host.as_str(), config.server.port);
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot bind {}:{}", addr.0, addr.1))?;
    info!(addr = %listener.local_addr()?, "HTTP server listening");
    let state = AppState::new(health.subscribe(), metrics, config.server.max_request_bytes);
    let infer_target = state.infer.clone();
    let server = spawn_server(listener, state, shutdown.clone());

    let started = tokio::select! {
        result = bring_up(&config, &health) => Some(result),
        () = shutdown.cancelled() => None,
    };
    let mut cameras = None;
    match started {
        Some(Ok(engine)) => {
            if let Some(camera) = config.cameras.first() {
                let _ = infer_target.set(crate::server::InferTarget { engine: engine.clone(), camera: camera.clone() });
            }
            info!(time_to_ready_seconds = health.snapshot().time_to_ready_seconds, "ready");
            cameras = Some(spawn_cameras(&config, engine, shutdown.clone(), &health));
            shutdown.cancelled().await;
        }
        Some(Err(e)) => {
            shutdown.cancel();
            let _ = server.await;
            return Err(e);
        }
        None => info!("shutdown requested during startup"),
    }

    info!(timeout = ?config.health.drain_timeout, "draining");
    let drain = async {
        if let Some(cameras) = cameras {
            let _ = cameras.await;
        }
        server.await
    };
    match tokio::time::timeout(config.health.drain_timeout, drain).await {
        Ok(Ok(Ok(()))) => info!("drained; bye"),
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
        Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
        Err(_) => warn!("drain timed out; exiting with work in flight"),
    }
    Ok(())
}

/// Starts every camera's pipeline and the sink that writes their events. The returned task
/// ends when every camera has stopped (end of a non-looping file, or shutdown) and the sink has
/// written everything it received.
fn spawn_cameras(config: &Config, engine: Engine, shutdown: CancellationToken, health: &Health) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel::<EventWithFrame>(EVENT_QUEUE);
    let sink = config.sinks.local.clone();
    let sink_thread =
        std::thread::Builder::new().name("kvs-infer-local-sink".into()).spawn(move || write_events(sink, rx));
    let mut tasks = tokio::task::JoinSet::new();
    for camera in config.cameras.clone() {
        let id = camera.id.0.clone();
        match camera.source.clone() {
            SourceSpec::File { path, loop_file, realtime } => {
                let (engine, events, shutdown) = (engine.clone(), tx.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let mut backoff = RESTART_BACKOFF_MIN;
                    loop {
                        let ctx = CameraContext {
                            camera: camera.clone(),
                            engine: engine.clone(),
                            events: events.clone(),
                            shutdown: shutdown.clone(),
                        };
                        match run_file(ctx, path.clone(), realtime).await {
                            Ok(s) => info!(
                                camera = id,
                                frames_decoded = s.frames_decoded,
                                frames_sampled = s.frames_sampled,
                                frames_analysed = s.frames_analysed,
                                frames_dropped = s.frames_dropped,
                                events = s.events,
                                "end of file"
                            ),
                            Err(e) => {
                                // A failing source is retried with exponential backoff until shutdown.
                                warn!(camera = id, error = %e, retry_in = ?backoff, "camera source failed");
                                tokio::select! {
                                    () = tokio::time::sleep(backoff) => {}
                                    () = shutdown.cancelled() => break,
                                }
                                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                                continue;
                            }
                        }
                        backoff = RESTART_BACKOFF_MIN;
                        if !loop_file || shutdown.is_cancelled() {
                            break;
                        }
                    }
                });
            }
            SourceSpec::Kvs { .. } => {
                warn!(camera = id, "Kinesis Video Streams sources are not in this build yet; camera skipped");
                health.set_degraded(&format!("camera.{id}"), "KVS source not available in this build");
            }
        }
    }
    drop(tx);
    tokio::spawn(async move {
        while tasks.join_next().await.is_some() {}
        if let Ok(handle) = sink_thread {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    })
}

/// The sink loop (its own thread: JPEG encoding and file writes are blocking work).
fn write_events(config: Option<crate::config::LocalSinkConfig>, mut rx: mpsc::Receiver<EventWithFrame>) {
    let mut sink = match config.as_ref().map(LocalSink::open).transpose() {
        Ok(sink) => sink,
        Err(e) => {
            tracing::error!(error = %e, "local sink unavailable; events are only logged");
            None
        }
    };
    while let Some(item) = rx.blocking_recv() {
        let event = match sink.as_mut() {
            Some(s) => match s.write(item) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(error = %e, "local sink write failed");
                    continue;
                }
            },
            None => item.event,
        };
        crate::metrics::count_event(&event.camera, event.kind.as_str());
        info!(
            camera = event.camera,
            kind = event.kind.as_str(),
            track = event.track_id,
            label = event.label,
            text = event.text.as_deref().unwrap_or(""),
            zone = event.zone,
            snapshot = event.snapshot.as_deref().unwrap_or(""),
            "event"
        );
    }
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
            std::process::exit(i32::from(EXIT_FORCED));
        }
    }
}

/// Stages `gpu` → `models_loaded` → `warmed_up` → `ready`. A failure marks its stage failed.
async fn bring_up(config: &Config, health: &Health) -> anyhow::Result<Engine> {
    health.complete(Stage::Starting, None);

    health.begin(Stage::Gpu);
    let device = config.runtime.device_id;
    let probe = tokio::task::spawn_blocking(move || gpu::probe(device)).await?;
    match (&probe, config.runtime.execution_provider) {
        (GpuProbe::Available(info), _) => {
            health.set_info("gpu_name", info.name.clone());
            health.set_info("gpu_uuid", info.uuid.clone());
            health.set_info("nvidia_driver_version", info.driver_version.clone());
            health.complete(Stage::Gpu, Some(format!("{} ({})", info.name, info.uuid)));
        }
        (GpuProbe::Unavailable { reason }, ExecutionProviderKind::Cuda) => {
            let reason = format!("execution_provider is cuda but no GPU is usable: {reason}");
            health.fail(Stage::Gpu, reason.clone());
            bail!(reason);
        }
        (GpuProbe::Unavailable { reason }, kind) => {
            let provider = if kind == ExecutionProviderKind::Auto { "auto" } else { "cpu" };
            let note = format!("no GPU ({reason}); execution_provider {provider} allows that");
            if kind == ExecutionProviderKind::Auto {
                warn!("{note}");
            }
            health.complete(Stage::Gpu, Some(note));
        }
    }

    health.begin(Stage::ModelsLoaded);
    let cfg = config.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let rt = runtime::init(&cfg.runtime)?;
        let models = session::load_models(rt, &cfg.runtime, &cfg.models)?;
        Ok::<_, crate::infer::InferError>((rt.library.display().to_string(), models))
    })
    .await?;
    let mut models = match loaded {
        Ok((library, models)) => {
            health.set_info("onnxruntime_library", library);
            health.set_info("execution_provider", models.provider.name());
            if config.runtime.execution_provider == ExecutionProviderKind::Auto
                && models.provider == ActiveProvider::Cpu
            {
                health.set_info("execution_provider_note", "auto: CUDA unavailable, running on the CPU");
            }
            health.complete(Stage::ModelsLoaded, Some(format!("{} session(s)", models.sessions.len())));
            models
        }
        Err(e) => {
            health.fail(Stage::ModelsLoaded, error_chain(&e));
            return Err(e.into());
        }
    };

    health.begin(Stage::WarmedUp);
    let runs = config.runtime.warmup_runs;
    let (models, warmed) = tokio::task::spawn_blocking(move || {
        let result = session::warm_up(&mut models, runs);
        (models, result)
    })
    .await?;
    if let Err(e) = warmed {
        health.fail(Stage::WarmedUp, error_chain(&e));
        return Err(e.into());
    }
    let (engine, _handle) = engine::start_worker(&config.runtime, models)?;
    health.complete(Stage::WarmedUp, Some(format!("{runs} run(s) per session")));

    health.complete(Stage::Ready, None);
    Ok(engine)
}

/// `error: cause: cause`, for the health body.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
