//! A track's motion model: a constant-velocity Kalman filter on the box's centre and size, in
//! stream time. Each of the four coordinates (centre x, centre y, width, height) is filtered on
//! its own (position and rate, a 2×2 covariance), as SORT's and ByteTrack's diagonal models do;
//! the noise scales with the box's height, so a far plate and a near one are judged alike.
//!
//! Time is the frames' stream time, not a frame count: sampled frames that motion gating or a
//! dropped hand-off left out stretch the prediction, they do not break it.

use serde::{Deserialize, Serialize};

use crate::geometry::BBox;

/// Measurement noise: σ of a box coordinate, as a share of the box's height (+1 px).
const MEASURE_SIGMA: f32 = 0.05;
/// Process noise: σ of the acceleration, box heights per second².
const ACCEL_SIGMA: f32 = 1.0;
/// σ of the rate before a second observation: box heights per second (anything plausible).
const INITIAL_RATE_SIGMA: f32 = 20.0;
/// A prediction never runs further ahead of the last observation than this (seconds): a track
/// lost for longer is looked for near where it was last predicted, not off the picture.
const MAX_EXTRAPOLATION: f32 = 1.0;

/// The state of one track's box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxMotion {
    /// Stream time of the estimate (ns).
    at_ns: i64,
    /// Centre x, centre y, width, height (pixels).
    x: [f32; 4],
    /// Their rates (pixels per second).
    v: [f32; 4],
    /// Per coordinate: variance of the value, covariance of value and rate, variance of the rate.
    p: [[f32; 3]; 4],
    /// Observations folded in.
    updates: u32,
}

fn to_state(b: &BBox) -> [f32; 4] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, (b[2] - b[0]).max(1.0), (b[3] - b[1]).max(1.0)]
}

fn to_box(x: &[f32; 4]) -> BBox {
    let (w, h) = (x[2].max(1.0), x[3].max(1.0));
    [x[0] - w / 2.0, x[1] - h / 2.0, x[0] + w / 2.0, x[1] + h / 2.0]
}

fn measure_variance(height: f32) -> f32 {
    (MEASURE_SIGMA * height + 1.0).powi(2)
}

impl BoxMotion {
    /// A track first seen at `at_ns` in `bbox`, its rate unknown.
    pub fn new(bbox: &BBox, at_ns: i64) -> Self {
        let x = to_state(bbox);
        let (r, q) = (measure_variance(x[3]), (INITIAL_RATE_SIGMA * x[3]).powi(2));
        Self { at_ns, x, v: [0.0; 4], p: [[r, 0.0, q]; 4], updates: 1 }
    }

    /// Whether the rate has been measured (two observations or more).
    pub fn has_rate(&self) -> bool {
        self.updates >= 2
    }

    /// Where the box is expected at `at_ns` (at most [`MAX_EXTRAPOLATION`] past the estimate).
    pub fn predicted(&self, at_ns: i64) -> BBox {
        let dt = self.dt(at_ns);
        let mut x = self.x;
        for (xi, vi) in x.iter_mut().zip(self.v) {
            *xi += vi * dt;
        }
        to_box(&x)
    }

    fn dt(&self, at_ns: i64) -> f32 {
        ((at_ns - self.at_ns) as f32 / 1e9).clamp(0.0, MAX_EXTRAPOLATION)
    }

    /// Folds in the box observed at `at_ns` (after the estimate's time).
    pub fn update(&mut self, bbox: &BBox, at_ns: i64) {
        let dt = self.dt(at_ns);
        let z = to_state(bbox);
        let r = measure_variance(z[3]);
        let q = (ACCEL_SIGMA * self.x[3].max(z[3])).powi(2);
        for (((x, v), p), z) in self.x.iter_mut().zip(self.v.iter_mut()).zip(self.p.iter_mut()).zip(z) {
            // Predict: x += v dt; P = F P Fᵀ + Q (white-noise acceleration).
            let [pp, pv, vv] = *p;
            let predicted = *x + *v * dt;
            let pp = pp + 2.0 * dt * pv + dt * dt * vv + q * dt.powi(4) / 4.0;
            let pv = pv + dt * vv + q * dt.powi(3) / 2.0;
            let vv = vv + q * dt * dt;
            // Update with the measured value.
            let s = pp + r;
            let (k1, k2) = (pp / s, pv / s);
            let innovation = z - predicted;
            *x = predicted + k1 * innovation;
            *v += k2 * innovation;
            *p = [(1.0 - k1) * pp, (1.0 - k1) * pv, vv - k2 * pv];
        }
        self.at_ns = self.at_ns.max(at_ns);
        self.updates = self.updates.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: i64 = 200_000_000;

    fn plate(y: f32, h: f32) -> BBox {
        [100.0, y, 100.0 + 4.0 * h, y + h]
    }

    #[test]
    fn a_box_moving_steadily_is_predicted_where_it_goes() {
        // 15 px high, moving down 40 px per 0.2 s (more than its height) and growing.
        let mut m = BoxMotion::new(&plate(100.0, 15.0), 0);
        assert!(!m.has_rate());
        for i in 1..6 {
            m.update(&plate(100.0 + 40.0 * i as f32, 15.0 + i as f32), i * FRAME);
        }
        assert!(m.has_rate());
        let p = m.predicted(6 * FRAME);
        let want = plate(340.0, 21.0);
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 4.0, "predicted {p:?}, expected about {want:?}");
        }
        // A frame left out (motion gating, a drop): the prediction spans the time, not the count.
        let p = m.predicted(7 * FRAME);
        assert!((p[1] - 380.0).abs() < 6.0, "{p:?}");
    }

    #[test]
    fn a_still_box_stays_put_and_noise_does_not_make_it_run() {
        let mut m = BoxMotion::new(&plate(200.0, 20.0), 0);
        for i in 1..20 {
            let jitter = if i % 2 == 0 { 1.0 } else { -1.0 };
            m.update(&plate(200.0 + jitter, 20.0), i * FRAME);
        }
        let p = m.predicted(25 * FRAME);
        assert!((p[1] - 200.0).abs() < 2.0, "{p:?}");
    }

    #[test]
    fn a_long_gap_extrapolates_no_further_than_a_second() {
        let mut m = BoxMotion::new(&plate(0.0, 10.0), 0);
        m.update(&plate(50.0, 10.0), FRAME);
        let one = m.predicted(FRAME + 1_000_000_000);
        assert_eq!(m.predicted(FRAME + 10_000_000_000), one);
        // Before the estimate's time: no extrapolation backwards.
        assert_eq!(m.predicted(0), m.predicted(FRAME));
    }

    #[test]
    fn the_state_round_trips_through_json_exactly() {
        let mut m = BoxMotion::new(&plate(10.0, 12.0), 0);
        m.update(&plate(31.3, 12.7), FRAME);
        let back: BoxMotion = serde_json::from_str(&serde_json::to_string(&m).expect("json")).expect("read");
        assert_eq!(back, m);
    }
}
