//! Plane geometry for text detection: convex hull, minimum-area rectangle (rotating calipers),
//! polygon offsetting with round joins, scanline fill, and the 4-point perspective transform.
//!
//! These stand in for what PP-OCR's reference post-processing takes from OpenCV
//! (`minAreaRect`, `boxPoints`, `fillPoly`, `getPerspectiveTransform`) and pyclipper.

pub type Point = [f64; 2];

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, without repeated points.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> =
            if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A rotated rectangle: its 4 corners (in order around it) and side lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedRect {
    pub corners: [Point; 4],
    pub width: f64,
    pub height: f64,
}

impl RotatedRect {
    pub fn short_side(&self) -> f64 {
        self.width.min(self.height)
    }
}

/// Minimum-area enclosing rectangle of a point set (rotating calipers over the hull).
pub fn min_area_rect(points: &[Point]) -> Option<RotatedRect> {
    let hull = convex_hull(points);
    match hull.len() {
        0 => return None,
        1 | 2 => {
            // Degenerate: a point or a segment has a zero-width rectangle.
            let (a, b) = (hull[0], *hull.last().unwrap_or(&hull[0]));
            let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
            return Some(RotatedRect { corners: [a, b, b, a], width: len, height: 0.0 });
        }
        _ => {}
    }
    let mut best: Option<(f64, RotatedRect)> = None;
    for i in 0..hull.len() {
        let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
        let len = ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = [(q[0] - p[0]) / len, (q[1] - p[1]) / len];
        let v = [-u[1], u[0]];
        let (mut min_u, mut max_u, mut min_v, mut max_v) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for h in &hull {
            let du = h[0] * u[0] + h[1] * u[1];
            let dv = h[0] * v[0] + h[1] * v[1];
            min_u = min_u.min(du);
            max_u = max_u.max(du);
            min_v = min_v.min(dv);
            max_v = max_v.max(dv);
        }
        let area = (max_u - min_u) * (max_v - min_v);
        if best.as_ref().is_none_or(|(a, _)| area < *a - 1e-9) {
            let at = |a: f64, b: f64| [a * u[0] + b * v[0], a * u[1] + b * v[1]];
            let rect = RotatedRect {
                corners: [at(min_u, min_v), at(max_u, min_v), at(max_u, max_v), at(min_u, max_v)],
                width: max_u - min_u,
                height: max_v - min_v,
            };
            best = Some((area, rect));
        }
    }
    best.map(|(_, r)| r)
}

/// PP-OCR's `get_mini_boxes` ordering: sort by x, then the left pair and the right pair by y:
/// `[left-top, right-top, right-bottom, left-bottom]`.
pub fn order_mini_box(corners: [Point; 4]) -> [Point; 4] {
    let mut p = corners;
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if p[1][1] > p[0][1] { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3][1] > p[2][1] { (2, 3) } else { (3, 2) };
    [p[i1], p[i2], p[i3], p[i4]]
}

/// `order_points_clockwise`: top-left, top-right, bottom-right, bottom-left.
pub fn order_clockwise(corners: [Point; 4]) -> [Point; 4] {
    let mut p = corners;
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut left, mut right) = ([p[0], p[1]], [p[2], p[3]]);
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

pub fn polygon_area(poly: &[Point]) -> f64 {
    let n = poly.len();
    (0..n).map(|i| poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]).sum::<f64>().abs() / 2.0
}

pub fn polygon_perimeter(poly: &[Point]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| ((poly[(i + 1) % n][0] - poly[i][0]).powi(2) + (poly[(i + 1) % n][1] - poly[i][1]).powi(2)).sqrt())
        .sum()
}

/// Clipper's rounding: half away from zero.
fn clipper_round(v: f64) -> i64 {
    if v < 0.0 { (v - 0.5) as i64 } else { (v + 0.5) as i64 }
}

