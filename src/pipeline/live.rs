//! What the live page (`server::ui`, `server.ui: true`) shows of each camera: its latest picture
//! with the tracks seen on it, how fast frames arrive and are analysed, how far behind it is. The
//! cameras write here; the page reads.
//!
//! A camera always keeps its latest picture, so a page's first view shows one at once, and a
//! stopped camera keeps showing its last: a reference to pixels it already has (no copy, no
//! encode). It is the latest analysed frame; while motion gating finds the scene still and no
//! frame is analysed, the feed converts a still frame at most every [`STILL_PICTURE_INTERVAL`]
//! instead ([`CameraView::wants_still_picture`]). Encoding is the page's side, at a bounded rate
//! and only while a page asks (`server::ui`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::tracker::TrackState;
use crate::config::{CameraId, Zone};
use crate::media::image::RgbImage;

/// While no frame is analysed (a still scene under motion gating), the kept picture is refreshed
/// from a still frame at most this often.
pub const STILL_PICTURE_INTERVAL: Duration = Duration::from_secs(1);
/// Received and analysed rates are measured over at least this long.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Every camera's view, shared by the cameras and the HTTP server. Cheap to clone; [`LiveViews::off`]
/// (the UI is off) keeps nothing.
#[derive(Clone, Default)]
pub struct LiveViews {
    inner: Option<Arc<Inner>>,
}

#[derive(Default)]
struct Inner {
    cameras: Mutex<BTreeMap<CameraId, Arc<CameraView>>>,
}

impl LiveViews {
    /// No page: cameras keep nothing.
    pub fn off() -> Self {
        Self { inner: None }
    }

    pub fn on() -> Self {
        Self { inner: Some(Arc::default()) }
    }

    /// The view of camera `id` (made on first use; a restarted camera gets its view back).
    /// `None` when the UI is off.
    pub fn camera(&self, id: &CameraId, zones: &[Zone]) -> Option<Arc<CameraView>> {
        let inner = self.inner.as_ref()?;
        let mut cameras = inner.cameras.lock().unwrap_or_else(PoisonError::into_inner);
        let view = cameras.entry(id.clone()).or_insert_with(|| {
            Arc::new(CameraView {
                id: id.clone(),
                zones: zones.to_vec(),
                received: AtomicU64::new(0),
                analysed: AtomicU64::new(0),
                pictures: AtomicU64::new(0),
                state: Mutex::default(),
                rates: Mutex::new(Rates::new(0, 0)),
            })
        });
        Some(view.clone())
    }

    /// Camera `id` no longer runs here (stopped, handed to another task): the page drops it.
    pub fn remove(&self, id: &CameraId) {
        if let Some(inner) = &self.inner {
            inner.cameras.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        }
    }

    /// The view of a camera this task runs.
    pub fn get(&self, id: &str) -> Option<Arc<CameraView>> {
        let inner = self.inner.as_ref()?;
        inner.cameras.lock().unwrap_or_else(PoisonError::into_inner).get(&CameraId(id.to_owned())).cloned()
    }

