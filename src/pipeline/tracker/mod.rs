//! Tracking with temporal smoothing: observations of consecutive sampled frames become tracks
//! with stable ids, and tracks become `new` / `update` / `end` events.
//!
//! - Motion: each track carries a constant-velocity Kalman filter on its box's centre and size
//!   in stream time ([`kalman`]), so an approaching plate that moves more than its own height
//!   between two sampled frames is looked for where it is going, not where it was.
//! - Association (greedy, best pairs first, same label only): a track and an observation pair
//!   when the observation overlaps the predicted (or the last) box by `tracking.iou`, or its
//!   centre lies within `max_distance` box diagonals of the predicted centre (twice that before
//!   the track's speed is known) at a plausible size. Among pairs, overlap, nearness and, for
//!   text, how alike the readings are ([`track::similarity`]) decide.
//! - Two passes (ByteTrack): observations first, then low ones (a box whose reading fits no
//!   `text_rules`) for the tracks still unmatched; a low observation moves and keeps a track but
//!   never starts or confirms one.
//! - Confirmation: a track is reported once it matched in `min_hits` of the last `window`
//!   frames (M of N), so a one-frame flicker never becomes an event.
//! - Ghosts: a low observation no track takes starts a ghost, which follows the rejected text
//!   (painted road text, a sign) without ever being reported. Once it was rejected twice at a
//!   place it keeps, a reading there that is a part or a misread of it (`BU5`, `BUSON1` for
//!   `BUS ONLY`) joins the ghost instead of starting a track, though it fits a rule: what a car
//!   half hides or the night blurs of a painted text makes no event.
//! - Lost and found: a confirmed track unmatched for more than `max_age` frames is lost, not
//!   ended; it ends once unseen for `max_lost` of stream time. A lost track is found again by the
//!   same reading near where it was (or was going), or by its very place: an occluded painted
//!   text or a plate hidden behind another car makes no second `new`.
//! - Score: the median of the track's recent scores (Frigate's rule).
//! - Text: every reading weighs its confidence times the text's size; alike readings cluster
//!   (misreads of one plate vote together) and the heaviest cluster's heaviest reading is the
//!   text, so one bad or small read does not flip it. The `end` event shows the frame the text was
//!   read best on (largest × most confident), with the box there.
//! - Settled readings ([`Tracker::settled_lines`]): a confirmed text track whose last readings
//!   all agree with its vote, confidently, offers its reading to the next frame's OCR, which then
//!   skips recognition for the box that matches (`cameras[].ocr.read_once`). Reused readings do
//!   not vote: the vote stays what the recognised readings made it.
//!
//! Its state serialises ([`Tracker::snapshot`] / [`Tracker::restore`]), motion models included:
//! checkpoints store it so a camera that moves to another task goes on with the same tracks, ids,
//! votes and predictions, and publishes the same events.

mod kalman;
#[cfg(test)]
mod tests;
mod track;

use serde::Serialize;

use crate::config::TrackingConfig;
use crate::config::read_once::ReadOnceConfig;
use crate::geometry::{BBox, iou};
use crate::infer::model::KnownLines;
use track::Track;
pub use track::similarity;

/// One thing seen in one frame, after ROI and filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Detection label, or `text` for a line of text.
    pub label: String,
    pub text: Option<String>,
    pub score: f32,
    pub bbox: [f32; 4],
    pub zone: String,
    /// The detector's confidence in the box (for text, the text detector's; else `score`).
    pub box_score: f32,
    /// The text is a settled reading reused, not recognised on this frame.
    pub reused: bool,
    /// Only for tracks already there (the second pass): its reading fits no text rule.
    pub low: bool,
}

/// What changed about a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    New,
    Update,
    End,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::End => "end",
        }
    }
}

/// A track as an event reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackState {
    pub track_id: u64,
    pub label: String,
    pub text: Option<String>,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub zone: String,
    /// Frame timestamps (ns, stream time) of the first and last match.
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// The frame an event's snapshot shows: the last match's; for `end`, the frame the text
    /// was read best on (and `bbox` is its box there).
    #[serde(skip)]
    pub shown_ns: i64,
}

