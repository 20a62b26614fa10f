//! Motion gating: decides, before a sampled frame is converted to RGB, whether it needs the
//! models at all. It compares the frame's brightness grid (`media::decode::grey`) with a running
//! background, inside the camera's zones only:
//! - the frame-wide median change is taken out first (lighting drift, auto exposure, clouds);
//! - a cell has changed when it moved by more than the threshold (`motion.sensitivity`);
//! - motion is a changed share of the zones' cells of at least `motion.min_area`.
//!
//! A frame with motion is analysed, and so are the `settle_frames` after it (an object that left
//! is seen gone, its track ages and ends). A still scene is re-checked at every multiple of
//! `recheck` of stream time, so a stationary track stays honest. Skipped frames never reach the
//! tracker: open tracks do not age on them (a parked car is still there).
//!
//! **A function of the fragment.** The gate starts over at every fragment
//! ([`MotionGate::fragment_started`]): the fragment's first sampled frame becomes the background
//! and re-checks fall on fixed multiples of stream time. Only the settling frames still owed
//! carry over, and they travel in the checkpoint with the tracker ([`MotionGate::settle_left`]).
//! So which frames of a fragment are analysed, and where, depends only on that fragment's frames
//! and the checkpoint: a camera that resumes after a checkpointed fragment (a restart, another
//! task) analyses exactly what an uninterrupted run analysed, and its events are the same
//! (`docs/events.md`).
//!
//! On a frame with motion the gate also says where: the bounding box of the changed cells inside
//! the zones ([`MotionGate::changed`]), which the camera narrows its crop to (with the open
//! tracks). Settling frames and re-checks look at the whole of the zones.

use crate::config::Zone;
use crate::config::motion::MotionSettings;
use crate::geometry::contains;
use crate::media::decode::grey::GreyGrid;

/// How fast the background follows a still cell, and a changed one (a car that parks becomes
/// background in about a minute at 5 fps, so it stops counting as motion).
const ADAPT_STILL: f32 = 0.2;
const ADAPT_CHANGED: f32 = 0.005;

/// Why a frame is analysed, or that it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Gating is off for this camera.
    Off,
    /// A picture format without a luma plane: every frame is analysed.
    NoBaseline,
    Motion,
    /// Within `settle_frames` of the last motion.
    Settling,
    /// The periodic re-check of a still scene.
    Recheck,
    /// Still: the models are not needed.
    Still,
}

impl Verdict {
    pub fn analyse(self) -> bool {
        self != Verdict::Still
    }

    /// The gating state `/healthz` shows for the camera.
    pub fn state(self) -> &'static str {
        match self {
            Verdict::Off => "off",
            Verdict::NoBaseline | Verdict::Motion => "motion",
            Verdict::Settling => "settling",
            Verdict::Recheck | Verdict::Still => "still",
        }
    }
}

/// One camera's change detector.
pub struct MotionGate {
    settings: MotionSettings,
    zones: Vec<Zone>,
    background: Option<Background>,
    settle_left: u32,
    /// The previous frame judged in this fragment (re-checks fall between it and the next).
    previous_ns: Option<i64>,
    /// Where the last frame judged changed (normalised `[x0, y0, x1, y1]`), if it was motion.
    changed: Option<[f64; 4]>,
    /// Scratch for the median.
    diffs: Vec<f32>,
}

struct Background {
    columns: u32,
    rows: u32,
    values: Vec<f32>,
    /// Cells whose centre lies in a zone (every cell without zones).
    in_zones: Vec<bool>,
    zone_cells: usize,
}

