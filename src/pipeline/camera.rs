//! One camera's pipeline:
//! source (file or KVS) → demux → decode (blocking thread) → sampler → analysis (blocking,
//! through the worker) → zones and filters → tracker → events (bounded channel to the sinks).
//!
//! Live sources hand frames off through the drop-oldest queue: video never waits for inference
//! (a file with `realtime: true` is also paced at its timestamps, like a camera). Offline runs
//! (`run-file`) hand off through a bounded channel instead, so every sampled frame is analysed
//! and results are reproducible. Events are never dropped: the event channel applies
//! back-pressure.
//!
//! A source may start a new session (a KVS reconnect): the demuxer and decoder start over, and
//! frames at or before the newest one already handed on are decoded (as references) but not
//! handed on again, so a fragment re-read after a broken connection is analysed once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventOrigin, EventWithFrame};
use super::roi::Roi;
use super::sampler::{DropOldest, RateGate};
use super::tracker::{EventKind, Observation, Tracker};
use crate::config::CameraSpec;
use crate::infer::engine::{Analysis, Engine};
use crate::media::decode::{OpenH264Decoder, VideoDecoder};
use crate::media::demux::Demuxer;
use crate::media::image::RgbImage;
use crate::media::{Event as MediaEvent, FragmentMeta, FragmentNumber, MediaError};
use crate::metrics::{self, FrameStage};
use crate::source::file::FileSource;
use crate::source::{Chunk, FragmentProgress, MediaSource, SourceError};

/// Frames waiting for inference per camera in live mode.
const LIVE_QUEUE: usize = 2;

/// The pipeline layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("camera {camera}: the event channel is closed")]
    EventsClosed { camera: String },
}

/// A sampled, decoded frame on its way to inference.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub image: RgbImage,
    pub timestamp_ns: i64,
    pub fragment: Option<Arc<FragmentMeta>>,
}

/// What the camera pipeline needs.
pub struct CameraContext {
    pub camera: CameraSpec,
    pub engine: Engine,
    pub events: mpsc::Sender<EventWithFrame>,
    pub shutdown: CancellationToken,
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
    pub events: u64,
    /// Per analysed frame: seconds from the sampled frame being taken for inference to its
    /// events being handed to the sinks.
    pub latencies: Vec<f64>,
}

enum Handoff {
    Live(Arc<DropOldest<SampledFrame>>),
    Offline(mpsc::Sender<SampledFrame>),
}

/// How a camera's frames flow.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Hand frames off through the drop-oldest queue (a live camera) rather than a bounded channel.
    pub live: bool,
    /// Pace frames at their timestamps (a file standing in for a camera).
    pub pace: bool,
    /// Fragment completion, for a KVS source's reconnects and checkpoints.
    pub progress: Option<Arc<FragmentProgress>>,
}

/// Runs a camera over a local MKV file until it ends (or shutdown).
pub async fn run_file(ctx: CameraContext, path: PathBuf, realtime: bool) -> Result<RunStats, PipelineError> {
    let source = FileSource::open(&ctx.camera.id.0, path)?;
    run(ctx, Box::new(source), RunOptions { live: realtime, pace: realtime, progress: None }).await
}

