//! `cameras[].ocr.read_once`: when a confirmed line of text stops being recognised on every frame
//! (`pipeline::tracker` decides the reading is settled, `infer::ocr` reuses it).

use serde::{Deserialize, Serialize};

/// `cameras[].ocr.read_once` as written (and as used: every key is checked where it is read).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ReadOnceConfig {
    /// Stop recognising a line whose reading is settled.
    pub enabled: bool,
    /// A reading is settled when the track's winning text was also each of its last `readings`
    /// readings...
    pub readings: u32,
    /// ...each with at least this recognition confidence.
    pub min_score: f32,
    /// The line is read again when its box's width or height changes by more than this share
    /// of the size it was read at.
    pub max_resize: f32,
    /// The line is read again after this many frames on one reading, however still it stands.
    pub max_reuse: u32,
}

impl Default for ReadOnceConfig {
    fn default() -> Self {
        Self { enabled: true, readings: 3, min_score: 0.9, max_resize: 0.15, max_reuse: 10 }
    }
}

pub const READINGS_RANGE: std::ops::RangeInclusive<u32> = 1..=50;
pub const MAX_REUSE_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
