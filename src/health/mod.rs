//! Staged health: the startup state machine, liveness failures and degraded reasons.
//!
//! Producers (startup, the inference worker, sinks, the GPU probe) hold a cloneable [`Health`] and
//! report transitions; the HTTP server reads the latest [`HealthSnapshot`] from a `watch`
//! channel. Stages run in order: `starting → gpu → models_loaded → warmed_up → ready`.
//!
//! - ready (`/readyz`, `/healthz` → 200): stage `ready` is done, nothing is failing liveness, and
//!   the service is not draining.
//! - live (`/livez` → 200): no liveness failure is recorded. Only failures a restart would fix
//!   are recorded as such (a stalled worker, a lost GPU, a CUDA error).
//! - degraded: something outside the process is wrong (a sink is down). Reported in the body and
//!   metrics, never a health failure: a new task would not fix it.

pub mod component;
pub mod gpu;

pub use component::{CameraState, Component, SinkState};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::CameraId;
use crate::metrics;

/// Startup stages, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Process started; configuration loaded; HTTP server bound.
    Starting,
    /// NVML sees the configured GPU, or the CPU provider is allowed.
    Gpu,
    /// Every configured model is loaded into an ONNX Runtime session.
    ModelsLoaded,
    /// Every model has run its warm-up passes.
    WarmedUp,
    /// Serving.
    Ready,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Starting, Stage::Gpu, Stage::ModelsLoaded, Stage::WarmedUp, Stage::Ready];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Starting => "starting",
            Stage::Gpu => "gpu",
            Stage::ModelsLoaded => "models_loaded",
            Stage::WarmedUp => "warmed_up",
            Stage::Ready => "ready",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Pending,
    Running,
    Done,
    Failed,
}

/// One stage as reported in the `/healthz` body.
#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: Stage,
    pub state: StageState,
    /// Wall-clock start, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// How long it took (done or failed), or has taken so far (running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    started: Option<Instant>,
}

/// A camera's or a sink's state in the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentStatus {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Wall-clock time of the last change of `state`, RFC 3339.
    pub since: String,
    /// A camera's motion gating: `motion`, `settling`, `still` or `off` (`cameras[].motion`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gating: Option<&'static str>,
}

/// Overall status word in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Starting,
    Ready,
    Degraded,
    Draining,
    Failed,
    NotLive,
}

/// Everything health knows, as one value. Cheap to clone.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub status: Status,
    pub ready: bool,
    pub live: bool,
    pub draining: bool,
    /// The first stage that is not done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    pub stages: Vec<StageStatus>,
    /// Why `/livez` fails, by component.
    pub liveness_failures: BTreeMap<String, String>,
    /// Outside problems that do not fail health, by component.
    pub degraded: BTreeMap<String, String>,
    /// Each camera's stream (after ready): `running`, `connecting`, `streaming`, `reconnecting`, `stopped`.
    pub cameras: BTreeMap<String, ComponentStatus>,
    /// Each sink's delivery (after ready): `ok` or `failing`, with its backlog.
    pub sinks: BTreeMap<String, ComponentStatus>,
    /// Facts worth seeing in the body: execution provider, ONNX Runtime library, GPU name.
    pub info: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_ready_seconds: Option<f64>,
    #[serde(skip)]
    process_start: Instant,
}

impl HealthSnapshot {
    fn new(process_start: Instant) -> Self {
        let stages = Stage::ALL
            .iter()
            .map(|&stage| StageStatus {
                stage,
                state: StageState::Pending,
                started_at: None,
                duration_seconds: None,
                detail: None,
                started: None,
            })
            .collect();
        let mut snapshot = Self {
            status: Status::Starting,
            ready: false,
            live: true,
            draining: false,
            stage: Some(Stage::Starting),
            stages,
            liveness_failures: BTreeMap::new(),
            degraded: BTreeMap::new(),
            cameras: BTreeMap::new(),
            sinks: BTreeMap::new(),
            info: BTreeMap::new(),
            time_to_ready_seconds: None,
            process_start,
        };
        snapshot.mark_running(Stage::Starting, process_start);
        snapshot
    }

