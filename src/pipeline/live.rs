//! What the live page (`server::ui`, `server.ui: true`) shows of each camera: its latest analysed
//! frame with the tracks seen on it, how fast frames arrive and are analysed, how far behind it
//! is. The cameras write here; the page reads.
//!
//! The picture costs nothing while no page is open: a camera keeps its latest frame (a reference
//! to pixels it already has, no copy, no encode) only while a page has asked for something in the
//! last [`WATCH_TTL`]. Encoding is the page's side, at a bounded rate (`server::ui`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::tracker::TrackState;
use crate::config::{CameraId, Zone};
use crate::media::image::RgbImage;

/// A page counts as open for this long after its last request.
pub const WATCH_TTL: Duration = Duration::from_secs(5);
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
    watch: Arc<Watch>,
}

/// Until when a page is open.
#[derive(Default)]
struct Watch {
    until: Mutex<Option<Instant>>,
}

impl Watch {
    fn open(&self) -> bool {
        self.until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|t| Instant::now() < t)
    }
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
                watch: inner.watch.clone(),
                received: AtomicU64::new(0),
                analysed: AtomicU64::new(0),
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

    /// A page asked for something: cameras keep their latest frame for [`WATCH_TTL`].
    pub fn watched_now(&self) {
        if let Some(inner) = &self.inner {
            *inner.watch.until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + WATCH_TTL);
        }
    }
}

/// One camera's view.
pub struct CameraView {
    pub id: CameraId,
    /// The camera's zones (normalised), drawn over its frames.
    pub zones: Vec<Zone>,
    watch: Arc<Watch>,
    received: AtomicU64,
    analysed: AtomicU64,
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

/// The latest analysed frame, and what was seen on it.
pub struct LatestFrame {
    /// Counts analysed frames: a page fetches the picture again when it changes.
    pub seq: u64,
    pub image: RgbImage,
    /// Stream time of the frame.
    pub timestamp_ns: i64,
    /// Tracks matched on this frame (confirmed or not).
    pub tracks: Vec<TrackView>,
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
    /// The latest frame kept for the page: its sequence number, stream time and size.
    pub frame: Option<FrameSummary>,
    pub tracks: Vec<TrackView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameSummary {
    pub seq: u64,
    pub timestamp: f64,
    pub width: u32,
    pub height: u32,
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

    /// A frame analysed. `tracks` is called only while a page is open, and the frame kept then.
    pub fn analysed(
        &self,
        image: &RgbImage,
        timestamp_ns: i64,
        lag_seconds: f64,
        tracks: impl FnOnce() -> Vec<TrackView>,
    ) {
        let seq = self.analysed.fetch_add(1, Ordering::Relaxed) + 1;
        let latest = self
            .watch
            .open()
            .then(|| Arc::new(LatestFrame { seq, image: image.clone(), timestamp_ns, tracks: tracks() }));
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.lag_seconds = lag_seconds;
        if latest.is_some() {
            s.latest = latest;
        }
    }

    /// The latest frame kept (only while a page is open).
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
        });
        ViewSummary {
            received_fps,
            analysed_fps,
            lag_seconds: s.lag_seconds,
            behind_live_seconds: s.behind_live_seconds,
            catching_up: s.catching_up,
            frame,
            tracks: s.latest.map(|f| f.tracks.clone()).unwrap_or_default(),
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
    fn frames_are_kept_only_while_a_page_is_open() {
        assert!(LiveViews::off().camera(&CameraId("a".into()), &[]).is_none());
        let views = LiveViews::on();
        let cam = views.camera(&CameraId("a".into()), &[]).expect("view");
        let mut asked = false;
        cam.analysed(&image(), 1, 0.5, || {
            asked = true;
            Vec::new()
        });
        assert!(!asked && cam.latest().is_none(), "no page: nothing kept, no tracks listed");
        views.watched_now();
        cam.analysed(&image(), 2, 0.25, Vec::new);
        let latest = cam.latest().expect("kept while watched");
        assert_eq!((latest.seq, latest.timestamp_ns), (2, 2));
        assert_eq!(cam.summary().lag_seconds, 0.25);
        assert!(Arc::ptr_eq(&views.get("a").expect("listed"), &cam));
        assert_eq!(views.all().len(), 1);
    }
}
