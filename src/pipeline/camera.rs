//! One camera's pipeline: a running source → the frame stream and sampler on a decode thread
//! ([`super::feed`]) → analysis (blocking, through the worker) → zones and filters → tracker →
//! events (bounded channel to the sinks).
//!
//! How frames flow is the source's choice ([`SourceOptions`]): live sources never wait for
//! inference; offline runs analyse every sampled frame and results are reproducible. Events are
//! never dropped: the event channel applies back-pressure.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventOrigin, EventWithFrame};
use super::feed::{self, Feed, FeedReport, Handoff, SampledFrame};
use super::roi::Roi;
use super::sampler::{DropOldest, RateGate};
use super::tracker::{EventKind, Observation, TrackState, Tracker};
use crate::config::{CameraId, CameraSpec};
use crate::health::Health;
use crate::infer::engine::{Analysis, Engine};
use crate::media::FragmentMeta;
use crate::media::decode::DecoderSettings;
use crate::media::image::RgbImage;
use crate::media::stream::{FrameStream, StreamContext, StreamError};
use crate::metrics::{self, FrameStage};
use crate::source::file::FileSource;
use crate::source::{RunningSource, SourceError, SourceOptions, SourceTasks};

/// Frames waiting for inference per camera.
const HANDOFF_QUEUE: usize = 2;

/// The pipeline layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("camera {camera}: the event channel is closed")]
    EventsClosed { camera: CameraId },
    #[error("camera {camera}: panicked: {message}")]
    Panicked { camera: CameraId, message: String },
    #[error("camera {camera}: its task was cancelled")]
    Cancelled { camera: CameraId },
}

impl PipelineError {
    /// The bounded label for `camera_restarts_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            PipelineError::Source(_) => "source",
            PipelineError::Stream(_) => "stream",
            PipelineError::EventsClosed { .. } => "events_closed",
            PipelineError::Panicked { .. } => "panic",
            PipelineError::Cancelled { .. } => "cancelled",
        }
    }

    /// A camera task (or its decode thread) that did not return: a panic, with its message.
    pub fn from_join(camera: &CameraId, e: tokio::task::JoinError) -> Self {
        match e.try_into_panic() {
            Ok(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                PipelineError::Panicked { camera: camera.clone(), message }
            }
            Err(_) => PipelineError::Cancelled { camera: camera.clone() },
        }
    }
}

/// What the camera pipeline needs.
pub struct CameraContext {
    pub camera: CameraSpec,
    pub engine: Engine,
    pub events: mpsc::Sender<EventWithFrame>,
    pub shutdown: CancellationToken,
    /// Where the camera's media errors show.
    pub health: Health,
    /// The camera's decoder: the backend the service chose at startup, the camera's threads.
    pub decoder: DecoderSettings,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Frames decoded again after a reconnect and not handed on (already analysed).
    pub frames_repeated: u64,
    /// Fragments read completely (KVS fragments, or MKV documents of a file).
    pub fragments: u64,
    /// Damage and undecodable frames, skipped.
    pub media_errors: u64,
    pub events: u64,
    /// Per analysed frame: seconds from the sampled frame being taken for inference to its
    /// events being handed to the sinks.
    pub latencies: Vec<f64>,
}

/// Runs a camera over a local MKV file until it ends (or shutdown): `run-file`, tests, benches.
pub async fn run_file(ctx: CameraContext, path: PathBuf, realtime: bool) -> Result<RunStats, PipelineError> {
    let source = FileSource::open(&ctx.camera.id, path)?;
    let options = SourceOptions { live: realtime, pace: realtime };
    run(ctx, RunningSource { input: Box::new(source), options, progress: None, tasks: SourceTasks::default() }).await
}

