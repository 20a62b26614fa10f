//! `serve`: the order the service comes up in, and how it goes down.
//!
//! The HTTP server binds first, so `/healthz` answers (503, naming the stage) while models load:
//! a slow start is visible, never mistaken for a dead task. Then the outbox opens (a backlog from
//! the last run is delivered as soon as the sinks start, and a service that cannot keep results
//! durably must not report ready), then the health stages run ([`crate::startup`]), then the
//! sinks and cameras start. On SIGTERM or SIGINT, a GPU fault, or a failed startup, the service
//! stops being ready at once and drains within `health.drain_timeout` ([`Shutdown`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::health::gpu::{self, GpuMonitor};
use crate::health::{Component, Health, Stage, StageState};
use crate::infer::engine::Engine;
use crate::infer::watchdog::{self, Watchdog};
use crate::infer::worker::Worker;
use crate::media::decode::Backend;
use crate::pipeline::live::LiveViews;
use crate::pipeline::supervisor::Supervisor;
use crate::server::listen::{self, ConnectionLimits};
use crate::server::ui::Ui;
use crate::server::{self, ApiLimits, AppState, InferTarget};
use crate::shutdown::{Outcome, Shutdown, StopReason};
use crate::sink::outbox::Outbox;
use crate::sink::{self, SinkContext};
use crate::startup::{ServiceStartup, Started, run_stages};

/// Events waiting for the sinks; cameras wait (never drop) when it is full.
const EVENT_QUEUE: usize = 256;
/// How long open HTTP connections get to finish once the drain is over.
const SERVER_STOP: Duration = Duration::from_secs(1);
/// How long the inference worker gets to finish its last batch.
const WORKER_STOP: Duration = Duration::from_secs(5);

/// What `serve` needs. Built by the `serve` command after the config is valid.
pub struct ServeContext {
    pub config: Config,
    pub health: Health,
    pub metrics: PrometheusHandle,
}

/// Runs the service until it is asked to stop, then drains. An error means startup failed.
pub async fn serve(ctx: ServeContext) -> anyhow::Result<Outcome> {
    let ServeContext { config, health, metrics } = ctx;
    let shutdown = Shutdown::new();
    shutdown.watch_signals(health.clone());
    if config.health.exit_on_gpu_fault {
        shutdown.spawn(watch_gpu_faults(health.clone(), shutdown.clone()));
    }
    let http = Http::start(&config, &health, metrics, &shutdown).await?;
    let started = bring_up(&config, &health, &shutdown, &http).await;
    let (worker, failure) = match started {
        Ok(worker) => (worker, None),
        Err(e) => (None, Some(e)),
    };
    if let Some(e) = &failure {
        // A GPU that the config requires but that is not usable is a GPU fault, not a bad
        // release: the exit code tells recovery tooling to diagnose the instance.
        let gpu_failed = health.snapshot().stage_status(Stage::Gpu).state == StageState::Failed;
        shutdown.begin(if gpu_failed {
            StopReason::GpuFault(format!("startup failed in the gpu stage: {e:#}"))
        } else {
            StopReason::StartupFailed
        });
    }
    shutdown.intake().cancelled().await;
    info!(timeout = ?config.health.drain_timeout, "draining");
    let outcome = shutdown.drain(config.health.drain_timeout, async {}).await;
    match &outcome {
        Outcome::Drained { .. } => info!("drained; bye"),
        Outcome::TimedOut { .. } => {
            let lost = crate::metrics::events_uncommitted();
            warn!(
                not_committed = lost,
                "drain timed out; exiting with work in flight: the outbox keeps every event committed to it; \
                 events not yet committed are not kept (a KVS camera with checkpoints produces them again)"
            )
        }
        Outcome::Forced => warn!("drain cut short by a second signal"),
    }
    http.stop().await;
    if let Some(worker) = worker {
        worker.shutdown(WORKER_STOP).await;
    }
    match failure {
        Some(e) if !matches!(outcome.reason(), Some(StopReason::GpuFault(_))) => Err(e),
        _ => Ok(outcome),
    }
}