    pub fn stage_status(&self, stage: Stage) -> &StageStatus {
        // `stages` always holds every stage in `Stage::ALL` order.
        &self.stages[stage as usize]
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut StageStatus {
        &mut self.stages[stage as usize]
    }

    fn mark_running(&mut self, stage: Stage, now: Instant) {
        let s = self.stage_mut(stage);
        s.state = StageState::Running;
        s.started = Some(now);
        s.started_at = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
    }

    /// This snapshot with running stages' durations brought up to now.
    pub fn refreshed(mut self) -> Self {
        self.refresh(Instant::now());
        self
    }

    /// Recomputes the derived fields after any change.
    fn refresh(&mut self, now: Instant) {
        for s in &mut self.stages {
            if s.state == StageState::Running
                && let Some(started) = s.started
            {
                s.duration_seconds = Some(now.saturating_duration_since(started).as_secs_f64());
            }
        }
        let failed = self.stages.iter().any(|s| s.state == StageState::Failed);
        self.stage = self.stages.iter().find(|s| s.state != StageState::Done).map(|s| s.stage);
        self.live = self.liveness_failures.is_empty();
        let at_ready = self.stage_status(Stage::Ready).state == StageState::Done;
        self.ready = at_ready && self.live && !self.draining && !failed;
        self.status = if failed {
            Status::Failed
        } else if !self.live {
            Status::NotLive
        } else if self.draining {
            Status::Draining
        } else if !at_ready {
            Status::Starting
        } else if !self.degraded.is_empty() {
            Status::Degraded
        } else {
            Status::Ready
        };
    }
}

/// The writer side of health. Clone it into every component that reports.
#[derive(Clone)]
pub struct Health {
    tx: Arc<watch::Sender<HealthSnapshot>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Starts the clock: stage `starting` is running from now.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(HealthSnapshot::new(Instant::now()));
        let health = Self { tx: Arc::new(tx) };
        health.publish_gauges(&health.snapshot());
        health
    }

    pub fn subscribe(&self) -> watch::Receiver<HealthSnapshot> {
        self.tx.subscribe()
    }

    /// The current state, with running stages' durations brought up to now.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.tx.borrow().clone().refreshed()
    }

    fn update(&self, change: impl FnOnce(&mut HealthSnapshot, Instant)) {
        let now = Instant::now();
        self.tx.send_modify(|s| {
            change(s, now);
            s.refresh(now);
        });
        self.publish_gauges(&self.tx.borrow());
    }

    fn publish_gauges(&self, s: &HealthSnapshot) {
        metrics::set_health(s.ready, s.live, s.degraded.len());
    }

    /// Marks `stage` running. Any earlier stage still running is completed first.
    pub fn begin(&self, stage: Stage) {
        self.update(|s, now| {
            complete_running_before(s, stage, now);
            s.mark_running(stage, now);
        });
    }

    /// Marks `stage` done, with an optional note for the body (e.g. "cpu provider; no GPU needed").
    pub fn complete(&self, stage: Stage, detail: Option<String>) {
        self.update(|s, now| {
            complete_running_before(s, stage, now);
            if s.stage_status(stage).state == StageState::Pending {
                s.mark_running(stage, now);
            }
            complete_stage(s, stage, now, detail);
            if stage == Stage::Ready {
                let total = now.saturating_duration_since(s.process_start).as_secs_f64();
                s.time_to_ready_seconds = Some(total);
                metrics::record_time_to_ready(total);
            }
        });
    }

    /// Marks `stage` failed with the reason; the service will not become ready.
    pub fn fail(&self, stage: Stage, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|s, now| {
            if s.stage_status(stage).state == StageState::Pending {
                s.mark_running(stage, now);
            }
            let st = s.stage_mut(stage);
            st.state = StageState::Failed;
            st.duration_seconds = st.started.map(|t| now.saturating_duration_since(t).as_secs_f64());
            st.detail = Some(reason);
        });
    }

    /// Records a failure that a restart would fix: `/livez` fails until it is cleared.
    pub fn set_liveness_failure(&self, component: &Component, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|s, _| {
            s.liveness_failures.insert(component.key(), reason);
        });
    }

    pub fn clear_liveness_failure(&self, component: &Component) {
        let key = component.key();
        if self.tx.borrow().liveness_failures.contains_key(&key) {
            self.update(|s, _| {
                s.liveness_failures.remove(&key);
            });
        }
    }

    /// Records an outside problem: shown in the body, health stays green.
    pub fn set_degraded(&self, component: &Component, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|s, _| {
            s.degraded.insert(component.key(), reason);
        });
    }

    pub fn clear_degraded(&self, component: &Component) {
        let key = component.key();
        if self.tx.borrow().degraded.contains_key(&key) {
            self.update(|s, _| {
                s.degraded.remove(&key);
            });
        }
    }

    /// Not ready from now on: the load balancer stops sending work while in-flight work drains.
    pub fn start_draining(&self) {
        self.update(|s, _| s.draining = true);
    }

    /// A camera's stream state for the body.
    pub fn set_camera(&self, camera: &CameraId, state: CameraState, detail: Option<String>) {
        self.update(|s, _| set_component(&mut s.cameras, &camera.0, state.as_str(), detail));
    }

    /// Replaces a known camera's detail, keeping its state (the latest media error, say).
    pub fn camera_detail(&self, camera: &CameraId, detail: String) {
        self.update(|s, _| {
            if let Some(c) = s.cameras.get_mut(&camera.0) {
                c.detail = Some(detail);
            }
        });
    }

    /// A known camera's motion-gating state (see [`ComponentStatus::gating`]).
    pub fn camera_gating(&self, camera: &CameraId, gating: &'static str) {
        self.update(|s, _| {
            if let Some(c) = s.cameras.get_mut(&camera.0) {
                c.gating = Some(gating);
            }
        });
    }

    /// A sink's delivery state for the body.
    pub fn set_sink(&self, sink: &str, state: SinkState, detail: Option<String>) {
        self.update(|s, _| set_component(&mut s.sinks, sink, state.as_str(), detail));
    }

    /// A fact for the body (`execution_provider`, `onnxruntime_library`, `gpu_name`).
    pub fn set_info(&self, key: &str, value: impl Into<String>) {
        let value = value.into();
        self.update(|s, _| {
            s.info.insert(key.to_owned(), value);
        });
    }
}

