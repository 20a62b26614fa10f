//! Pictures out of the decoder's format: to RGB (swscale) for the frames that are analysed, and
//! to tightly packed YUV 4:2:0 planes (parity tests, references).

use ffmpeg_next as ffmpeg;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::format::Pixel;

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

/// Converts pictures to RGB24, keeping one swscale context and its output picture for as long as
/// the pictures' size and format stay the same. Not `Send`: make it on the thread that converts.
#[derive(Default)]
pub struct RgbConverter {
    scaler: Option<Scaler>,
}

struct Scaler {
    input: (Pixel, u32, u32),
    context: scaling::Context,
    output: ffmpeg::frame::Video,
}

impl RgbConverter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn convert(&mut self, picture: &Picture) -> Result<RgbImage, MediaError> {
        let frame = picture.frame();
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        let error = |e: ffmpeg::Error| MediaError::Convert { reason: format!("{format:?} {width}x{height}: {e}") };
        let input = (format, width, height);
        let scaler = match self.scaler.take() {
            Some(scaler) if scaler.input == input => self.scaler.insert(scaler),
            _ => {
                // Same size: swscale's unscaled converters apply, the filter never runs.
                let flags = scaling::Flags::BILINEAR;
                let context =
                    scaling::Context::get(format, width, height, Pixel::RGB24, width, height, flags).map_err(error)?;
                let output = ffmpeg::frame::Video::new(Pixel::RGB24, width, height);
                self.scaler.insert(Scaler { input, context, output })
            }
        };
        scaler.context.run(frame, &mut scaler.output).map_err(error)?;
        let row = width as usize * 3;
        let stride = scaler.output.stride(0);
        let data = scaler.output.data(0);
        let pixels = if stride == row {
            data[..row * height as usize].to_vec()
        } else {
            let mut pixels = Vec::with_capacity(row * height as usize);
            for y in 0..height as usize {
                pixels.extend_from_slice(&data[y * stride..y * stride + row]);
            }
            pixels
        };
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