impl MotionGate {
    pub fn new(settings: MotionSettings, zones: Vec<Zone>) -> Self {
        Self { settings, zones, background: None, settle_left: 0, previous_ns: None, changed: None, diffs: Vec::new() }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Where the frame last judged changed, as a share of the frame `[x0, y0, x1, y1]`: the box
    /// around the changed cells inside the zones. `None` unless its verdict was [`Verdict::Motion`].
    pub fn changed(&self) -> Option<[f64; 4]> {
        self.changed
    }

    /// A new fragment begins: its first sampled frame becomes the background, and the next
    /// re-check is the next multiple of `recheck` after that frame. Settling frames still owed
    /// go on.
    pub fn fragment_started(&mut self) {
        (self.background, self.previous_ns) = (None, None);
    }

    /// Settling frames still owed after the last frame judged (what a checkpoint carries).
    pub fn settle_left(&self) -> u32 {
        self.settle_left
    }

    /// A gate that owes `frames` settling frames (resumed from a checkpoint).
    pub fn with_settle_left(mut self, frames: u32) -> Self {
        self.settle_left = frames.min(self.settings.settle_frames);
        self
    }

    /// The verdict on the frame at `timestamp_ns` whose grid is `grid` (`None`: no luma plane).
    pub fn judge(&mut self, grid: Option<&GreyGrid>, timestamp_ns: i64) -> Verdict {
        self.changed = None;
        let verdict = self.verdict(grid, timestamp_ns);
        self.previous_ns = Some(timestamp_ns);
        verdict
    }

    /// Whether a multiple of `recheck` (stream time) lies after the previous frame judged in
    /// this fragment and at or before this one.
    fn recheck_due(&self, timestamp_ns: i64) -> bool {
        let period = i64::try_from(self.settings.recheck.as_nanos()).unwrap_or(i64::MAX).max(1);
        let Some(previous) = self.previous_ns else { return false };
        previous < timestamp_ns && previous.div_euclid(period) != timestamp_ns.div_euclid(period)
    }

    fn verdict(&mut self, grid: Option<&GreyGrid>, timestamp_ns: i64) -> Verdict {
        if !self.settings.enabled {
            return Verdict::Off;
        }
        let Some(grid) = grid else {
            self.background = None;
            return Verdict::NoBaseline;
        };
        let due = self.recheck_due(timestamp_ns);
        let background = match self.background.as_mut() {
            Some(b) if b.columns == grid.columns && b.rows == grid.rows => b,
            _ => {
                // The fragment's first frame (or a new size): the background to judge by.
                self.background = Some(Background::new(grid, &self.zones));
                if self.settle_left > 0 {
                    self.settle_left -= 1;
                    return Verdict::Settling;
                }
                return if due { Verdict::Recheck } else { Verdict::Still };
            }
        };
        let (changed, cells) = background.changed_share(grid, self.settings.threshold, &mut self.diffs);
        if changed >= self.settings.min_area {
            self.settle_left = self.settings.settle_frames;
            self.changed = cells.map(|[c0, r0, c1, r1]| {
                let (cell, w, h) = (f64::from(grid.cell), f64::from(grid.width), f64::from(grid.height));
                [
                    f64::from(c0) * cell / w,
                    f64::from(r0) * cell / h,
                    (f64::from(c1 + 1) * cell / w).min(1.0),
                    (f64::from(r1 + 1) * cell / h).min(1.0),
                ]
            });
            return Verdict::Motion;
        }
        if self.settle_left > 0 {
            self.settle_left -= 1;
            return Verdict::Settling;
        }
        if due { Verdict::Recheck } else { Verdict::Still }
    }
}

impl Background {
    fn new(grid: &GreyGrid, zones: &[Zone]) -> Self {
        let (w, h) = (f64::from(grid.width), f64::from(grid.height));
        let in_zones: Vec<bool> = (0..grid.rows)
            .flat_map(|r| (0..grid.columns).map(move |c| (r, c)))
            .map(|(r, c)| {
                let centre = [
                    ((f64::from(c) + 0.5) * f64::from(grid.cell) / w).min(1.0),
                    ((f64::from(r) + 0.5) * f64::from(grid.cell) / h).min(1.0),
                ];
                zones.is_empty() || zones.iter().any(|z| contains(&z.points, centre))
            })
            .collect();
        // A zone smaller than a cell still has one cell to watch.
        let zone_cells = in_zones.iter().filter(|b| **b).count().max(1);
        Self { columns: grid.columns, rows: grid.rows, values: grid.values.clone(), in_zones, zone_cells }
    }

