//! The event record every sink receives (schema version 1, documented in `docs/events.md`).

use serde::{Deserialize, Serialize};

use super::tracker::{EventKind, TrackState};
use crate::media::FragmentMeta;

/// Version of the event JSON; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One event, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    /// `{camera}:{track_id}:{type}:{last_seen_ns}`: the same event redelivered has the same id.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub camera: String,
    pub track_id: u64,
    pub label: String,
    pub text: Option<String>,
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

impl Event {
    pub fn new(
        camera: &str,
        kind: EventKind,
        state: TrackState,
        fragment: Option<&FragmentMeta>,
        models: &[String],
    ) -> Self {
        let kind_name = kind.as_str();
        Self {
            schema: SCHEMA_VERSION,
            event_id: format!("{camera}:{}:{kind_name}:{}", state.track_id, state.last_seen_ns),
            kind,
            camera: camera.to_owned(),
            track_id: state.track_id,
            label: state.label,
            text: state.text,
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
