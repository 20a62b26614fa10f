//! The live page's picture of a camera: its latest picture as a JPEG with the zones, the tracks'
//! boxes, ids and readings drawn over it. Encoded on request, at most once per [`FRAME_INTERVAL`]
//! per camera whoever asks (pages share the last encoding), and never while no page asks. Before
//! a camera's first frame, a placeholder says so.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;

use crate::media::draw::{Canvas, TEXT_HEIGHT};
use crate::pipeline::live::{CameraView, LatestFrame};

/// A camera's picture is encoded at most this often.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(500);
/// JPEG quality of the page's pictures.
const QUALITY: u8 = 70;
const ZONE_RGB: [u8; 3] = [40, 220, 90];
const CONFIRMED_RGB: [u8; 3] = [255, 40, 40];
const TENTATIVE_RGB: [u8; 3] = [255, 200, 0];

/// The placeholder's size and its caption.
const PLACEHOLDER: (u32, u32, &str) = (320, 180, "waiting for the first frame");
const PLACEHOLDER_RGB: [u8; 3] = [48, 48, 48];

/// The picture of a camera with no frame yet (encoded once per process).
pub fn placeholder() -> Result<Arc<Vec<u8>>, image::ImageError> {
    static JPEG: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    if let Some(jpeg) = JPEG.get() {
        return Ok(jpeg.clone());
    }
    let (w, h, caption) = PLACEHOLDER;
    let mut pixels: Vec<u8> = PLACEHOLDER_RGB.iter().copied().cycle().take(w as usize * h as usize * 3).collect();
    if let Some(mut canvas) = Canvas::new(&mut pixels, w, h) {
        canvas.text(12, i64::from(h / 2) - i64::from(TEXT_HEIGHT / 2), caption);
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode(&pixels, w, h, image::ExtendedColorType::Rgb8)?;
    Ok(JPEG.get_or_init(|| Arc::new(out)).clone())
}

/// The last encoding of each camera's picture.
#[derive(Default)]
pub struct FrameCache {
    cameras: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Option<Encoded>>>>>,
}

#[derive(Clone)]
struct Encoded {
    seq: u64,
    at: Instant,
    jpeg: Arc<Vec<u8>>,
}

impl FrameCache {
    /// The camera's latest picture: the cached one if it is current or younger than
    /// [`FRAME_INTERVAL`], else a new encoding. `None`: the camera has no frame yet.
    pub async fn picture(&self, view: &Arc<CameraView>) -> Option<Arc<Vec<u8>>> {
        let latest = view.latest()?;
        let slot = self
            .cameras
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(view.id.0.clone())
            .or_default()
            .clone();
        // One encoding at a time per camera: pages asking together wait for it and share it.
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.seq == latest.seq || c.at.elapsed() < FRAME_INTERVAL) {
            return Some(c.jpeg.clone());
        }
        let zones: Vec<Vec<[f64; 2]>> = view.zones.iter().map(|z| z.points.clone()).collect();
        let (camera, seq) = (view.id.clone(), latest.seq);
        let encoded = tokio::task::spawn_blocking(move || annotate(&latest, &zones)).await;
        match encoded {
            Ok(Ok(jpeg)) => {
                crate::metrics::count_ui_frame(&camera);
                let jpeg = Arc::new(jpeg);
                *cached = Some(Encoded { seq, at: Instant::now(), jpeg: jpeg.clone() });
                Some(jpeg)
            }
            Ok(Err(e)) => {
                tracing::warn!(camera = %camera, error = %e, "live page: frame not encoded");
                cached.as_ref().map(|c| c.jpeg.clone())
            }
            Err(e) => {
                tracing::warn!(camera = %camera, error = %e, "live page: encoding task failed");
                cached.as_ref().map(|c| c.jpeg.clone())
            }
        }
    }
}

/// The frame with zones (green), confirmed tracks (red) and tracks not yet confirmed (yellow),
/// each captioned `#id text-or-label score`, as a JPEG.
fn annotate(frame: &LatestFrame, zones: &[Vec<[f64; 2]>]) -> Result<Vec<u8>, image::ImageError> {
    let (w, h) = (frame.image.width, frame.image.height);
    let mut pixels = frame.image.data.as_ref().clone();
    if let Some(mut canvas) = Canvas::new(&mut pixels, w, h) {
        for zone in zones {
            let points: Vec<[f32; 2]> =
                zone.iter().map(|p| [(p[0] * f64::from(w)) as f32, (p[1] * f64::from(h)) as f32]).collect();
            canvas.polygon(&points, ZONE_RGB, 2);
        }
        for view in frame.tracks.iter() {
            let t = &view.track;
            canvas.rect(t.bbox, if view.confirmed { CONFIRMED_RGB } else { TENTATIVE_RGB }, 2);
            let what = t.text.as_deref().unwrap_or(&t.label);
            let above = (t.bbox[1] as i64 - 2 - i64::from(TEXT_HEIGHT)).max(0);
            canvas.text(t.bbox[0].max(0.0) as i64, above, &format!("#{} {what} {:.2}", t.track_id, t.score));
        }
    }
    let mut out = Vec::with_capacity(pixels.len() / 10);
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode(&pixels, w, h, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}
