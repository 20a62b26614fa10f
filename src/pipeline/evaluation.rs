//! How well a camera read a video, against ground truth (`kvs-infer evaluate`): which plates it
//! published exactly, misread or missed, which tracks were junk (no plate there), and how many
//! extra tracks a plate made.
//!
//! Ground truth is JSON (documented in the README, "Evaluate"):
//!
//! ```json
//! { "fps": 25,
//!   "plates": [ { "text": "AB12 CDE", "frames": [40, 160], "box": [x1, y1, x2, y2], "tags": ["night"] },
//!               { "text": "KVS 2026", "seconds": [1.6, 6.4] } ] }
//! ```
//!
//! A plate is visible over `frames` (first and last decoded frame, 0-based, at `fps`) or
//! `seconds` (stream time); `box`, optional, is where it is in any frame of that span (pixels),
//! and a track matches it only where their boxes overlap. An `optional` plate (too small to
//! require, say) counts neither way: reading it is no junk, missing it no miss. Texts are compared normalised (upper
//! case, `A–Z0–9` only).
//!
//! Each published track (its events grouped by track id; its text the last one published) is
//! matched to the truth plate it overlaps in time (and place) whose text is most alike, if that
//! is at least a third alike (1 − edit distance / length); tracks without text are not scored. A plate
//! is *read* when one of its tracks carries its exact text, *misread* when tracks matched it but
//! none read it exactly, *missed* when none did. A track that matches no plate is *junk*; every
//! track a plate has beyond the first is *extra*.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tracker::similarity;
use crate::config::text_rules::normalise;
use crate::geometry::{BBox, iou};

/// The ground truth of one video (other top-level keys, e.g. a generator's notes, are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    /// Frames per second of the video, for plates given in `frames`.
    pub fps: Option<f64>,
    pub plates: Vec<TruthPlate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthPlate {
    pub text: String,
    /// First and last frame it is visible in (0-based, decoded frames at `fps`).
    pub frames: Option<[u64; 2]>,
    /// Or: first and last second of stream time it is visible.
    pub seconds: Option<[f64; 2]>,
    /// Where it is (pixels), when known: a track must overlap it.
    #[serde(rename = "box")]
    pub bbox: Option<BBox>,
    /// Conditions (`night`, `blur`, `far`, …): the score is broken down by them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A plate not required to be read (too small, say): reading it is no junk, missing it is
    /// no miss.
    #[serde(default)]
    pub optional: bool,
}

/// Why ground truth cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("ground truth is not valid JSON of the documented form")]
    Json(#[from] serde_json::Error),
    #[error("plates[{index}] ({text:?}): {problem}")]
    Plate { index: usize, text: String, problem: &'static str },
}

impl Truth {
    pub fn parse(json: &str) -> Result<Self, TruthError> {
        let truth: Truth = serde_json::from_str(json)?;
        for (index, p) in truth.plates.iter().enumerate() {
            let problem = match (&p.frames, &p.seconds) {
                (Some(_), Some(_)) => Some("give `frames` or `seconds`, not both"),
                (None, None) => Some("give `frames` or `seconds`"),
                (Some(_), None) if truth.fps.is_none_or(|f| !(f.is_finite() && f > 0.0)) => {
                    Some("`frames` needs a positive top-level `fps`")
                }
                (Some([a, b]), None) if a > b => Some("`frames` must be [first, last]"),
                (None, Some([a, b])) if !(a.is_finite() && b.is_finite() && a <= b) => {
                    Some("`seconds` must be [first, last]")
                }
                _ if normalise(&p.text).is_empty() => Some("`text` has no letter or digit"),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(TruthError::Plate { index, text: p.text.clone(), problem });
            }
        }
        Ok(truth)
    }

    /// The span a plate is visible over, in seconds (a frame's worth added at the end).
    fn span(&self, p: &TruthPlate) -> (f64, f64) {
        match (p.frames, p.seconds, self.fps) {
            (Some([a, b]), _, Some(fps)) => (a as f64 / fps, (b + 1) as f64 / fps),
            (_, Some([a, b]), _) => (a, b),
            _ => (0.0, 0.0),
        }
    }
}

/// A published track, from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedTrack {
    /// `pass:track_id` (a looping file's passes keep ids apart).
    pub key: String,
    /// The text of its last event (`None`: not a text track).
    pub text: Option<String>,
    /// First and last second it was seen (stream time).
    pub seen: (f64, f64),
    pub bbox: BBox,
}

