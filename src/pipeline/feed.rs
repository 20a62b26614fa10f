//! A camera's decode thread: frames from the media stream, sampled at the camera's rate, paced
//! when the source asks for it, handed to the analysis loop.
//!
//! Two hand-offs: live sources go through the drop-oldest queue, offline ones through a bounded
//! channel (every sampled frame is analysed, and a full channel slows the read). On the live
//! queue the [`catch_up`](super::catch_up) judge decides per frame: at live a full queue drops
//! its oldest frame (video never waits for inference; the drop is counted); behind live the
//! thread waits for room (nothing is lost, the read slows down); too far behind it asks the
//! source to skip to the newest key frame and discards frames until the new session starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catch_up::{LagJudge, Observed, Pace};
use super::motion::{MotionGate, Verdict};
use super::sampler::{DropOldest, RateGate};
use crate::config::CameraId;
use crate::health::Health;
use crate::media::FragmentMeta;
use crate::media::decode::convert::RgbConverter;
use crate::media::decode::grey::GreyGrid;
use crate::media::image::RgbImage;
use crate::media::progress::FragmentProgress;
use crate::media::stream::{FrameStream, StreamError, StreamFrame, StreamStats};
use crate::metrics;

/// A sampled, decoded frame on its way to inference.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub image: RgbImage,
    pub timestamp_ns: i64,
    pub fragment: Option<Arc<FragmentMeta>>,
    /// Where motion gating saw change (normalised `[x0, y0, x1, y1]`); `None`: look at all of
    /// the zones (settling, re-check, gating off).
    pub changed: Option<[f64; 4]>,
    /// Settling frames motion gating owed after this frame (the checkpoint carries it).
    pub settle_left: u32,
}

/// Where sampled frames go.
pub enum Handoff {
    /// A live source: drop-oldest at live, waiting for room while the judge says catch up.
    Live(Arc<DropOldest<SampledFrame>>, LagJudge),
    Offline(mpsc::Sender<SampledFrame>),
}

/// What the decode thread needs.
pub struct Feed {
    pub camera: CameraId,
    pub gate: RateGate,
    pub handoff: Handoff,
    /// Pace frames at the stream's own clock, like a live camera.
    pub pace: bool,
    pub shutdown: CancellationToken,
    /// Timestamp of the newest decoded frame (for `camera_lag_seconds`).
    pub newest: Arc<AtomicI64>,
    /// Fragment completion (KVS): every handed frame is counted, and every dropped one.
    pub progress: Option<Arc<FragmentProgress>>,
    /// Which sampled frames need the models (`cameras[].motion`).
    pub motion: MotionGate,
    /// Where the camera's gating state is shown.
    pub health: Health,
    /// The live page's view of the camera (received frames, distance from live).
    pub view: Option<Arc<super::live::CameraView>>,
}

/// What the decode thread did.
#[derive(Debug, Default)]
pub struct FeedReport {
    pub stream: StreamStats,
    pub frames_sampled: u64,
    pub frames_dropped: u64,
    /// Decoded frames discarded by skip-aheads.
    pub frames_skipped: u64,
    /// Sampled frames motion gating found still (never converted, never analysed).
    pub frames_still: u64,
    /// Why the stream ended early, if it did.
    pub failure: Option<StreamError>,
}

/// Per-run state of the decode thread.
struct FeedState {
    pacer: Pacer,
    current: Option<Arc<FragmentMeta>>,
    /// Skipping ahead: frames with this `skip_epoch` or an older one are discarded.
    skipping_through: Option<u64>,
    catching_up: bool,
    /// The gating state last shown in `/healthz`.
    gating: Option<&'static str>,
}

