//! Drawing on RGB pixels: box outlines, polygon outlines and captions in an embedded 8x8 bitmap
//! font (no system fonts needed in the container). Everything is clipped to the picture.
//! Snapshots (`sink::snapshot`) and the live page's frames (`server::ui`) draw with it.

/// Glyphs are drawn at this many pixels per font pixel.
pub const TEXT_SCALE: u32 = 2;
/// Height of a caption line in pixels.
pub const TEXT_HEIGHT: u32 = 8 * TEXT_SCALE;

/// A `width` x `height` RGB picture (3 bytes a pixel, rows top to bottom) to draw on.
pub struct Canvas<'a> {
    pixels: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> Canvas<'a> {
    /// `None` when `pixels` does not hold `width` x `height` RGB pixels.
    pub fn new(pixels: &'a mut [u8], width: u32, height: u32) -> Option<Self> {
        (pixels.len() == width as usize * height as usize * 3).then_some(Self { pixels, width, height })
    }

    fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x >= 0 && y >= 0 && x < i64::from(self.width) && y < i64::from(self.height) {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// Pixelates `bbox` (`[x1, y1, x2, y2]`, pixels, clipped to the picture): each `block` x
    /// `block` cell takes its mean colour, so what was there cannot be recognised.
    pub fn pixelate(&mut self, bbox: [f32; 4], block: u32) {
        let clamp = |v: f32, hi: u32| (v.max(0.0).round() as u32).min(hi);
        let (x1, y1, x2, y2) = (
            clamp(bbox[0], self.width),
            clamp(bbox[1], self.height),
            clamp(bbox[2], self.width),
            clamp(bbox[3], self.height),
        );
        let block = block.max(1);
        for cy in (y1..y2).step_by(block as usize) {
            for cx in (x1..x2).step_by(block as usize) {
                let (ex, ey) = ((cx + block).min(x2), (cy + block).min(y2));
                let mut sum = [0u64; 3];
                for y in cy..ey {
                    for x in cx..ex {
                        let i = (y as usize * self.width as usize + x as usize) * 3;
                        for (s, v) in sum.iter_mut().zip(&self.pixels[i..i + 3]) {
                            *s += u64::from(*v);
                        }
                    }
                }
                let n = u64::from((ex - cx) * (ey - cy)).max(1);
                let mean = sum.map(|s| (s / n) as u8);
                for y in cy..ey {
                    for x in cx..ex {
                        let i = (y as usize * self.width as usize + x as usize) * 3;
                        self.pixels[i..i + 3].copy_from_slice(&mean);
                    }
                }
            }
        }
    }

    /// Writes ASCII `text` at (x, y): white glyphs on a black band (others as `?`).
    pub fn text(&mut self, x: i64, y: i64, text: &str) {
        let s = i64::from(TEXT_SCALE);
        for (n, ch) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { usize::from(b'?') }];
            let gx = x + n as i64 * 8 * s;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8i64 {
                    let rgb = if bits & (1 << col) != 0 { [255, 255, 255] } else { [0, 0, 0] };
                    for dy in 0..s {
                        for dx in 0..s {
                            self.put(gx + col * s + dx, y + row as i64 * s + dy, rgb);
                        }
                    }
                }
            }
        }
    }

    /// Outlines `bbox` (`[x1, y1, x2, y2]`, pixels, clamped to the picture: a box reaching past
    /// an edge is drawn along it) `thickness` pixels wide, inside the box.
    pub fn rect(&mut self, bbox: [f32; 4], rgb: [u8; 3], thickness: u32) {
        let (w, h) = (self.width, self.height);
        let clamp = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi.saturating_sub(1));
        let (x1, y1, x2, y2) = (clamp(bbox[0], w), clamp(bbox[1], h), clamp(bbox[2], w), clamp(bbox[3], h));
        let mut put = |x: u32, y: u32| self.put(i64::from(x), i64::from(y), rgb);
        for t in 0..thickness {
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

    /// A line from `a` to `b` (pixels), `thickness` pixels wide.
    pub fn line(&mut self, a: [f32; 2], b: [f32; 2], rgb: [u8; 3], thickness: u32) {
        let steps = (b[0] - a[0]).abs().max((b[1] - a[1]).abs()).ceil().max(1.0) as i64;
        let half = i64::from(thickness) / 2;
        for i in 0..=steps {
            let f = i as f32 / steps as f32;
            let (x, y) = ((a[0] + (b[0] - a[0]) * f).round() as i64, (a[1] + (b[1] - a[1]) * f).round() as i64);
            for dy in -half..=half {
                for dx in -half..=half {
                    self.put(x + dx, y + dy, rgb);
                }
            }
        }
    }

    /// The outline of a closed polygon (pixels).
    pub fn polygon(&mut self, points: &[[f32; 2]], rgb: [u8; 3], thickness: u32) {
        for (i, a) in points.iter().enumerate() {
            self.line(*a, points[(i + 1) % points.len()], rgb, thickness);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_stays_inside_the_picture() {
        let mut px = vec![0u8; 10 * 8 * 3];
        let mut c = Canvas::new(&mut px, 10, 8).expect("canvas");
        c.rect([-5.0, -5.0, 20.0, 20.0], [255, 0, 0], 2);
        c.polygon(&[[1.0, 1.0], [8.0, 1.0], [8.0, 6.0]], [0, 255, 0], 1);
        c.text(-3, 2, "AB");
        c.line([0.0, 7.0], [9.0, 7.0], [0, 0, 255], 1);
        let at = |x: usize, y: usize| px[(y * 10 + x) * 3..(y * 10 + x) * 3 + 3].to_vec();
        assert_eq!(at(4, 7), [0, 0, 255]);
        assert_eq!(at(4, 1), [0, 255, 0], "the polygon's top edge");
        assert_eq!(at(0, 0), [255, 0, 0], "a box past the edges is drawn along them");
        assert_eq!(at(9, 1), [255, 0, 0], "the right edge too");
        let mut px = vec![0u8; 10 * 8 * 3];
        Canvas::new(&mut px, 10, 8).expect("canvas").rect([2.0, 2.0, 7.0, 5.0], [255, 0, 0], 1);
        let at = |x: usize, y: usize| px[(y * 10 + x) * 3];
        assert_eq!((at(2, 2), at(7, 5), at(4, 3), at(8, 2)), (255, 255, 0, 0), "outline only, inside the box");
        assert!(Canvas::new(&mut [0u8; 5], 2, 2).is_none());
    }
}