    /// The share of the zones' cells that changed, and the box around them (cells: first
    /// column, first row, last column, last row); the background learns the frame.
    fn changed_share(&mut self, grid: &GreyGrid, threshold: f32, diffs: &mut Vec<f32>) -> (f64, Option<[u32; 4]>) {
        diffs.clear();
        diffs.extend(grid.values.iter().zip(&self.values).map(|(v, b)| v - b));
        let drift = median(diffs);
        let mut changed = 0usize;
        let mut cells: Option<[u32; 4]> = None;
        for (i, (v, b)) in grid.values.iter().zip(self.values.iter_mut()).enumerate() {
            let moved = (v - *b - drift).abs() > threshold;
            if moved && self.in_zones[i] {
                changed += 1;
                let (c, r) = (i as u32 % self.columns, i as u32 / self.columns);
                cells = Some(match cells {
                    None => [c, r, c, r],
                    Some([c0, r0, c1, r1]) => [c0.min(c), r0.min(r), c1.max(c), r1.max(r)],
                });
            }
            *b += (v - *b) * if moved { ADAPT_CHANGED } else { ADAPT_STILL };
        }
        (changed as f64 / self.zone_cells as f64, cells)
    }
}

/// The median of `values` (reordered); 0 for none.
fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FRAME_NS: i64 = 200_000_000; // 5 fps

    fn settings() -> MotionSettings {
        MotionSettings {
            enabled: true,
            threshold: 20.0,
            min_area: 0.003,
            settle_frames: 3,
            recheck: Duration::from_secs(5),
        }
    }