/// Outbox, stages, monitors, pipelines. `Ok(None)`: asked to stop before ready.
async fn bring_up(
    config: &Config,
    health: &Health,
    shutdown: &Shutdown,
    http: &Http,
) -> anyhow::Result<Option<Worker>> {
    let outbox = open_outbox(config).await?;
    let mut steps = ServiceStartup::new(config.clone());
    let started = tokio::select! {
        result = run_stages(health, &mut steps) => result?,
        () = shutdown.intake().cancelled() => {
            info!("shutdown requested during startup");
            return Ok(None);
        }
    };
    let Started { engine, worker, gpu, decoder } = started;
    spawn_monitors(config, health, &worker, gpu, shutdown);
    if let Some(camera) = config.cameras.first() {
        let _ = http.infer.set(InferTarget { engine: engine.clone(), camera: camera.clone() });
    }
    info!(time_to_ready_seconds = health.snapshot().time_to_ready_seconds, "ready");
    let ui = http.ui.clone();
    start_pipelines(config, Pipelines { engine, decoder, outbox, ui }, shutdown, health).await?;
    Ok(Some(worker))
}

/// What the cameras and sinks run on.
struct Pipelines {
    engine: Engine,
    decoder: Backend,
    outbox: Arc<Outbox>,
    /// The live page, when `server.ui` is on: cameras and the dispatcher feed it.
    ui: Option<Arc<Ui>>,
}

/// Starts the sinks (dispatcher, outbox delivery) and every camera, on the shutdown's tracker.
async fn start_pipelines(
    config: &Config,
    parts: Pipelines,
    shutdown: &Shutdown,
    health: &Health,
) -> anyhow::Result<()> {
    let Pipelines { engine, decoder, outbox, ui } = parts;
    let delivered = outbox.delivered();
    let needs_aws = sink::registry::needs_aws(&config.sinks)
        || config.cameras.iter().any(|c| c.source.needs_aws())
        || config.fleet.is_some();
    let sdk = if needs_aws { Some(crate::aws::sdk_config(&config.aws).await) } else { None };
    let events = sink::start(SinkContext {
        config,
        sdk: sdk.as_ref(),
        outbox,
        health: health.clone(),
        queue: EVENT_QUEUE,
        shutdown: shutdown.clone(),
        recent: ui.as_ref().map(|ui| ui.recent.clone()),
    })
    .context("cannot start the sinks")?;
    let supervisor = Supervisor {
        engine,
        decoder,
        events,
        delivered,
        shutdown: shutdown.clone(),
        sdk: sdk.clone(),
        health: health.clone(),
        views: ui.map(|ui| ui.views.clone()).unwrap_or_default(),
    };
    match (&config.fleet, &sdk) {
        (Some(fleet), Some(sdk)) => start_fleet(config, fleet, sdk, supervisor, shutdown, health).await?,
        _ => supervisor.start(config.cameras.clone()),
    }
    Ok(())
}

/// Fleet mode: the cameras run where the lease loop takes them. A lease table that cannot be
/// read fails startup, naming it.
async fn start_fleet(
    config: &Config,
    fleet: &crate::config::FleetConfig,
    sdk: &aws_config::SdkConfig,
    supervisor: Supervisor,
    shutdown: &Shutdown,
    health: &Health,
) -> anyhow::Result<()> {
    let me = crate::fleet::task_id::resolve(fleet.task_id.as_deref()).await;
    let table =
        crate::fleet::lease::LeaseTable::new(crate::aws::dynamodb_client(sdk), fleet.lease_table.clone(), me.clone())
            .with_call_timeout(fleet.lease_duration / 3);
    table.scan().await.with_context(|| {
        format!(
            "fleet: cannot read the lease table {}: it must exist (partition key `camera`, a string) and the task role \
             needs dynamodb:Scan, PutItem, UpdateItem and ConditionCheckItem on it",
            fleet.lease_table
        )
    })?;
    info!(task = %me, table = %fleet.lease_table, cameras = config.cameras.len(), "fleet mode: cameras are shared through leases");
    let lease_loop = crate::fleet::manager::Fleet {
        config: fleet.clone(),
        table: std::sync::Arc::new(table),
        cameras: config.cameras.clone(),
        supervisor,
        health: health.clone(),
        intake: shutdown.intake().clone(),
        fences: Default::default(),
        emf_at: Default::default(),
    };
    shutdown.spawn(lease_loop.run());
    Ok(())
}