/// Offsets a closed polygon (integer vertices, as pyclipper takes them) by `delta` with round
/// joins: Clipper 6's `ClipperOffset` (`JT_ROUND`, `ET_CLOSEDPOLYGON`, arc tolerance 0.25),
/// step for step, so the vertices are the ones the reference gets.
pub fn offset_round(poly: &[[i64; 2]], delta: f64) -> Vec<[i64; 2]> {
    // AddPath: drop repeated points (and a closing duplicate).
    let mut src: Vec<[i64; 2]> = Vec::with_capacity(poly.len());
    for &p in poly {
        if src.last() != Some(&p) {
            src.push(p);
        }
    }
    while src.len() > 1 && src.first() == src.last() {
        src.pop();
    }
    if src.len() < 3 || delta <= 0.0 {
        return src;
    }
    // FixOrientations: outer polygons must have a non-negative Clipper area.
    let n = src.len();
    let mut a = 0.0;
    for i in 0..n {
        let j = (i + n - 1) % n;
        a += (src[j][0] as f64 + src[i][0] as f64) * (src[j][1] as f64 - src[i][1] as f64);
    }
    if -a * 0.5 < 0.0 {
        src.reverse();
    }
    // DoOffset's arc parameters.
    const TWO_PI: f64 = std::f64::consts::PI * 2.0;
    let tolerance = if 0.25 > delta.abs() * 0.25 { delta.abs() * 0.25 } else { 0.25 };
    let mut steps = std::f64::consts::PI / (1.0 - tolerance / delta.abs()).acos();
    if steps > delta.abs() * std::f64::consts::PI {
        steps = delta.abs() * std::f64::consts::PI;
    }
    let (sin, cos) = ((TWO_PI / steps).sin(), (TWO_PI / steps).cos());
    let steps_per_rad = steps / TWO_PI;
    let normals: Vec<[f64; 2]> = (0..n)
        .map(|j| {
            let (p, q) = (src[j], src[(j + 1) % n]);
            let (dx, dy) = ((q[0] - p[0]) as f64, (q[1] - p[1]) as f64);
            if dx == 0.0 && dy == 0.0 {
                return [0.0, 0.0];
            }
            let f = 1.0 / (dx * dx + dy * dy).sqrt();
            [dy * f, -dx * f]
        })
        .collect();
    let at = |j: usize, nx: f64, ny: f64| -> [i64; 2] {
        [clipper_round(src[j][0] as f64 + nx * delta), clipper_round(src[j][1] as f64 + ny * delta)]
    };
    let mut out = Vec::new();
    let mut k = n - 1;
    for j in 0..n {
        let (nk, nj) = (normals[k], normals[j]);
        let mut sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        let cos_a = nk[0] * nj[0] + nk[1] * nj[1];
        if (sin_a * delta).abs() < 1.0 && cos_a > 0.0 {
            out.push(at(j, nk[0], nk[1]));
            k = j;
            continue;
        }
        sin_a = sin_a.clamp(-1.0, 1.0);
        if sin_a * delta < 0.0 {
            out.push(at(j, nk[0], nk[1]));
            out.push(src[j]);
            out.push(at(j, nj[0], nj[1]));
        } else {
            let angle = sin_a.atan2(cos_a);
            let count = clipper_round(steps_per_rad * angle.abs()).max(1);
            let (mut x, mut y) = (nk[0], nk[1]);
            for _ in 0..count {
                out.push(at(j, x, y));
                let x2 = x;
                x = x * cos - sin * y;
                y = x2 * sin + y * cos;
            }
            out.push(at(j, nj[0], nj[1]));
        }
        k = j;
    }
    out
}

/// Pixels `(x, y)` inside a convex polygon with integer vertices, row by row, within
/// `0..width` × `0..height` (OpenCV `fillPoly` semantics: edges included).
pub fn fill_convex(poly: &[[i64; 2]], width: usize, height: usize, mut visit: impl FnMut(usize, usize)) {
    if poly.len() < 3 || width == 0 || height == 0 {
        return;
    }
    let ymin = poly.iter().map(|p| p[1]).min().unwrap_or(0).max(0);
    let ymax = poly.iter().map(|p| p[1]).max().unwrap_or(-1).min(height as i64 - 1);
    for y in ymin..=ymax {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
            let (y0, y1) = (a[1].min(b[1]), a[1].max(b[1]));
            if y < y0 || y > y1 {
                continue;
            }
            if a[1] == b[1] {
                lo = lo.min(a[0].min(b[0]) as f64);
                hi = hi.max(a[0].max(b[0]) as f64);
            } else {
                let t = (y - a[1]) as f64 / (b[1] - a[1]) as f64;
                let x = a[0] as f64 + t * (b[0] - a[0]) as f64;
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if lo > hi {
            continue;
        }
        let x0 = lo.round().max(0.0) as usize;
        let x1 = (hi.round() as i64).min(width as i64 - 1);
        if x1 < 0 {
            continue;
        }
        for x in x0..=(x1 as usize) {
            visit(x, y as usize);
        }
    }
}

/// The 3x3 homography mapping `src[i]` to `dst[i]` (OpenCV `getPerspectiveTransform`: the 8x8
/// system solved by LU decomposition with partial pivoting).
pub fn perspective_transform(src: [Point; 4], dst: [Point; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 8]; 8];
    let mut b = [0f64; 8];
    for i in 0..4 {
        let ([x, y], [u, v]) = (src[i], dst[i]);
        a[i] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u];
        a[i + 4] = [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v];
        (b[i], b[i + 4]) = (u, v);
    }
    for i in 0..8 {
        let k = (i..8).max_by(|&r1, &r2| a[r1][i].abs().total_cmp(&a[r2][i].abs()))?;
        if a[k][i].abs() < f64::EPSILON * 10.0 {
            return None;
        }
        a.swap(i, k);
        b.swap(i, k);
        let d = -1.0 / a[i][i];
        let pivot_row = a[i];
        for j in i + 1..8 {
            let alpha = a[j][i] * d;
            for (cell, &p) in a[j].iter_mut().zip(&pivot_row).skip(i + 1) {
                *cell += alpha * p;
            }
            b[j] += alpha * b[i];
        }
    }
    for i in (0..8).rev() {
        let mut s = b[i];
        for k in i + 1..8 {
            s -= a[i][k] * b[k];
        }
        b[i] = s / a[i][i];
    }
    Some([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], 1.0])
}