/// Size ratio (area) between an observation and a track's predicted box beyond which they are
/// not the same thing, unless they overlap.
const MAX_AREA_RATIO: f32 = 4.0;
/// A lost track is looked for this many times further than `max_distance`, by its reading.
const REFIND_RANGE: f32 = 3.0;
/// A ghost takes parts of its text once it was rejected this often...
const GHOST_EVIDENCE: u32 = 2;
/// ...while it stays within this many box diagonals of where it was first seen...
const GHOST_DRIFT: f32 = 0.5;
/// ...for a box overlapping it by this IoU at least (a part of a text is a part of its box).
const GHOST_OVERLAP: f32 = 0.2;

/// Per-camera tracker. Feed it every analysed frame, in order.
#[derive(Debug)]
pub struct Tracker {
    config: TrackingConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

/// The tracker's resumable state (a camera checkpoint carries it): versioned, so a later format
/// can refuse an older one.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrackerSnapshot {
    version: u32,
    next_id: u64,
    tracks: Vec<Track>,
}

impl TrackerSnapshot {
    /// Open tracks (confirmed or not).
    pub fn tracks(&self) -> usize {
        self.tracks.len()
    }
}

const SNAPSHOT_VERSION: u32 = 1;

/// Why a snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the tracker snapshot is not valid")]
    Json(#[from] serde_json::Error),
    #[error("tracker snapshot version {found} (this build reads {SNAPSHOT_VERSION})")]
    Version { found: u32 },
}

impl Tracker {
    pub fn new(config: TrackingConfig) -> Self {
        Self { config, tracks: Vec::new(), next_id: 1 }
    }

    /// The tracker's resumable state.
    pub fn state(&self) -> TrackerSnapshot {
        TrackerSnapshot { version: SNAPSHOT_VERSION, next_id: self.next_id, tracks: self.tracks.clone() }
    }

    /// A tracker in the state [`Tracker::state`] recorded.
    pub fn from_state(config: TrackingConfig, s: TrackerSnapshot) -> Result<Self, RestoreError> {
        if s.version != SNAPSHOT_VERSION {
            return Err(RestoreError::Version { found: s.version });
        }
        Ok(Self { config, tracks: s.tracks, next_id: s.next_id })
    }

    /// The tracker's state as JSON.
    pub fn snapshot(&self) -> String {
        serde_json::to_string(&self.state()).unwrap_or_default()
    }

    /// A tracker in the state a [`Tracker::snapshot`] recorded.
    pub fn restore(config: TrackingConfig, snapshot: &str) -> Result<Self, RestoreError> {
        Self::from_state(config, serde_json::from_str(snapshot)?)
    }

    /// Folds in one frame's observations; returns the events it causes.
    pub fn update(&mut self, frame_ns: i64, observations: Vec<Observation>) -> Vec<(EventKind, TrackState)> {
        let window = self.config.window as usize;
        let mut track_used = vec![false; self.tracks.len()];
        let mut obs_used = vec![false; observations.len()];
        // First pass: observations that may start tracks; second: the low ones, for the tracks
        // still unmatched that are not lost.
        for low in [false, true] {
            for (ti, oi) in self.associate(frame_ns, &observations, low, &track_used, &obs_used) {
                (track_used[ti], obs_used[oi]) = (true, true);
                self.tracks[ti].observe(&observations[oi], frame_ns, window);
            }
        }
        for (t, used) in self.tracks.iter_mut().zip(&track_used) {
            if !used {
                t.misses += 1;
                t.push_hit(false, window);
            }
        }
        for (o, used) in observations.iter().zip(obs_used) {
            if used {
                continue;
            }
            // A low observation no track took is rejected text: a ghost follows it. Ghosts use
            // ids of their own (never reported), so reported ids stay what they were.
            if o.low {
                self.tracks.push(Track::start_ghost(0, frame_ns, o));
            } else {
                self.tracks.push(Track::start(self.next_id, frame_ns, o));
                self.next_id += 1;
            }
        }
        self.decide(frame_ns)
    }

