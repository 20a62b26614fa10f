//! The local sink: one JSON line per event in `{dir}/events.jsonl` (flushed per event), and for
//! `new` and `end` events a JPEG snapshot of the frame under `{dir}/snapshots/{camera}/`, with the
//! track's box, its label or text and score above it, and the event type and stream time in the
//! corner (an embedded 8x8 bitmap font: no system fonts needed in the container).

use std::io::Write;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;

use super::SinkError;
use crate::config::LocalSinkConfig;
use crate::infer::image::RgbImage;
use crate::pipeline::camera::EventWithFrame;
use crate::pipeline::events::Event;

/// Box outline colour and width on snapshots.
const BOX_RGB: [u8; 3] = [255, 40, 40];
const BOX_WIDTH: u32 = 3;

pub struct LocalSink {
    dir: PathBuf,
    snapshots: bool,
    quality: u8,
    log: std::fs::File,
}

impl LocalSink {
    pub fn open(cfg: &LocalSinkConfig) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| SinkError::Write { path: cfg.dir.clone(), source })?;
        let path = cfg.dir.join("events.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SinkError::Write { path: path.clone(), source })?;
        Ok(Self { dir: cfg.dir.clone(), snapshots: cfg.snapshots, quality: cfg.jpeg_quality, log })
    }

    /// Writes the snapshot (if any), then the event line; returns the event as written.
    pub fn write(&mut self, item: EventWithFrame) -> Result<Event, SinkError> {
        let EventWithFrame { mut event, frame } = item;
        if self.snapshots
            && let Some(frame) = frame
        {
            let dir = self.dir.join("snapshots").join(&event.camera);
            std::fs::create_dir_all(&dir).map_err(|source| SinkError::Write { path: dir.clone(), source })?;
            let name: String =
                event.event_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
            let path = dir.join(format!("{name}.jpg"));
            self.snapshot(&frame, &event, &path)?;
            event.snapshot = Some(path.display().to_string());
        }
        let path = self.dir.join("events.jsonl");
        let line =
            serde_json::to_string(&event).map_err(|e| SinkError::Write { path: path.clone(), source: e.into() })?;
        writeln!(self.log, "{line}")
            .and_then(|()| self.log.flush())
            .map_err(|source| SinkError::Write { path, source })?;
        Ok(event)
    }

    fn snapshot(&self, frame: &RgbImage, event: &Event, path: &Path) -> Result<(), SinkError> {
        let bbox = event.bbox;
        let mut pixels = frame.data.as_ref().clone();
        draw_box(&mut pixels, frame.width, frame.height, bbox);
        let caption = match &event.text {
            Some(text) => format!("{text} {:.2}", event.score),
            None => format!("{} {:.2}", event.label, event.score),
        };
        let above = (bbox[1] as i64 - 2 - 8 * TEXT_SCALE as i64).max(0);
        draw_text(&mut pixels, frame.width, frame.height, bbox[0].max(0.0) as i64, above, &caption);
        let stamp = format!("{} {} t={:.2}s", event.camera, event.kind.as_str(), event.last_seen);
        draw_text(&mut pixels, frame.width, frame.height, 4, 4, &stamp);
        let file = std::fs::File::create(path).map_err(|source| SinkError::Write { path: path.to_owned(), source })?;
        let mut writer = std::io::BufWriter::new(file);
        JpegEncoder::new_with_quality(&mut writer, self.quality)
            .encode(&pixels, frame.width, frame.height, image::ExtendedColorType::Rgb8)
            .map_err(|source| SinkError::Encode { path: path.to_owned(), source })?;
        writer.flush().map_err(|source| SinkError::Write { path: path.to_owned(), source })
    }
}

/// Glyphs are drawn at this many pixels per font pixel.
const TEXT_SCALE: u32 = 2;

/// Writes ASCII `text` at (x, y): white glyphs on a black band, clipped to the frame.
fn draw_text(pixels: &mut [u8], w: u32, h: u32, x: i64, y: i64, text: &str) {
    let s = i64::from(TEXT_SCALE);
    let mut put = |px: i64, py: i64, rgb: [u8; 3]| {
        if px >= 0 && py >= 0 && px < i64::from(w) && py < i64::from(h) {
            let i = (py as usize * w as usize + px as usize) * 3;
            pixels[i..i + 3].copy_from_slice(&rgb);
        }
    };
    for (n, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { usize::from(b'?') }];
        let gx = x + n as i64 * 8 * s;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8i64 {
                let on = bits & (1 << col) != 0;
                for dy in 0..s {
                    for dx in 0..s {
                        put(gx + col * s + dx, y + row as i64 * s + dy, if on { [255, 255, 255] } else { [0, 0, 0] });
                    }
                }
            }
        }
    }
}

/// Outlines `bbox` (clamped to the frame) in place.
fn draw_box(pixels: &mut [u8], w: u32, h: u32, bbox: [f32; 4]) {
    let clamp = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi.saturating_sub(1));
    let (x1, y1, x2, y2) = (clamp(bbox[0], w), clamp(bbox[1], h), clamp(bbox[2], w), clamp(bbox[3], h));
    let mut put = |x: u32, y: u32| {
        let i = (y as usize * w as usize + x as usize) * 3;
        pixels[i..i + 3].copy_from_slice(&BOX_RGB);
    };
    for t in 0..BOX_WIDTH {
        for x in x1..=x2 {
            put(x, (y1 + t).min(h - 1));
            put(x, y2.saturating_sub(t));
        }
        for y in y1..=y2 {
            put((x1 + t).min(w - 1), y);
            put(x2.saturating_sub(t), y);
        }
    }
}
