//! One camera's pipeline: a running source → the frame stream and sampler on a decode thread
//! ([`super::feed`]) → analysis (blocking, through the worker) → zones and filters → tracker →
//! events (bounded channel to the sinks).
//!
//! How frames flow is the source's choice ([`SourceOptions`]): live sources never wait for
//! inference; offline runs analyse every sampled frame and results are reproducible. Events are
//! never dropped: the event channel applies back-pressure.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catch_up::LagJudge;
use super::checkpoint::{CameraCheckpoint, CheckpointError};
use super::events::{Event, EventOrigin, EventWithFrame};
use super::feed::{self, Feed, FeedReport, Handoff, SampledFrame};
use super::live::{CameraView, TrackView};
use super::roi::Roi;
use super::sampler::{DropOldest, RateGate};
use super::text_rules::judge_texts;
use super::tracker::{EventKind, Observation, TrackState, Tracker};
use crate::config::watchlist::best_match;
use crate::config::{CameraId, CameraSpec};
use crate::geometry::bounding_box;
use crate::health::Health;
use crate::infer::engine::{Analysis, Engine};
use crate::infer::model::ReadHints;
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
    /// How many times a looping file source has started over (part of every event id).
    pub pass: u64,
    /// What the live page shows of the camera (`server.ui`); `None`: no page.
    pub view: Option<Arc<CameraView>>,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Decoded frames discarded by skip-aheads (the camera was further behind than `skip_after`).
    pub frames_skipped: u64,
    /// Sampled frames motion gating found still: not converted, not analysed (counted in
    /// `frames_sampled` too).
    pub frames_still: u64,
    /// Frames decoded again after a reconnect and not handed on (already analysed).
    pub frames_repeated: u64,
    /// Lines of text whose settled reading was reused instead of recognised (`ocr.read_once`).
    pub recognitions_saved: u64,
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
    let options = SourceOptions { live: realtime, pace: realtime, hands_over: false };
    let source =
        RunningSource { input: Box::new(source), options, progress: None, resume: None, tasks: SourceTasks::default() };
    run(ctx, source).await
}

/// Runs a camera over a running source until its input ends (or shutdown); the source's
/// background tasks are awaited before it returns.
pub async fn run(ctx: CameraContext, source: RunningSource) -> Result<RunStats, PipelineError> {
    let RunningSource { input, options, progress, resume, tasks } = source;
    let camera = ctx.camera.id.clone();
    let stream_ctx = StreamContext {
        camera: camera.clone(),
        progress: progress.clone(),
        media: ctx.camera.media.clone(),
        health: ctx.health.clone(),
        decoder: ctx.decoder,
    };
    let stream = FrameStream::new(stream_ctx, input);
    let (tracker, motion_settle) = resumed(&ctx.camera, ctx.pass, resume.as_deref());
    let (offline_tx, offline_rx) = mpsc::channel::<SampledFrame>(HANDOFF_QUEUE);
    let live = Arc::new(DropOldest::new(HANDOFF_QUEUE));
    let handoff = if options.live {
        Handoff::Live(live.clone(), LagJudge::new(ctx.camera.catch_up))
    } else {
        Handoff::Offline(offline_tx)
    };
    let newest = Arc::new(AtomicI64::new(i64::MIN));
    let feed = Feed {
        camera: camera.clone(),
        gate: RateGate::new(ctx.camera.target_fps, ctx.camera.keyframes_only),
        handoff,
        pace: options.pace,
        shutdown: ctx.shutdown.clone(),
        newest: newest.clone(),
        progress: progress.clone(),
        motion: super::motion::MotionGate::new(ctx.camera.motion, ctx.camera.roi.clone())
            .with_settle_left(motion_settle),
        health: ctx.health.clone(),
        view: ctx.view.clone(),
    };
    // No more frames, even after a panic: the consumer drains the queue and stops (offline: the
    // sender drops with the feed).
    let producer_end = CloseOnDrop(live.clone());
    let decoder = tokio::task::spawn_blocking(move || {
        let _close = producer_end;
        feed::run(stream, feed)
    });
    let frames = Frames { live: options.live.then_some(live.clone()), offline: offline_rx };
    let mut analysis = AnalysisLoop::new(&ctx, newest, progress, tracker);
    analysis.hands_over = options.hands_over;
    analysis.motion_settle = motion_settle;
    let analysed = analysis.run(frames).await;
    tracing::info!(camera = %camera, "camera: analysis stopped");
    live.close();
    let report = decoder.await.map_err(|e| PipelineError::from_join(&camera, e));
    // Let go of the fragment progress: the checkpoint writer writes the last fragment analysed
    // and ends once nobody can advance it.
    drop(analysis);
    tasks.finish().await;
    finish_stats(analysed?, report?)
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
    stats.frames_skipped = report.frames_skipped;
    stats.frames_still = report.frames_still;
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
    /// The last frames, for `new` snapshots and, where a track's best frame is not kept (one
    /// resumed from a checkpoint), `end` ones.
    recent: VecDeque<SampledFrame>,
    recent_cap: usize,
    /// The frames open tracks were seen best on (stream ns): their `end` events show them.
    best_frames: BTreeMap<i64, RgbImage>,
    /// At shutdown, leave open tracks to the next run (see `SourceOptions::hands_over`).
    hands_over: bool,
    /// Settling frames motion gating owed after the last analysed frame (checkpointed).
    motion_settle: u32,
    /// Emitted events the consumer has not stored yet.
    unstored: Vec<tokio::sync::oneshot::Receiver<u64>>,
    /// The newest receipt of a stored event (see [`EventWithFrame::stored`]).
    receipt: u64,
    stats: RunStats,
}