/// Runs a camera over any source until its input ends (or shutdown).
pub async fn run(
    ctx: CameraContext,
    source: Box<dyn MediaSource>,
    opts: RunOptions,
) -> Result<RunStats, PipelineError> {
    let camera = ctx.camera.id.0.clone();
    let realtime = opts.live;
    let (offline_tx, mut offline_rx) = mpsc::channel::<SampledFrame>(LIVE_QUEUE);
    let live = Arc::new(DropOldest::new(LIVE_QUEUE));
    let handoff = if realtime { Handoff::Live(live.clone()) } else { Handoff::Offline(offline_tx) };
    let gate = RateGate::new(ctx.camera.target_fps, ctx.camera.keyframes_only);
    let producer_end = live.clone();
    let newest = Arc::new(AtomicI64::new(i64::MIN));
    let decode = DecodeContext {
        camera: camera.clone(),
        gate,
        handoff,
        pace: opts.pace,
        shutdown: ctx.shutdown.clone(),
        newest: newest.clone(),
        progress: opts.progress.clone(),
    };
    let decoder = tokio::task::spawn_blocking(move || {
        let stats = decode_loop(source, decode);
        // No more frames: let the consumer drain the queue and stop (offline: the sender drops).
        producer_end.close();
        stats
    });

    let roi = Roi::new(ctx.camera.roi.clone(), ctx.camera.anchor, ctx.camera.filters.clone());
    let mut tracker = Tracker::new(ctx.camera.tracking.clone());
    let models: Vec<String> =
        ctx.camera.detect.iter().map(|m| m.0.clone()).chain(ctx.camera.ocr.iter().map(|o| o.model.clone())).collect();
    let origin = EventOrigin::new(&camera, models);
    let mut stats = RunStats::default();
    let mut last_frame: Option<SampledFrame> = None;
    // Frames kept for `end` snapshots: a track ends at most `max_age` frames after it was seen.
    let recent_cap = ctx.camera.tracking.max_age as usize + 2;
    let mut recent: std::collections::VecDeque<SampledFrame> =
        std::collections::VecDeque::with_capacity(recent_cap + 1);
    loop {
        let next = tokio::select! {
            f = async { if realtime { live.pop().await } else { offline_rx.recv().await } } => f,
            () = ctx.shutdown.cancelled() => None,
        };
        let Some(frame) = next else { break };
        if let Some(progress) = &opts.progress {
            progress.frame_taken(frame.fragment.as_deref());
        }
        // How far behind the newest decoded frame the analysed one is (stream time).
        let lag_ns = newest.load(Ordering::Relaxed).saturating_sub(frame.timestamp_ns).max(0);
        metrics::set_camera_lag(&camera, lag_ns as f64 / 1e9);
        let (engine, cam, image) = (ctx.engine.clone(), ctx.camera.clone(), frame.image.clone());
        let started = Instant::now();
        let analysis = match tokio::task::spawn_blocking(move || engine.analyze(&cam, &image)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::warn!(camera, error = %e, "frame not analysed");
                metrics::count_dropped(&camera, "inference_error");
                continue;
            }
            Err(e) => {
                tracing::error!(camera, error = %e, "analysis task failed");
                continue;
            }
        };
        metrics::count_frame(&camera, FrameStage::Inferred);
        stats.frames_analysed += 1;
        let observations = observe(&roi, &analysis, frame.image.width, frame.image.height);
        recent.push_back(frame.clone());
        while recent.len() > recent_cap {
            recent.pop_front();
        }
        for (kind, state) in tracker.update(frame.timestamp_ns, observations) {
            // An `end` is decided frames after the track was last seen: show that frame.
            let shown = match kind {
                EventKind::New => Some(frame.image.clone()),
                EventKind::End => recent
                    .iter()
                    .find(|f| f.timestamp_ns == state.last_seen_ns)
                    .map(|f| f.image.clone())
                    .or_else(|| Some(frame.image.clone())),
                EventKind::Update => None,
            };
            let event = Event::new(&origin, kind, state, frame.fragment.as_deref());
            stats.events += 1;
            ctx.events
                .send(EventWithFrame { event, frame: shown })
                .await
                .map_err(|_| PipelineError::EventsClosed { camera: camera.clone() })?;
        }
        metrics::record_frame_latency(&camera, started.elapsed());
        stats.latencies.push(started.elapsed().as_secs_f64());
        last_frame = Some(frame);
    }
    for (kind, state) in tracker.finish() {
        let fragment = last_frame.as_ref().and_then(|f| f.fragment.clone());
        let frame = recent
            .iter()
            .find(|f| f.timestamp_ns == state.last_seen_ns)
            .or(last_frame.as_ref())
            .map(|f| f.image.clone());
        let event = Event::new(&origin, kind, state, fragment.as_deref());
        stats.events += 1;
        ctx.events
            .send(EventWithFrame { event, frame })
            .await
            .map_err(|_| PipelineError::EventsClosed { camera: camera.clone() })?;
    }
    live.close();
    // A decode thread blocked handing off a frame (offline mode) must see the consumer is gone.
    drop(offline_rx);
    let decoded = decoder.await.unwrap_or_default();
    if let Some(progress) = opts.progress.as_ref().filter(|_| !ctx.shutdown.is_cancelled()) {
        // The input ended and every queued frame was analysed.
        progress.drained();
    }
    stats.frames_decoded = decoded.frames_decoded;
    stats.frames_sampled = decoded.frames_sampled;
    stats.frames_dropped = decoded.frames_dropped;
    stats.frames_repeated = decoded.frames_repeated;
    stats.fragments = decoded.fragments;
    Ok(stats)
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

/// What the decode thread needs.
struct DecodeContext {
    camera: String,
    gate: RateGate,
    handoff: Handoff,
    pace: bool,
    shutdown: CancellationToken,
    /// Timestamp of the newest decoded frame (for `camera_lag_seconds`).
    newest: Arc<AtomicI64>,
    progress: Option<Arc<FragmentProgress>>,
}