/// Runs until the stream ends, the consumer goes away, or shutdown. Every frame is decoded (the
/// next ones reference it); only the sampled ones are converted to RGB.
pub fn run(mut stream: FrameStream, mut feed: Feed) -> FeedReport {
    let mut report = FeedReport::default();
    let mut converter = RgbConverter::new();
    let mut state =
        FeedState { pacer: Pacer::default(), current: None, skipping_through: None, catching_up: false, gating: None };
    while !feed.shutdown.is_cancelled() {
        let frame = match stream.next_frame() {
            None => break,
            Some(Err(e)) => {
                report.failure = Some(e);
                break;
            }
            Some(Ok(f)) => f,
        };
        if feed.pace {
            // Every decoded frame waits for its time, as a live camera delivers it: the frames
            // sampling or motion gating pass over too, so the stream never runs ahead of the
            // clock while nothing is analysed.
            if let Some(jump) = state.pacer.wait(frame.frame.timestamp_ns, &feed.shutdown) {
                tracing::warn!(camera = %feed.camera, jump_seconds = jump, "timestamp jump: the pacer starts over at this frame instead of waiting it out");
            }
        }
        feed.newest.store(frame.frame.timestamp_ns, Ordering::Relaxed);
        if let Some(view) = &feed.view {
            view.count_received();
        }
        // Input waiting is a backlog only where the source is not paced here (a realtime file
        // always has its next bytes ready, and is held to the stream's clock below).
        let backlog = stream.input_ready() && !feed.pace;
        let Some(pace) = judge(&mut feed, &mut state, &frame, backlog, &mut report) else { continue };
        let StreamFrame { frame: decoded, fragment, .. } = frame;
        let fragment_start = !same_fragment(state.current.as_ref(), fragment.as_ref());
        state.current.clone_from(&fragment);
        if fragment_start {
            feed.motion.fragment_started();
        }
        if !feed.gate.admit(decoded.timestamp_ns, decoded.keyframe, fragment_start) {
            continue;
        }
        if !gate_motion(&mut feed, &mut state, &decoded, &mut report) {
            keep_still_picture(&feed, &mut converter, &decoded);
            continue;
        }
        let image = match converter.convert(&decoded.picture) {
            Ok(image) => image,
            Err(e) => {
                metrics::count_media_error(&feed.camera);
                tracing::warn!(camera = %feed.camera, error = %e, "frame not converted; skipped");
                continue;
            }
        };
        report.frames_sampled += 1;
        let (changed, settle_left) = (feed.motion.changed(), feed.motion.settle_left());
        let sampled = SampledFrame { image, timestamp_ns: decoded.timestamp_ns, fragment, changed, settle_left };
        if !hand_off(&feed, sampled, pace, &mut report) {
            break;
        }
    }
    report.stream = stream.stats();
    report
}

/// Whether a sampled frame needs the models (motion gating); still ones are counted and go no
/// further: no RGB conversion, no hand-off.
fn gate_motion(
    feed: &mut Feed,
    state: &mut FeedState,
    decoded: &crate::media::decode::DecodedFrame,
    report: &mut FeedReport,
) -> bool {
    let grid = if feed.motion.enabled() { GreyGrid::of(&decoded.picture) } else { None };
    let verdict = feed.motion.judge(grid.as_ref(), decoded.timestamp_ns);
    if state.gating != Some(verdict.state()) {
        state.gating = Some(verdict.state());
        feed.health.camera_gating(&feed.camera, verdict.state());
    }
    if verdict == Verdict::Still {
        report.frames_sampled += 1;
        report.frames_still += 1;
        metrics::count_skipped(&feed.camera, "motion", 1);
        return false;
    }
    true
}

/// A still frame (no model looks at it) becomes the live page's picture when the camera has kept
/// none for a while (`pipeline::live`): a still scene under motion gating shows its current
/// picture, at the cost of one conversion a second.
fn keep_still_picture(feed: &Feed, converter: &mut RgbConverter, decoded: &crate::media::decode::DecodedFrame) {
    let Some(view) = feed.view.as_ref().filter(|v| v.wants_still_picture(Instant::now())) else { return };
    match converter.convert(&decoded.picture) {
        Ok(image) => view.still(&image, decoded.timestamp_ns),
        Err(e) => tracing::debug!(camera = %feed.camera, error = %e, "still frame not converted for the live page"),
    }
}

/// The pace for this frame, or `None` when it is discarded (a skip-ahead is under way).
fn judge(
    feed: &mut Feed,
    state: &mut FeedState,
    frame: &StreamFrame,
    input_ready: bool,
    report: &mut FeedReport,
) -> Option<Pace> {
    let Handoff::Live(_, judge) = &mut feed.handoff else { return Some(Pace::CatchUp) };
    let last_complete = feed.progress.as_ref().and_then(|p| p.last_demuxed());
    if let Some(through) = state.skipping_through {
        if frame.skip_epoch <= through {
            report.frames_skipped += 1;
            metrics::count_skipped(&feed.camera, "lag", 1);
            return None;
        }
        state.skipping_through = None;
        // The tags of every fragment read before the skip describe the old position.
        judge.skipped(last_complete.as_ref().and_then(|m| m.fragment_number.clone()));
        tracing::info!(camera = %feed.camera, skipped = report.frames_skipped, "skip-ahead done; analysing from the newest key frame");
    }
    let pace = judge.judge(&Observed {
        timestamp_ns: frame.frame.timestamp_ns,
        input_ready,
        fragment: frame.fragment.as_deref(),
        last_complete: last_complete.as_deref(),
    });
    let behind = judge.behind().map_or(0.0, |b| b.as_secs_f64());
    match (pace, &feed.progress) {
        (Pace::Skip { behind }, Some(progress)) => {
            tracing::warn!(
                camera = %feed.camera,
                behind = ?behind,
                "camera is further behind live than skip_after; skipping ahead to the newest key frame"
            );
            metrics::count_skipped(&feed.camera, "lag", 1);
            metrics::count_skipped_stream(&feed.camera, behind.as_secs_f64());
            report.frames_skipped += 1;
            state.skipping_through = Some(frame.skip_epoch);
            progress.request_skip();
            None
        }
        // A source that cannot skip catches up instead.
        (Pace::Skip { .. }, None) => Some(Pace::CatchUp),
        (pace, _) => {
            let catching_up = pace == Pace::CatchUp;
            if catching_up != state.catching_up {
                state.catching_up = catching_up;
                tracing::info!(camera = %feed.camera, behind_s = behind, catching_up, "catch-up mode changed");
            }
            metrics::set_behind_live(&feed.camera, behind, catching_up);
            if let Some(view) = &feed.view {
                view.set_behind_live(behind, catching_up);
            }
            Some(pace)
        }
    }
}