    /// A 1280x720 grey scene with optional noise, brightness offset and a bright box.
    fn frame(seed: u32, offset: i32, object: Option<(u32, u32)>) -> GreyGrid {
        let (w, h) = (1280u32, 720u32);
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut plane = vec![0u8; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state % 13) as i32 - 6;
                let mut v = 90 + (x / 40) as i32 + offset + noise;
                if let Some((ox, oy)) = object
                    && (ox..ox + 120).contains(&x)
                    && (oy..oy + 60).contains(&y)
                {
                    v = 230;
                }
                plane[(y * w + x) as usize] = v.clamp(0, 255) as u8;
            }
        }
        GreyGrid::from_bytes(&plane, w as usize, w, h)
    }

    fn lane() -> Vec<Zone> {
        vec![Zone { name: "lane".into(), points: vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]] }]
    }

    #[test]
    fn a_still_noisy_scene_is_skipped_between_rechecks_and_drift_is_not_motion() {
        let mut gate = MotionGate::new(settings(), lane());
        let mut verdicts = Vec::new();
        for i in 0..60 {
            // Lighting drifts by 30 grey levels over the run: clouds, auto exposure.
            let offset = i / 2;
            verdicts.push(gate.judge(Some(&frame(i as u32 + 1, offset, None)), i64::from(i) * FRAME_NS));
        }
        assert_eq!(verdicts[0], Verdict::Still, "the first frame is the background");
        assert!(!verdicts.contains(&Verdict::Motion), "{verdicts:?}");
        let analysed: Vec<usize> = (0..60).filter(|i| verdicts[*i].analyse()).collect();
        // A re-check at every 5 s of stream time (frames 25 and 50).
        assert_eq!(analysed, vec![25, 50], "{verdicts:?}");
    }

    #[test]
    fn an_object_in_the_zone_is_motion_and_one_outside_is_not() {
        let mut gate = MotionGate::new(settings(), lane());
        gate.judge(Some(&frame(1, 0, None)), 0);
        for i in 1..10 {
            gate.judge(Some(&frame(i + 1, 0, None)), i64::from(i) * FRAME_NS);
        }
        // Above the lane (y 100): still.
        assert_eq!(gate.judge(Some(&frame(50, 0, Some((600, 100)))), 10 * FRAME_NS), Verdict::Still);
        assert_eq!(gate.changed(), None);
        // In the lane, moving: motion on every frame, then settling once it has gone.
        for i in 11..15 {
            let x = 200 + (i - 11) * 150;
            assert_eq!(gate.judge(Some(&frame(i + 50, 0, Some((x, 500)))), i64::from(i) * FRAME_NS), Verdict::Motion);
            // Where: around the box (120 x 60 at x, y 500) and where it was a frame ago.
            let [x0, y0, x1, y1] = gate.changed().expect("a changed region");
            let (px0, px1) = (x0 * 1280.0, x1 * 1280.0);
            assert!(px0 <= f64::from(x) && px1 >= f64::from(x + 120), "{px0}..{px1} around {x}..{}", x + 120);
            assert!(y0 * 720.0 <= 500.0 && y1 * 720.0 >= 560.0 && y1 * 720.0 <= 600.0, "{y0}..{y1}");
            assert!(px1 - px0 <= 120.0 + 150.0 + 2.0 * 20.0 + 1.0, "no wider than now and before: {px0}..{px1}");
        }
        let after: Vec<Verdict> =
            (15..20).map(|i| gate.judge(Some(&frame(i + 50, 0, None)), i64::from(i) * FRAME_NS)).collect();
        // The frame it leaves on still differs from the background it had partly learnt.
        assert_eq!(after.iter().filter(|v| **v == Verdict::Settling).count(), 3, "{after:?}");
        assert_eq!(*after.last().expect("verdict"), Verdict::Still, "{after:?}");
    }

    /// A gate resumed at a fragment (settling frames owed, from the checkpoint) judges that
    /// fragment exactly as the gate that ran through: which frames, and where they changed.
    #[test]
    fn a_fragment_is_judged_the_same_by_a_gate_resumed_at_it() {
        let mut through = MotionGate::new(settings(), lane());
        let frames: Vec<GreyGrid> = (0..30u32)
            .map(|i| match i {
                // A car drives through the lane in frames 5..12 of the first fragment (0..12).
                5..12 => frame(i + 1, i as i32 / 3, Some((100 + i * 90, 500))),
                // Another in the second fragment's frames 20..24.
                20..24 => frame(i + 1, i as i32 / 3, Some((900 - i * 30, 480))),
                _ => frame(i + 1, i as i32 / 3, None),
            })
            .collect();
        let judge =
            |gate: &mut MotionGate, i: usize| (gate.judge(Some(&frames[i]), i as i64 * FRAME_NS), gate.changed());
        let mut first = Vec::new();
        for i in 0..12 {
            if i == 0 {
                through.fragment_started();
            }
            first.push(judge(&mut through, i));
        }
        assert!(first.iter().any(|(v, _)| *v == Verdict::Motion), "{first:?}");
        let owed = through.settle_left();
        assert!(owed > 0, "the fragment ends while settling");
        through.fragment_started();
        let mut resumed = MotionGate::new(settings(), lane()).with_settle_left(owed);
        resumed.fragment_started();
        for i in 12..30 {
            assert_eq!(judge(&mut through, i), judge(&mut resumed, i), "frame {i}");
        }
    }

    #[test]
    fn off_analyses_everything_and_a_missing_plane_is_no_baseline() {
        let mut gate = MotionGate::new(MotionSettings::off(), lane());
        assert!((0..5).all(|i| gate.judge(Some(&frame(i + 1, 0, None)), i64::from(i) * FRAME_NS) == Verdict::Off));
        let mut gate = MotionGate::new(settings(), lane());
        assert_eq!(gate.judge(None, 0), Verdict::NoBaseline);
        assert_eq!(Verdict::Still.state(), "still");
        assert_eq!(Verdict::Settling.state(), "settling");
    }
}
