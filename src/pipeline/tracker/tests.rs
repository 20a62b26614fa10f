//! The tracker's behaviour frame by frame: confirmation, ends, votes, settled readings, the
//! snapshot; and the motion model's part: fast plates, occlusion, low observations.

use std::time::Duration;

use super::*;

const FRAME: i64 = 200_000_000;

/// The tracker as it was before the motion model's lost state (`max_lost` 0): a track unseen for
/// more than `max_age` frames ends.
fn cfg() -> TrackingConfig {
    TrackingConfig {
        iou: 0.3,
        max_age: 2,
        min_hits: 3,
        window: 5,
        max_lost: Duration::ZERO,
        ..TrackingConfig::default()
    }
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
        low: false,
    }
}

type Events = Vec<(usize, EventKind, u64, Option<String>)>;

/// Runs frames through a tracker; returns (frame index, kind, track id, text) per event.
fn run(frames: Vec<Vec<Observation>>) -> Events {
    run_with(cfg(), frames)
}

fn run_with(config: TrackingConfig, frames: Vec<Vec<Observation>>) -> Events {
    let mut t = Tracker::new(config);
    let mut out = Vec::new();
    for (i, f) in frames.into_iter().enumerate() {
        for (k, s) in t.update(i as i64 * FRAME, f) {
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
            for (k, s) in t.update(i as i64 * FRAME, f) {
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
    assert!(settled_after(&[("A8", 0.95), ("AB", 0.95), ("AB", 0.95), ("AB", 0.95)]), "older readings do not count");
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

/// A plate `h` px high (4h wide) whose top-left corner is at (`x`, `y`).
fn plate(x: f32, y: f32, h: f32, text: &str) -> Observation {
    Observation { bbox: [x, y, x + 4.0 * h, y + h], ..obs("text", 0.0, Some(text), 0.9) }
}

fn news(events: &Events) -> Vec<u64> {
    events.iter().filter(|e| e.1 == EventKind::New).map(|e| e.2).collect()
}

#[test]
fn an_approaching_plate_moving_more_than_its_height_per_frame_is_one_track() {
    // 10 px high at first, growing 2 px and moving down 3 heights a frame: no IoU at all between
    // two frames. Misreads on the far frames must not split it either.
    let frames: Vec<Vec<Observation>> = (0..10)
        .map(|i| {
            let h = 10.0 + 2.0 * i as f32;
            let text = if i < 2 { "A812CD" } else { "AB12CDE" };
            vec![plate(300.0 - i as f32 * 4.0, 100.0 + 30.0 * i as f32 * (1.0 + i as f32 * 0.1), h, text)]
        })
        .collect();
    for (i, w) in frames.windows(2).enumerate() {
        assert_eq!(iou(&w[0][0].bbox, &w[1][0].bbox), 0.0, "frames {i} and {} do not overlap", i + 1);
    }
    let events = run_with(TrackingConfig::default(), frames);
    assert_eq!(news(&events), vec![1], "{events:?}");
    let end = events.iter().find(|e| e.1 == EventKind::End).expect("end");
    assert_eq!(end.3.as_deref(), Some("AB12CDE"), "the larger, later readings win");
}

#[test]
fn two_plates_driving_side_by_side_keep_their_ids() {
    let frames: Vec<Vec<Observation>> = (0..8)
        .map(|i| {
            let y = 50.0 + 40.0 * i as f32;
            vec![plate(100.0, y, 12.0, "AB12CDE"), plate(220.0, y + 5.0, 12.0, "XY34ZZZ")]
        })
        .collect();
    let events = run_with(TrackingConfig::default(), frames);
    assert_eq!(news(&events), vec![1, 2], "{events:?}");
    for e in &events {
        let want = if e.2 == 1 { "AB12CDE" } else { "XY34ZZZ" };
        assert_eq!(e.3.as_deref(), Some(want), "{e:?}");
    }
}

#[test]
fn an_occluded_painted_text_comes_back_as_the_same_track() {
    // Seen for a second, hidden by a passing car for 1.4 s (7 frames, past max_age), seen again.
    let frames: Vec<Vec<Observation>> = (0..20)
        .map(|i| if (5..12).contains(&i) { vec![] } else { vec![plate(400.0, 500.0, 20.0, "BUSONLY")] })
        .collect();
    let events = run_with(TrackingConfig::default(), frames.clone());
    assert_eq!(news(&events), vec![1], "one new, no second after the occlusion: {events:?}");
    assert_eq!(events.len(), 2, "new, then end at the finish: {events:?}");
    // The old rule (max_lost 0) made it two tracks.
    assert_eq!(news(&run(frames)).len(), 2);
}

#[test]
fn a_plate_hidden_for_a_second_is_found_again_further_along_its_way() {
    let frames: Vec<Vec<Observation>> = (0..16)
        .map(|i| {
            let y = 100.0 + 25.0 * i as f32;
            if (6..11).contains(&i) { vec![] } else { vec![plate(200.0, y, 14.0 + i as f32 * 0.5, "KA01AB1234")] }
        })
        .collect();
    let events = run_with(TrackingConfig::default(), frames);
    assert_eq!(news(&events), vec![1], "{events:?}");
}

#[test]
fn a_different_text_where_a_lost_track_was_is_a_new_track() {
    let mut frames: Vec<Vec<Observation>> = (0..5).map(|_| vec![plate(100.0, 100.0, 20.0, "AB12CDE")]).collect();
    frames.extend((0..5).map(|_| vec![]));
    frames.extend((0..5).map(|_| vec![plate(100.0, 100.0, 20.0, "XY99ZZZ")]));
    let events = run_with(TrackingConfig::default(), frames);
    assert_eq!(news(&events), vec![1, 2], "{events:?}");
}

#[test]
fn a_lost_track_ends_once_unseen_for_max_lost() {
    let config = TrackingConfig { max_lost: Duration::from_secs(1), ..TrackingConfig::default() };
    let mut frames: Vec<Vec<Observation>> = (0..4).map(|_| vec![obs("car", 0.0, None, 0.9)]).collect();
    frames.extend((0..10).map(|_| vec![]));
    let events = run_with(config, frames);
    // Last seen at frame 3; ended on the first frame 1 s (5 frames) later.
    assert_eq!(events, vec![(2, EventKind::New, 1, None), (8, EventKind::End, 1, None)]);
}

#[test]
fn low_observations_keep_a_track_but_never_start_or_confirm_one() {
    let low = |x: f32| Observation { low: true, text: None, ..obs("text", x, None, 0.9) };
    assert!(run_with(TrackingConfig::default(), (0..6).map(|i| vec![low(i as f32)]).collect()).is_empty());
    // Seen twice, then only as low: never confirmed (min_hits 3), but kept alive.
    let mut t = Tracker::new(TrackingConfig::default());
    t.update(0, vec![obs("text", 0.0, Some("AB12CDE"), 0.9)]);
    t.update(FRAME, vec![obs("text", 1.0, Some("AB12CDE"), 0.9)]);
    for i in 2..8 {
        assert!(t.update(i * FRAME, vec![low(i as f32)]).is_empty());
        assert_eq!(t.seen().len(), 1, "frame {i}: kept by the low observation");
    }
    // Seen again for real: one hit in the last five frames, still tentative.
    let events = t.update(8 * FRAME, vec![obs("text", 8.0, Some("AB12CDE"), 0.9)]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_restored_snapshot_of_moving_and_lost_tracks_goes_on_exactly_as_the_uninterrupted_one() {
    let frames: Vec<Vec<Observation>> = (0..24)
        .map(|i| {
            let mut f = Vec::new();
            if !(8..13).contains(&i) {
                f.push(plate(150.0, 60.0 + 33.0 * i as f32, 10.0 + i as f32 * 0.7, "MH12AB1234"));
            }
            if i % 4 != 3 {
                f.push(plate(500.0, 300.0, 18.0, "BUSONLY"));
            }
            f
        })
        .collect();
    let config = TrackingConfig::default();
    let whole = run_with(config.clone(), frames.clone());
    assert_eq!(news(&whole).len(), 2, "{whole:?}");
    for cut in 1..frames.len() {
        let mut t = Tracker::new(config.clone());
        let mut out = Vec::new();
        for (i, f) in frames.iter().cloned().enumerate() {
            if i == cut {
                let snapshot = t.snapshot();
                t = Tracker::restore(config.clone(), &snapshot).expect("restore");
                assert_eq!(t.snapshot(), snapshot, "the snapshot round-trips");
            }
            for (k, s) in t.update(i as i64 * FRAME, f) {
                out.push((i, k, s.track_id, s.text));
            }
        }
        out.extend(t.finish().into_iter().map(|(k, s)| (usize::MAX, k, s.track_id, s.text)));
        assert_eq!(out, whole, "cut before frame {cut}");
    }
}

#[test]
fn a_checkpoint_from_before_the_motion_model_still_reads() {
    let mut t = Tracker::new(cfg());
    for i in 0..3 {
        t.update(i * FRAME, vec![obs("car", i as f32, None, 0.9)]);
    }
    let mut snapshot: serde_json::Value = serde_json::from_str(&t.snapshot()).expect("json");
    snapshot["tracks"][0].as_object_mut().expect("track").remove("motion");
    let mut old = Tracker::restore(cfg(), &snapshot.to_string()).expect("an older snapshot");
    assert!(old.update(3 * FRAME, vec![obs("car", 3.0, None, 0.9)]).is_empty(), "the same track goes on");
    assert_eq!(old.len(), 1);
}

#[test]
fn parts_and_misreads_of_rejected_text_make_no_track() {
    // BUS ONLY painted in the lane: rejected by the text rules (low), then half hidden by a car
    // (BU5) or misread at night (BUSON1), both of which fit a permissive format.
    let painted = |text: &str, low: bool, w: f32| Observation {
        low,
        bbox: [400.0, 550.0, 400.0 + w, 578.0],
        ..obs("text", 0.0, Some(text), 0.9)
    };
    let mut frames: Vec<Vec<Observation>> = (0..4).map(|_| vec![painted("BUSONLY", true, 250.0)]).collect();
    frames.extend((0..4).map(|_| vec![painted("BU5", false, 110.0)]));
    frames.extend((0..4).map(|_| vec![painted("BUSON1", false, 250.0)]));
    // A plate driving over it in the meantime is a track of its own.
    for (i, f) in frames.iter_mut().enumerate().skip(4).take(6) {
        f.push(plate(420.0, 200.0 + 60.0 * i as f32, 14.0, "AB12CDE"));
    }
    let events = run_with(TrackingConfig::default(), frames);
    let texts: Vec<_> = events.iter().filter(|e| e.1 == EventKind::New).map(|e| e.3.clone()).collect();
    assert_eq!(texts, [Some("AB12CDE".to_owned())], "{events:?}");
    // Reported ids are not used up by ghosts.
    assert_eq!(news(&events), vec![1]);
}

#[test]
fn the_end_event_shows_where_the_text_was_read_best() {
    let mut t = Tracker::new(TrackingConfig::default());
    let mut states = Vec::new();
    // Growing as it approaches; read most clearly on frame 4 (large and confident).
    for i in 0..6 {
        let score = if i == 4 { 0.99 } else { 0.85 };
        let o = Observation { score, ..plate(100.0, 100.0 + 30.0 * i as f32, 10.0 + 3.0 * i as f32, "AB12CDE") };
        states.extend(t.update(i * FRAME, vec![o]));
    }
    assert_eq!(t.best_frames().into_iter().collect::<Vec<_>>(), vec![4 * FRAME]);
    let (kind, end) = t.finish().pop().expect("end");
    assert_eq!(kind, EventKind::End);
    assert_eq!((end.shown_ns, end.last_seen_ns), (4 * FRAME, 5 * FRAME));
    assert_eq!(end.bbox, plate(100.0, 220.0, 22.0, "").bbox, "the box on the best frame");
    assert!(states.iter().all(|(_, s)| s.shown_ns == s.last_seen_ns), "new and update show their own frame");
}

#[test]
fn misreads_of_one_plate_vote_together_against_other_text() {
    // Same box throughout: a plate read right twice and wrong in two ways, and once as a sign.
    let reads = ["AB12CDE", "BUSONLY", "AB12C0E", "BUSONLY", "A812CDE", "AB12CDE", "BUSONLY"];
    let frames = reads.iter().enumerate().map(|(i, r)| vec![obs("text", i as f32, Some(r), 0.9)]).collect();
    let events = run(frames);
    let end = events.iter().find(|e| e.1 == EventKind::End).expect("end");
    assert_eq!(end.3.as_deref(), Some("AB12CDE"), "4 readings of the plate outweigh 3 of the sign: {events:?}");
}

#[test]
fn a_detection_track_ends_on_the_frame_it_was_seen_best() {
    let mut t = Tracker::new(TrackingConfig::default());
    for (i, score) in [0.6, 0.95, 0.7, 0.65].into_iter().enumerate() {
        t.update(i as i64 * FRAME, vec![obs("car", i as f32, None, score)]);
    }
    let (_, end) = t.finish().pop().expect("end");
    assert_eq!((end.shown_ns, end.last_seen_ns), (FRAME, 3 * FRAME), "the most confident sighting");
}