/// The HTTP server: up from the first moment to the end of the drain.
struct Http {
    server: JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
    infer: Arc<std::sync::OnceLock<InferTarget>>,
    ui: Option<Arc<Ui>>,
}

impl Http {
    async fn start(
        config: &Config,
        health: &Health,
        metrics: PrometheusHandle,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let addr = (config.server.host.as_str(), config.server.port);
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot bind {}:{}", addr.0, addr.1))?;
        let bound = listener.local_addr()?;
        info!(addr = %bound, "HTTP server listening");
        let mut state = AppState::with_limits(health.subscribe(), metrics, ApiLimits::from_config(&config.server));
        state.token = config.server.token.clone().map(Arc::new);
        if config.server.ui {
            info!("live page: {}", server::ui::page_url(bound));
            state.ui = Some(Arc::new(Ui::new(LiveViews::on(), Arc::default())));
        }
        let (infer, ui) = (state.infer.clone(), state.ui.clone());
        let stop = shutdown.http().clone();
        let limits = ConnectionLimits {
            max_connections: config.server.max_connections,
            header_timeout: config.server.header_timeout,
        };
        let probes = server::probes(state.clone());
        let server = tokio::spawn(listen::serve(listener, server::app(state), probes, limits, stop.clone()));
        Ok(Self { server, stop, infer, ui })
    }

    async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(SERVER_STOP, self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            Err(_) => warn!("HTTP connections still open; closing them"),
        }
    }
}

/// A GPU liveness failure starts the drain, so the process exits with the GPU-fault code
/// instead of waiting for health checks to have it killed.
async fn watch_gpu_faults(health: Health, shutdown: Shutdown) {
    let mut rx = health.subscribe();
    loop {
        let found = rx
            .borrow_and_update()
            .liveness_failures
            .iter()
            .find(|(k, _)| Component::is_gpu_fault(k))
            .map(|(k, r)| format!("{k}: {r}"));
        if let Some(reason) = found {
            tracing::error!(reason, exit_code = kvs_infer_common::exit::GPU_FAULT, "GPU fault: draining, then exiting");
            health.start_draining();
            shutdown.begin(StopReason::GpuFault(reason));
            return;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = shutdown.intake().cancelled() => return,
        }
    }
}

/// Liveness sources that run for the life of the service: the stall/CUDA watchdog on the
/// inference worker, and the GPU telemetry loop when there is a GPU.
fn spawn_monitors(
    config: &Config,
    health: &Health,
    worker: &Worker,
    monitor: Option<Box<dyn GpuMonitor>>,
    shutdown: &Shutdown,
) {
    let watchdog = Watchdog {
        stats: worker.handle().stats().clone(),
        stall_after: config.health.stall_after,
        health: health.clone(),
    };
    shutdown.spawn(watchdog.run(watchdog::TICK, shutdown.intake().clone()));
    if let Some(monitor) = monitor {
        match gpu::spawn_telemetry(monitor, config.health.gpu_poll_interval, health.clone(), shutdown.intake().clone())
        {
            // The thread checks the token every poll; the drain waits for it.
            Ok(thread) => {
                shutdown.spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                });
            }
            Err(e) => warn!(error = %e, "cannot start the GPU telemetry thread"),
        }
    }
}

/// Opens (or creates) the durable outbox with a cursor for every configured sink.
async fn open_outbox(config: &Config) -> anyhow::Result<Arc<Outbox>> {
    let (dir, max) = (config.outbox.dir.clone(), config.outbox.max_bytes);
    let names = sink::registry::names(&config.sinks);
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&dir, max, &names)).await??;
    let stats = outbox.stats();
    info!(path = %outbox.path().display(), records = stats.records, bytes = stats.bytes, "outbox open");
    Ok(Arc::new(outbox))
}
