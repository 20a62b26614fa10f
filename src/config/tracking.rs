//! `cameras[].tracking`: how observations become tracks and when tracks end (`pipeline::tracker`
//! uses it; `config::validate::cameras` checks it).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Tracking and temporal smoothing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TrackingConfig {
    /// An observation overlapping a track's predicted (or last) box by this IoU matches it.
    pub iou: f32,
    /// An observation also matches a track when its centre is within this many box diagonals
    /// of the track's predicted centre (twice this before the track's speed is known), at an
    /// area within 4x of the predicted box's.
    pub max_distance: f32,
    /// A track unmatched for more than this many analysed frames ends if not yet confirmed, and
    /// is lost if confirmed.
    pub max_age: u32,
    /// A lost track ends once unseen for this long (stream time); until then the same reading
    /// near where it was or was going, or anything at its very place, finds it again. 0: a
    /// confirmed track ends after `max_age` frames like a tentative one.
    #[serde(with = "humantime_serde")]
    pub max_lost: Duration,
    /// Two readings at least this alike (1 - edit distance / length) are the same text: a lost
    /// text track is found again by it.
    pub text_similarity: f32,
    /// A track is confirmed (and reported) after `min_hits` matches in the last `window` frames.
    pub min_hits: u32,
    pub window: u32,
    /// With no frame at all for this long (wall time), open tracks end at the last frame seen.
    /// Default: `max_age` sampled frames' worth at `target_fps`, at least 2 s.
    #[serde(default, with = "humantime_serde")]
    pub idle_end: Option<Duration>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            iou: 0.3,
            max_distance: 1.0,
            max_age: 3,
            max_lost: Duration::from_secs(2),
            text_similarity: 0.7,
            min_hits: 3,
            window: 5,
            idle_end: None,
        }
    }
}
