//! One track: where it is and where it goes (its motion model), how often it was seen, what it
//! reads (the vote), and what was last reported of it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::kalman::BoxMotion;
use super::{Observation, TrackState};
use crate::config::read_once::{READINGS_RANGE, ReadOnceConfig};
use crate::config::text_rules::{edit_distance, edit_row};
use crate::infer::model::KnownLine;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Track {
    pub id: u64,
    pub label: String,
    /// The box last observed.
    pub bbox: [f32; 4],
    pub zone: String,
    pub hits: VecDeque<bool>,
    pub scores: VecDeque<f32>,
    /// Each text read, with its weight: confidence × √(text height in px), so a large, clear
    /// reading outweighs a small, doubtful one.
    pub votes: BTreeMap<String, f32>,
    /// Analysed frames in a row without a match.
    pub misses: u32,
    pub confirmed: bool,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub reported: Option<(String, Option<String>, String)>,
    /// The latest recognised readings, oldest first.
    #[serde(default)]
    pub readings: VecDeque<(String, f32)>,
    /// Box size and detector confidence when the text was last recognised.
    #[serde(default)]
    pub read_size: [f32; 2],
    #[serde(default)]
    pub read_box_score: f32,
    /// Frames in a row that reused the reading instead of recognising it.
    #[serde(default)]
    pub reuses: u32,
    /// Where the box goes (absent in checkpoints written before the motion model: made from
    /// the last box on first use).
    #[serde(default)]
    pub motion: Option<BoxMotion>,
    /// A ghost: text that fits no rule (painted road text, a sign), followed so that its parts
    /// and misreads, which may fit a rule, do not become tracks. Never reported; its votes are
    /// its rejected readings.
    #[serde(default)]
    pub ghost: Option<Ghost>,
    /// The best recognised reading: where and when (its frame is the `end` event's picture).
    #[serde(default)]
    pub best: Option<BestRead>,
}

/// Readings at least this alike (1 − edit distance / length) are taken as readings of one plate
/// when a track's text is decided.
const SAME_PLATE: f32 = 0.7;

/// A track's best sighting: confidence × box (text) height, the highest so far; for a text
/// track only recognised readings count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BestRead {
    pub quality: f32,
    pub at_ns: i64,
    pub bbox: [f32; 4],
}

/// What a ghost track knows besides a track's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Ghost {
    /// Where it was first seen: a ghost that moved is no painted text.
    pub origin: [f32; 4],
    /// Rejected readings folded in.
    pub rejections: u32,
}

impl Track {
    pub fn start(id: u64, frame_ns: i64, o: &Observation) -> Self {
        let mut track = Track {
            id,
            label: o.label.clone(),
            bbox: o.bbox,
            zone: o.zone.clone(),
            hits: VecDeque::from([!o.low]),
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
            motion: Some(BoxMotion::new(&o.bbox, frame_ns)),
            ghost: None,
            best: None,
        };
        match &o.text {
            Some(text) => track.read(text, o, frame_ns),
            None if !o.low => track.keep_if_best(o.score * (o.bbox[3] - o.bbox[1]).max(1.0), frame_ns, o.bbox),
            None => {}
        }
        track
    }

    /// A ghost track for a low observation no track took: its rejected reading.
    pub fn start_ghost(id: u64, frame_ns: i64, o: &Observation) -> Self {
        let position = Observation { text: None, ..o.clone() };
        let mut track =
            Track { ghost: Some(Ghost { origin: o.bbox, rejections: 0 }), ..Self::start(id, frame_ns, &position) };
        track.hits.clear();
        track.reject(o);
        track
    }

    /// A rejected reading seen by a ghost.
    fn reject(&mut self, o: &Observation) {
        if let (Some(ghost), Some(text)) = (self.ghost.as_mut(), &o.text) {
            ghost.rejections = ghost.rejections.saturating_add(1);
            *self.votes.entry(text.clone()).or_default() += 1.0;
        }
    }

    /// The motion model (made from the last box for a track restored from an older checkpoint).
    pub fn motion(&self) -> BoxMotion {
        self.motion.clone().unwrap_or_else(|| BoxMotion::new(&self.bbox, self.last_seen_ns))
    }

