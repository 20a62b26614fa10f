//! PP-OCR text detection (DB): the input sizing rules and the probability-map post-processing
//! (binarise, dilate, connected regions, minimum-area boxes, box score, unclip, reading order).
//! Mirrors RapidOCR's `DetPreProcess` and `DBPostProcess`.

use serde::Serialize;

use super::geometry::{self, Point};
use crate::config::{DetLimitType, OcrDetConfig};

/// `box_score_fast` rejects a region whose mean probability is below `box_threshold`; these
/// are the other fixed constants of the reference.
const MIN_BOX_SIDE: f64 = 3.0;
const MAX_CANDIDATES: usize = 1000;
/// Boxes whose top edges differ by less than this (pixels) are on the same line.
const SAME_LINE_DY: f64 = 10.0;

/// A text region in source-image pixels: corners clockwise from top-left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextBox {
    pub quad: [[f32; 2]; 4],
    pub score: f32,
}

/// Detector input size for an image: sides scaled by the limit rule, rounded to multiples of 32.
pub fn input_size(width: u32, height: u32, cfg: &OcrDetConfig) -> (u32, u32) {
    scaled(width, height, ratio(width, height, cfg))
}

/// Detector input size for a `width` x `height` part of a `whole_width` x `whole_height`
/// picture: scaled as the whole picture would be (never beyond the part's own scale).
pub fn input_size_as_part(
    width: u32,
    height: u32,
    whole_width: u32,
    whole_height: u32,
    cfg: &OcrDetConfig,
) -> (u32, u32) {
    scaled(width, height, ratio(whole_width, whole_height, cfg).min(ratio(width, height, cfg)))
}

/// The limit rule's scale for a `width` x `height` image.
fn ratio(width: u32, height: u32, cfg: &OcrDetConfig) -> f64 {
    let (w, h) = (f64::from(width), f64::from(height));
    let limit = f64::from(cfg.limit_side_len);
    match cfg.limit_type {
        DetLimitType::Max if w.max(h) > limit => limit / w.max(h),
        DetLimitType::Min if w.min(h) < limit => limit / w.min(h),
        DetLimitType::Area if w * h > limit * limit => (limit * limit / (w * h)).sqrt(),
        _ => 1.0,
    }
}

fn scaled(width: u32, height: u32, ratio: f64) -> (u32, u32) {
    let round32 = |v: f64| (((v.trunc() / 32.0).round() * 32.0) as u32).max(32);
    (round32(f64::from(width) * ratio), round32(f64::from(height) * ratio))
}

/// A binary mask of the probability map above `threshold`, dilated with a 2x2 kernel.
fn binarize_dilate(pred: &[f32], width: usize, height: usize, threshold: f32) -> Vec<u8> {
    let bin: Vec<u8> = pred.iter().map(|&p| u8::from(p > threshold)).collect();
    let mut out = bin.clone();
    // OpenCV's 2x2 dilation (anchor at the kernel's centre): max of (x-1..=x, y-1..=y).
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if out[i] == 1 {
                continue;
            }
            let left = x > 0 && bin[i - 1] == 1;
            let up = y > 0 && bin[i - width] == 1;
            let diag = x > 0 && y > 0 && bin[i - width - 1] == 1;
            if left || up || diag {
                out[i] = 1;
            }
        }
    }
    out
}

/// Per 8-connected region: the leftmost and rightmost pixel of each of its rows (enough for
/// its convex hull).
fn regions(mask: &[u8], width: usize, height: usize) -> Vec<Vec<Point>> {
    let mut label = vec![0u32; mask.len()];
    let mut out: Vec<Vec<Point>> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = out.len() as u32 + 1;
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = std::collections::BTreeMap::new();
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            let e = rows.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if mask[j] == 1 && label[j] == 0 {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (y, (x0, x1)) in rows {
            pts.push([x0 as f64, y as f64]);
            pts.push([x1 as f64, y as f64]);
        }
        out.push(pts);
        if out.len() >= MAX_CANDIDATES {
            break;
        }
    }
    out
}

