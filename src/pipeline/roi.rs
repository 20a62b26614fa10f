//! Zones of interest and per-label filters: which observations of a frame count, and where.

use std::collections::BTreeMap;

use crate::config::{Anchor, LabelFilter, Zone};
use crate::geometry::contains;

/// The zone name observations get when a camera has no zones (the whole frame counts).
pub const WHOLE_FRAME: &str = "frame";

/// A pixel rectangle of a frame: `[x, y, width, height]`.
pub type Rect = [u32; 4];
/// Padding around the zones' bounding box, as a share of the frame's width and height.
const CROP_PADDING: f64 = 0.05;
/// A crop covering at least this share of the frame is not worth making.
const CROP_WORTH: f64 = 0.9;
/// Padding around the changed region, as a share of the frame's width and height.
const CHANGE_PADDING: f64 = 0.06;
/// Padding around an open track's box, as a share of the box's size.
const TRACK_PADDING: f32 = 0.25;
/// A narrowed crop covering at least this share of the zones' crop is not worth making.
const NARROW_WORTH: f64 = 0.6;

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

    /// Whether the camera has zones (without, the whole frame counts and is always analysed).
    pub fn has_zones(&self) -> bool {
        !self.zones.is_empty()
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

    /// Where the models look in a `w` x `h` frame: the zones' bounding box, padded, in pixels.
    /// `None`: the whole frame (no zones, or zones that cover nearly all of it).
    pub fn analysed_region(&self, w: u32, h: u32) -> Option<Rect> {
        let points = self.zones.iter().flat_map(|z| z.points.iter());
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in points {
            (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
        }
        if x0 > x1 || y0 > y1 {
            return None;
        }
        let (x0, y0) = ((x0 - CROP_PADDING).max(0.0), (y0 - CROP_PADDING).max(0.0));
        let (x1, y1) = ((x1 + CROP_PADDING).min(1.0), (y1 + CROP_PADDING).min(1.0));
        if (x1 - x0) * (y1 - y0) >= CROP_WORTH {
            return None;
        }
        let (fw, fh) = (f64::from(w), f64::from(h));
        let (px, py) = ((x0 * fw).floor() as u32, (y0 * fh).floor() as u32);
        let (pw, ph) =
            (((x1 * fw).ceil() as u32).min(w).saturating_sub(px), ((y1 * fh).ceil() as u32).min(h).saturating_sub(py));
        (pw > 0 && ph > 0).then_some([px, py, pw, ph])
    }

    /// Where the models look on a frame with motion: the changed region (`changed`, normalised,
    /// padded) and every open track's box (padded: a parked car is still looked at), within
    /// `region` (the zones' crop, pixels of a `w` x `h` frame). `region` itself when that is
    /// not much smaller.
    pub fn narrowed(region: Rect, changed: [f64; 4], tracks: &[[f32; 4]], w: u32, h: u32) -> Rect {
        let (fw, fh) = (f64::from(w), f64::from(h));
        let mut b = [
            (changed[0] - CHANGE_PADDING) * fw,
            (changed[1] - CHANGE_PADDING) * fh,
            (changed[2] + CHANGE_PADDING) * fw,
            (changed[3] + CHANGE_PADDING) * fh,
        ];
        for t in tracks {
            let (pw, ph) = ((t[2] - t[0]) * TRACK_PADDING, (t[3] - t[1]) * TRACK_PADDING);
            let t = [t[0] - pw, t[1] - ph, t[2] + pw, t[3] + ph].map(f64::from);
            b = [b[0].min(t[0]), b[1].min(t[1]), b[2].max(t[2]), b[3].max(t[3])];
        }
        let [rx, ry, rw, rh] = region.map(f64::from);
        let x0 = b[0].floor().max(rx);
        let y0 = b[1].floor().max(ry);
        let x1 = b[2].ceil().min(rx + rw);
        let y1 = b[3].ceil().min(ry + rh);
        if x1 <= x0 || y1 <= y0 || (x1 - x0) * (y1 - y0) >= NARROW_WORTH * rw * rh {
            return region;
        }
        [x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32]
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

#[cfg(test)]
mod region_tests {
    use super::*;

    #[test]
    fn the_analysed_region_is_the_zones_box_padded_or_the_whole_frame() {
        let zone = |points: Vec<[f64; 2]>| Zone { name: "z".into(), points };
        let lane = Roi::new(
            vec![zone(vec![[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]])],
            Anchor::default(),
            BTreeMap::new(),
        );
        assert_eq!(lane.analysed_region(1280, 720), Some([0, 360, 1280, 360]));
        let two = Roi::new(
            vec![zone(vec![[0.2, 0.2], [0.3, 0.2], [0.3, 0.3]]), zone(vec![[0.5, 0.6], [0.6, 0.6], [0.6, 0.7]])],
            Anchor::default(),
            BTreeMap::new(),
        );
        assert_eq!(two.analysed_region(1000, 1000), Some([150, 150, 500, 600]));
        assert_eq!(Roi::new(vec![], Anchor::default(), BTreeMap::new()).analysed_region(1280, 720), None);
        assert!(!Roi::new(vec![], Anchor::default(), BTreeMap::new()).has_zones() && lane.has_zones());
        let most = Roi::new(
            vec![zone(vec![[0.0, 0.02], [1.0, 0.02], [1.0, 1.0], [0.0, 1.0]])],
            Anchor::default(),
            BTreeMap::new(),
        );
        assert_eq!(most.analysed_region(1280, 720), None);
    }

    #[test]
    fn motion_narrows_the_crop_to_the_change_and_the_open_tracks() {
        let lane = [0, 360, 1280, 360];
        // A car on the left of the lane: 6 % padding around it, within the lane.
        let narrow = Roi::narrowed(lane, [0.1, 0.6, 0.3, 0.9], &[], 1280, 720);
        assert_eq!(narrow, [51, 388, 410, 304]);
        // A parked car's track on the right widens it: the whole lane is then hardly more.
        assert_eq!(Roi::narrowed(lane, [0.1, 0.6, 0.3, 0.9], &[[1000.0, 500.0, 1200.0, 600.0]], 1280, 720), lane);
        // A small track near the change stays inside.
        let with_track = Roi::narrowed(lane, [0.1, 0.6, 0.3, 0.9], &[[300.0, 450.0, 340.0, 470.0]], 1280, 720);
        assert_eq!(with_track, [51, 388, 410, 304]);
        // The crop never leaves the zones' region.
        assert_eq!(Roi::narrowed(lane, [0.0, 0.0, 0.1, 0.4], &[], 1280, 720), lane, "nothing of it in the region");
    }
}
