//! The picture type every layer passes around (RGB24, row-major, shared pixels): decoded video
//! frames, still images, snapshots, model inputs; and its operations.
//!
//! Model inputs are resized with [`RgbImage::resize`], a bit-exact re-implementation of OpenCV's
//! 8-bit `INTER_LINEAR` (11-bit fixed-point weights, the same rounding as its SIMD path): the
//! reference implementations resize with OpenCV, and a ±1 difference on a sixth of the pixels
//! (what `fast_image_resize`'s OpenCV-like mode gives) is enough to flip ambiguous characters.
//! [`RgbImage::resize_fast`] (`fast_image_resize`, SIMD) serves pictures for people.

use std::sync::Arc;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Why an image could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{width}x{height} needs {} bytes of RGB, got {bytes}", *width as usize * *height as usize * 3)]
    Size { width: u32, height: u32, bytes: usize },
    #[error("cannot decode the image")]
    Decode(#[source] image::ImageError),
    #[error("an image of {width}x{height} pixels is over the {max}-pixel limit")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("cannot resize {from_width}x{from_height} to {width}x{height}")]
    Resize {
        from_width: u32,
        from_height: u32,
        width: u32,
        height: u32,
        #[source]
        source: Option<fast_image_resize::ResizeError>,
    },
}

/// An RGB24 image. Cheap to clone (the pixels are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Arc<Vec<u8>>,
}

impl RgbImage {
    /// Wraps RGB24 pixels; `data.len()` must be `width * height * 3`.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, ImageError> {
        if width == 0 || height == 0 || data.len() != width as usize * height as usize * 3 {
            return Err(ImageError::Size { width, height, bytes: data.len() });
        }
        Ok(Self { width, height, data: Arc::new(data) })
    }

    /// Decodes a PNG or JPEG (any colour type) to RGB.
    pub fn decode(bytes: &[u8]) -> Result<Self, ImageError> {
        let img = image::load_from_memory(bytes).map_err(ImageError::Decode)?;
        let rgb = img.into_rgb8();
        let (w, h) = rgb.dimensions();
        Self::new(w, h, rgb.into_raw())
    }

    /// Decodes a PNG or JPEG whose header declares at most `max_pixels` pixels; a larger one
    /// is refused before any pixel is decoded, and the decoder may allocate no more than the
    /// declared size needs.
    pub fn decode_within(bytes: &[u8], max_pixels: u64) -> Result<Self, ImageError> {
        let reader = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
        let (width, height) =
            reader().map_err(|e| ImageError::Decode(e.into()))?.into_dimensions().map_err(ImageError::Decode)?;
        if u64::from(width) * u64::from(height) > max_pixels {
            return Err(ImageError::TooManyPixels { width, height, max: max_pixels });
        }
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        // RGBA at 16 bits per channel, plus the decoder's working space.
        limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 + (16 << 20));
        let mut decoder = reader().map_err(|e| ImageError::Decode(e.into()))?;
        decoder.limits(limits);
        let rgb = decoder.decode().map_err(ImageError::Decode)?.into_rgb8();
        let (w, h) = rgb.dimensions();
        Self::new(w, h, rgb.into_raw())
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// A region copied out (clamped to the image).
    pub fn crop(&self, x: u32, y: u32, w: u32, h: u32) -> Result<Self, ImageError> {
        let x = x.min(self.width - 1);
        let y = y.min(self.height - 1);
        let w = w.min(self.width - x).max(1);
        let h = h.min(self.height - y).max(1);
        let stride = self.width as usize * 3;
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for row in y..y + h {
            let start = row as usize * stride + x as usize * 3;
            out.extend_from_slice(&self.data[start..start + w as usize * 3]);
        }
        Self::new(w, h, out)
    }

    /// Resized exactly as OpenCV's `cv2.resize(..., INTER_LINEAR)` does for 8-bit images.
    pub fn resize(&self, width: u32, height: u32) -> Result<Self, ImageError> {
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        if width == 0 || height == 0 {
            return Err(self.resize_error(width, height, None));
        }
        Self::new(
            width,
            height,
            resize_linear_cv(&self.data, self.width as usize, self.height as usize, width as usize, height as usize),
        )
    }

    /// Resized with `fast_image_resize` (SIMD, OpenCV-like bilinear): for pictures people look
    /// at, where speed matters more than matching a reference bit for bit.
    pub fn resize_fast(&self, width: u32, height: u32) -> Result<Self, ImageError> {
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        // The pixels were checked against the size when the image was made.
        let src = ImageRef::new(self.width, self.height, &self.data, PixelType::U8x3)
            .map_err(|_| self.resize_error(width, height, None))?;
        let mut dst = Image::new(width.max(1), height.max(1), PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        Resizer::new().resize(&src, &mut dst, &options).map_err(|e| self.resize_error(width, height, Some(e)))?;
        Self::new(dst.width(), dst.height(), dst.into_vec())
    }

    fn resize_error(&self, width: u32, height: u32, source: Option<fast_image_resize::ResizeError>) -> ImageError {
        ImageError::Resize { from_width: self.width, from_height: self.height, width, height, source }
    }

    /// Rotated by 180 degrees.
    pub fn rotate_180(&self) -> Self {
        let mut out = Vec::with_capacity(self.data.len());
        for px in self.data.chunks_exact(3).rev() {
            out.extend_from_slice(px);
        }
        Self { width: self.width, height: self.height, data: Arc::new(out) }
    }

    /// Rotated 90 degrees counter-clockwise (numpy's `rot90`).
    pub fn rotate_90_ccw(&self) -> Self {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; self.data.len()];
        // Output is h wide and w tall; output (x, y) = input (w - 1 - y, x).
        for y in 0..w {
            for x in 0..h {
                let src = (x * w + (w - 1 - y)) * 3;
                let dst = (y * h + x) * 3;
                out[dst..dst + 3].copy_from_slice(&self.data[src..src + 3]);
            }
        }
        Self { width: self.height, height: self.width, data: Arc::new(out) }
    }
}