/// Mean probability inside the box (RapidOCR's `box_score_fast`).
fn box_score(pred: &[f32], width: usize, height: usize, quad: &[Point; 4]) -> f64 {
    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    let clampi = |v: f64, hi: usize| (v as i64).clamp(0, hi as i64 - 1);
    let xmin = clampi(xs.clone().fold(f64::MAX, f64::min).floor(), width);
    let xmax = clampi(xs.fold(f64::MIN, f64::max).ceil(), width);
    let ymin = clampi(ys.clone().fold(f64::MAX, f64::min).floor(), height);
    let ymax = clampi(ys.fold(f64::MIN, f64::max).ceil(), height);
    // Vertices relative to the window, truncated as numpy's astype(int32) does.
    let poly: Vec<[i64; 2]> = quad.iter().map(|p| [(p[0] - xmin as f64) as i64, (p[1] - ymin as f64) as i64]).collect();
    let (ww, wh) = ((xmax - xmin + 1) as usize, (ymax - ymin + 1) as usize);
    let (mut sum, mut n) = (0f64, 0usize);
    geometry::fill_convex(&poly, ww, wh, |x, y| {
        sum += f64::from(pred[(y + ymin as usize) * width + x + xmin as usize]);
        n += 1;
    });
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The box of a point set in `get_mini_boxes` order, with its short side.
fn mini_box(points: &[Point]) -> Option<([Point; 4], f64)> {
    let rect = geometry::min_area_rect(points)?;
    Some((geometry::order_mini_box(rect.corners), rect.short_side()))
}

/// Where the detector's input sat in the source image: `src = (x, y - pad_top) * ratio`.
#[derive(Debug, Clone, Copy)]
pub struct DetGeometry {
    /// Size of the image the detector saw (after padding); the map is scaled to it.
    pub padded_width: u32,
    pub padded_height: u32,
    pub pad_top: u32,
    /// Source pixels per padded-image pixel.
    pub ratio_w: f64,
    pub ratio_h: f64,
    pub src_width: u32,
    pub src_height: u32,
}

impl DetGeometry {
    /// A box in padded-image pixels → source pixels, clamped to the source.
    pub fn to_source(&self, b: &TextBox) -> TextBox {
        let quad = b.quad.map(|p| {
            let x = (f64::from(p[0]) * self.ratio_w).clamp(0.0, f64::from(self.src_width));
            let y = ((f64::from(p[1]) - f64::from(self.pad_top)) * self.ratio_h).clamp(0.0, f64::from(self.src_height));
            [x as f32, y as f32]
        });
        TextBox { quad, score: b.score }
    }
}

/// DB post-processing of a `[H, W]` probability map into text boxes in padded-image pixels
/// (where the line crops are cut), in reading order.
pub fn postprocess(pred: &[f32], map_w: usize, map_h: usize, cfg: &OcrDetConfig, g: &DetGeometry) -> Vec<TextBox> {
    let mask = binarize_dilate(pred, map_w, map_h, cfg.threshold);
    let (dest_w, dest_h) = (f64::from(g.padded_width), f64::from(g.padded_height));
    let mut boxes: Vec<([Point; 4], f32)> = Vec::new();
    for region in regions(&mask, map_w, map_h) {
        let Some((quad, short)) = mini_box(&region) else { continue };
        if short < cfg.min_size.max(MIN_BOX_SIDE as f32) as f64 {
            continue;
        }
        let score = box_score(pred, map_w, map_h, &quad);
        if score < f64::from(cfg.box_threshold) {
            continue;
        }
        // Unclip: grow by area * ratio / perimeter (pyclipper takes integer coordinates).
        let truncated: Vec<[i64; 2]> = quad.iter().map(|p| [p[0] as i64, p[1] as i64]).collect();
        let distance = geometry::polygon_area(&quad) * f64::from(cfg.unclip_ratio) / geometry::polygon_perimeter(&quad);
        let grown: Vec<Point> =
            geometry::offset_round(&truncated, distance).iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
        let Some((big, short)) = mini_box(&grown) else { continue };
        if short < MIN_BOX_SIDE + 2.0 {
            continue;
        }
        let scaled = big.map(|p| {
            [
                (p[0] / map_w as f64 * dest_w).round().clamp(0.0, dest_w),
                (p[1] / map_h as f64 * dest_h).round().clamp(0.0, dest_h),
            ]
        });
        boxes.push((scaled, score as f32));
    }
    // filter_det_res: clockwise order, clip to the image, drop slivers.
    let mut kept: Vec<([Point; 4], f32)> = Vec::new();
    for (quad, score) in boxes {
        let q = geometry::order_clockwise(quad)
            .map(|p| [p[0].clamp(0.0, dest_w - 1.0).trunc(), p[1].clamp(0.0, dest_h - 1.0).trunc()]);
        let dist = |a: Point, b: Point| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt().trunc();
        if dist(q[0], q[1]) <= 3.0 || dist(q[0], q[3]) <= 3.0 {
            continue;
        }
        kept.push((q, score));
    }
    sort_reading_order(&mut kept);
    kept.into_iter().map(|(q, score)| TextBox { quad: q.map(|p| [p[0] as f32, p[1] as f32]), score }).collect()
}

/// Top to bottom; boxes whose tops are within a few pixels form a line, read left to right.
fn sort_reading_order(boxes: &mut [([Point; 4], f32)]) {
    boxes.sort_by(|a, b| a.0[0][1].total_cmp(&b.0[0][1]));
    let mut line = 0usize;
    let mut keyed: Vec<(usize, f64, usize)> = Vec::with_capacity(boxes.len());
    for i in 0..boxes.len() {
        if i > 0 && boxes[i].0[0][1] - boxes[i - 1].0[0][1] >= SAME_LINE_DY {
            line += 1;
        }
        keyed.push((line, boxes[i].0[0][0], i));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let ordered: Vec<([Point; 4], f32)> = keyed.iter().map(|&(_, _, i)| boxes[i]).collect();
    boxes.copy_from_slice(&ordered);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OcrDetConfig {
        OcrDetConfig::default()
    }

    #[test]
    fn input_sizes_follow_the_limit_rule() {
        assert_eq!(input_size(640, 360, &cfg()), (1312, 736), "short side raised to 736");
        assert_eq!(input_size(1000, 800, &cfg()), (992, 800), "already large enough: only rounded");
        let max = OcrDetConfig { limit_type: DetLimitType::Max, limit_side_len: 960, ..cfg() };
        assert_eq!(input_size(1920, 1080, &max), (960, 544));
        assert_eq!(input_size(10, 10, &max), (32, 32), "never below one 32-pixel cell");
        // A pixel budget of 1024² keeps a 1920x594 zone crop at its own size, where max 960
        // halves it; a whole 1080p frame is scaled to the budget.
        let area = OcrDetConfig { limit_type: DetLimitType::Area, limit_side_len: 1088, ..cfg() };
        assert_eq!(input_size(1920, 594, &area), (1920, 608));
        assert_eq!(input_size(1920, 594, &max), (960, 288));
        assert_eq!(input_size(1920, 1080, &area), (1440, 832));
        // A part of a 1280x400 crop is scaled as the crop would be: 0.75 with max 960...
        assert_eq!(input_size_as_part(640, 300, 1280, 400, &max), (480, 224));
        assert_eq!(input_size_as_part(1280, 400, 1280, 400, &max), input_size(1280, 400, &max));
        // ...and 736 / 400 with min 736, never more than the part's own scale.
        assert_eq!(input_size_as_part(640, 300, 1280, 400, &cfg()), (1184, 544));
        assert_eq!(input_size_as_part(640, 300, 100, 100, &max), input_size(640, 300, &max));
    }

    #[test]
    fn two_text_lines_become_two_boxes_in_reading_order() {
        let (w, h) = (100usize, 60usize);
        let mut pred = vec![0f32; w * h];
        for (x0, x1, y0, y1) in [(60, 90, 10, 20), (10, 50, 12, 20), (10, 80, 35, 45)] {
            for y in y0..y1 {
                for x in x0..x1 {
                    pred[y * w + x] = 0.9;
                }
            }
        }
        let g = DetGeometry {
            padded_width: 200,
            padded_height: 120,
            pad_top: 0,
            ratio_w: 1.0,
            ratio_h: 1.0,
            src_width: 200,
            src_height: 120,
        };
        let boxes = postprocess(&pred, w, h, &cfg(), &g);
        assert_eq!(boxes.len(), 3, "{boxes:?}");
        // Same line (tops within 10 px): left box first; then the next line.
        assert!(boxes[0].quad[0][0] < boxes[1].quad[0][0]);
        assert!(boxes[2].quad[0][1] > boxes[1].quad[2][1] - 5.0);
        // Scaled by 2 to the padded image, and grown by the unclip distance.
        assert!(boxes[0].quad[0][0] < 20.0 && boxes[0].quad[1][0] > 98.0, "{:?}", boxes[0]);
        // The box comes from the dilated mask, so its border pixels (probability 0) lower the mean.
        assert!(boxes.iter().all(|b| b.score > 0.75), "{boxes:?}");
    }

    #[test]
    fn faint_and_tiny_regions_are_dropped() {
        let (w, h) = (50usize, 50usize);
        let mut pred = vec![0f32; w * h];
        for y in 10..20 {
            for x in 10..40 {
                pred[y * w + x] = 0.4; // above threshold 0.3, below box threshold 0.5
            }
        }
        pred[45 * w + 45] = 0.99; // a single pixel
        let g = DetGeometry {
            padded_width: 50,
            padded_height: 50,
            pad_top: 0,
            ratio_w: 1.0,
            ratio_h: 1.0,
            src_width: 50,
            src_height: 50,
        };
        assert!(postprocess(&pred, w, h, &cfg(), &g).is_empty());
    }
}
