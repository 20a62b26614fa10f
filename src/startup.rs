//! The health stages `serve` runs before it is ready, in order: `gpu` (NVML probe),
//! `models_loaded` (ONNX Runtime sessions), `warmed_up` (forward passes and the inference
//! worker), `ready`. Each is timed and reported in `/healthz`; a failure marks its stage failed
//! and ends startup.

use anyhow::{Context, bail};
use tracing::warn;

use crate::config::{Config, ExecutionProviderKind};
use crate::health::gpu::{self, GpuProbe};
use crate::health::{Health, Stage};
use crate::infer::engine::{self, Engine};
use crate::infer::runtime::ActiveProvider;
use crate::infer::worker::Worker;
use crate::media::decode::{self, Backend};

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
    pub worker: Worker,
    /// The GPU monitor, when there is a GPU (its telemetry loop starts after ready).
    pub gpu: Option<Box<dyn gpu::GpuMonitor>>,
    /// Where the cameras decode video.
    pub decoder: Backend,
}

/// The real stages: NVML probe, ONNX Runtime sessions, warm-up runs, the inference worker.
pub struct ServiceStartup {
    config: Config,
    gpu: Option<Box<dyn gpu::GpuMonitor>>,
    models: Option<engine::Loaded>,
    decoder: Backend,
}

impl ServiceStartup {
    pub fn new(config: Config) -> Self {
        Self { config, gpu: None, models: None, decoder: Backend::Cpu }
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
                let gpu = format!("{} ({}), index {}", info.name, info.uuid, info.index);
                match (info.driver_new_enough(), self.config.runtime.execution_provider) {
                    (Ok(()), _) => Ok(gpu),
                    // The CUDA provider would fail every session: never ready, saying why.
                    (Err(why), ExecutionProviderKind::Cuda) => bail!("{gpu}: {why}"),
                    (Err(why), _) => {
                        warn!("{why}; CUDA will not be used");
                        Ok(format!("{gpu}; {why}"))
                    }
                }
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
        let cuda = matches!(models.provider(), ActiveProvider::Cuda { .. });
        let setting = self.config.runtime.decoder;
        let choice = tokio::task::spawn_blocking(move || decode::select::choose(setting, cuda, decode::probe_nvdec))
            .await?
            .context("runtime.decoder")?;
        tracing::info!(decoder = choice.backend.name(), reason = choice.reason, "video decoder chosen");
        health.set_info("decoder", format!("{} ({})", choice.backend.name(), choice.reason));
        self.decoder = choice.backend;
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
        let started = Started { engine, worker, gpu: self.gpu.take(), decoder: self.decoder };
        Ok((started, format!("{runs} run(s) per session")))
    }
}