fn set_component(map: &mut BTreeMap<String, ComponentStatus>, name: &str, state: &'static str, detail: Option<String>) {
    match map.get_mut(name) {
        Some(c) if c.state == state => c.detail = detail,
        other => {
            // A camera's gating outlives its stream state changes (a reconnect).
            let gating = other.and_then(|c| c.gating);
            let since = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            map.insert(name.to_owned(), ComponentStatus { state, detail, since, gating });
        }
    }
}

/// Stages are sequential: reaching `stage` finishes whatever earlier stage is still running.
fn complete_running_before(s: &mut HealthSnapshot, stage: Stage, now: Instant) {
    for earlier in Stage::ALL.into_iter().filter(|&e| e < stage) {
        if s.stage_status(earlier).state == StageState::Running {
            complete_stage(s, earlier, now, None);
        }
    }
}

fn complete_stage(s: &mut HealthSnapshot, stage: Stage, now: Instant, detail: Option<String>) {
    let st = s.stage_mut(stage);
    st.state = StageState::Done;
    let seconds = st.started.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
    st.duration_seconds = Some(seconds);
    if detail.is_some() {
        st.detail = detail;
    }
    metrics::record_stage(stage.as_str(), seconds);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stages_advance_in_order_with_durations() {
        let h = Health::new();
        assert_eq!(h.snapshot().stage, Some(Stage::Starting));
        tokio::time::advance(Duration::from_millis(100)).await;
        h.begin(Stage::Gpu);
        tokio::time::advance(Duration::from_secs(2)).await;
        let s = h.snapshot();
        assert_eq!(s.stage_status(Stage::Starting).state, StageState::Done);
        assert_eq!(s.stage_status(Stage::Starting).duration_seconds, Some(0.1));
        assert_eq!(s.stage_status(Stage::Gpu).state, StageState::Running);
        assert_eq!(s.stage_status(Stage::Gpu).duration_seconds, Some(2.0));
        assert_eq!(s.stage, Some(Stage::Gpu));
        assert!(!s.ready);
        h.begin(Stage::ModelsLoaded);
        h.begin(Stage::WarmedUp);
        h.complete(Stage::Ready, None);
        let s = h.snapshot();
        assert!(s.ready && s.live);
        assert_eq!(s.status, Status::Ready);
        assert_eq!(s.stage, None);
        assert_eq!(s.time_to_ready_seconds, Some(2.1));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_failure_and_draining_take_readiness_away() {
        let h = Health::new();
        h.complete(Stage::Starting, None);
        for stage in [Stage::Gpu, Stage::ModelsLoaded, Stage::WarmedUp, Stage::Ready] {
            h.complete(stage, None);
        }
        assert!(h.snapshot().ready);
        h.set_liveness_failure(&Component::Inference, "no batch completed for 30s");
        let s = h.snapshot();
        assert!(!s.live && !s.ready);
        assert_eq!(s.status, Status::NotLive);
        h.clear_liveness_failure(&Component::Inference);
        assert!(h.snapshot().ready);
        h.start_draining();
        let s = h.snapshot();
        assert!(s.live && !s.ready);
        assert_eq!(s.status, Status::Draining);
    }

    #[tokio::test(start_paused = true)]
    async fn degraded_keeps_health_green() {
        let h = Health::new();
        for stage in Stage::ALL {
            h.complete(stage, None);
        }
        h.set_degraded(&Component::Sink("kinesis"), "ProvisionedThroughputExceeded");
        let s = h.snapshot();
        assert!(s.ready && s.live);
        assert_eq!(s.status, Status::Degraded);
        h.clear_degraded(&Component::Sink("kinesis"));
        assert_eq!(h.snapshot().status, Status::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_stage_is_never_ready() {
        let h = Health::new();
        h.begin(Stage::ModelsLoaded);
        h.fail(Stage::ModelsLoaded, "models/x.onnx: no such file");
        h.complete(Stage::Ready, None);
        let s = h.snapshot();
        assert!(!s.ready);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.stage_status(Stage::ModelsLoaded).detail.as_deref(), Some("models/x.onnx: no such file"));
    }
}