/// Runs a camera over a running source until its input ends (or shutdown); the source's
/// background tasks are awaited before it returns.
pub async fn run(ctx: CameraContext, source: RunningSource) -> Result<RunStats, PipelineError> {
    let RunningSource { input, options, progress, tasks } = source;
    let camera = ctx.camera.id.clone();
    let stream_ctx = StreamContext {
        camera: camera.clone(),
        progress: progress.clone(),
        limits: (&ctx.camera.media).into(),
        health: ctx.health.clone(),
        decoder: ctx.decoder,
    };
    let stream = FrameStream::new(stream_ctx, input);
    let (offline_tx, offline_rx) = mpsc::channel::<SampledFrame>(HANDOFF_QUEUE);
    let live = Arc::new(DropOldest::new(HANDOFF_QUEUE));
    let handoff = if options.live { Handoff::Live(live.clone()) } else { Handoff::Offline(offline_tx) };
    let newest = Arc::new(AtomicI64::new(i64::MIN));
    let feed = Feed {
        camera: camera.clone(),
        gate: RateGate::new(ctx.camera.target_fps, ctx.camera.keyframes_only),
        handoff,
        pace: options.pace,
        shutdown: ctx.shutdown.clone(),
        newest: newest.clone(),
    };
    // No more frames, even after a panic: the consumer drains the queue and stops (offline: the
    // sender drops with the feed).
    let producer_end = CloseOnDrop(live.clone());
    let decoder = tokio::task::spawn_blocking(move || {
        let _close = producer_end;
        feed::run(stream, feed)
    });
    let frames = Frames { live: options.live.then_some(live.clone()), offline: offline_rx };
    let mut analysis = AnalysisLoop::new(&ctx, newest, progress.clone());
    let analysed = analysis.run(frames).await;
    live.close();
    let report = decoder.await.map_err(|e| PipelineError::from_join(&camera, e));
    tasks.finish().await;
    let stats = analysed?;
    let report = report?;
    if let Some(progress) = progress.filter(|_| !ctx.shutdown.is_cancelled() && report.failure.is_none()) {
        // The input ended and every queued frame was analysed.
        progress.drained();
    }
    finish_stats(stats, report)
}

fn finish_stats(mut stats: RunStats, report: FeedReport) -> Result<RunStats, PipelineError> {
    if let Some(failure) = report.failure {
        return Err(failure.into());
    }
    stats.frames_decoded = report.stream.frames_decoded;
    stats.frames_repeated = report.stream.frames_repeated;
    stats.fragments = report.stream.fragments;
    stats.media_errors = report.stream.media_errors;
    stats.frames_sampled = report.frames_sampled;
    stats.frames_dropped = report.frames_dropped;
    Ok(stats)
}

/// Closes the live hand-off when the decode thread ends, however it ends.
struct CloseOnDrop(Arc<DropOldest<SampledFrame>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The analysis loop's end of the hand-off.
struct Frames {
    live: Option<Arc<DropOldest<SampledFrame>>>,
    offline: mpsc::Receiver<SampledFrame>,
}

impl Frames {
    async fn next(&mut self) -> Option<SampledFrame> {
        match &self.live {
            Some(queue) => queue.pop().await,
            None => self.offline.recv().await,
        }
    }
}

/// Sample → infer → observe → track → emit, one frame at a time.
struct AnalysisLoop<'a> {
    ctx: &'a CameraContext,
    roi: Roi,
    tracker: Tracker,
    origin: EventOrigin,
    newest: Arc<AtomicI64>,
    progress: Option<Arc<crate::media::progress::FragmentProgress>>,
    /// Frames kept for `end` snapshots: a track ends at most `max_age` frames after it was seen.
    recent: VecDeque<SampledFrame>,
    recent_cap: usize,
    stats: RunStats,
}

impl<'a> AnalysisLoop<'a> {
    fn new(
        ctx: &'a CameraContext,
        newest: Arc<AtomicI64>,
        progress: Option<Arc<crate::media::progress::FragmentProgress>>,
    ) -> Self {
        let camera = &ctx.camera;
        let models =
            camera.detect.iter().map(|m| m.0.clone()).chain(camera.ocr.iter().map(|o| o.model.clone())).collect();
        let recent_cap = camera.tracking.max_age as usize + 2;
        Self {
            ctx,
            roi: Roi::new(camera.roi.clone(), camera.anchor, camera.filters.clone()),
            tracker: Tracker::new(camera.tracking.clone()),
            origin: EventOrigin::new(&camera.id, models),
            newest,
            progress,
            recent: VecDeque::with_capacity(recent_cap + 1),
            recent_cap,
            stats: RunStats::default(),
        }
    }

    /// Until the frames end (or shutdown); then the open tracks end.
    async fn run(&mut self, mut frames: Frames) -> Result<RunStats, PipelineError> {
        let mut last: Option<SampledFrame> = None;
        loop {
            let next = tokio::select! {
                f = frames.next() => f,
                () = self.ctx.shutdown.cancelled() => None,
            };
            let Some(frame) = next else { break };
            if let Some(progress) = &self.progress {
                progress.frame_taken(frame.fragment.as_deref());
            }
            self.analyse(&frame).await?;
            last = Some(frame);
        }
        for (kind, state) in self.tracker.finish() {
            let fragment = last.as_ref().and_then(|f| f.fragment.clone());
            let shown = self.shown(kind, &state).or_else(|| last.as_ref().map(|f| f.image.clone()));
            self.emit(kind, state, fragment.as_deref(), shown).await?;
        }
        Ok(std::mem::take(&mut self.stats))
    }