    /// Greedy association of one pass: every admissible pair, best first; each track and each
    /// observation at most once.
    fn associate(
        &self,
        frame_ns: i64,
        observations: &[Observation],
        low: bool,
        track_used: &[bool],
        obs_used: &[bool],
    ) -> Vec<(usize, usize)> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            // Low observations are for tracks that are not lost (ghosts take theirs lost or not).
            if track_used[ti] || (low && t.ghost.is_none() && t.lost(self.config.max_age)) {
                continue;
            }
            // Decided once per track, not once per pair.
            let text = t.text();
            for (oi, o) in observations.iter().enumerate() {
                if obs_used[oi] || o.low != low || t.label != o.label {
                    continue;
                }
                if let Some(priority) = self.pair(t, text.as_deref(), o, frame_ns) {
                    pairs.push((priority, ti, oi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let (mut tracks, mut obs) = (track_used.to_vec(), obs_used.to_vec());
        let mut matched = Vec::new();
        for (_, ti, oi) in pairs {
            if !tracks[ti] && !obs[oi] {
                (tracks[ti], obs[oi]) = (true, true);
                matched.push((ti, oi));
            }
        }
        matched
    }

    /// Whether track `t` (whose text is `text`) may take observation `o` on this frame, and how
    /// well they fit (higher is better): `None` when they are not the same thing.
    fn pair(&self, t: &Track, text: Option<&str>, o: &Observation, frame_ns: i64) -> Option<f32> {
        let cfg = &self.config;
        let predicted = t.predicted(frame_ns);
        let overlap = iou(&predicted, &o.bbox).max(iou(&t.bbox, &o.bbox));
        if let Some(ghost) = &t.ghost {
            // Rejected text again at its place; or, at a painted text's place (a ghost that
            // stays put, seen rejected twice), a part or misread of it that fitted a rule. Below
            // every real track's pair: a plate that has a track keeps it.
            let painted = ghost.rejections >= GHOST_EVIDENCE && centre_distance(&ghost.origin, &t.bbox) <= GHOST_DRIFT;
            let part = o.text.as_deref().zip(text).is_some_and(|(r, g)| track::fragment_of(r, g));
            let admissible = if o.low { overlap >= cfg.iou } else { painted && part && overlap >= GHOST_OVERLAP };
            return admissible.then_some(overlap - 2.0);
        }
        if o.low {
            // The second pass (ByteTrack's): by overlap alone (`associate` left lost tracks out).
            return (overlap >= cfg.iou).then_some(overlap);
        }
        let distance = centre_distance(&predicted, &o.bbox).min(centre_distance(&t.bbox, &o.bbox));
        let ratio = area(&o.bbox) / area(&predicted).max(1.0);
        let plausible_size = (1.0 / MAX_AREA_RATIO..=MAX_AREA_RATIO).contains(&ratio);
        let reach = cfg.max_distance * if t.has_rate() { 1.0 } else { 2.0 };
        let alike = match (text, &o.text) {
            (Some(a), Some(b)) => Some(similarity(a, b)),
            _ => None,
        };
        let same_text = alike.is_some_and(|s| s >= cfg.text_similarity);
        let admissible = if t.lost(cfg.max_age) {
            // Found again: the same reading near where it was or was going, or its very place
            // (a reading there, if any, must not say otherwise).
            (same_text && plausible_size && distance <= reach * REFIND_RANGE)
                || (overlap >= cfg.iou && alike.is_none_or(|s| s >= cfg.text_similarity))
        } else {
            overlap >= cfg.iou || (plausible_size && distance <= reach)
        };
        admissible
            .then(|| overlap + 0.5 * (1.0 - distance / (reach * REFIND_RANGE)).max(0.0) + 0.5 * alike.unwrap_or(0.0))
    }

    /// The settled readings of the tracks seen on the last frame: confirmed text tracks whose
    /// last `readings` recognised readings are all their winning text with at least `min_score`,
    /// and that have not reused it `max_reuse` frames in a row. Empty when `read_once` is off.
    pub fn settled_lines(&self, cfg: &ReadOnceConfig) -> KnownLines {
        if !cfg.enabled {
            return KnownLines::default();
        }
        KnownLines { lines: self.tracks.iter().filter_map(|t| t.settled(cfg)).collect(), max_resize: cfg.max_resize }
    }

    /// Confirmation, updates and ends.
    fn decide(&mut self, frame_ns: i64) -> Vec<(EventKind, TrackState)> {
        let min_hits = self.config.min_hits as usize;
        let (max_age, max_lost) = (self.config.max_age, self.config.max_lost);
        let mut events = Vec::new();
        let mut kept = Vec::with_capacity(self.tracks.len());
        for mut t in std::mem::take(&mut self.tracks) {
            if t.lost(max_age) {
                let unseen = u64::try_from(frame_ns - t.last_seen_ns).unwrap_or(0);
                let kept_while_lost = t.confirmed || t.ghost.is_some();
                if !kept_while_lost || unseen >= u64::try_from(max_lost.as_nanos()).unwrap_or(u64::MAX) {
                    if t.confirmed {
                        events.push((EventKind::End, t.final_state()));
                    }
                    continue;
                }
            }
            if t.ghost.is_some() {
                kept.push(t);
                continue;
            }
            if !t.confirmed && t.hits.iter().filter(|h| **h).count() >= min_hits {
                t.confirmed = true;
                let s = t.state();
                t.reported = Some((s.label.clone(), s.text.clone(), s.zone.clone()));
                events.push((EventKind::New, s));
            } else if t.confirmed && t.misses == 0 {
                let s = t.state();
                let now = (s.label.clone(), s.text.clone(), s.zone.clone());
                if t.reported.as_ref() != Some(&now) {
                    t.reported = Some(now);
                    events.push((EventKind::Update, s));
                }
            }
            kept.push(t);
        }
        self.tracks = kept;
        events
    }

    /// Ends every confirmed track (end of the stream, shutdown).
    pub fn finish(&mut self) -> Vec<(EventKind, TrackState)> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(|t| t.confirmed)
            .map(|t| (EventKind::End, t.final_state()))
            .collect()
    }

    /// The frames some open track was seen best on (stream ns): the camera keeps those
    /// pictures for the tracks' `end` snapshots.
    pub fn best_frames(&self) -> std::collections::BTreeSet<i64> {
        self.tracks.iter().filter(|t| t.ghost.is_none()).filter_map(|t| t.best.as_ref().map(|b| b.at_ns)).collect()
    }

    /// Settling frames motion gating owed after the last frame (carried in the snapshot).
    /// Every open track's box (confirmed or not, seen lately or not).
    pub fn boxes(&self) -> Vec<[f32; 4]> {
        self.tracks.iter().map(|t| t.bbox).collect()
    }

    /// The tracks matched on the last frame, and whether each is confirmed (ghosts left out).
    pub fn seen(&self) -> Vec<(TrackState, bool)> {
        self.tracks.iter().filter(|t| t.misses == 0 && t.ghost.is_none()).map(|t| (t.state(), t.confirmed)).collect()
    }

    /// Tracks alive that may be reported (confirmed or not, lost ones included; ghosts not).
    pub fn len(&self) -> usize {
        self.tracks.iter().filter(|t| t.ghost.is_none()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn area(b: &BBox) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Distance between two boxes' centres in units of the larger box's diagonal.
fn centre_distance(a: &BBox, b: &BBox) -> f32 {
    let centre = |r: &BBox| ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
    let diagonal = |r: &BBox| (r[2] - r[0]).hypot(r[3] - r[1]);
    let ((ax, ay), (bx, by)) = (centre(a), centre(b));
    (ax - bx).hypot(ay - by) / diagonal(a).max(diagonal(b)).max(1.0)
}