/// Inverse of a 3x3 matrix (row-major), by cofactors scaled by 1/det as OpenCV's `invert`
/// does for 3x3 with `DECOMP_LU`.
pub fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det =
        m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if det.abs() < 1e-12 {
        return None;
    }
    let d = 1.0 / det;
    Some([
        (m[4] * m[8] - m[5] * m[7]) * d,
        (m[2] * m[7] - m[1] * m[8]) * d,
        (m[1] * m[5] - m[2] * m[4]) * d,
        (m[5] * m[6] - m[3] * m[8]) * d,
        (m[0] * m[8] - m[2] * m[6]) * d,
        (m[2] * m[3] - m[0] * m[5]) * d,
        (m[3] * m[7] - m[4] * m[6]) * d,
        (m[1] * m[6] - m[0] * m[7]) * d,
        (m[0] * m[4] - m[1] * m[3]) * d,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_an_axis_aligned_and_a_rotated_box() {
        let pts = [[0.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 4.0], [5.0, 2.0]];
        let r = min_area_rect(&pts).expect("rect");
        assert!((r.width * r.height - 40.0).abs() < 1e-9);
        assert!((r.short_side() - 4.0).abs() < 1e-9);
        // A square rotated by 45 degrees: the rectangle is the square itself, not its bounding box.
        let diamond = [[5.0, 0.0], [10.0, 5.0], [5.0, 10.0], [0.0, 5.0]];
        let r = min_area_rect(&diamond).expect("rect");
        assert!((r.width * r.height - 50.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn ordering_of_box_corners() {
        let tilted = [[10.0, 12.0], [0.0, 10.0], [0.0, 0.0], [10.0, 2.0]];
        assert_eq!(order_clockwise(tilted), [[0.0, 0.0], [10.0, 2.0], [10.0, 12.0], [0.0, 10.0]]);
        assert_eq!(order_mini_box(tilted), [[0.0, 0.0], [10.0, 2.0], [10.0, 12.0], [0.0, 10.0]]);
    }

    #[test]
    fn offset_grows_a_rectangle_by_delta_on_each_side() {
        let rect = [[10.0, 10.0], [50.0, 10.0], [50.0, 20.0], [10.0, 20.0]];
        let grown: Vec<Point> = offset_round(&[[10, 10], [50, 10], [50, 20], [10, 20]], 5.0)
            .iter()
            .map(|p| [p[0] as f64, p[1] as f64])
            .collect();
        assert!(grown.iter().all(|p| p[0] >= 5.0 && p[0] <= 55.0 && p[1] >= 5.0 && p[1] <= 25.0), "{grown:?}");
        assert!(grown.contains(&[5.0, 10.0]) && grown.contains(&[55.0, 20.0]), "edges offset by 5: {grown:?}");
        let r = min_area_rect(&grown).expect("rect");
        assert!((r.width.max(r.height) - 50.0).abs() <= 1.0, "{r:?}");
        assert!((r.short_side() - 20.0).abs() <= 1.0, "{r:?}");
        assert_eq!(polygon_area(&rect), 400.0);
        assert_eq!(polygon_perimeter(&rect), 100.0);
    }

    #[test]
    fn fill_includes_edges() {
        let mut n = 0;
        fill_convex(&[[1, 1], [3, 1], [3, 3], [1, 3]], 10, 10, |_, _| n += 1);
        assert_eq!(n, 9);
        let mut clipped = 0;
        fill_convex(&[[-5, -5], [2, -5], [2, 2], [-5, 2]], 10, 10, |_, _| clipped += 1);
        assert_eq!(clipped, 9, "clipped to the image");
    }

    #[test]
    fn perspective_maps_corners() {
        let src = [[10.0, 10.0], [110.0, 20.0], [105.0, 60.0], [5.0, 50.0]];
        let dst = [[0.0, 0.0], [100.0, 0.0], [100.0, 40.0], [0.0, 40.0]];
        let m = perspective_transform(src, dst).expect("solvable");
        for (s, d) in src.iter().zip(dst) {
            let w = m[6] * s[0] + m[7] * s[1] + m[8];
            let (u, v) = ((m[0] * s[0] + m[1] * s[1] + m[2]) / w, (m[3] * s[0] + m[4] * s[1] + m[5]) / w);
            assert!((u - d[0]).abs() < 1e-6 && (v - d[1]).abs() < 1e-6);
        }
        let inv = invert3(&m).expect("invertible");
        let w = inv[6] * 100.0 + inv[7] * 40.0 + inv[8];
        assert!(((inv[0] * 100.0 + inv[1] * 40.0 + inv[2]) / w - 105.0).abs() < 1e-6);
    }
}
