//! Starts every camera and keeps it running: a camera opens its source and runs until the input
//! ends (again and again when the source repeats: a looping file, a KVS stream) or shutdown. A
//! camera whose source or stream fails is restarted with exponential backoff; it never takes the
//! service down.

use std::time::Duration;

use kvs_infer_common::backoff::Backoff;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::camera::{CameraContext, PipelineError, RunStats, run};
use super::events::EventWithFrame;
use super::live::LiveViews;
use crate::config::{CameraId, CameraSpec};
use crate::health::{CameraState, Component, Health};
use crate::infer::engine::Engine;
use crate::media::decode::{Backend, DecoderSettings};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::source::checkpoint::Fence;
use crate::source::{self, SourceContext};
use tokio_util::sync::CancellationToken;

/// Restart delays of a camera whose source fails.
const RESTART_BACKOFF: Backoff = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(30) };

/// What the cameras share.
#[derive(Clone)]
pub struct Supervisor {
    pub engine: Engine,
    /// Where the cameras decode (chosen at startup); each camera brings its own threads.
    pub decoder: Backend,
    pub events: mpsc::Sender<EventWithFrame>,
    /// The sinks' delivered watermark: KVS checkpoints wait for it (`media::progress`).
    pub delivered: tokio::sync::watch::Receiver<u64>,
    /// Cameras run on its tracker and stop taking frames when its intake ends.
    pub shutdown: Shutdown,
    /// The AWS configuration, when any camera or sink needs AWS.
    pub sdk: Option<aws_config::SdkConfig>,
    pub health: Health,
    /// What the live page shows of each camera (off unless `server.ui`).
    pub views: LiveViews,
}

/// A camera's stop signal and what its checkpoints are fenced by.
#[derive(Clone, Default)]
pub struct CameraControl {
    /// Stops this camera only (a child of the shutdown's intake: shutdown stops it too).
    pub stop: CancellationToken,
    /// The lease its checkpoint writes are conditional on (fleet mode).
    pub fence: Option<Fence>,
}

impl Supervisor {
    /// Starts every camera on the shutdown's tracker.
    pub fn start(self, cameras: Vec<CameraSpec>) {
        for camera in cameras {
            let control = CameraControl { stop: self.shutdown.intake().child_token(), fence: None };
            self.start_camera(camera, control);
        }
    }

    /// Starts one camera on the shutdown's tracker, until `control.stop` (or shutdown); the
    /// handle ends once the camera has drained (its last checkpoint written).
    pub fn start_camera(&self, camera: CameraSpec, control: CameraControl) -> tokio::task::JoinHandle<()> {
        self.shutdown.spawn(self.clone().keep_running(camera, control))
    }

    async fn keep_running(self, camera: CameraSpec, control: CameraControl) {
        let mut attempt = 0;
        let mut last_run = None;
        // A looping file starts its timestamps over with each pass; the pass keeps event ids apart.
        let mut pass = 0;
        loop {
            let state = if camera.source.needs_aws() { CameraState::Connecting } else { CameraState::Running };
            self.health.set_camera(&camera.id, state, None);
            match self.run_once(&camera, pass, &control).await {
                Ok(s) => {
                    pass += 1;
                    let again = camera.source.repeats() && !control.stop.is_cancelled();
                    log_stats(
                        &camera.id,
                        &s,
                        if again { "input ended; the camera starts it again" } else { "camera stopped" },
                    );
                    last_run = (s.media_errors > 0)
                        .then(|| format!("last run: {} media error(s) skipped, the stream went on", s.media_errors));
                    self.health.clear_degraded(&Component::Camera(camera.id.clone()));
                    attempt = 0;
                }
                Err(e) => {
                    let backoff = RESTART_BACKOFF.delay(attempt);
                    let reason = kvs_infer_common::error_chain(&e);
                    warn!(camera = %camera.id, error = %reason, retry_in = ?backoff, "camera failed; restarting");
                    metrics::count_camera_restart(&camera.id, e.reason());
                    if matches!(e, PipelineError::Panicked { .. }) {
                        metrics::count_media_error(&camera.id);
                    }
                    self.health.set_degraded(&Component::Camera(camera.id.clone()), format!("failed: {reason}"));
                    self.health.set_camera(&camera.id, CameraState::Restarting, Some(reason));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = control.stop.cancelled() => break,
                    }
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            }
            if !camera.source.repeats() || control.stop.is_cancelled() {
                break;
            }
        }
        self.health.set_camera(&camera.id, CameraState::Stopped, last_run);
        if control.stop.is_cancelled() && !self.shutdown.intake().is_cancelled() {
            // Stopped on its own (a lease handed to another task): the page no longer shows it.
            // A camera whose input ended stays, stopped, with its last frame.
            self.views.remove(&camera.id);
        }
    }

    /// Opens the camera's source and runs the camera over it once, on a task of its own: a panic
    /// anywhere in the camera's path ends that run (as an error), never the supervisor.
    async fn run_once(
        &self,
        camera: &CameraSpec,
        pass: u64,
        control: &CameraControl,
    ) -> Result<RunStats, PipelineError> {
        let ctx = SourceContext {
            camera: camera.id.clone(),
            sdk: self.sdk.clone(),
            health: self.health.clone(),
            shutdown: control.stop.clone(),
            fence: control.fence.clone(),
            delivered: Some(self.delivered.clone()),
        };
        let source = source::open(&camera.source, &ctx).await?;
        let ctx = CameraContext {
            camera: camera.clone(),
            engine: self.engine.clone(),
            events: self.events.clone(),
            shutdown: control.stop.clone(),
            health: self.health.clone(),
            decoder: DecoderSettings {
                backend: self.decoder,
                threads: camera.decoder.threads,
                frame_threads: camera.decoder.frame_threads,
            },
            pass: if camera.source.restarts_timestamps() { pass } else { 0 },
            view: self.views.camera(&camera.id, &camera.roi),
        };
        tokio::spawn(run(ctx, source)).await.map_err(|e| PipelineError::from_join(&camera.id, e))?
    }
}

fn log_stats(camera: &CameraId, s: &RunStats, message: &str) {
    info!(
        camera = %camera,
        frames_decoded = s.frames_decoded,
        frames_sampled = s.frames_sampled,
        frames_analysed = s.frames_analysed,
        frames_dropped = s.frames_dropped,
        frames_repeated = s.frames_repeated,
        fragments = s.fragments,
        media_errors = s.media_errors,
        events = s.events,
        "{message}"
    );
}
