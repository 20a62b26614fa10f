//! A camera's decode thread: frames from the media stream, sampled at the camera's rate, paced
//! when the source asks for it, handed to the analysis loop.
//!
//! Two hand-offs: live sources go through the drop-oldest queue (video never waits for
//! inference; a dropped frame is counted), offline ones through a bounded channel (every sampled
//! frame is analysed, and a full channel slows the read).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sampler::{DropOldest, RateGate};
use crate::config::CameraId;
use crate::media::FragmentMeta;
use crate::media::decode::convert::RgbConverter;
use crate::media::image::RgbImage;
use crate::media::stream::{FrameStream, StreamError, StreamStats};
use crate::metrics;

/// A sampled, decoded frame on its way to inference.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub image: RgbImage,
    pub timestamp_ns: i64,
    pub fragment: Option<Arc<FragmentMeta>>,
}

/// Where sampled frames go.
pub enum Handoff {
    Live(Arc<DropOldest<SampledFrame>>),
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
}

/// What the decode thread did.
#[derive(Debug, Default)]
pub struct FeedReport {
    pub stream: StreamStats,
    pub frames_sampled: u64,
    pub frames_dropped: u64,
    /// Why the stream ended early, if it did.
    pub failure: Option<StreamError>,
}

/// Runs until the stream ends, the consumer goes away, or shutdown. Every frame is decoded (the
/// next ones reference it); only the sampled ones are converted to RGB.
pub fn run(mut stream: FrameStream, mut feed: Feed) -> FeedReport {
    let mut report = FeedReport::default();
    let mut converter = RgbConverter::new();
    let started = Instant::now();
    let mut first_ts: Option<i64> = None;
    while !feed.shutdown.is_cancelled() {
        let frame = match stream.next_frame() {
            None => break,
            Some(Err(e)) => {
                report.failure = Some(e);
                break;
            }
            Some(Ok(f)) => f,
        };
        let (decoded, fragment) = (frame.frame, frame.fragment);
        feed.newest.store(decoded.timestamp_ns, Ordering::Relaxed);
        if !feed.gate.admit(decoded.timestamp_ns, decoded.keyframe) {
            continue;
        }
        if feed.pace {
            let t0 = *first_ts.get_or_insert(decoded.timestamp_ns);
            let due = Duration::from_nanos(u64::try_from(decoded.timestamp_ns - t0).unwrap_or(0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
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
        let sampled = SampledFrame { image, timestamp_ns: decoded.timestamp_ns, fragment };
        if !hand_off(&feed, sampled, &mut report) {
            break;
        }
    }
    report.stream = stream.stats();
    report
}

/// `false` once the consumer is gone.
fn hand_off(feed: &Feed, frame: SampledFrame, report: &mut FeedReport) -> bool {
    match &feed.handoff {
        Handoff::Live(queue) => {
            if queue.push(frame).is_some() {
                report.frames_dropped += 1;
                metrics::count_dropped(&feed.camera, "inference_behind");
            }
            true
        }
        Handoff::Offline(tx) => tx.blocking_send(frame).is_ok(),
    }
}
