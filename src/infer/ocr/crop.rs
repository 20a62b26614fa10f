//! Cutting a text line out of the frame: a perspective warp of its quad to an upright
//! rectangle (bicubic, border replicated), turned upright when it is much taller than wide.
//! Matches PaddleOCR's `get_rotate_crop_image` (OpenCV `warpPerspective`, `INTER_CUBIC`) bit
//! for bit: the reference's crops are what its recogniser reads, and a ±1 pixel difference is
//! enough to flip an ambiguous character. (Per-pixel sampling is inherent to a warp; crops are
//! small.)

use super::geometry::{self, Point};
use crate::infer::InferError;
use crate::media::image::RgbImage;

/// Keys' cubic (a = -0.75) in f32, exactly as OpenCV's `interpolateCubic`.
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// The line inside `quad` (clockwise from top-left, source pixels), upright. Bit-exact with
/// OpenCV 5's `warpPerspective(INTER_CUBIC, BORDER_REPLICATE)` on 8-bit images: the source
/// position in f64 rounded to f32, f32 cubic weights, rows blended first, then columns, in f32.
pub fn crop_quad(img: &RgbImage, quad: &[[f32; 2]; 4]) -> Result<RgbImage, InferError> {
    let p: [Point; 4] = quad.map(|q| [f64::from(q[0]), f64::from(q[1])]);
    let dist = |a: Point, b: Point| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let w = dist(p[0], p[1]).max(dist(p[2], p[3])) as u32;
    let h = dist(p[0], p[3]).max(dist(p[1], p[2])) as u32;
    if w == 0 || h == 0 {
        return Err(InferError::BadImage { reason: format!("degenerate text box {quad:?}") });
    }
    let dst = [[0.0, 0.0], [f64::from(w), 0.0], [f64::from(w), f64::from(h)], [0.0, f64::from(h)]];
    let m = geometry::perspective_transform(p, dst)
        .and_then(|m| geometry::invert3(&m))
        .ok_or_else(|| InferError::BadImage { reason: format!("text box {quad:?} has no perspective transform") })?;
    let (sw, sh) = (img.width as i64, img.height as i64);
    let stride = img.width as usize * 3;
    let src = &img.data;
    let mut out = vec![0u8; (w * h * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (f64::from(x), f64::from(y));
            let z = m[6] * fx + m[7] * fy + m[8];
            let z = if z != 0.0 { 1.0 / z } else { 0.0 };
            let sx = ((m[0] * fx + m[1] * fy + m[2]) * z) as f32;
            let sy = ((m[3] * fx + m[4] * fy + m[5]) * z) as f32;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (wx, wy) = (cubic_weights(sx - x0), cubic_weights(sy - y0));
            let (x0, y0) = (x0 as i64 - 1, y0 as i64 - 1);
            let cols: [usize; 4] = std::array::from_fn(|k| (x0 + k as i64).clamp(0, sw - 1) as usize * 3);
            let o = ((y * w + x) * 3) as usize;
            for c in 0..3 {
                let mut acc = 0f32;
                for (k1, wyk) in wy.iter().enumerate() {
                    let row = (y0 + k1 as i64).clamp(0, sh - 1) as usize * stride;
                    let mut r = 0f32;
                    for (k2, wxk) in wx.iter().enumerate() {
                        r += f32::from(src[row + cols[k2] + c]) * wxk;
                    }
                    acc += r * wyk;
                }
                out[o + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let crop = RgbImage::new(w, h, out)?;
    Ok(if f64::from(h) / f64::from(w) >= 1.5 { crop.rotate_90_ccw() } else { crop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_aligned_crop_copies_pixels() {
        let (w, h) = (20u32, 10u32);
        let data: Vec<u8> = (0..w * h).flat_map(|i| [(i % 256) as u8, 0, 255]).collect();
        let img = RgbImage::new(w, h, data).expect("image");
        let c = crop_quad(&img, &[[5.0, 2.0], [15.0, 2.0], [15.0, 7.0], [5.0, 7.0]]).expect("crop");
        assert_eq!((c.width, c.height), (10, 5));
        assert_eq!(c.pixel(0, 0), img.pixel(5, 2));
        assert_eq!(c.pixel(9, 4), img.pixel(14, 6));
    }

    #[test]
    fn tall_crops_are_turned() {
        let img = RgbImage::new(10, 40, vec![9; 10 * 40 * 3]).expect("image");
        let c = crop_quad(&img, &[[0.0, 0.0], [5.0, 0.0], [5.0, 30.0], [0.0, 30.0]]).expect("crop");
        assert_eq!((c.width, c.height), (30, 5));
        assert!(crop_quad(&img, &[[1.0, 1.0]; 4]).is_err(), "degenerate box");
    }
}
