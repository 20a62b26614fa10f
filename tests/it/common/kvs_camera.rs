//! A KVS camera under test: the real GetMedia reader against a [`KvsServer`], the camera
//! pipeline with the real models, optional checkpoints (DynamoDB in moto) written by the real
//! writer, and every event the camera emits collected.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvs_infer::config::{self, CameraId, CameraSpec, EnvOverrides, StartSelector, StreamRef};
use kvs_infer::infer::engine::Engine;
use kvs_infer::infer::worker::Worker;
use kvs_infer::media::progress::FragmentProgress;
use kvs_infer::media::stream::ChannelSource;
use kvs_infer::pipeline::camera::{self, CameraContext, PipelineError, RunStats};
use kvs_infer::pipeline::events::Event;
use kvs_infer::source::checkpoint::Checkpoints;
use kvs_infer::source::checkpointing::{CheckpointWriter, read_checkpoint, write_checkpoints};
use kvs_infer::source::kvs::{KvsSource, SessionTimeouts};
use kvs_infer::source::{RunningSource, SourceOptions, SourceTasks};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::kvs_server::KvsServer;
use super::moto;

pub const STREAM: &str = "cam-stream";
pub const CAMERA: &str = "kvs-cam";

/// The engine (kept alive by the returned worker handle) and `config/local.yaml`'s camera as a
/// KVS camera named [`CAMERA`].
pub async fn engine_and_camera() -> (Engine, CameraSpec, Worker) {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("kvs_infer=info,ort=warn").try_init();
    let yaml = std::fs::read_to_string("config/local.yaml").expect("config").replace("level: info", "level: warn");
    let cfg = config::load_str(&yaml, "config/local.yaml", &EnvOverrides::default()).expect("config");
    let (engine, worker) = Engine::load(&cfg.runtime, &cfg.models).await.expect("ONNX Runtime and models (make setup)");
    let mut camera = cfg.cameras[0].clone();
    camera.id = CameraId(CAMERA.into());
    (engine, camera, worker)
}

