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
}