/// OpenCV's `INTER_RESIZE_COEF_BITS`: interpolation weights are fixed-point with 11 bits.
const COEF_SCALE: f32 = 2048.0;

/// Per destination index: the two source indices and their fixed-point weights.
/// Columns clamp the fraction at the edges (OpenCV's `xmin`/`xmax`); rows clamp only the index.
fn linear_table(src: usize, dst: usize, clamp_fraction: bool) -> Vec<(usize, usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let mut frac = f - s;
            let mut s = s as i64;
            if clamp_fraction {
                if s < 0 {
                    (frac, s) = (0.0, 0);
                }
                if s >= last {
                    (frac, s) = (0.0, last);
                }
            }
            let (i0, i1) = (s.clamp(0, last) as usize, (s + 1).clamp(0, last) as usize);
            let a0 = ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32;
            let a1 = (frac * COEF_SCALE).round_ties_even() as i32;
            (i0, i1, a0, a1)
        })
        .collect()
}

/// Bilinear RGB24 resize with OpenCV's integer arithmetic: a horizontal pass into 11-bit
/// fixed point, then the vertical blend its SIMD path computes
/// (`((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16)`, rounded by 2 bits).
fn resize_linear_cv(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let cols = linear_table(sw, dw, true);
    let n = dw * 3;
    let horizontal = |y: usize, out: &mut [i32]| {
        let row = &src[y * sw * 3..(y + 1) * sw * 3];
        for (d, &(i0, i1, w0, w1)) in out.chunks_exact_mut(3).zip(&cols) {
            let (p, q) = (&row[i0 * 3..i0 * 3 + 3], &row[i1 * 3..i1 * 3 + 3]);
            d[0] = i32::from(p[0]) * w0 + i32::from(q[0]) * w1;
            d[1] = i32::from(p[1]) * w0 + i32::from(q[1]) * w1;
            d[2] = i32::from(p[2]) * w0 + i32::from(q[2]) * w1;
        }
    };
    let rows = linear_table(sh, dh, false);
    let mut out = vec![0u8; n * dh];
    // Two horizontal rows are kept: consecutive output rows share source rows when enlarging.
    let mut slots: [(usize, Vec<i32>); 2] = [(usize::MAX, vec![0; n]), (usize::MAX, vec![0; n])];
    for (dst, &(r0, r1, b0, b1)) in out.chunks_exact_mut(n).zip(&rows) {
        for r in [r0, r1] {
            if slots[0].0 != r && slots[1].0 != r {
                // Overwrite the slot the other needed row is not in.
                let victim = usize::from(slots[0].0 == r0 || slots[0].0 == r1);
                horizontal(r, &mut slots[victim].1);
                slots[victim].0 = r;
            }
        }
        let row0 = if slots[0].0 == r0 { &slots[0].1 } else { &slots[1].1 };
        let row1 = if slots[0].0 == r1 { &slots[0].1 } else { &slots[1].1 };
        for ((d, &s0), &s1) in dst.iter_mut().zip(row0).zip(row1) {
            let v = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
            *d = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_opencv_on_known_values() {
        // 2x2 -> 4x4 and 4x1 -> 2x1, values checked against cv2.resize(INTER_LINEAR) 5.0.
        let img = RgbImage::new(2, 2, vec![0, 0, 0, 100, 100, 100, 200, 200, 200, 50, 50, 50]).expect("image");
        let up = img.resize(4, 4).expect("resize");
        let first_row: Vec<u8> = up.data.chunks_exact(3).take(4).map(|p| p[0]).collect();
        assert_eq!(first_row, [0, 25, 75, 100]);
        let line = RgbImage::new(4, 1, vec![10, 10, 10, 20, 20, 20, 30, 30, 30, 41, 41, 41]).expect("image");
        let down = line.resize(2, 1).expect("resize");
        assert_eq!(down.data.as_slice(), &[15, 15, 15, 36, 36, 36]);
    }

    #[test]
    fn rotations() {
        let img = RgbImage::new(2, 1, vec![1, 1, 1, 2, 2, 2]).expect("image");
        assert_eq!(img.rotate_180().data.as_slice(), &[2, 2, 2, 1, 1, 1]);
        let r = img.rotate_90_ccw();
        assert_eq!((r.width, r.height), (1, 2));
        assert_eq!(r.data.as_slice(), &[2, 2, 2, 1, 1, 1], "the right pixel goes on top");
    }
}
