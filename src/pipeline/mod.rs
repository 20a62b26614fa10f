//! The per-camera pipeline after inference: sampling, zones and filters, tracking with temporal
//! smoothing, and events.
//!
//! | module | owns |
//! |---|---|
//! | [`camera`] | one camera's flow from source to events |
//! | [`events`] | the versioned event record sinks receive |
//! | [`sampler`] | target-fps sampling by stream time; the drop-oldest hand-off to inference |
//! | [`roi`] | zones (polygons, anchor point) and per-label filters |
//! | [`supervisor`] | starting every camera, restarting failed ones, wiring KVS sources and checkpoints |
//! | [`tracker`] | IoU tracking, M-of-N confirmation, median score, text vote, new/update/end |

pub mod camera;
pub mod events;
pub mod roi;
pub mod sampler;
pub mod supervisor;
pub mod tracker;
