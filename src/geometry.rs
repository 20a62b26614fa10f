//! Plane geometry every layer uses: boxes (`[x1, y1, x2, y2]`) and their overlap, polygons
//! (normalised zone outlines) and point tests. Pure functions, no dependencies.

/// An axis-aligned box `[x1, y1, x2, y2]` in pixels.
pub type BBox = [f32; 4];

/// Intersection over union of two `[x1, y1, x2, y2]` boxes; 0 when they do not overlap (the
/// intersection is clamped at zero, never negative) or have no area.
pub fn iou(a: &BBox, b: &BBox) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &BBox| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// `[x1, y1, x2, y2]` around a quadrilateral.
pub fn bounding_box(quad: &[[f32; 2]; 4]) -> BBox {
    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    [
        xs.clone().fold(f32::INFINITY, f32::min),
        ys.clone().fold(f32::INFINITY, f32::min),
        xs.fold(f32::NEG_INFINITY, f32::max),
        ys.fold(f32::NEG_INFINITY, f32::max),
    ]
}

/// Is `p` inside the polygon (ray casting; points on an edge may go either way)?
pub fn contains(polygon: &[[f64; 2]], p: [f64; 2]) -> bool {
    let mut inside = false;
    let n = polygon.len();
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[(i + n - 1) % n]);
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
    }
    inside
}

/// The area of a polygon (shoelace formula), whatever its orientation.
pub fn polygon_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    twice.abs() / 2.0
}

/// Whether every point lies on one line (or all are the same point): no area at all.
pub fn collinear(points: &[[f64; 2]]) -> bool {
    let Some(&a) = points.first() else { return true };
    let Some(&b) = points.iter().find(|p| **p != a) else { return true };
    points.iter().all(|&p| orientation(a, b, p).abs() < 1e-12)
}

/// Whether the closed polygon is simple: no edge of zero length, and no two edges meet except
/// neighbours at their shared corner.
pub fn is_simple(points: &[[f64; 2]]) -> bool {
    let n = points.len();
    if n < 3 {
        return false;
    }
    let edge = |i: usize| (points[i], points[(i + 1) % n]);
    for i in 0..n {
        let (a, b) = edge(i);
        if a == b {
            return false;
        }
        for j in i + 1..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            let (c, d) = edge(j);
            if adjacent {
                // Neighbours share one corner; they must not fold back onto each other.
                let (shared, other_a, other_b) = if j == i + 1 { (b, a, d) } else { (a, b, c) };
                if orientation(other_a, shared, other_b) == 0.0 && on_segment(other_a, shared, other_b) {
                    return false;
                }
                if orientation(other_a, shared, other_b) == 0.0 && on_segment(other_b, shared, other_a) {
                    return false;
                }
            } else if segments_meet(a, b, c, d) {
                return false;
            }
        }
    }
    true
}

/// Cross product of (b - a) and (c - a): > 0 counter-clockwise, < 0 clockwise, 0 collinear.
fn orientation(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Whether `p` (collinear with segment `a`-`b`) lies within its bounding box.
fn on_segment(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> bool {
    p[0] >= a[0].min(b[0]) && p[0] <= a[0].max(b[0]) && p[1] >= a[1].min(b[1]) && p[1] <= a[1].max(b[1])
}

/// Whether segments `a`-`b` and `c`-`d` share any point.
fn segments_meet(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> bool {
    let (o1, o2, o3, o4) = (orientation(a, b, c), orientation(a, b, d), orientation(c, d, a), orientation(c, d, b));
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0)) && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0)) {
        return true;
    }
    (o1 == 0.0 && on_segment(a, b, c))
        || (o2 == 0.0 && on_segment(a, b, d))
        || (o3 == 0.0 && on_segment(c, d, a))
        || (o4 == 0.0 && on_segment(c, d, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_cases() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0, "disjoint");
        assert_eq!(iou(&a, &[10.0, 0.0, 20.0, 10.0]), 0.0, "touching edges");
        assert_eq!(iou(&a, &[30.0, 30.0, 20.0, 20.0]), 0.0, "inverted box never goes negative");
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6, "half overlap");
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0, "empty boxes");
    }

    #[test]
    fn polygons_simple_or_not() {
        let square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(is_simple(&square));
        assert!((polygon_area(&square) - 1.0).abs() < 1e-12);
        let bowtie = [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]];
        assert!(!is_simple(&bowtie), "self-intersecting");
        let line = [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]];
        assert_eq!(polygon_area(&line), 0.0, "collinear");
        assert!(collinear(&line) && collinear(&[[0.2, 0.2]; 3]) && !collinear(&square));
        assert!(!is_simple(&[[0.2, 0.2], [0.2, 0.2], [0.5, 0.9]]), "a repeated point");
        let spike = [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.5, 1.0]];
        assert!(!is_simple(&spike), "an edge folding back on its neighbour");
    }
}
