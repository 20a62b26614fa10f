//! The event record every sink receives (schema version 2, documented in `docs/events.md`).
//!
//! An event is a function of the stream, not of the run: analysing the same fragments from the
//! same checkpoint with the same configuration gives the same events, ids included (only
//! `emitted_at` differs), so consumers can drop what at-least-once delivery repeats.

use serde::{Deserialize, Serialize};

use super::tracker::{EventKind, TrackState};
use crate::config::CameraId;
use crate::media::FragmentMeta;
use crate::media::image::RgbImage;

/// Version of the event JSON; bumped on incompatible changes (2: `event_id` no longer names the
/// run, so a restart repeats the ids of the events it publishes again).
pub const SCHEMA_VERSION: u32 = 2;

/// One event, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    /// `{camera}:{pass}:{track_id}:{type}:{last_seen_ns}`: the stream position of the event
    /// (`pass` counts the times a looping file started over, else 0; track ids continue across
    /// restarts through the checkpoint), so the same event published again has the same id.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub camera: String,
    pub track_id: u64,
    pub label: String,
    pub text: Option<String>,
    /// The watchlist entry its text matches (`cameras[].watchlists`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<crate::config::watchlist::WatchlistMatch>,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub zone: String,
    /// Stream time of the first and last frame the track was seen in, in seconds.
    pub first_seen: f64,
    pub last_seen: f64,
    /// KVS fragment of the frame that produced the event, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timestamp: Option<String>,
    /// Ids of the models that produced it.
    pub models: Vec<String>,
    /// Where its snapshot was written, if one was: `s3://{bucket}/{key}` when the S3 sink is
    /// configured, else the local sink's file path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Wall-clock time the event entered the outbox, Unix seconds (absent on `run-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_at: Option<f64>,
}

/// An event, with the frame it happened on (for snapshots) when it is `new` or `end`.
#[derive(Debug)]
pub struct EventWithFrame {
    pub event: Event,
    pub frame: Option<RgbImage>,
    /// Answered with the event's receipt once it is in the durable outbox (its sequence
    /// number; dropped unanswered by a consumer that keeps no outbox). The camera waits for it
    /// before a frame counts as done, and its checkpoint waits until the sinks have delivered up
    /// to the receipt: a checkpoint never passes an event that a lost disk could take with it.
    pub stored: Option<tokio::sync::oneshot::Sender<u64>>,
}

impl EventWithFrame {
    /// An event for a consumer that need not say when it is stored.
    pub fn new(event: Event, frame: Option<RgbImage>) -> Self {
        Self { event, frame, stored: None }
    }
}

/// Where events come from: one camera's stream.
#[derive(Debug, Clone)]
pub struct EventOrigin {
    pub camera: CameraId,
    /// How many times a looping file source has started over (its timestamps start over with
    /// it); 0 for every other source.
    pub pass: u64,
    /// Ids of the models the camera runs.
    pub models: Vec<String>,
}

impl EventOrigin {
    pub fn new(camera: &CameraId, pass: u64, models: Vec<String>) -> Self {
        Self { camera: camera.clone(), pass, models }
    }
}

impl Event {
    pub fn new(origin: &EventOrigin, kind: EventKind, state: TrackState, fragment: Option<&FragmentMeta>) -> Self {
        let (camera, models) = (&origin.camera, &origin.models);
        let kind_name = kind.as_str();
        Self {
            schema: SCHEMA_VERSION,
            event_id: format!("{camera}:{}:{}:{kind_name}:{}", origin.pass, state.track_id, state.last_seen_ns),
            kind,
            camera: camera.0.clone(),
            track_id: state.track_id,
            label: state.label,
            text: state.text,
            watchlist: None,
            score: state.score,
            bbox: state.bbox,
            zone: state.zone,
            first_seen: state.first_seen_ns as f64 / 1e9,
            last_seen: state.last_seen_ns as f64 / 1e9,
            fragment_number: fragment.and_then(|f| f.fragment_number.as_ref().map(ToString::to_string)),
            producer_timestamp: fragment.and_then(|f| f.producer_timestamp.map(|t| t.to_string())),
            server_timestamp: fragment.and_then(|f| f.server_timestamp.map(|t| t.to_string())),
            models: models.to_vec(),
            snapshot: None,
            emitted_at: None,
        }
    }
}