impl<'a> AnalysisLoop<'a> {
    /// `tracker`: in the state a checkpoint stored, if any (a restart goes on with its tracks).
    fn new(
        ctx: &'a CameraContext,
        newest: Arc<AtomicI64>,
        progress: Option<Arc<crate::media::progress::FragmentProgress>>,
        tracker: Tracker,
    ) -> Self {
        let camera = &ctx.camera;
        let models =
            camera.detect.iter().map(|m| m.0.clone()).chain(camera.ocr.iter().map(|o| o.model.clone())).collect();
        let recent_cap = camera.tracking.max_age as usize + 2;
        Self {
            ctx,
            roi: Roi::new(camera.roi.clone(), camera.anchor, camera.filters.clone()),
            tracker,
            origin: EventOrigin::new(&camera.id, ctx.pass, models),
            newest,
            progress,
            recent: VecDeque::with_capacity(recent_cap + 1),
            recent_cap,
            best_frames: BTreeMap::new(),
            hands_over: false,
            motion_settle: 0,
            unstored: Vec::new(),
            receipt: 0,
            stats: RunStats::default(),
        }
    }

    /// Until the frames end (or shutdown); then the open tracks end. A stream that goes quiet
    /// for `idle_end` (or `max_age` times the interval its frames arrive at, if longer: a
    /// key-frames-only camera) ends its open tracks too, at the last frame seen.
    async fn run(&mut self, mut frames: Frames) -> Result<RunStats, PipelineError> {
        let mut last: Option<SampledFrame> = None;
        let mut arrived: Option<Instant> = None;
        let mut idle_end = self.ctx.camera.idle_end;
        // The newest decoded frame when the idle clock last started: frames motion gating finds
        // still keep the stream alive without reaching this loop, and must not end the tracks.
        let mut decoded_at_rest = self.newest.load(Ordering::Relaxed);
        loop {
            let next = tokio::select! {
                f = frames.next() => f,
                () = self.ctx.shutdown.cancelled() => None,
                () = tokio::time::sleep(idle_end), if !self.tracker.is_empty() => {
                    let decoded = self.newest.load(Ordering::Relaxed);
                    if decoded != decoded_at_rest {
                        decoded_at_rest = decoded;
                        continue;
                    }
                    tracing::info!(camera = %self.ctx.camera.id, idle = ?idle_end, tracks = self.tracker.len(), "no frame for idle_end; open tracks end");
                    self.end_tracks(last.as_ref()).await?;
                    if let Some(progress) = self.progress.clone() {
                        // The checkpoint holds the state without them: a restart does not end
                        // them again.
                        self.events_stored().await;
                        progress.state_changed(self.checkpoint().into(), self.receipt);
                    }
                    continue;
                }
            };
            decoded_at_rest = self.newest.load(Ordering::Relaxed);
            let Some(frame) = next else { break };
            if let Some(before) = arrived.replace(Instant::now()) {
                let frames_worth = before.elapsed().saturating_mul(self.ctx.camera.tracking.max_age);
                idle_end = self.ctx.camera.idle_end.max(frames_worth);
            }
            if self.hands_over {
                // The next run (here or in another task) analyses this frame again from the
                // checkpoint: stopping need not wait for it, and a camera handed over stops at once.
                let shutdown = self.ctx.shutdown.clone();
                tokio::select! {
                    analysed = self.analyse(&frame) => analysed?,
                    () = shutdown.cancelled() => break,
                }
            } else {
                self.analyse(&frame).await?;
            }
            // The next frame waits until this one's events are in the outbox: a camera never has
            // more than a frame's events (and pictures) queued, however slow the outbox is. A
            // frame counts as done (its fragment may be checkpointed) only then.
            self.events_stored().await;
            if let Some(progress) = self.progress.clone() {
                progress.frame_done(Some(self.checkpoint().into()), self.receipt);
            }
            last = Some(frame);
        }
        if self.hands_over && self.ctx.shutdown.is_cancelled() {
            // The checkpoint holds these tracks; the camera's next run ends them.
            return Ok(std::mem::take(&mut self.stats));
        }
        self.end_tracks(last.as_ref()).await?;
        Ok(std::mem::take(&mut self.stats))
    }

