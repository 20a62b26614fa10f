//! Pictures out of the decoder's format: to RGB (swscale) for the frames that are analysed, and
//! to tightly packed YUV 4:2:0 planes (parity tests, references).

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;

use super::Picture;
use crate::media::MediaError;
use crate::media::image::RgbImage;

/// A decoded picture's planes, tightly packed (no stride padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yuv420 {
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

/// Converts pictures to RGB24, keeping one swscale context for as long as the pictures' size and
/// format stay the same. Not `Send`: make it on the thread that converts.
#[derive(Default)]
pub struct RgbConverter {
    scaler: Option<(Pixel, u32, u32, scaling::Context)>,
}

impl RgbConverter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn convert(&mut self, picture: &Picture) -> Result<RgbImage, MediaError> {
        let frame = picture.frame();
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        let error = |e: ffmpeg::Error| MediaError::Convert { reason: format!("{format:?} {width}x{height}: {e}") };
        let stale = self.scaler.as_ref().is_none_or(|(f, w, h, _)| (*f, *w, *h) != (format, width, height));
        if stale {
            let flags = scaling::Flags::BILINEAR | scaling::Flags::ACCURATE_RND;
            let context =
                scaling::Context::get(format, width, height, Pixel::RGB24, width, height, flags).map_err(error)?;
            self.scaler = Some((format, width, height, context));
        }
        let Some((_, _, _, scaler)) = self.scaler.as_mut() else {
            return Err(MediaError::Convert { reason: "no scaler".into() });
        };
        let mut rgb = ffmpeg::frame::Video::empty();
        scaler.run(frame, &mut rgb).map_err(error)?;
        let row = width as usize * 3;
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let mut pixels = Vec::with_capacity(row * height as usize);
        for y in 0..height as usize {
            pixels.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        RgbImage::new(width, height, pixels).map_err(|e| MediaError::Convert { reason: e.to_string() })
    }
}

impl Picture {
    /// The planes of a YUV 4:2:0 picture, tightly packed; `None` for other formats.
    pub fn yuv420(&self) -> Option<Yuv420> {
        let frame = self.frame();
        if !matches!(frame.format(), Pixel::YUV420P | Pixel::YUVJ420P) {
            return None;
        }
        let plane = |i: usize| {
            let (w, h, stride) = (frame.plane_width(i) as usize, frame.plane_height(i) as usize, frame.stride(i));
            let data = frame.data(i);
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                out.extend_from_slice(&data[y * stride..y * stride + w]);
            }
            out
        };
        Some(Yuv420 { y: plane(0), u: plane(1), v: plane(2) })
    }
}
