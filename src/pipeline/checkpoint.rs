//! A camera's checkpoint: what a restart needs to go on exactly where the last run stopped, after
//! the fragment the source layer stores it with. The tracker's tracks (ids, votes, motion), the
//! settling frames motion gating still owes, and the pass of a looping source. Versioned: a
//! build reads every version written since checkpoints carried analysis state.
//!
//! | version | shape |
//! |---|---|
//! | 1 | the tracker's snapshot itself, with the motion gate's `motion_settle` beside its fields |
//! | 2 | `{version, tracker, motion_settle, pass}` |

use serde::{Deserialize, Serialize};

use super::tracker::{RestoreError, Tracker, TrackerSnapshot};
use crate::config::TrackingConfig;

/// The version this build writes.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Why a stored checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the camera checkpoint is not valid JSON of its version")]
    Json(#[from] serde_json::Error),
    #[error("camera checkpoint version {found} (this build reads 1 to {CHECKPOINT_VERSION})")]
    Version { found: u32 },
    #[error("the checkpoint's tracker state is not usable")]
    Tracker(#[from] RestoreError),
    #[error("the checkpoint is of pass {stored} of a looping source, this run is pass {running}")]
    Pass { stored: u64, running: u64 },
}

/// One camera's resumable analysis state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CameraCheckpoint {
    pub version: u32,
    pub tracker: TrackerSnapshot,
    /// Settling frames motion gating owed after the last frame (`pipeline::motion`).
    pub motion_settle: u32,
    /// The times a looping source had started over (event ids carry it).
    pub pass: u64,
}

impl CameraCheckpoint {
    pub fn new(tracker: &Tracker, motion_settle: u32, pass: u64) -> Self {
        Self { version: CHECKPOINT_VERSION, tracker: tracker.state(), motion_settle, pass }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads any version this build knows.
    pub fn decode(text: &str) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        #[derive(Deserialize)]
        struct MotionV1 {
            #[serde(default)]
            motion_settle: u32,
        }
        match serde_json::from_str::<Versioned>(text)?.version {
            1 => {
                let motion: MotionV1 = serde_json::from_str(text)?;
                let tracker = serde_json::from_str(text)?;
                Ok(Self { version: CHECKPOINT_VERSION, tracker, motion_settle: motion.motion_settle, pass: 0 })
            }
            CHECKPOINT_VERSION => Ok(serde_json::from_str(text)?),
            found => Err(CheckpointError::Version { found }),
        }
    }

    /// The tracker it holds, for a run of `pass`.
    pub fn tracker(self, config: TrackingConfig, pass: u64) -> Result<Tracker, CheckpointError> {
        if self.pass != pass {
            return Err(CheckpointError::Pass { stored: self.pass, running: pass });
        }
        Ok(Tracker::from_state(config, self.tracker)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrackingConfig {
        TrackingConfig::default()
    }

    #[test]
    fn a_checkpoint_round_trips_and_names_its_version() {
        let tracker = Tracker::new(config());
        let text = CameraCheckpoint::new(&tracker, 3, 2).encode();
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (v["version"].as_u64(), v["motion_settle"].as_u64(), v["pass"].as_u64()),
            (Some(2), Some(3), Some(2))
        );
        let back = CameraCheckpoint::decode(&text).expect("decode");
        assert_eq!(back.motion_settle, 3);
        assert!(back.clone().tracker(config(), 1).is_err(), "another pass's tracks are not resumed");
        assert_eq!(back.tracker(config(), 2).expect("tracker").snapshot(), tracker.snapshot());
    }

    #[test]
    fn version_1_the_bare_tracker_snapshot_is_still_read() {
        let v1 = r#"{"version":1,"next_id":7,"tracks":[],"motion_settle":4}"#;
        let c = CameraCheckpoint::decode(v1).expect("a version 1 checkpoint");
        assert_eq!((c.version, c.motion_settle, c.pass), (CHECKPOINT_VERSION, 4, 0));
        let tracker = c.tracker(config(), 0).expect("tracker");
        assert!(tracker.snapshot().contains("\"next_id\":7"), "{}", tracker.snapshot());
        // Older still: no motion gate state.
        let c = CameraCheckpoint::decode(r#"{"version":1,"next_id":2,"tracks":[]}"#).expect("v1");
        assert_eq!(c.motion_settle, 0);
    }

    #[test]
    fn unknown_versions_and_damage_are_errors_that_say_so() {
        let e = CameraCheckpoint::decode(r#"{"version":9}"#).expect_err("v9");
        assert!(e.to_string().contains("version 9"), "{e}");
        assert!(matches!(CameraCheckpoint::decode("{not json"), Err(CheckpointError::Json(_))));
        let bad_tracker = r#"{"version":2,"tracker":{"version":5,"next_id":1,"tracks":[]},"motion_settle":0,"pass":0}"#;
        let e = CameraCheckpoint::decode(bad_tracker).expect("decodes").tracker(config(), 0).expect_err("tracker v5");
        assert!(matches!(e, CheckpointError::Tracker(RestoreError::Version { found: 5 })), "{e}");
    }
}