impl PublishedTrack {
    /// The tracks in a list of events (the JSON `run-file` and the sinks write), in order of
    /// their first event.
    pub fn from_events(events: &[serde_json::Value]) -> Vec<PublishedTrack> {
        let mut order = Vec::new();
        let mut tracks: BTreeMap<String, PublishedTrack> = BTreeMap::new();
        for e in events {
            let pass = e["event_id"].as_str().and_then(|id| id.split(':').nth(1)).unwrap_or("0");
            let key = format!("{pass}:{}", e["track_id"]);
            let f = |k: &str| e[k].as_f64().unwrap_or(0.0);
            let bbox = e["box"]
                .as_array()
                .map(|b| std::array::from_fn(|i| b.get(i).and_then(serde_json::Value::as_f64).unwrap_or(0.0) as f32))
                .unwrap_or_default();
            let entry = tracks.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                PublishedTrack { key, text: None, seen: (f("first_seen"), f("last_seen")), bbox }
            });
            entry.text = e["text"].as_str().map(str::to_owned).or(entry.text.take());
            entry.seen = (entry.seen.0.min(f("first_seen")), entry.seen.1.max(f("last_seen")));
            entry.bbox = bbox;
        }
        order.into_iter().filter_map(|k| tracks.remove(&k)).collect()
    }
}

/// What became of one truth plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Read,
    Misread,
    Missed,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlateScore {
    pub text: String,
    pub outcome: Outcome,
    /// The texts its tracks published.
    pub published: Vec<Option<String>>,
    pub tags: Vec<String>,
    /// Not required (left out of the tallies).
    pub optional: bool,
}

/// Counts over some of the plates (all, or one tag).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub plates: usize,
    pub read: usize,
    pub misread: usize,
    pub missed: usize,
    /// Read exactly / plates (1 with no plates).
    pub recall: f64,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.plates += 1;
        match o {
            Outcome::Read => self.read += 1,
            Outcome::Misread => self.misread += 1,
            Outcome::Missed => self.missed += 1,
        }
        self.recall = self.read as f64 / self.plates as f64;
    }
}

/// The score of a run against ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub total: Tally,
    pub by_tag: BTreeMap<String, Tally>,
    /// Published tracks that match no plate, with their texts.
    pub junk: Vec<Option<String>>,
    /// Tracks beyond the first, summed over plates.
    pub extra_tracks: usize,
    /// Optional plates (not in the tallies) read exactly.
    pub optional_read: usize,
    pub plates: Vec<PlateScore>,
}

/// A track's text at least this alike to a plate in view is an attempt at it (a misread at
/// worst); less alike, it is other text: junk.
const SAME_PLATE: f32 = 0.34;
/// Slack (seconds) when judging whether a track and a plate overlap in time.
const TIME_SLACK: f64 = 0.25;