/// Whether two frames belong to the same fragment: the same fragment number (a reconnect
/// re-reads a fragment as a new document), or without numbers the same document.
fn same_fragment(a: Option<&Arc<FragmentMeta>>, b: Option<&Arc<FragmentMeta>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (&a.fragment_number, &b.fragment_number) {
            (Some(x), Some(y)) => x == y,
            _ => Arc::ptr_eq(a, b),
        },
        (None, None) => true,
        _ => false,
    }
}

/// `false` once the consumer is gone.
fn hand_off(feed: &Feed, frame: SampledFrame, pace: Pace, report: &mut FeedReport) -> bool {
    if let Some(progress) = &feed.progress {
        progress.frame_handed();
    }
    match &feed.handoff {
        Handoff::Live(queue, _) if pace == Pace::CatchUp => queue.push_wait(frame, &feed.shutdown).is_ok(),
        Handoff::Live(queue, _) => {
            if queue.push(frame).is_some() {
                report.frames_dropped += 1;
                metrics::count_dropped(&feed.camera, "inference_behind");
                if let Some(progress) = &feed.progress {
                    progress.frame_done(None, 0);
                }
            }
            true
        }
        Handoff::Offline(tx) => tx.blocking_send(frame).is_ok(),
    }
}

/// Between two frames, a step in stream time larger than this (either way) is a discontinuity:
/// a real-time file re-anchors its clock there instead of waiting it out (or racing through it).
const MAX_PACE_STEP: Duration = Duration::from_secs(5);
/// The pacer sleeps in slices this long, so shutdown never waits for a frame's time.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// Holds a real-time file's frames to their timestamps, from an anchor (a frame and the instant
/// it was due) that moves at every discontinuity.
#[derive(Debug, Default)]
struct Pacer {
    anchor: Option<(i64, Instant)>,
    last_ts: Option<i64>,
}

impl Pacer {
    /// Waits until the frame at `ts` is due (or shutdown). Returns the jump, in seconds, when
    /// the frame was a discontinuity and the clock re-anchored at it.
    fn wait(&mut self, ts: i64, shutdown: &tokio_util::sync::CancellationToken) -> Option<f64> {
        let step = self.last_ts.replace(ts).map(|last| ts.saturating_sub(last));
        let jumped = step.filter(|s| s.unsigned_abs() > MAX_PACE_STEP.as_nanos() as u64);
        let (t0, started) = match self.anchor {
            Some(anchor) if jumped.is_none() => anchor,
            _ => {
                self.anchor = Some((ts, Instant::now()));
                return jumped.map(|s| s as f64 / 1e9);
            }
        };
        let due = Duration::from_nanos(u64::try_from(ts.saturating_sub(t0)).unwrap_or(0));
        while let Some(wait) = due.checked_sub(started.elapsed()) {
            if shutdown.is_cancelled() {
                break;
            }
            std::thread::sleep(wait.min(PACE_SLICE));
        }
        None
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    #[test]
    fn a_timestamp_jump_re_anchors_instead_of_waiting() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut p = Pacer::default();
        let started = Instant::now();
        assert_eq!(p.wait(0, &shutdown), None);
        assert_eq!(p.wait(40_000_000, &shutdown), None);
        assert!(started.elapsed() >= Duration::from_millis(40), "held to the frame's time");
        // 10^12 ms ahead: 31 years, not waited.
        let jump = p.wait(40_000_000 + 1_000_000_000_000_000_000, &shutdown).expect("a discontinuity");
        assert!(jump > 1e8, "{jump}");
        assert_eq!(p.wait(1_000_000_000_040_000_000 + 40_000_000, &shutdown), None, "paced again from the new anchor");
        // Backwards too.
        assert!(p.wait(0, &shutdown).is_some());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn shutdown_does_not_wait_for_a_frame_s_time() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut p = Pacer::default();
        p.wait(0, &shutdown);
        shutdown.cancel();
        let started = Instant::now();
        p.wait(4_000_000_000, &shutdown);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