    async fn analyse(&mut self, frame: &SampledFrame) -> Result<(), PipelineError> {
        let camera = &self.ctx.camera.id;
        // How far behind the newest decoded frame the analysed one is (stream time).
        let lag_ns = self.newest.load(Ordering::Relaxed).saturating_sub(frame.timestamp_ns).max(0);
        metrics::set_camera_lag(camera, lag_ns as f64 / 1e9);
        let (engine, spec, image) = (self.ctx.engine.clone(), self.ctx.camera.clone(), frame.image.clone());
        let started = Instant::now();
        let analysis = match tokio::task::spawn_blocking(move || engine.analyze(&spec, &image)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::warn!(camera = %camera, error = %e, "frame not analysed");
                metrics::count_dropped(camera, "inference_error");
                return Ok(());
            }
            Err(e) => {
                tracing::error!(camera = %camera, error = %e, "analysis task failed");
                return Ok(());
            }
        };
        metrics::count_frame(camera, FrameStage::Inferred);
        self.stats.frames_analysed += 1;
        let observations = observe(&self.roi, &analysis, frame.image.width, frame.image.height);
        self.recent.push_back(frame.clone());
        while self.recent.len() > self.recent_cap {
            self.recent.pop_front();
        }
        for (kind, state) in self.tracker.update(frame.timestamp_ns, observations) {
            let shown = self.shown(kind, &state).or_else(|| Some(frame.image.clone()));
            self.emit(kind, state, frame.fragment.as_deref(), shown).await?;
        }
        metrics::record_frame_latency(camera, started.elapsed());
        self.stats.latencies.push(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The frame an event shows: `new` the current one; `end` the one the track was last seen
    /// on (decided frames later); `update` none.
    fn shown(&self, kind: EventKind, state: &TrackState) -> Option<RgbImage> {
        match kind {
            EventKind::New => self.recent.back().map(|f| f.image.clone()),
            EventKind::End => {
                self.recent.iter().find(|f| f.timestamp_ns == state.last_seen_ns).map(|f| f.image.clone())
            }
            EventKind::Update => None,
        }
    }

    async fn emit(
        &mut self,
        kind: EventKind,
        state: TrackState,
        fragment: Option<&FragmentMeta>,
        shown: Option<RgbImage>,
    ) -> Result<(), PipelineError> {
        let frame = if kind == EventKind::Update { None } else { shown };
        let event = Event::new(&self.origin, kind, state, fragment);
        self.stats.events += 1;
        self.ctx
            .events
            .send(EventWithFrame { event, frame })
            .await
            .map_err(|_| PipelineError::EventsClosed { camera: self.ctx.camera.id.clone() })
    }
}

/// A text line this close (pixels) to the frame's edge is cut off: it is not observed.
const TEXT_EDGE_MARGIN: f32 = 2.0;

/// Observations in zones that pass the filters. Text lines cut off by the frame's edge (a
/// plate driving in) are left out: their reading is incomplete.
fn observe(roi: &Roi, a: &Analysis, w: u32, h: u32) -> Vec<Observation> {
    let detections = a.detections.iter().map(|d| (d.label.clone(), None, d.score, d.bbox, false));
    let texts = a.texts.iter().map(|t| {
        let xs = t.quad.iter().map(|p| p[0]);
        let ys = t.quad.iter().map(|p| p[1]);
        let bbox = [
            xs.clone().fold(f32::MAX, f32::min),
            ys.clone().fold(f32::MAX, f32::min),
            xs.fold(f32::MIN, f32::max),
            ys.fold(f32::MIN, f32::max),
        ];
        ("text".to_owned(), Some(t.text.clone()), t.score, bbox, true)
    });
    detections
        .chain(texts)
        .filter(|(_, _, _, b, is_text)| {
            !is_text
                || (b[0] > TEXT_EDGE_MARGIN
                    && b[1] > TEXT_EDGE_MARGIN
                    && b[2] < w as f32 - TEXT_EDGE_MARGIN
                    && b[3] < h as f32 - TEXT_EDGE_MARGIN)
        })
        .filter(|(label, _, score, bbox, _)| roi.passes(label, *score, *bbox, w, h))
        .filter_map(|(label, text, score, bbox, is_text)| {
            let zone = roi.zone_of(bbox, w, h, is_text)?.to_owned();
            Some(Observation { label, text, score, bbox, zone })
        })
        .collect()
}
