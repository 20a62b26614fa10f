//! The per-camera pipeline after inference: sampling, zones and filters, tracking with temporal
//! smoothing, and events.
//!
//! | module | owns |
//! |---|---|
//! | [`camera`] | one camera's flow from source to events |
//! | [`checkpoint`] | a camera's resumable state (tracks, motion gate, pass), versioned |
//! | [`feed`] | the decode thread: frame stream → sampler → pacing → hand-off |
//! | [`catch_up`] | how far behind live a camera is: live (drop-oldest), catch-up (no drops), skip ahead |
//! | [`live`] | what the live page shows of each camera: latest picture, tracks, rates |
//! | [`events`] | the versioned event record sinks receive |
//! | [`sampler`] | target-fps sampling by stream time; the drop-oldest hand-off to inference |
//! | [`roi`] | zones (polygons, anchor point) and per-label filters |
//! | [`supervisor`] | starting every camera on its source, restarting failed ones with backoff |
//! | [`privacy`] | detections pixelated in the pictures made of a frame (`privacy.blur`) |
//! | [`text_rules`] | a camera's text rules applied to its readings: plates normalised, other text low |
//! | [`tracker`] | motion-model tracking (Kalman, distance, two passes, lost and found), M-of-N confirmation, median score, text vote, new/update/end |
//! | [`evaluation`] | ground truth of a video and the score of a camera's events against it (`evaluate`) |

pub mod camera;
pub mod catch_up;
pub mod checkpoint;
pub mod evaluation;
pub mod events;
pub mod feed;
pub mod live;
pub mod motion;
pub mod privacy;
pub mod roi;
pub mod sampler;
pub mod supervisor;
pub mod text_rules;
pub mod tracker;
