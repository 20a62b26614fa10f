//! Annotated snapshots: the frame an event happened on as a JPEG, with the track's box, its label
//! or text and score above it, and the camera, event type and stream time in the corner (drawn
//! with `media::draw`). Encoded once per event; the local and S3 sinks store the same bytes.

use image::codecs::jpeg::JpegEncoder;

use super::SinkError;
use crate::media::draw::{Canvas, TEXT_HEIGHT};
use crate::media::image::RgbImage;
use crate::pipeline::events::Event;

/// Box outline colour and width on snapshots.
const BOX_RGB: [u8; 3] = [255, 40, 40];
const BOX_WIDTH: u32 = 3;

/// The annotated JPEG of `frame` for `event`.
pub fn encode(frame: &RgbImage, event: &Event, quality: u8) -> Result<Vec<u8>, SinkError> {
    let bbox = event.bbox;
    let mut pixels = frame.data.as_ref().clone();
    if let Some(mut canvas) = Canvas::new(&mut pixels, frame.width, frame.height) {
        canvas.rect(bbox, BOX_RGB, BOX_WIDTH);
        let caption = match &event.text {
            Some(text) => format!("{text} {:.2}", event.score),
            None => format!("{} {:.2}", event.label, event.score),
        };
        let above = (bbox[1] as i64 - 2 - i64::from(TEXT_HEIGHT)).max(0);
        canvas.text(bbox[0].max(0.0) as i64, above, &caption);
        let stamp = format!("{} {} t={:.2}s", event.camera, event.kind.as_str(), event.last_seen);
        canvas.text(4, 4, &stamp);
    }
    let mut out = Vec::with_capacity(pixels.len() / 8);
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&pixels, frame.width, frame.height, image::ExtendedColorType::Rgb8)
        .map_err(|source| SinkError::Encode { event_id: event.event_id.clone(), source })?;
    Ok(out)
}