    /// Every camera's view, by id.
    pub fn all(&self) -> Vec<Arc<CameraView>> {
        let Some(inner) = self.inner.as_ref() else { return Vec::new() };
        inner.cameras.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

/// One camera's view.
pub struct CameraView {
    pub id: CameraId,
    /// The camera's zones (normalised), drawn over its frames.
    pub zones: Vec<Zone>,
    received: AtomicU64,
    analysed: AtomicU64,
    /// Pictures kept (analysed frames and still frames): numbers [`LatestFrame::seq`].
    pictures: AtomicU64,
    state: Mutex<ViewState>,
    rates: Mutex<Rates>,
}

/// What a camera last reported.
#[derive(Default, Clone)]
struct ViewState {
    latest: Option<Arc<LatestFrame>>,
    lag_seconds: f64,
    behind_live_seconds: Option<f64>,
    catching_up: bool,
}

/// The latest picture of a camera, and what was seen on it.
pub struct LatestFrame {
    /// Counts the camera's pictures: a page fetches the picture again when it changes.
    pub seq: u64,
    pub image: RgbImage,
    /// Stream time of the frame.
    pub timestamp_ns: i64,
    /// Tracks matched on the latest analysed frame (confirmed or not); on a still frame, those of
    /// the last analysed one.
    pub tracks: Arc<Vec<TrackView>>,
    /// Whether the models looked at this frame (else: a still frame, kept for the page).
    pub analysed: bool,
    /// When it was kept.
    pub kept_at: Instant,
}

/// A track as the page shows it: as an event reports it, and whether it is confirmed.
#[derive(Debug, Clone, Serialize)]
pub struct TrackView {
    #[serde(flatten)]
    pub track: TrackState,
    /// Reported as an event (`new` sent).
    pub confirmed: bool,
}

impl TrackView {
    pub fn new(track: TrackState, confirmed: bool) -> Self {
        Self { track, confirmed }
    }
}

/// Frames per second received and analysed, measured between two samples of the counters.
struct Rates {
    at: Instant,
    received: u64,
    analysed: u64,
    per_second: (f64, f64),
}

impl Rates {
    fn new(received: u64, analysed: u64) -> Self {
        Self { at: Instant::now(), received, analysed, per_second: (0.0, 0.0) }
    }
}

/// A camera's view as the page's state lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ViewSummary {
    pub received_fps: f64,
    pub analysed_fps: f64,
    pub lag_seconds: f64,
    pub behind_live_seconds: Option<f64>,
    pub catching_up: bool,
    /// The camera's latest picture: its number, stream time and size.
    pub frame: Option<FrameSummary>,
    pub tracks: Vec<TrackView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameSummary {
    pub seq: u64,
    pub timestamp: f64,
    pub width: u32,
    pub height: u32,
    /// Whether the models looked at it (else a still frame under motion gating).
    pub analysed: bool,
}

impl CameraView {
    /// A frame decoded (the feed, every frame).
    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// The decoded stream's distance from live and whether the camera is catching up.
    pub fn set_behind_live(&self, seconds: f64, catching_up: bool) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (s.behind_live_seconds, s.catching_up) = (Some(seconds), catching_up);
    }

    /// A frame analysed, with the tracks seen on it: it becomes the camera's picture.
    pub fn analysed(&self, image: &RgbImage, timestamp_ns: i64, lag_seconds: f64, tracks: Vec<TrackView>) {
        self.analysed.fetch_add(1, Ordering::Relaxed);
        let latest = self.picture(image, timestamp_ns, Arc::new(tracks), true);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.lag_seconds = lag_seconds;
        s.latest = Some(latest);
    }

    /// Whether the feed should convert a still frame (one no model looks at) for the picture:
    /// there is none yet, or the kept one is older than [`STILL_PICTURE_INTERVAL`] at `now`.
    pub fn wants_still_picture(&self, now: Instant) -> bool {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.latest.as_ref().is_none_or(|f| now.saturating_duration_since(f.kept_at) >= STILL_PICTURE_INTERVAL)
    }

    /// A still frame converted for the picture: it shows with the last analysed frame's tracks.
    pub fn still(&self, image: &RgbImage, timestamp_ns: i64) {
        let tracks = self.latest().map(|f| f.tracks.clone()).unwrap_or_default();
        let latest = self.picture(image, timestamp_ns, tracks, false);
        self.state.lock().unwrap_or_else(PoisonError::into_inner).latest = Some(latest);
    }

    fn picture(
        &self,
        image: &RgbImage,
        timestamp_ns: i64,
        tracks: Arc<Vec<TrackView>>,
        analysed: bool,
    ) -> Arc<LatestFrame> {
        let seq = self.pictures.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(LatestFrame { seq, image: image.clone(), timestamp_ns, tracks, analysed, kept_at: Instant::now() })
    }

    /// The camera's latest picture (`None` before its first frame).
    pub fn latest(&self) -> Option<Arc<LatestFrame>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).latest.clone()
    }

    /// What the page lists: rates (measured over at least [`RATE_WINDOW`] between calls), lag,
    /// the latest frame and its tracks.
    pub fn summary(&self) -> ViewSummary {
        let (received, analysed) = (self.received.load(Ordering::Relaxed), self.analysed.load(Ordering::Relaxed));
        let (received_fps, analysed_fps) = {
            let mut r = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
            let elapsed = r.at.elapsed();
            if elapsed >= RATE_WINDOW {
                let secs = elapsed.as_secs_f64();
                let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                let per_second = (per(received, r.received), per(analysed, r.analysed));
                *r = Rates { per_second, ..Rates::new(received, analysed) };
            }
            r.per_second
        };
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let frame = s.latest.as_ref().map(|f| FrameSummary {
            seq: f.seq,
            timestamp: f.timestamp_ns as f64 / 1e9,
            width: f.image.width,
            height: f.image.height,
            analysed: f.analysed,
        });
        ViewSummary {
            received_fps,
            analysed_fps,
            lag_seconds: s.lag_seconds,
            behind_live_seconds: s.behind_live_seconds,
            catching_up: s.catching_up,
            frame,
            tracks: s.latest.map(|f| f.tracks.as_ref().clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RgbImage {
        RgbImage::new(4, 2, vec![0; 24]).expect("image")
    }

    #[test]
    fn the_latest_picture_is_kept_from_the_first_frame_on() {
        assert!(LiveViews::off().camera(&CameraId("a".into()), &[]).is_none());
        let views = LiveViews::on();
        let cam = views.camera(&CameraId("a".into()), &[]).expect("view");
        assert!(cam.latest().is_none() && cam.wants_still_picture(Instant::now()), "nothing yet");
        cam.analysed(&image(), 1, 0.5, Vec::new());
        let latest = cam.latest().expect("kept without a page");
        assert_eq!((latest.seq, latest.timestamp_ns, latest.analysed), (1, 1, true));
        assert!(Arc::ptr_eq(&latest.image.data, &image_data(&latest)), "the pixels, not a copy");
        assert_eq!(cam.summary().lag_seconds, 0.5);
        assert!(Arc::ptr_eq(&views.get("a").expect("listed"), &cam));
        assert_eq!(views.all().len(), 1);
    }

    fn image_data(f: &LatestFrame) -> Arc<Vec<u8>> {
        f.image.data.clone()
    }

    #[test]
    fn still_frames_refresh_the_picture_at_most_once_a_second_with_the_last_tracks() {
        let views = LiveViews::on();
        let cam = views.camera(&CameraId("a".into()), &[]).expect("view");
        let track = TrackView::new(
            TrackState {
                track_id: 1,
                label: "text".into(),
                text: Some("AB 123 CD".into()),
                score: 0.9,
                bbox: [1.0, 1.0, 3.0, 2.0],
                zone: "lane".into(),
                first_seen_ns: 1,
                last_seen_ns: 1,
                shown_ns: 1,
            },
            true,
        );
        cam.analysed(&image(), 1, 0.0, vec![track]);
        let kept = cam.latest().expect("kept").kept_at;
        assert!(!cam.wants_still_picture(kept + STILL_PICTURE_INTERVAL / 2));
        assert!(cam.wants_still_picture(kept + STILL_PICTURE_INTERVAL));
        cam.still(&image(), 2);
        let latest = cam.latest().expect("kept");
        assert_eq!((latest.seq, latest.timestamp_ns, latest.analysed), (2, 2, false));
        assert_eq!(latest.tracks.len(), 1, "the last analysed frame's tracks");
        let summary = cam.summary();
        assert_eq!(summary.frame.map(|f| (f.seq, f.analysed)), Some((2, false)));
    }
}
