//! Starts every camera and keeps it running: a file camera runs to its end (again and again with
//! `loop: true`); a KVS camera runs until shutdown, its GetMedia session reconnecting inside the
//! source. A camera whose source fails is restarted with exponential backoff; it never takes the
//! service down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::camera::{CameraContext, RunOptions, RunStats, run, run_file};
use super::events::EventWithFrame;
use crate::config::{CameraSpec, SourceSpec, StreamRef};
use crate::infer::engine::Engine;
use crate::source::checkpoint::Checkpoints;
use crate::source::kvs::{KvsSource, write_checkpoints};
use crate::source::{ChannelSource, FragmentProgress};

/// Restart delays of a camera whose source fails.
const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// GetMedia chunks waiting for the decode thread (a few hundred KiB at most).
const KVS_CHUNKS: usize = 16;
/// Checkpoints are written at most this often per camera.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What the cameras share.
#[derive(Clone)]
pub struct Supervisor {
    pub engine: Engine,
    pub events: mpsc::Sender<EventWithFrame>,
    pub shutdown: CancellationToken,
    /// The AWS configuration, when any camera reads from KVS.
    pub sdk: Option<aws_config::SdkConfig>,
    pub health: crate::health::Health,
}

impl Supervisor {
    /// Starts every camera; the handle resolves when all have stopped.
    pub fn start(self, cameras: Vec<CameraSpec>) -> JoinHandle<()> {
        let mut tasks = JoinSet::new();
        for camera in cameras {
            tasks.spawn(self.clone().keep_running(camera));
        }
        drop(self);
        tokio::spawn(async move { while tasks.join_next().await.is_some() {} })
    }

    async fn keep_running(self, camera: CameraSpec) {
        let id = camera.id.0.clone();
        let mut backoff = RESTART_BACKOFF_MIN;
        loop {
            let state = if matches!(camera.source, SourceSpec::Kvs { .. }) { "connecting" } else { "running" };
            self.health.set_camera(&id, state, None);
            let ctx = CameraContext {
                camera: camera.clone(),
                engine: self.engine.clone(),
                events: self.events.clone(),
                shutdown: self.shutdown.clone(),
            };
            let (result, again) = match &camera.source {
                SourceSpec::File { path, loop_file, realtime } => {
                    (run_file(ctx, path.clone(), *realtime).await, *loop_file)
                }
                SourceSpec::Kvs { .. } => (self.run_kvs(ctx).await, true),
            };
            match result {
                Ok(s) => {
                    log_stats(&id, &s);
                    backoff = RESTART_BACKOFF_MIN;
                }
                Err(e) => {
                    warn!(camera = id, error = %kvs_infer_common::error_chain(&e), retry_in = ?backoff, "camera failed; restarting");
                    self.health.set_camera(&id, "restarting", Some(e.to_string()));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                    continue;
                }
            }
            if !again || self.shutdown.is_cancelled() {
                break;
            }
        }
        self.health.set_camera(&id, "stopped", None);
    }

    /// One KVS camera: the GetMedia source task, the pipeline, and the checkpoint writer.
    async fn run_kvs(&self, ctx: CameraContext) -> Result<RunStats, super::camera::PipelineError> {
        let SourceSpec::Kvs { stream, start, checkpoint_table } = ctx.camera.source.clone() else {
            return Ok(RunStats::default());
        };
        let camera = ctx.camera.id.0.clone();
        let Some(sdk) = self.sdk.clone() else {
            warn!(camera, "no AWS configuration; KVS camera not started");
            return Ok(RunStats::default());
        };
        let progress = Arc::new(FragmentProgress::default());
        let checkpoints = checkpoint_table.map(|table| {
            let key = match &stream {
                StreamRef::Name(n) | StreamRef::Arn(n) => n.clone(),
            };
            Arc::new(Checkpoints::new(crate::aws::dynamodb_client(&sdk), table, key, camera.clone()))
        });
        let writer = checkpoints.clone().map(|c| {
            tokio::spawn(write_checkpoints(camera.clone(), c, progress.subscribe_processed(), CHECKPOINT_INTERVAL))
        });
        let (tx, rx) = mpsc::channel(KVS_CHUNKS);
        let source = KvsSource {
            camera: camera.clone(),
            stream,
            start,
            sdk,
            checkpoints,
            progress: progress.clone(),
            shutdown: ctx.shutdown.clone(),
            health: self.health.clone(),
        };
        let reader = tokio::spawn(source.run(tx));
        let opts = RunOptions { live: true, pace: false, progress: Some(progress) };
        let result = run(ctx, Box::new(ChannelSource(rx)), opts).await;
        let _ = reader.await;
        if let Some(writer) = writer {
            // Ends with a last write once the pipeline and the source have let go of the progress.
            let _ = writer.await;
        }
        result
    }
}

fn log_stats(camera: &str, s: &RunStats) {
    info!(
        camera,
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