    /// Whether the motion model has measured the track's speed (two sightings or more).
    pub fn has_rate(&self) -> bool {
        self.motion.as_ref().is_some_and(BoxMotion::has_rate)
    }

    /// Where the box is expected at `frame_ns`.
    pub fn predicted(&self, frame_ns: i64) -> [f32; 4] {
        match &self.motion {
            Some(m) => m.predicted(frame_ns),
            None => self.bbox,
        }
    }

    /// The track's text, decided over its whole life as Frigate does: readings are clustered by
    /// how alike they are (misreads of one plate fall together), the cluster with the most
    /// weight wins, and its heaviest reading is the text. A plate read `AB12CDE` twice and
    /// `AB12C0E`, `A812CDE` once each outweighs a sign read `BUSONLY` three times.
    pub fn text(&self) -> Option<String> {
        let mut readings: Vec<(&String, f32)> = self.votes.iter().map(|(t, w)| (t, *w)).collect();
        readings.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        // Greedy: each reading joins the first cluster whose leader (its heaviest) it is alike.
        let mut clusters: Vec<(&String, f32)> = Vec::new();
        for (text, weight) in readings {
            match clusters.iter_mut().find(|(leader, _)| similarity(leader, text) >= SAME_PLATE) {
                Some(cluster) => cluster.1 += weight,
                None => clusters.push((text, weight)),
            }
        }
        let mut best: Option<(&String, f32)> = None;
        for (leader, total) in clusters {
            if best.is_none_or(|b| total > b.1) {
                best = Some((leader, total));
            }
        }
        best.map(|(leader, _)| leader.clone())
    }