    /// Ends every open track (`end` events at the frame each was last seen on); tracks seen
    /// later are new ones.
    async fn end_tracks(&mut self, last: Option<&SampledFrame>) -> Result<(), PipelineError> {
        for (kind, state) in self.tracker.finish() {
            let fragment = last.and_then(|f| f.fragment.clone());
            let shown = self.shown(kind, &state).or_else(|| last.map(|f| f.image.clone()));
            self.emit(kind, state, fragment.as_deref(), shown).await?;
        }
        self.best_frames.clear();
        Ok(())
    }

    async fn analyse(&mut self, frame: &SampledFrame) -> Result<(), PipelineError> {
        let camera = &self.ctx.camera.id;
        // Travels in the checkpoint with the tracks: a resumed gate owes the same settling frames.
        self.motion_settle = frame.settle_left;
        // How far behind the newest decoded frame the analysed one is (stream time).
        let lag_ns = self.newest.load(Ordering::Relaxed).saturating_sub(frame.timestamp_ns).max(0);
        metrics::set_camera_lag(camera, lag_ns as f64 / 1e9);
        let (width, height) = (frame.image.width, frame.image.height);
        // The models look only at the zones (and a margin), and on a frame with motion only at
        // what changed and the open tracks; results come back in frame pixels.
        let (region, narrowed_from) = self.analysed_region(frame);
        let image = match region {
            Some([x, y, w, h]) => frame.image.crop(x, y, w, h).unwrap_or_else(|_| frame.image.clone()),
            None => frame.image.clone(),
        };
        metrics::set_analysed_area(camera, f64::from(image.width * image.height) / f64::from(width * height));
        let (engine, spec) = (self.ctx.engine.clone(), self.ctx.camera.clone());
        // Lines whose reading is settled are not recognised again (in the analysed image's
        // pixels); a crop narrowed to motion is read at the scale of the zones' crop.
        let mut hints = ReadHints { scale_of: narrowed_from, ..ReadHints::default() };
        if let Some(ocr) = &spec.ocr {
            let [x, y, ..] = region.unwrap_or_default();
            hints.known = self.tracker.settled_lines(&ocr.read_once).moved(x as f32, y as f32);
        }
        let started = Instant::now();
        let analysis = match tokio::task::spawn_blocking(move || engine.analyze_hinted(&spec, &image, &hints)).await {
            Ok(Ok(a)) => shifted(a, region),
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
        let saved = analysis.texts.iter().filter(|t| t.reused).count() as u64;
        if saved > 0 {
            metrics::count_recognitions_saved(camera, saved);
            self.stats.recognitions_saved += saved;
        }
        let bounds = region.unwrap_or([0, 0, width, height]);
        let observations = observe(&self.roi, &analysis, bounds, width, height);
        let observations = judge_texts(observations, self.ctx.camera.text_rules.as_deref(), camera);
        // From here on the frame is a picture: snapshots and the live page show it with what
        // `privacy.blur` names hidden.
        let private;
        let frame = match super::privacy::hide(&frame.image, &analysis, &self.ctx.camera.privacy.blur) {
            Some(image) => {
                private = SampledFrame { image, ..frame.clone() };
                &private
            }
            None => frame,
        };
        self.recent.push_back(frame.clone());
        while self.recent.len() > self.recent_cap {
            self.recent.pop_front();
        }
        let events = self.tracker.update(frame.timestamp_ns, observations);
        // The frames open tracks were seen best on: this one if it is one of them; the others
        // are let go after the events that show them (pictures are shared, not copied).
        let wanted = self.tracker.best_frames();
        if wanted.contains(&frame.timestamp_ns) {
            self.best_frames.insert(frame.timestamp_ns, frame.image.clone());
        }
        for (kind, state) in events {
            let shown = self.shown(kind, &state).or_else(|| Some(frame.image.clone()));
            self.emit(kind, state, frame.fragment.as_deref(), shown).await?;
        }
        self.best_frames.retain(|ns, _| wanted.contains(ns));
        if let Some(view) = &self.ctx.view {
            let tracks = self.tracker.seen().into_iter().map(|(state, confirmed)| TrackView::new(state, confirmed));
            view.analysed(&frame.image, frame.timestamp_ns, lag_ns as f64 / 1e9, tracks.collect());
        }
        metrics::record_frame_latency(camera, started.elapsed());
        self.stats.latencies.push(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Where the models look on `frame` (`None`: all of it), and when that was narrowed to
    /// motion, the size of what it was narrowed from (the zones' crop).
    fn analysed_region(&self, frame: &SampledFrame) -> (Option<super::roi::Rect>, Option<[u32; 2]>) {
        let (w, h) = (frame.image.width, frame.image.height);
        let zones = self.roi.analysed_region(w, h);
        // A camera with no zones keeps whole frames.
        let Some(changed) = frame.changed.filter(|_| self.roi.has_zones()) else { return (zones, None) };
        let whole = zones.unwrap_or([0, 0, w, h]);
        let narrowed = Roi::narrowed(whole, changed, &self.tracker.boxes(), w, h);
        if narrowed == whole {
            return (zones, None);
        }
        (Some(narrowed), Some([whole[2], whole[3]]))
    }

    /// The frame an event shows: `new` the current one; `end` the one the track was seen best on
    /// (kept since), else the one it was last seen on; `update` none.
    fn shown(&self, kind: EventKind, state: &TrackState) -> Option<RgbImage> {
        match kind {
            EventKind::New => self.recent.back().map(|f| f.image.clone()),
            EventKind::End => {
                self.best_frames.get(&state.shown_ns).cloned().or_else(|| {
                    self.recent.iter().find(|f| f.timestamp_ns == state.last_seen_ns).map(|f| f.image.clone())
                })
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
        let mut event = Event::new(&self.origin, kind, state, fragment);
        event.watchlist = event.text.as_deref().and_then(|t| best_match(&self.ctx.camera.watchlists, t));
        if let Some(m) = &event.watchlist {
            metrics::count_watchlist_match(&self.ctx.camera.id, &m.name, kind.as_str());
        }
        self.stats.events += 1;
        let (stored, is_stored) = tokio::sync::oneshot::channel();
        self.unstored.push(is_stored);
        self.ctx
            .events
            .send(EventWithFrame { event, frame, stored: Some(stored) })
            .await
            .map_err(|_| PipelineError::EventsClosed { camera: self.ctx.camera.id.clone() })?;
        metrics::event_sent();
        Ok(())
    }

    /// Waits until every event emitted so far is stored (see [`EventWithFrame::stored`]) and
    /// keeps the newest receipt.
    async fn events_stored(&mut self) {
        for stored in self.unstored.drain(..) {
            // Dropped unanswered: a consumer without an outbox, done with it.
            if let Ok(receipt) = stored.await {
                self.receipt = self.receipt.max(receipt);
            }
        }
    }

    /// The camera's resumable state now, as the checkpoint stores it.
    fn checkpoint(&self) -> String {
        CameraCheckpoint::new(&self.tracker, self.motion_settle, self.ctx.pass).encode()
    }
}

/// The camera's tracker and motion gate's settling frames, in the state a checkpoint stored when
/// there is one.
fn resumed(camera: &CameraSpec, pass: u64, resume: Option<&str>) -> (Tracker, u32) {
    let restored = resume.map(|s| {
        let checkpoint = CameraCheckpoint::decode(s)?;
        let settle = checkpoint.motion_settle;
        Ok::<_, CheckpointError>((checkpoint.tracker(camera.tracking.clone(), pass)?, settle))
    });
    match restored {
        Some(Ok((tracker, settle))) => {
            tracing::info!(camera = %camera.id, tracks = tracker.len(), "tracks resumed from the checkpoint");
            (tracker, settle)
        }
        Some(Err(e)) => {
            let error = kvs_infer_common::error_chain(&e);
            tracing::warn!(camera = %camera.id, error, "the checkpoint's analysis state is not usable; tracks start afresh");
            (Tracker::new(camera.tracking.clone()), 0)
        }
        None => (Tracker::new(camera.tracking.clone()), 0),
    }
}

/// A text line this close (pixels) to the edge of what was analysed is cut off: it is not observed.
const TEXT_EDGE_MARGIN: f32 = 2.0;

/// An analysis of the region at `[x, y, ..]` moved to frame pixels.
fn shifted(mut a: Analysis, region: Option<super::roi::Rect>) -> Analysis {
    let Some([x, y, _, _]) = region else { return a };
    let (dx, dy) = (x as f32, y as f32);
    for d in &mut a.detections {
        d.bbox = [d.bbox[0] + dx, d.bbox[1] + dy, d.bbox[2] + dx, d.bbox[3] + dy];
    }
    for t in &mut a.texts {
        for p in &mut t.quad {
            *p = [p[0] + dx, p[1] + dy];
        }
    }
    a
}

/// Observations in zones that pass the filters. Text lines cut off by the edge of the analysed
/// region `bounds` (`[x, y, w, h]` of the `w` x `h` frame; a plate driving in) are left out:
/// their reading is incomplete.
fn observe(roi: &Roi, a: &Analysis, bounds: super::roi::Rect, w: u32, h: u32) -> Vec<Observation> {
    let [bx, by, bw, bh] = bounds.map(|v| v as f32);
    let observation = |label: &str, text: Option<&String>, score, bbox, box_score, reused| Observation {
        label: label.to_owned(),
        text: text.cloned(),
        score,
        bbox,
        zone: String::new(),
        box_score,
        reused,
        low: false,
    };
    let detections = a.detections.iter().map(|d| (observation(&d.label, None, d.score, d.bbox, d.score, false), false));
    let texts = a.texts.iter().map(|t| {
        let bbox = bounding_box(&t.quad);
        (observation("text", Some(&t.text), t.score, bbox, t.box_score, t.reused), true)
    });
    detections
        .chain(texts)
        .filter(|(o, is_text)| {
            let b = o.bbox;
            !is_text
                || (b[0] > bx + TEXT_EDGE_MARGIN
                    && b[1] > by + TEXT_EDGE_MARGIN
                    && b[2] < bx + bw - TEXT_EDGE_MARGIN
                    && b[3] < by + bh - TEXT_EDGE_MARGIN)
        })
        .filter(|(o, _)| roi.passes(&o.label, o.score, o.bbox, w, h))
        .filter_map(|(mut o, is_text)| {
            o.zone = roi.zone_of(o.bbox, w, h, is_text)?.to_owned();
            Some(o)
        })
        .collect()
}
