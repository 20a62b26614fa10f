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
use crate::config::{CameraId, CameraSpec};
use crate::health::{CameraState, Health};
use crate::infer::engine::Engine;
use crate::shutdown::Shutdown;
use crate::source::{self, SourceContext};

/// Restart delays of a camera whose source fails.
const RESTART_BACKOFF: Backoff = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(30) };

/// What the cameras share.
#[derive(Clone)]
pub struct Supervisor {
    pub engine: Engine,
    pub events: mpsc::Sender<EventWithFrame>,
    /// Cameras run on its tracker and stop taking frames when its intake ends.
    pub shutdown: Shutdown,
    /// The AWS configuration, when any camera or sink needs AWS.
    pub sdk: Option<aws_config::SdkConfig>,
    pub health: Health,
}

impl Supervisor {
    /// Starts every camera on the shutdown's tracker.
    pub fn start(self, cameras: Vec<CameraSpec>) {
        for camera in cameras {
            self.shutdown.spawn(self.clone().keep_running(camera));
        }
    }

    async fn keep_running(self, camera: CameraSpec) {
        let mut attempt = 0;
        loop {
            let state = if camera.source.needs_aws() { CameraState::Connecting } else { CameraState::Running };
            self.health.set_camera(&camera.id, state, None);
            match self.run_once(&camera).await {
                Ok(s) => {
                    log_stats(&camera.id, &s);
                    attempt = 0;
                }
                Err(e) => {
                    let backoff = RESTART_BACKOFF.delay(attempt);
                    warn!(camera = %camera.id, error = %kvs_infer_common::error_chain(&e), retry_in = ?backoff, "camera failed; restarting");
                    self.health.set_camera(&camera.id, CameraState::Restarting, Some(e.to_string()));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.intake().cancelled() => break,
                    }
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            }
            if !camera.source.repeats() || self.shutdown.intake().is_cancelled() {
                break;
            }
        }
        self.health.set_camera(&camera.id, CameraState::Stopped, None);
    }

    /// Opens the camera's source and runs the camera over it once.
    async fn run_once(&self, camera: &CameraSpec) -> Result<RunStats, PipelineError> {
        let ctx = SourceContext {
            camera: camera.id.clone(),
            sdk: self.sdk.clone(),
            health: self.health.clone(),
            shutdown: self.shutdown.intake().clone(),
        };
        let source = source::open(&camera.source, &ctx).await?;
        let ctx = CameraContext {
            camera: camera.clone(),
            engine: self.engine.clone(),
            events: self.events.clone(),
            shutdown: self.shutdown.intake().clone(),
        };
        run(ctx, source).await
    }
}

fn log_stats(camera: &CameraId, s: &RunStats) {
    info!(
        camera = %camera,
        frames_decoded = s.frames_decoded,
        frames_sampled = s.frames_sampled,
        frames_analysed = s.frames_analysed,
        frames_dropped = s.frames_dropped,
        frames_repeated = s.frames_repeated,
        fragments = s.fragments,
        events = s.events,
        "camera stopped"
    );
}
