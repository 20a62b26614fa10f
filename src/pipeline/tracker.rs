//! Tracking with temporal smoothing: observations of consecutive sampled frames become tracks
//! with stable ids, and tracks become `new` / `update` / `end` events.
//!
//! - Association: greedy by IoU (best pairs first), same label only, IoU >= `tracking.iou`.
//! - Confirmation: a track is reported once it matched in `min_hits` of the last `window`
//!   frames (M of N), so a one-frame flicker never becomes an event.
//! - Score: the median of the track's recent scores (Frigate's rule).
//! - Text: a vote over every reading weighted by its confidence, so one bad read does not flip
//!   the track's text.
//! - End: after `max_age` frames without a match.
//! - Settled readings ([`Tracker::settled_lines`]): a confirmed text track whose last readings
//!   all agree with its vote, confidently, offers its reading to the next frame's OCR, which then
//!   skips recognition for the box that matches (`cameras[].ocr.read_once`). Reused readings do
//!   not vote: the vote stays what the recognised readings made it.
//!
//! Its state serialises ([`Tracker::snapshot`] / [`Tracker::restore`]): checkpoints store it so a
//! camera that moves to another task goes on with the same tracks, ids and votes.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::config::TrackingConfig;
use crate::config::read_once::{READINGS_RANGE, ReadOnceConfig};
use crate::geometry::iou;
use crate::infer::model::{KnownLine, KnownLines};

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
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Track {
    id: u64,
    label: String,
    bbox: [f32; 4],
    zone: String,
    hits: VecDeque<bool>,
    scores: VecDeque<f32>,
    votes: BTreeMap<String, f32>,
    misses: u32,
    confirmed: bool,
    first_seen_ns: i64,
    last_seen_ns: i64,
    reported: Option<(String, Option<String>, String)>,
    /// The latest recognised readings, oldest first.
    #[serde(default)]
    readings: VecDeque<(String, f32)>,
    /// Box size and detector confidence when the text was last recognised.
    #[serde(default)]
    read_size: [f32; 2],
    #[serde(default)]
    read_box_score: f32,
    /// Frames in a row that reused the reading instead of recognising it.
    #[serde(default)]
    reuses: u32,
}

impl Track {
    fn text(&self) -> Option<String> {
        self.votes.iter().max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(t, _)| t.clone())
    }

    fn score(&self) -> f32 {
        let mut s: Vec<f32> = self.scores.iter().copied().collect();
        s.sort_by(f32::total_cmp);
        match s.len() {
            0 => 0.0,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    fn state(&self) -> TrackState {
        TrackState {
            track_id: self.id,
            label: self.label.clone(),
            text: self.text(),
            score: self.score(),
            bbox: self.bbox,
            zone: self.zone.clone(),
            first_seen_ns: self.first_seen_ns,
            last_seen_ns: self.last_seen_ns,
        }
    }

    /// The track is seen again in `o`.
    fn observe(&mut self, o: &Observation, frame_ns: i64, window: usize) {
        self.bbox = o.bbox;
        self.zone.clone_from(&o.zone);
        self.misses = 0;
        self.last_seen_ns = frame_ns;
        self.push_hit(true, window);
        self.scores.push_back(o.score);
        while self.scores.len() > window {
            self.scores.pop_front();
        }
        if let Some(text) = &o.text {
            self.read(text, o);
        }
    }

    /// A reading of the track's text: recognised (it votes) or reused.
    fn read(&mut self, text: &str, o: &Observation) {
        if o.reused {
            self.reuses += 1;
            return;
        }
        *self.votes.entry(text.to_owned()).or_default() += o.score;
        self.readings.push_back((text.to_owned(), o.score));
        while self.readings.len() > *READINGS_RANGE.end() as usize {
            self.readings.pop_front();
        }
        self.read_size = [o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]];
        self.read_box_score = o.box_score;
        self.reuses = 0;
    }

    /// The track's reading, if it is settled (see [`Tracker::settled_lines`]).
    fn settled(&self, cfg: &ReadOnceConfig) -> Option<KnownLine> {
        let n = cfg.readings as usize;
        if !self.confirmed || self.misses > 0 || self.reuses >= cfg.max_reuse || self.readings.len() < n {
            return None;
        }
        let text = self.text()?;
        let latest = self.readings.iter().skip(self.readings.len() - n);
        if !latest.clone().all(|(t, score)| *t == text && *score >= cfg.min_score) {
            return None;
        }
        let score = self.readings.back().map_or(0.0, |r| r.1);
        Some(KnownLine { bbox: self.bbox, read_size: self.read_size, box_score: self.read_box_score, text, score })
    }

    fn push_hit(&mut self, hit: bool, window: usize) {
        self.hits.push_back(hit);
        while self.hits.len() > window {
            self.hits.pop_front();
        }
    }
}

