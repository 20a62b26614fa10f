//! Annotated snapshots: the frame an event happened on as a JPEG, with the track's box, its label
//! or text and score above it, and the camera, event type and stream time in the corner (an
//! embedded 8x8 bitmap font: no system fonts needed in the container). Encoded once per event;
//! the local and S3 sinks store the same bytes.

use image::codecs::jpeg::JpegEncoder;

use super::SinkError;
use crate::media::image::RgbImage;
use crate::pipeline::events::Event;

/// Box outline colour and width on snapshots.
const BOX_RGB: [u8; 3] = [255, 40, 40];
const BOX_WIDTH: u32 = 3;

/// The annotated JPEG of `frame` for `event`.
pub fn encode(frame: &RgbImage, event: &Event, quality: u8) -> Result<Vec<u8>, SinkError> {
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
    let mut out = Vec::with_capacity(pixels.len() / 8);
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&pixels, frame.width, frame.height, image::ExtendedColorType::Rgb8)
        .map_err(|source| SinkError::Encode { event_id: event.event_id.clone(), source })?;
    Ok(out)
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