    pub fn score(&self) -> f32 {
        let mut s: Vec<f32> = self.scores.iter().copied().collect();
        s.sort_by(f32::total_cmp);
        match s.len() {
            0 => 0.0,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    pub fn state(&self) -> TrackState {
        TrackState {
            track_id: self.id,
            label: self.label.clone(),
            text: self.text(),
            score: self.score(),
            bbox: self.bbox,
            zone: self.zone.clone(),
            first_seen_ns: self.first_seen_ns,
            last_seen_ns: self.last_seen_ns,
            shown_ns: self.last_seen_ns,
        }
    }

    /// The state an `end` event reports: the final text, and the best reading's box and frame.
    pub fn final_state(&self) -> TrackState {
        let mut state = self.state();
        if let Some(best) = &self.best {
            (state.bbox, state.shown_ns) = (best.bbox, best.at_ns);
        }
        state
    }

    /// Not seen for more than `max_age` frames: a confirmed track is lost (it may come back), a
    /// tentative one is gone.
    pub fn lost(&self, max_age: u32) -> bool {
        self.misses > max_age
    }

    /// The track is seen again in `o`. A low observation (ByteTrack's second pass: a box whose
    /// reading fits no text rule) moves the track and keeps it alive, but does not count as a
    /// hit towards confirmation and carries no reading.
    pub fn observe(&mut self, o: &Observation, frame_ns: i64, window: usize) {
        let mut motion = self.motion();
        motion.update(&o.bbox, frame_ns);
        self.motion = Some(motion);
        self.bbox = o.bbox;
        self.zone.clone_from(&o.zone);
        self.misses = 0;
        self.last_seen_ns = frame_ns;
        if self.ghost.is_some() {
            // A ghost counts its rejected readings; a part of it that fitted a rule votes for
            // nothing and confirms nothing.
            if o.low {
                self.reject(o);
            }
            return;
        }
        self.push_hit(!o.low, window);
        if o.low {
            return;
        }
        if o.text.is_none() {
            // A detection is seen best where it is largest and most confident.
            self.keep_if_best(o.score * (o.bbox[3] - o.bbox[1]).max(1.0), frame_ns, o.bbox);
        }
        self.scores.push_back(o.score);
        while self.scores.len() > window {
            self.scores.pop_front();
        }
        if let Some(text) = &o.text {
            self.read(text, o, frame_ns);
        }
    }

    /// A reading of the track's text: recognised (it votes) or reused.
    fn read(&mut self, text: &str, o: &Observation, frame_ns: i64) {
        if o.reused {
            self.reuses += 1;
            return;
        }
        let height = (o.bbox[3] - o.bbox[1]).max(1.0);
        *self.votes.entry(text.to_owned()).or_default() += o.score * height.sqrt();
        self.keep_if_best(o.score * height, frame_ns, o.bbox);
        self.readings.push_back((text.to_owned(), o.score));
        while self.readings.len() > *READINGS_RANGE.end() as usize {
            self.readings.pop_front();
        }
        self.read_size = [o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]];
        self.read_box_score = o.box_score;
        self.reuses = 0;
    }

    /// Makes this the track's best sighting if `quality` beats the one so far.
    fn keep_if_best(&mut self, quality: f32, at_ns: i64, bbox: [f32; 4]) {
        if self.best.as_ref().is_none_or(|b| quality > b.quality) {
            self.best = Some(BestRead { quality, at_ns, bbox });
        }
    }

    /// The track's reading, if it is settled (see `Tracker::settled_lines`).
    pub fn settled(&self, cfg: &ReadOnceConfig) -> Option<KnownLine> {
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

    pub fn push_hit(&mut self, hit: bool, window: usize) {
        self.hits.push_back(hit);
        while self.hits.len() > window {
            self.hits.pop_front();
        }
    }
}

/// Whether `reading` could be a part or a misread of `text` (a ghost's rejected reading): no
/// longer than it, and within one edit per four characters of some stretch of it, look-alikes
/// (O/0, I/1, B/8, S/5, Z/2, G/6) counted as the same character. `BU5` and `BUSON1` are parts of
/// `BUSONLY`; `AB12CDE` is not.
pub fn fragment_of(reading: &str, text: &str) -> bool {
    let fold = |c: char| match c {
        '0' => 'O',
        '1' => 'I',
        '8' => 'B',
        '5' => 'S',
        '2' => 'Z',
        '6' => 'G',
        c => c,
    };
    let (a, b): (Vec<char>, Vec<char>) = (reading.chars().map(fold).collect(), text.chars().map(fold).collect());
    if a.is_empty() || a.len() > b.len() {
        return false;
    }
    // Edit distance of `a` against the best stretch of `b`.
    edit_row(&a, &b, true).into_iter().min().unwrap_or(usize::MAX) <= a.len() / 4
}

/// How alike two readings are: 1 − edit distance / the longer length (1: the same text).
pub fn similarity(a: &str, b: &str) -> f32 {
    let longest = a.chars().count().max(b.chars().count());
    if longest == 0 {
        return 1.0;
    }
    1.0 - edit_distance(a, b) as f32 / longest as f32
}

#[cfg(test)]
mod tests {
    use super::{fragment_of, similarity};

    #[test]
    fn parts_and_misreads_of_a_text_are_fragments_of_it() {
        assert!(fragment_of("BU5", "BUSONLY"));
        assert!(fragment_of("BUSON1", "BUSONLY"), "L read as 1: one edit in six characters");
        assert!(fragment_of("SONLY", "BUSONLY"));
        assert!(!fragment_of("AB12CDE", "BUSONLY"));
        assert!(!fragment_of("AB12CDE", "AB12CD"), "longer than the rejected text: not a part of it");
        assert!(!fragment_of("", "BUSONLY"));
        assert!(!fragment_of("BXS", "BUSONLY"), "short parts must match exactly");
    }

    #[test]
    fn similarity_is_one_minus_the_normalised_edit_distance() {
        assert_eq!(similarity("AB12CDE", "AB12CDE"), 1.0);
        assert!((similarity("AB12CDE", "A812CDE") - 6.0 / 7.0).abs() < 1e-6);
        assert!((similarity("AB12CDE", "B12CDE") - 6.0 / 7.0).abs() < 1e-6, "a missed character");
        assert_eq!(similarity("BUS", "ONLY"), 0.0);
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("", "AB"), 0.0);
    }
}