/// Scores `tracks` against `truth`.
pub fn score(truth: &Truth, tracks: &[PublishedTrack]) -> Score {
    let mut matched: Vec<Vec<usize>> = vec![Vec::new(); truth.plates.len()];
    let mut junk = Vec::new();
    // Tracks with no text (a detector's `car`) are not plate readings: not scored.
    for (ti, t) in tracks.iter().enumerate().filter(|(_, t)| t.text.is_some()) {
        let best = truth
            .plates
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                let (from, to) = truth.span(p);
                t.seen.0 <= to + TIME_SLACK
                    && t.seen.1 >= from - TIME_SLACK
                    && p.bbox.is_none_or(|b| iou(&b, &t.bbox) > 0.0 || contains(&b, &t.bbox))
            })
            .map(|(pi, p)| {
                let alike = t.text.as_deref().map_or(0.0, |x| similarity(&normalise(x), &normalise(&p.text)));
                (pi, alike)
            })
            .filter(|(_, a)| *a >= SAME_PLATE)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        match best {
            Some((pi, _)) => matched[pi].push(ti),
            None => junk.push(t.text.clone()),
        }
    }
    let mut total = Tally::default();
    let mut by_tag: BTreeMap<String, Tally> = BTreeMap::new();
    let mut plates = Vec::new();
    let (mut extra_tracks, mut optional_read) = (0, 0);
    for (p, tis) in truth.plates.iter().zip(&matched) {
        let want = normalise(&p.text);
        let published: Vec<Option<String>> = tis.iter().map(|&ti| tracks[ti].text.clone()).collect();
        let outcome = if published.iter().flatten().any(|t| normalise(t) == want) {
            Outcome::Read
        } else if published.is_empty() {
            Outcome::Missed
        } else {
            Outcome::Misread
        };
        extra_tracks += tis.len().saturating_sub(1);
        plates.push(PlateScore {
            text: p.text.clone(),
            outcome,
            published,
            tags: p.tags.clone(),
            optional: p.optional,
        });
        if p.optional {
            optional_read += usize::from(outcome == Outcome::Read);
            continue;
        }
        total.add(outcome);
        for tag in &p.tags {
            by_tag.entry(tag.clone()).or_default().add(outcome);
        }
    }
    if total.plates == 0 {
        total.recall = 1.0;
    }
    Score { total, by_tag, junk, extra_tracks, optional_read, plates }
}

fn contains(outer: &BBox, inner: &BBox) -> bool {
    inner[0] >= outer[0] && inner[1] >= outer[1] && inner[2] <= outer[2] && inner[3] <= outer[3]
}

