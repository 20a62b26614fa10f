//! `cameras[].motion`: the change detector that decides whether a sampled frame needs the models
//! (`pipeline::motion`). The raw keys, their defaults, and the checked settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `cameras[].motion` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct MotionConfig {
    /// Skip the models on frames with no change inside the zones.
    pub enabled: bool,
    /// 0..1: how small a change of brightness counts (1 = the faintest).
    pub sensitivity: f64,
    /// The changed share of the zones' area (0..1) that counts as motion.
    pub min_area: f64,
    /// Frames still analysed after the last motion, so objects that left are seen gone. Default:
    /// `tracking.max_age` + 2.
    pub settle_frames: Option<u32>,
    /// A still scene is analysed at least this often (stream time), so stationary tracks are
    /// re-checked.
    #[serde(with = "humantime_serde")]
    pub recheck: Duration,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self { enabled: true, sensitivity: 0.6, min_area: 0.003, settle_frames: None, recheck: Duration::from_secs(5) }
    }
}

/// The checked `motion:` of one camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionSettings {
    pub enabled: bool,
    /// A cell whose brightness moved by more than this (0..255, after the frame-wide drift is
    /// taken out) has changed.
    pub threshold: f32,
    pub min_area: f64,
    pub settle_frames: u32,
    pub recheck: Duration,
}

/// Brightness thresholds at sensitivity 1 and 0.
const FAINTEST: f32 = 4.0;
const COARSEST: f32 = 44.0;
pub const RECHECK_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(200)..=Duration::from_secs(600);
/// The most settling frames: `tracking.max_age` (up to 1000) + 2, so every `max_age` has room.
pub const MAX_SETTLE_FRAMES: u32 = 1002;

impl MotionSettings {
    /// What motion gating off looks like (every frame analysed).
    pub fn off() -> Self {
        let d = MotionConfig::default();
        Self {
            enabled: false,
            threshold: threshold(d.sensitivity),
            min_area: d.min_area,
            settle_frames: 0,
            recheck: d.recheck,
        }
    }
}

/// The brightness threshold of a sensitivity (clamped to 0..1).
pub fn threshold(sensitivity: f64) -> f32 {
    let sensitivity = sensitivity.clamp(0.0, 1.0);
    COARSEST - (COARSEST - FAINTEST) * sensitivity as f32
}