/// Per-camera tracker. Feed it every sampled frame, in order.
#[derive(Debug)]
pub struct Tracker {
    config: TrackingConfig,
    tracks: Vec<Track>,
    next_id: u64,
    /// Settling frames motion gating owed after the last frame (`pipeline::motion`): not the
    /// tracker's, but the other half of a camera's resumable state, so it travels in the same
    /// snapshot.
    motion_settle: u32,
}

/// What [`Tracker::snapshot`] writes: versioned, so a later format can refuse an older one.
#[derive(Serialize, serde::Deserialize)]
struct Snapshot {
    version: u32,
    next_id: u64,
    tracks: Vec<Track>,
    #[serde(default)]
    motion_settle: u32,
}

const SNAPSHOT_VERSION: u32 = 1;

impl Tracker {
    pub fn new(config: TrackingConfig) -> Self {
        Self { config, tracks: Vec::new(), next_id: 1, motion_settle: 0 }
    }

    /// The tracker's state as JSON.
    pub fn snapshot(&self) -> String {
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            next_id: self.next_id,
            tracks: self.tracks.clone(),
            motion_settle: self.motion_settle,
        };
        serde_json::to_string(&snapshot).unwrap_or_default()
    }

    /// A tracker in the state a [`Tracker::snapshot`] recorded.
    pub fn restore(config: TrackingConfig, snapshot: &str) -> Result<Self, String> {
        let s: Snapshot = serde_json::from_str(snapshot).map_err(|e| e.to_string())?;
        if s.version != SNAPSHOT_VERSION {
            return Err(format!("tracker snapshot version {} (this build reads {SNAPSHOT_VERSION})", s.version));
        }
        Ok(Self { config, tracks: s.tracks, next_id: s.next_id, motion_settle: s.motion_settle })
    }

    /// Folds in one frame's observations; returns the events it causes.
    pub fn update(&mut self, frame_ns: i64, observations: Vec<Observation>) -> Vec<(EventKind, TrackState)> {
        let window = self.config.window as usize;
        let (track_used, obs_used) = self.associate(frame_ns, &observations);
        for (t, used) in self.tracks.iter_mut().zip(&track_used) {
            if !used {
                t.misses += 1;
                t.push_hit(false, window);
            }
        }
        for (o, used) in observations.into_iter().zip(obs_used) {
            if !used {
                self.start_track(frame_ns, o);
            }
        }
        self.decide()
    }

    /// Greedy association: all same-label pairs above the IoU threshold, best first; each
    /// matched track takes its observation. Returns which tracks and observations matched.
    fn associate(&mut self, frame_ns: i64, observations: &[Observation]) -> (Vec<bool>, Vec<bool>) {
        let window = self.config.window as usize;
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (oi, o) in observations.iter().enumerate() {
                if t.label == o.label {
                    let overlap = iou(&t.bbox, &o.bbox);
                    if overlap >= self.config.iou {
                        pairs.push((overlap, ti, oi));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut track_used, mut obs_used) = (vec![false; self.tracks.len()], vec![false; observations.len()]);
        for (_, ti, oi) in pairs {
            if track_used[ti] || obs_used[oi] {
                continue;
            }
            (track_used[ti], obs_used[oi]) = (true, true);
            self.tracks[ti].observe(&observations[oi], frame_ns, window);
        }
        (track_used, obs_used)
    }

    fn start_track(&mut self, frame_ns: i64, o: Observation) {
        let mut track = Track {
            id: self.next_id,
            label: o.label.clone(),
            bbox: o.bbox,
            zone: o.zone.clone(),
            hits: VecDeque::from([true]),
            scores: VecDeque::from([o.score]),
            votes: BTreeMap::new(),
            misses: 0,
            confirmed: false,
            first_seen_ns: frame_ns,
            last_seen_ns: frame_ns,
            reported: None,
            readings: VecDeque::new(),
            read_size: [0.0; 2],
            read_box_score: 0.0,
            reuses: 0,
        };
        if let Some(text) = &o.text {
            track.read(text, &o);
        }
        self.tracks.push(track);
        self.next_id += 1;
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
    fn decide(&mut self) -> Vec<(EventKind, TrackState)> {
        let min_hits = self.config.min_hits as usize;
        let max_age = self.config.max_age;
        let mut events = Vec::new();
        let mut kept = Vec::with_capacity(self.tracks.len());
        for mut t in std::mem::take(&mut self.tracks) {
            if t.misses > max_age {
                if t.confirmed {
                    events.push((EventKind::End, t.state()));
                }
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
            .map(|t| (EventKind::End, t.state()))
            .collect()
    }

    /// Settling frames motion gating owed after the last frame (carried in the snapshot).
    pub fn motion_settle(&self) -> u32 {
        self.motion_settle
    }

    pub fn set_motion_settle(&mut self, frames: u32) {
        self.motion_settle = frames;
    }

    /// Every open track's box (confirmed or not, seen lately or not).
    pub fn boxes(&self) -> Vec<[f32; 4]> {
        self.tracks.iter().map(|t| t.bbox).collect()
    }

    /// The tracks matched on the last frame, and whether each is confirmed.
    pub fn seen(&self) -> Vec<(TrackState, bool)> {
        self.tracks.iter().filter(|t| t.misses == 0).map(|t| (t.state(), t.confirmed)).collect()
    }

    /// Tracks alive (confirmed or not).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TrackingConfig {
        TrackingConfig { iou: 0.3, max_age: 2, min_hits: 3, window: 5, idle_end: None }
    }

    fn obs(label: &str, x: f32, text: Option<&str>, score: f32) -> Observation {
        Observation {
            label: label.into(),
            text: text.map(Into::into),
            score,
            bbox: [x, 10.0, x + 40.0, 30.0],
            zone: "frame".into(),
            box_score: 0.9,
            reused: false,
        }
    }

    /// Runs frames through a tracker; returns (frame index, kind, track id, text) per event.
    fn run(frames: Vec<Vec<Observation>>) -> Vec<(usize, EventKind, u64, Option<String>)> {
        let mut t = Tracker::new(cfg());
        let mut out = Vec::new();
        for (i, f) in frames.into_iter().enumerate() {
            for (k, s) in t.update(i as i64 * 200_000_000, f) {
                out.push((i, k, s.track_id, s.text));
            }
        }
        for (k, s) in t.finish() {
            out.push((usize::MAX, k, s.track_id, s.text));
        }
        out
    }

    #[test]
    fn a_restored_snapshot_goes_on_exactly_as_the_uninterrupted_tracker() {
        let frames: Vec<Vec<Observation>> = (0..12)
            .map(|i| match i {
                0..=6 => vec![
                    obs("text", i as f32, Some(if i == 3 { "B0GUS" } else { "AB123" }), 0.8),
                    obs("car", 90.0, None, 0.7),
                ],
                7 => vec![obs("car", 90.0, None, 0.7)],
                _ => vec![],
            })
            .collect();
        let whole = run(frames.clone());
        for cut in 1..frames.len() {
            let mut t = Tracker::new(cfg());
            let mut out = Vec::new();
            for (i, f) in frames.iter().cloned().enumerate() {
                if i == cut {
                    t = Tracker::restore(cfg(), &t.snapshot()).expect("restore");
                }
                for (k, s) in t.update(i as i64 * 200_000_000, f) {
                    out.push((i, k, s.track_id, s.text));
                }
            }
            out.extend(t.finish().into_iter().map(|(k, s)| (usize::MAX, k, s.track_id, s.text)));
            assert_eq!(out, whole, "cut before frame {cut}");
        }
        assert!(Tracker::restore(cfg(), "{\"version\":99,\"next_id\":1,\"tracks\":[]}").is_err());
        assert!(Tracker::restore(cfg(), "not json").is_err());
    }

    #[test]
    fn confirmed_after_m_of_n_and_ended_after_max_age() {
        let frames = vec![vec![obs("car", 0.0, None, 0.9)]; 4].into_iter().chain(vec![vec![]; 3]).collect();
        assert_eq!(run(frames), vec![(2, EventKind::New, 1, None), (6, EventKind::End, 1, None)]);
    }

    #[test]
    fn a_brief_flicker_is_never_an_event() {
        let frames =
            vec![vec![obs("car", 0.0, None, 0.9)], vec![obs("car", 2.0, None, 0.9)], vec![], vec![], vec![], vec![]];
        assert!(run(frames).is_empty());
    }

    #[test]
    fn a_missed_frame_keeps_the_track() {
        let frames = vec![
            vec![obs("car", 0.0, None, 0.9)],
            vec![obs("car", 4.0, None, 0.9)],
            vec![], // missed
            vec![obs("car", 12.0, None, 0.9)],
            vec![obs("car", 16.0, None, 0.9)],
        ];
        let events = run(frames);
        assert_eq!(events.iter().filter(|e| e.1 == EventKind::New).count(), 1);
        assert!(events.iter().all(|e| e.2 == 1), "one track id throughout: {events:?}");
    }

    #[test]
    fn crossing_objects_keep_their_ids() {
        // Two cars moving towards each other; labels differ, so they never swap.
        let frames: Vec<Vec<Observation>> = (0..6)
            .map(|i| vec![obs("car", i as f32 * 10.0, None, 0.9), obs("bus", 60.0 - i as f32 * 10.0, None, 0.9)])
            .collect();
        let news: Vec<u64> = run(frames).iter().filter(|e| e.1 == EventKind::New).map(|e| e.2).collect();
        assert_eq!(news, vec![1, 2]);
    }

    #[test]
    fn one_bad_read_does_not_flip_the_text() {
        let reads = ["B 1234 XY", "B 1234 XY", "8 1Z34 XY", "B 1234 XY", "B 1234 XY"];
        let frames = reads.iter().enumerate().map(|(i, r)| vec![obs("text", i as f32, Some(r), 0.9)]).collect();
        let events = run(frames);
        assert!(events.iter().all(|e| e.3.as_deref() == Some("B 1234 XY")), "{events:?}");
        assert_eq!(events.iter().filter(|e| e.1 == EventKind::Update).count(), 0);
    }

    #[test]
    fn a_confident_new_reading_is_an_update() {
        let mut frames: Vec<Vec<Observation>> = (0..3).map(|i| vec![obs("text", i as f32, Some("OLD"), 0.6)]).collect();
        frames.extend((3..8).map(|i| vec![obs("text", i as f32, Some("NEW"), 0.95)]));
        let events = run(frames);
        let updates: Vec<_> = events.iter().filter(|e| e.1 == EventKind::Update).collect();
        assert_eq!(updates.len(), 1, "{events:?}");
        assert_eq!(updates[0].3.as_deref(), Some("NEW"));
    }

    #[test]
    fn score_is_the_median() {
        let mut t = Tracker::new(TrackingConfig { min_hits: 1, ..cfg() });
        let mut last = None;
        for s in [0.9, 0.1, 0.8, 0.85, 0.2] {
            for (_, st) in t.update(0, vec![obs("car", 0.0, None, s)]) {
                last = Some(st);
            }
        }
        // Updates fire only on changes; the state carries the median of the window.
        let state = t.finish().pop().expect("track").1;
        assert_eq!(state.score, 0.8);
        assert!(last.is_some());
    }

    #[test]
    fn a_settled_reading_is_offered_until_it_is_reused_max_reuse_times() {
        let cfg_once = ReadOnceConfig { readings: 3, min_score: 0.9, max_reuse: 2, ..ReadOnceConfig::default() };
        let mut t = Tracker::new(cfg());
        for i in 0..3 {
            t.update(i, vec![obs("text", i as f32, Some("AB 123"), 0.95), obs("car", 90.0, None, 0.9)]);
            // Not before three readings (and confirmation).
            assert_eq!(t.settled_lines(&cfg_once).lines.is_empty(), i < 2, "frame {i}");
        }
        let known = t.settled_lines(&cfg_once);
        assert_eq!(known.lines.len(), 1, "only the text track: {known:?}");
        let line = &known.lines[0];
        assert_eq!((line.text.as_str(), line.read_size, line.box_score), ("AB 123", [40.0, 20.0], 0.9));
        assert!(t.settled_lines(&ReadOnceConfig { enabled: false, ..cfg_once }).lines.is_empty(), "off");
        // Two reused frames: then the line must be recognised again.
        for i in 3..5 {
            let reused = Observation { reused: true, ..obs("text", i as f32, Some("AB 123"), 0.95) };
            t.update(i, vec![reused]);
        }
        assert!(t.settled_lines(&cfg_once).lines.is_empty(), "max_reuse reached");
        // A recognised reading resets the count and still agrees.
        t.update(5, vec![obs("text", 5.0, Some("AB 123"), 0.95)]);
        assert_eq!(t.settled_lines(&cfg_once).lines.len(), 1);
        // A missed frame: not offered (the track was not seen on the last frame).
        t.update(6, vec![]);
        assert!(t.settled_lines(&cfg_once).lines.is_empty());
    }

    #[test]
    fn a_disputed_or_unsure_reading_is_not_settled() {
        let cfg_once = ReadOnceConfig::default();
        let settled_after = |reads: &[(&str, f32)]| {
            let mut t = Tracker::new(cfg());
            for (i, (text, score)) in reads.iter().enumerate() {
                t.update(i as i64, vec![obs("text", i as f32, Some(text), *score)]);
            }
            !t.settled_lines(&cfg_once).lines.is_empty()
        };
        assert!(settled_after(&[("AB", 0.95), ("AB", 0.95), ("AB", 0.95)]));
        assert!(!settled_after(&[("AB", 0.95), ("A8", 0.95), ("AB", 0.95)]), "one of the last three disagrees");
        assert!(!settled_after(&[("AB", 0.95), ("AB", 0.85), ("AB", 0.95)]), "one below min_score");
        assert!(
            settled_after(&[("A8", 0.95), ("AB", 0.95), ("AB", 0.95), ("AB", 0.95)]),
            "older readings do not count"
        );
        // Reused readings do not vote: the snapshot keeps the recognised ones.
        let mut t = Tracker::new(cfg());
        for i in 0..3 {
            t.update(i, vec![obs("text", i as f32, Some("AB"), 0.95)]);
        }
        t.update(3, vec![Observation { reused: true, ..obs("text", 3.0, Some("AB"), 0.95) }]);
        let restored = Tracker::restore(cfg(), &t.snapshot()).expect("restore");
        assert_eq!(restored.snapshot(), t.snapshot());
        assert!(t.snapshot().contains("\"reuses\":1"), "{}", t.snapshot());
    }
}