/// Where the collected events are "delivered": each gets a receipt when collected, and the
/// delivered watermark follows at once unless delivery is paused (a sink that is down).
#[derive(Clone)]
pub struct Delivery {
    paused: Arc<std::sync::atomic::AtomicBool>,
    collected: Arc<std::sync::atomic::AtomicU64>,
    delivered: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Delivery {
    fn new() -> Self {
        Self {
            paused: Arc::default(),
            collected: Arc::default(),
            delivered: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The receipt of one more collected event.
    fn collect(&self) -> u64 {
        let seq = self.collected.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if !self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            self.delivered.send_replace(seq);
        }
        seq
    }

    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Delivers everything collected, and from now on at once.
    pub fn resume(&self) {
        self.paused.store(false, std::sync::atomic::Ordering::SeqCst);
        self.delivered.send_replace(self.collected.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// One run of the camera, until [`CameraRun::stop`].
pub struct CameraRun {
    pub progress: Arc<FragmentProgress>,
    pub delivery: Delivery,
    /// The camera's health (its source's degraded reasons and state).
    pub health: kvs_infer::health::Health,
    shutdown: CancellationToken,
    events: Arc<Mutex<Vec<Event>>>,
    pipeline: JoinHandle<Result<RunStats, PipelineError>>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl CameraRun {
    /// Starts the camera; with `checkpoints`, resumes after the stored one (and its tracker) and
    /// writes new ones every 50 ms.
    pub async fn start(
        server: &KvsServer,
        engine: &Engine,
        camera: &CameraSpec,
        start: StartSelector,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Self {
        Self::start_with(server, engine, camera, start, checkpoints, SessionTimeouts::default()).await
    }

    /// [`CameraRun::start`] with the GetMedia sessions' timeouts.
    pub async fn start_with(
        server: &KvsServer,
        engine: &Engine,
        camera: &CameraSpec,
        start: StartSelector,
        checkpoints: Option<Arc<Checkpoints>>,
        timeouts: SessionTimeouts,
    ) -> Self {
        let sdk = moto::sdk_for(&server.url).await;
        let shutdown = CancellationToken::new();
        let id = CameraId(CAMERA.into());
        let stored = match &checkpoints {
            Some(c) => read_checkpoint(&id, c, &shutdown).await,
            None => None,
        };
        let progress = Arc::new(match &stored {
            Some(c) => FragmentProgress::resumed(Arc::new(c.meta()), c.revision),
            None => FragmentProgress::default(),
        });
        let delivery = Delivery::new();
        let health = kvs_infer::health::Health::new();
        let (resume_after, resume) = stored.map_or((None, None), |c| (Some(c.fragment), c.analysis));
        let writer = checkpoints.as_ref().map(|c| {
            tokio::spawn(write_checkpoints(CheckpointWriter {
                camera: id.clone(),
                checkpoints: c.clone(),
                feed: progress.checkpoint_feed(),
                delivered: Some(delivery.delivered.subscribe()),
                interval: Duration::from_millis(50),
                retention: None,
            }))
        });
        let (tx, rx) = mpsc::channel(16);
        let source = KvsSource {
            camera: id,
            stream: StreamRef::Name(STREAM.into()),
            start,
            sdk,
            resume_after,
            progress: progress.clone(),
            shutdown: shutdown.clone(),
            health: health.clone(),
            timeouts,
        };
        let reader = tokio::spawn(source.run(tx));
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let events = Arc::new(Mutex::new(Vec::new()));
        let (collected, delivered) = (events.clone(), delivery.clone());
        tokio::spawn(async move {
            while let Some(e) = events_rx.recv().await {
                let e: kvs_infer::pipeline::events::EventWithFrame = e;
                collected.lock().expect("events").push(e.event);
                if let Some(stored) = e.stored {
                    let _ = stored.send(delivered.collect());
                }
            }
        });
        let ctx = CameraContext {
            camera: camera.clone(),
            engine: engine.clone(),
            events: events_tx,
            shutdown: shutdown.clone(),
            health: health.clone(),
            decoder: Default::default(),
            pass: 0,
            view: None,
        };
        let source = RunningSource {
            input: Box::new(ChannelSource(rx)),
            options: SourceOptions { live: true, pace: false, hands_over: checkpoints.is_some() },
            progress: Some(progress.clone()),
            resume: resume.map(Arc::from),
            tasks: SourceTasks::default(),
        };
        let pipeline = tokio::spawn(camera::run(ctx, source));
        Self { progress, delivery, health, shutdown, events, pipeline, reader, writer }
    }

    /// The events emitted so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Waits (60 s at most: a loaded machine analyses slowly) until `done` holds.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The number of the newest fragment whose frames were all analysed.
    pub fn processed(&self) -> Option<String> {
        self.progress.last_processed().and_then(|p| p.fragment.fragment_number.as_ref().map(ToString::to_string))
    }

    /// Shuts the camera down (a drain: the checkpoint writer writes the last fragment analysed)
    /// and returns its counts and events.
    pub async fn stop(self) -> (RunStats, Vec<Event>) {
        self.shutdown.cancel();
        let stats = self.pipeline.await.expect("join").expect("pipeline");
        self.reader.await.expect("reader");
        drop(self.progress);
        if let Some(w) = self.writer {
            tokio::time::timeout(Duration::from_secs(30), w).await.expect("the writer ends").expect("writer");
        }
        // Let the collector take the last events.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let events = self.events.lock().expect("events").clone();
        (stats, events)
    }

    /// Ends the camera the way SIGKILL would: nothing is analysed, emitted or written after this.
    pub fn kill(self) {
        if let Some(w) = self.writer {
            w.abort();
        }
        self.pipeline.abort();
        self.reader.abort();
        // Only now: the decode thread cannot be aborted, but may stop once nothing it does counts.
        self.shutdown.cancel();
    }
}