impl Score {
    /// The table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |name: &str, t: &Tally| {
            format!(
                "| {name} | {} | {} | {} | {} | {:.1} % |\n",
                t.plates,
                t.read,
                t.misread,
                t.missed,
                t.recall * 100.0
            )
        };
        out.push_str("| plates | n | read | misread | missed | recall |\n|---|---|---|---|---|---|\n");
        out.push_str(&row("all", &self.total));
        for (tag, t) in &self.by_tag {
            out.push_str(&row(tag, t));
        }
        out.push_str(&format!("\njunk tracks: {}", self.junk.len()));
        if !self.junk.is_empty() {
            let texts: Vec<&str> = self.junk.iter().map(|t| t.as_deref().unwrap_or("-")).collect();
            out.push_str(&format!(" ({})", texts.join(", ")));
        }
        out.push_str(&format!("\nextra tracks: {}\n", self.extra_tracks));
        if self.optional_read > 0 {
            out.push_str(&format!("optional plates read: {}\n", self.optional_read));
        }
        for p in self.plates.iter().filter(|p| p.outcome != Outcome::Read && !p.optional) {
            let got: Vec<&str> = p.published.iter().map(|t| t.as_deref().unwrap_or("-")).collect();
            out.push_str(&format!(
                "{:?} {}: {}\n",
                p.outcome,
                p.text,
                if got.is_empty() { "-".into() } else { got.join(", ") }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(pass: u32, track: u64, text: &str, first: f64, last: f64, bbox: [f32; 4]) -> serde_json::Value {
        json!({"event_id": format!("cam:{pass}:{track}:new:0"), "track_id": track, "text": text,
               "first_seen": first, "last_seen": last, "box": bbox})
    }

    fn truth() -> Truth {
        Truth::parse(
            r#"{"fps": 10, "plates": [
                {"text": "AB12 CDE", "frames": [10, 40], "tags": ["day"]},
                {"text": "XY34ZZZ", "seconds": [3.0, 6.0], "box": [0, 0, 100, 100], "tags": ["night", "far"]},
                {"text": "KA01AB1234", "seconds": [8.0, 9.0], "tags": ["night"]},
                {"text": "TN09BZ2204", "seconds": [10.0, 11.0], "optional": true}
            ]}"#,
        )
        .expect("truth")
    }

    #[test]
    fn plates_are_read_misread_or_missed_and_other_tracks_are_junk() {
        let events = vec![
            event(0, 1, "AB12CDE", 1.2, 3.5, [10.0, 10.0, 50.0, 20.0]),
            event(0, 1, "AB12CDE", 1.2, 3.9, [10.0, 10.0, 50.0, 20.0]),
            event(0, 2, "AB12COE", 2.0, 2.5, [10.0, 10.0, 50.0, 20.0]),
            event(0, 3, "XY34ZZ2", 3.5, 5.0, [10.0, 10.0, 50.0, 20.0]),
            event(0, 4, "XY34ZZZ", 3.5, 5.0, [500.0, 500.0, 550.0, 520.0]),
            event(0, 5, "BUSONLY", 7.0, 7.5, [10.0, 10.0, 50.0, 20.0]),
            event(0, 6, "TN09BZ2204", 10.2, 10.8, [10.0, 10.0, 50.0, 20.0]),
        ];
        let tracks = PublishedTrack::from_events(&events);
        assert_eq!(tracks.len(), 6);
        assert_eq!(tracks[0].seen, (1.2, 3.9));
        let s = score(&truth(), &tracks);
        let outcomes: Vec<Outcome> = s.plates.iter().map(|p| p.outcome).collect();
        assert_eq!(outcomes, [Outcome::Read, Outcome::Misread, Outcome::Missed, Outcome::Read]);
        assert_eq!(s.optional_read, 1, "read, but out of the tallies; and no junk");
        assert_eq!(s.extra_tracks, 1, "AB12CDE made two tracks");
        // Outside the plate's box, and nothing at all at 7 s: junk.
        assert_eq!(s.junk, [Some("XY34ZZZ".to_owned()), Some("BUSONLY".to_owned())]);
        assert_eq!((s.total.plates, s.total.read, s.total.misread, s.total.missed), (3, 1, 1, 1));
        assert_eq!(s.by_tag["night"], Tally { plates: 2, read: 0, misread: 1, missed: 1, recall: 0.0 });
        assert_eq!(s.by_tag["day"].recall, 1.0);
        let table = s.table();
        assert!(table.contains("| all | 3 | 1 | 1 | 1 | 33.3 % |"), "{table}");
        assert!(table.contains("junk tracks: 2 (XY34ZZZ, BUSONLY)"), "{table}");
    }

    #[test]
    fn passes_of_a_looping_file_are_tracks_apart() {
        let events = vec![event(0, 1, "AB12CDE", 1.0, 2.0, [0.0; 4]), event(1, 1, "AB12CDE", 1.0, 2.0, [0.0; 4])];
        assert_eq!(PublishedTrack::from_events(&events).len(), 2);
    }

    #[test]
    fn bad_truth_names_the_plate_and_the_problem() {
        let err = |json: &str| Truth::parse(json).expect_err("bad").to_string();
        assert!(err(r#"{"plates": [{"text": "A", "frames": [1, 2]}]}"#).contains("needs a positive top-level `fps`"));
        assert!(err(r#"{"plates": [{"text": "A"}]}"#).contains("plates[0] (\"A\"): give `frames` or `seconds`"));
        assert!(err(r#"{"plates": [{"text": "--", "seconds": [1, 2]}]}"#).contains("no letter or digit"));
        assert!(err(r#"{"plates": [{"text": "A", "seconds": [2, 1]}]}"#).contains("[first, last]"));
        assert!(err(r#"{"plate": []}"#).contains("not valid JSON"));
    }
}
