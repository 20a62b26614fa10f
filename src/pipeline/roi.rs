//! Zones of interest and per-label filters: which observations of a frame count, and where.

use std::collections::BTreeMap;

use crate::config::{Anchor, LabelFilter, Zone};
use crate::geometry::contains;

/// The zone name observations get when a camera has no zones (the whole frame counts).
pub const WHOLE_FRAME: &str = "frame";

/// A camera's zones and filters.
#[derive(Debug, Clone)]
pub struct Roi {
    zones: Vec<Zone>,
    anchor: Anchor,
    filters: BTreeMap<String, LabelFilter>,
}

impl Roi {
    pub fn new(zones: Vec<Zone>, anchor: Anchor, filters: BTreeMap<String, LabelFilter>) -> Self {
        Self { zones, anchor, filters }
    }

    /// The zone a box `[x1, y1, x2, y2]` (pixels of a `w` x `h` frame) is in, by its anchor
    /// (`text` boxes by their centre). `None`: outside every zone.
    pub fn zone_of(&self, bbox: [f32; 4], w: u32, h: u32, is_text: bool) -> Option<&str> {
        if self.zones.is_empty() {
            return Some(WHOLE_FRAME);
        }
        let cx = f64::from(bbox[0] + bbox[2]) / 2.0 / f64::from(w);
        let y = match (self.anchor, is_text) {
            (Anchor::BottomCenter, false) => f64::from(bbox[3]),
            _ => f64::from(bbox[1] + bbox[3]) / 2.0,
        } / f64::from(h);
        self.zones.iter().find(|z| contains(&z.points, [cx, y])).map(|z| z.name.as_str())
    }

    /// Does an observation of `label` pass the label's filter?
    pub fn passes(&self, label: &str, score: f32, bbox: [f32; 4], w: u32, h: u32) -> bool {
        let Some(f) = self.filters.get(label) else { return true };
        let area =
            f64::from((bbox[2] - bbox[0]).max(0.0) * (bbox[3] - bbox[1]).max(0.0)) / (f64::from(w) * f64::from(h));
        f.min_score.is_none_or(|m| score >= m)
            && f.min_area.is_none_or(|m| area >= m)
            && f.max_area.is_none_or(|m| area <= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane() -> Roi {
        let zone = Zone { name: "lane".into(), points: vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]] };
        let mut filters = BTreeMap::new();
        filters.insert("car".into(), LabelFilter { min_score: Some(0.5), min_area: Some(0.01), max_area: Some(0.5) });
        Roi::new(vec![zone], Anchor::BottomCenter, filters)
    }

    #[test]
    fn anchors_decide_the_zone() {
        let roi = lane();
        // A box mostly above the lane whose bottom edge stands in it.
        assert_eq!(roi.zone_of([10.0, 10.0, 50.0, 60.0], 100, 100, false), Some("lane"));
        // The same box as text counts by its centre (y = 35): outside.
        assert_eq!(roi.zone_of([10.0, 10.0, 50.0, 60.0], 100, 100, true), None);
        let no_zones = Roi::new(vec![], Anchor::Center, BTreeMap::new());
        assert_eq!(no_zones.zone_of([0.0, 0.0, 1.0, 1.0], 10, 10, false), Some(WHOLE_FRAME));
    }

    #[test]
    fn polygons_and_filters() {
        let tri = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        assert!(contains(&tri, [0.2, 0.2]));
        assert!(!contains(&tri, [0.8, 0.8]));
        let roi = lane();
        assert!(roi.passes("car", 0.6, [0.0, 0.0, 20.0, 20.0], 100, 100));
        assert!(!roi.passes("car", 0.4, [0.0, 0.0, 20.0, 20.0], 100, 100), "score");
        assert!(!roi.passes("car", 0.9, [0.0, 0.0, 5.0, 5.0], 100, 100), "too small");
        assert!(!roi.passes("car", 0.9, [0.0, 0.0, 90.0, 90.0], 100, 100), "too large");
        assert!(roi.passes("person", 0.01, [0.0, 0.0, 1.0, 1.0], 100, 100), "no filter for the label");
    }
}