/// Demux and decode on a blocking thread; sample; hand off.
fn decode_loop(mut source: Box<dyn MediaSource>, mut ctx: DecodeContext) -> RunStats {
    let camera = ctx.camera.clone();
    let camera = camera.as_str();
    let mut stats = RunStats::default();
    let mut demuxer = Demuxer::default();
    let mut decoder = match OpenH264Decoder::new(false) {
        Ok(d) => VideoDecoder::new(d),
        Err(e) => {
            tracing::error!(camera, error = %e, "cannot start the H.264 decoder");
            return stats;
        }
    };
    let mut fragment: Option<Arc<FragmentMeta>> = None;
    let started = Instant::now();
    let mut first_ts: Option<i64> = None;
    // The newest frame handed on (its fragment and timestamp); after a new session, frames up to
    // it are not handed on again. Fragments are compared by number: timecodes may restart per
    // fragment.
    let mut handed_upto: Option<(Option<FragmentNumber>, i64)> = None;
    let mut repeat_floor: Option<(Option<FragmentNumber>, i64)> = None;
    let mut eof = false;
    while !eof && !ctx.shutdown.is_cancelled() {
        let mut session_over = None;
        match source.next_chunk() {
            None => {
                eof = true;
                demuxer.finish();
            }
            Some(Ok(Chunk::Data(data))) => demuxer.push(&data),
            Some(Ok(Chunk::SessionEnd(done))) => {
                demuxer.finish();
                session_over = Some(done);
            }
            Some(Err(e)) => {
                tracing::error!(camera, error = %kvs_infer_common::error_chain(&e), "read failed");
                break;
            }
        }
        while let Some(event) = demuxer.next_event() {
            let result = match event {
                MediaEvent::Tracks(t) => decoder.push_tracks(&t),
                MediaEvent::FragmentStart { meta, .. } => {
                    if let Some(err) = &meta.error {
                        metrics::count_kvs_error_fragment(camera, &err.code);
                    }
                    fragment = Some(Arc::new(meta));
                    Ok(())
                }
                MediaEvent::Frame(f) => {
                    if decoder.video_track() == Some(f.track) {
                        metrics::count_frame(camera, FrameStage::Received);
                    }
                    decoder.push_frame(&f)
                }
                MediaEvent::FragmentEnd(summary) => {
                    let flushed = decoder.finish();
                    if !summary.damaged {
                        stats.fragments += 1;
                        if let Some(progress) = &ctx.progress {
                            metrics::count_kvs_fragment(camera, summary.meta.millis_behind_now);
                            progress.fragment_demuxed(Arc::new(summary.meta));
                        }
                    }
                    flushed
                }
                MediaEvent::Error(e) => {
                    decoder.gap();
                    Err(e)
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                report(camera, &e);
            }
            while let Some(frame) = decoder.next_frame() {
                let number = fragment.as_ref().and_then(|m| m.fragment_number.clone());
                if let Some((floor_fragment, floor_ts)) = &repeat_floor {
                    let repeated = match (&number, floor_fragment) {
                        (Some(n), Some(f)) => n < f || (n == f && frame.timestamp_ns <= *floor_ts),
                        _ => frame.timestamp_ns <= *floor_ts,
                    };
                    if repeated {
                        stats.frames_repeated += 1;
                        continue;
                    }
                    repeat_floor = None;
                }
                stats.frames_decoded += 1;
                metrics::count_frame(camera, FrameStage::Decoded);
                ctx.newest.store(frame.timestamp_ns, Ordering::Relaxed);
                handed_upto = Some((number, frame.timestamp_ns));
                if !ctx.gate.admit(frame.timestamp_ns, frame.keyframe) {
                    continue;
                }
                if ctx.pace {
                    // Pace at the stream's own clock, like a live camera.
                    let t0 = *first_ts.get_or_insert(frame.timestamp_ns);
                    let due = Duration::from_nanos(u64::try_from(frame.timestamp_ns - t0).unwrap_or(0));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let Ok(image) = RgbImage::new(frame.picture.width, frame.picture.height, frame.picture.rgb) else {
                    continue;
                };
                let sampled = SampledFrame { image, timestamp_ns: frame.timestamp_ns, fragment: fragment.clone() };
                stats.frames_sampled += 1;
                match &ctx.handoff {
                    Handoff::Live(q) => {
                        if q.push(sampled).is_some() {
                            stats.frames_dropped += 1;
                            metrics::count_dropped(camera, "inference_behind");
                        }
                    }
                    Handoff::Offline(tx) => {
                        if tx.blocking_send(sampled).is_err() {
                            return stats;
                        }
                    }
                }
            }
        }
        if let Some(done) = session_over {
            // The next session starts with a new document; frames up to the newest one handed
            // on are not handed on again.
            demuxer = Demuxer::default();
            decoder.gap();
            repeat_floor = handed_upto.clone();
            let _ = done.send(());
        }
    }
    stats
}

fn report(camera: &str, e: &MediaError) {
    metrics::count_media_error(camera);
    tracing::warn!(camera, error = %e, "media error; the stream goes on");
}
