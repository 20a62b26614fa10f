//! Model input preparation: channel order and normalisation, packing into CHW tensors, and the
//! letterbox (its scale and padding are data that postprocess inverts).

use crate::media::image::RgbImage;

use super::InferError;

/// Channel order a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    /// PaddleOCR models (OpenCV images).
    Bgr,
}

/// How pixels become floats: `(v / 255 - mean) / std` per channel, in model channel order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// Ultralytics YOLO: RGB, `v / 255`.
    pub const YOLO: Self = Self { order: ChannelOrder::Rgb, mean: [0.0; 3], std: [1.0; 3] };
    /// PaddleOCR: BGR, `(v / 255 - 0.5) / 0.5`.
    pub const PADDLE: Self = Self { order: ChannelOrder::Bgr, mean: [0.5; 3], std: [0.5; 3] };

    /// A lookup table per channel: byte value → normalised float (no per-pixel arithmetic).
    fn tables(&self) -> [[f32; 256]; 3] {
        let mut t = [[0f32; 256]; 3];
        for (c, table) in t.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        t
    }
}

/// Writes `img` as CHW floats into `dst` (`3 * dst_height * dst_width`, zero-initialised by the
/// caller or filled with the padding value), at the top-left, leaving the rest untouched.
pub fn write_chw(img: &RgbImage, norm: &Normalization, dst: &mut [f32], dst_width: usize, dst_height: usize) {
    let tables = norm.tables();
    let plane = dst_width * dst_height;
    let (w, h) = (img.width as usize, img.height as usize);
    let src_channel = |c: usize| match norm.order {
        ChannelOrder::Rgb => c,
        ChannelOrder::Bgr => 2 - c,
    };
    for c in 0..3 {
        let table = &tables[c];
        let sc = src_channel(c);
        let out = &mut dst[c * plane..(c + 1) * plane];
        for (y, row) in img.data.chunks_exact(w * 3).take(h.min(dst_height)).enumerate() {
            let dst_row = &mut out[y * dst_width..y * dst_width + w.min(dst_width)];
            for (d, px) in dst_row.iter_mut().zip(row.chunks_exact(3)) {
                *d = table[usize::from(px[sc])];
            }
        }
    }
}

/// Letterbox geometry: how an image was scaled and padded, so boxes can be mapped back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub src_width: u32,
    pub src_height: u32,
}

impl Letterbox {
    /// Maps a point in model input coordinates back to the source image, clamped to it.
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        let sx = ((x - self.pad_x) / self.scale).clamp(0.0, self.src_width as f32);
        let sy = ((y - self.pad_y) / self.scale).clamp(0.0, self.src_height as f32);
        (sx, sy)
    }
}

/// Ultralytics' letterbox: keep aspect, scale to fit `size`, centre, pad with 114.
/// Returns the CHW tensor data (`3 * size * size`) and the geometry.
pub fn letterbox(img: &RgbImage, size: u32, norm: &Normalization) -> Result<(Vec<f32>, Letterbox), InferError> {
    // In f64 with round-half-to-even, as Ultralytics' Python does.
    let (w, h) = (f64::from(img.width), f64::from(img.height));
    let scale = (f64::from(size) / w).min(f64::from(size) / h);
    let (new_w, new_h) = ((w * scale).round_ties_even() as u32, (h * scale).round_ties_even() as u32);
    let (dw, dh) = (f64::from(size - new_w.min(size)) / 2.0, f64::from(size - new_h.min(size)) / 2.0);
    // Ultralytics: top = round(dh - 0.1), left = round(dw - 0.1).
    let (left, top) = ((dw - 0.1).round_ties_even().max(0.0) as usize, (dh - 0.1).round_ties_even().max(0.0) as usize);
    let scale = scale as f32;
    let resized = img.resize(new_w.max(1), new_h.max(1))?;
    let side = size as usize;
    let plane = side * side;
    let tables = norm.tables();
    let mut data = vec![0f32; 3 * plane];
    for c in 0..3 {
        data[c * plane..(c + 1) * plane].fill(tables[c][114]);
    }
    // Write the resized image at (left, top).
    let (rw, rh) = (resized.width as usize, resized.height as usize);
    for c in 0..3 {
        let sc = match norm.order {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        let out = &mut data[c * plane..(c + 1) * plane];
        for (y, row) in resized.data.chunks_exact(rw * 3).take(rh).enumerate() {
            let start = (y + top) * side + left;
            for (d, px) in out[start..start + rw.min(side - left)].iter_mut().zip(row.chunks_exact(3)) {
                *d = tables[c][usize::from(px[sc])];
            }
        }
    }
    let geometry =
        Letterbox { scale, pad_x: left as f32, pad_y: top as f32, src_width: img.width, src_height: img.height };
    Ok((data, geometry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(w, h, rgb.repeat((w * h) as usize)).expect("image")
    }

    #[test]
    fn letterbox_pads_and_inverts() {
        let img = solid(640, 480, [255, 0, 0]);
        let (data, lb) = letterbox(&img, 320, &Normalization::YOLO).expect("letterbox");
        assert_eq!(data.len(), 3 * 320 * 320);
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 40.0));
        // Padding rows are 114/255 grey; the image area is red in channel 0.
        assert!((data[0] - 114.0 / 255.0).abs() < 1e-6);
        assert!((data[50 * 320 + 10] - 1.0).abs() < 1e-6);
        assert!(data[320 * 320 + 50 * 320 + 10].abs() < 1e-6, "green channel");
        // A corner of the content maps back to the source corner.
        assert_eq!(lb.to_source(0.0, 40.0), (0.0, 0.0));
        assert_eq!(lb.to_source(320.0, 280.0), (640.0, 480.0));
        assert_eq!(lb.to_source(330.0, 300.0), (640.0, 480.0), "clamped to the image");
    }

    #[test]
    fn bgr_order_swaps_channels() {
        let img = solid(2, 2, [10, 20, 30]);
        let mut dst = vec![0f32; 3 * 4];
        write_chw(&img, &Normalization::PADDLE, &mut dst, 2, 2);
        let v = |b: u8| (f32::from(b) / 255.0 - 0.5) / 0.5;
        assert_eq!((dst[0], dst[4], dst[8]), (v(30), v(20), v(10)));
    }
}
