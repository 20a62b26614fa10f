//! Cameras: ids, sources, the models they run, zones, filters and tracking.

use std::collections::{BTreeMap, HashSet};

use super::super::schema::*;
use std::time::Duration;

use super::super::{
    CameraId, CameraSpec, CatchUp, ModelId, ModelSpec, SourceSpec, StreamRef, motion, read_once, text_rules,
};
use super::{
    Checker, DEFAULT_MAX_LAG, DEFAULT_SKIP_AFTER, DEFAULT_TARGET_FPS, DYNAMODB_TABLE_NAME_LEN, IDENTIFIER_RULE,
    IDLE_END_RANGE, MAX_DECODER_THREADS, MAX_LAG_RANGE, MAX_STREAM_NAME_LEN, MAX_TARGET_FPS, MAX_TRACK_AGE,
    MAX_ZONE_POINTS, MIN_IDLE_END, MIN_TARGET_FPS, MIN_ZONE_AREA, is_identifier,
};
use crate::geometry;

pub(super) fn check_cameras(
    c: &mut Checker,
    cameras: &[RawCamera],
    models: &BTreeMap<ModelId, ModelSpec>,
    media: &MediaConfig,
) -> Vec<CameraSpec> {
    if cameras.is_empty() {
        c.err("cameras", "at least one camera is required");
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, cam) in cameras.iter().enumerate() {
        let at = format!("cameras[{i}]");
        if !is_identifier(&cam.id) {
            c.err(format!("{at}.id"), format!("camera id {IDENTIFIER_RULE}"));
        } else if !ids.insert(cam.id.as_str()) {
            c.err(format!("{at}.id"), format!("duplicate camera id {:?}", cam.id));
        }
        if let Some(camera) = check_camera(c, &at, cam, models, media) {
            out.push(camera);
        }
    }
    out
}

/// One camera; `None` when its source is unusable (the other problems are still reported).
fn check_camera(
    c: &mut Checker,
    at: &str,
    cam: &RawCamera,
    models: &BTreeMap<ModelId, ModelSpec>,
    media: &MediaConfig,
) -> Option<CameraSpec> {
    let source = check_source(c, &format!("{at}.source"), &cam.source);
    let target_fps = cam.target_fps.unwrap_or(DEFAULT_TARGET_FPS);
    if !(target_fps.is_finite() && (MIN_TARGET_FPS..=MAX_TARGET_FPS).contains(&target_fps)) {
        c.err(format!("{at}.target_fps"), format!("must be in [{MIN_TARGET_FPS}, {MAX_TARGET_FPS}], got {target_fps}"));
    }
    check_camera_models(c, at, cam, models);
    check_roi(c, at, &cam.roi);
    check_filters(c, at, &cam.filters);
    check_tracking(c, at, &cam.tracking);
    let idle_end = idle_end(c, at, &cam.tracking, target_fps);
    let motion = check_motion(c, at, &cam.motion, cam.tracking.max_age);
    let catch_up = check_catch_up(c, at, cam);
    let text_rules = check_text_rules(c, at, cam);
    if !(1..=MAX_DECODER_THREADS).contains(&cam.decoder.threads) {
        let got = cam.decoder.threads;
        c.err(format!("{at}.decoder.threads"), format!("must be in 1..={MAX_DECODER_THREADS}, got {got}"));
    }
    Some(CameraSpec {
        id: CameraId(cam.id.clone()),
        source: source?,
        target_fps,
        keyframes_only: cam.keyframes_only,
        detect: cam.detect.iter().cloned().map(ModelId).collect(),
        ocr: cam.ocr.clone(),
        roi: cam.roi.clone(),
        anchor: cam.anchor,
        filters: cam.filters.clone(),
        tracking: cam.tracking.clone(),
        media: media.clone(),
        decoder: cam.decoder,
        idle_end,
        catch_up,
        motion,
        text_rules,
        privacy: cam.privacy.clone(),
        watchlist_names: cam.watchlists.clone(),
        watchlists: Vec::new(),
    })
}

/// `tracking.idle_end`, or `max_age` sampled frames' worth (at least [`MIN_IDLE_END`]).
fn idle_end(c: &mut Checker, at: &str, t: &TrackingConfig, target_fps: f64) -> Duration {
    match t.idle_end {
        Some(d) => {
            c.duration(format!("{at}.tracking.idle_end"), d, *IDLE_END_RANGE.start(), *IDLE_END_RANGE.end());
            d
        }
        None => {
            let frames = Duration::try_from_secs_f64(f64::from(t.max_age) / target_fps).unwrap_or(MIN_IDLE_END);
            frames.clamp(MIN_IDLE_END, *IDLE_END_RANGE.end())
        }
    }
}

/// `max_lag` and `skip_after`: each in range, the skip beyond the lag.
fn check_catch_up(c: &mut Checker, at: &str, cam: &RawCamera) -> CatchUp {
    let max_lag = cam.max_lag.unwrap_or(DEFAULT_MAX_LAG);
    let skip_after = cam.skip_after.unwrap_or(DEFAULT_SKIP_AFTER);
    let (lo, hi) = (*MAX_LAG_RANGE.start(), *MAX_LAG_RANGE.end());
    c.duration(format!("{at}.max_lag"), max_lag, lo, hi);
    c.duration(format!("{at}.skip_after"), skip_after, lo, hi);
    if skip_after <= max_lag {
        c.err(format!("{at}.skip_after"), format!("must be longer than max_lag ({max_lag:?}), got {skip_after:?}"));
    }
    CatchUp { max_lag, skip_after }
}

/// `detect` names yolo models, `ocr` an ocr model, and the camera runs at least one.
fn check_camera_models(c: &mut Checker, at: &str, cam: &RawCamera, models: &BTreeMap<ModelId, ModelSpec>) {
    for (j, id) in cam.detect.iter().enumerate() {
        match models.get(&ModelId(id.clone())) {
            Some(ModelSpec::Yolo(_)) => {}
            Some(ModelSpec::Ocr(_)) => {
                c.err(format!("{at}.detect[{j}]"), format!("model {id:?} is an ocr model; use `ocr:`"))
            }
            None => c.err(format!("{at}.detect[{j}]"), format!("no model with id {id:?} under `models`")),
        }
    }
    if let Some(ocr) = &cam.ocr {
        match models.get(&ModelId(ocr.model.clone())) {
            Some(ModelSpec::Ocr(_)) => {}
            Some(ModelSpec::Yolo(_)) => {
                c.err(format!("{at}.ocr.model"), format!("model {:?} is a yolo model; use `detect:`", ocr.model))
            }
            None => c.err(format!("{at}.ocr.model"), format!("no model with id {:?} under `models`", ocr.model)),
        }
        if !ocr.within.is_empty() && cam.detect.is_empty() {
            c.err(format!("{at}.ocr.within"), "reads inside detections, but the camera detects nothing (`detect:`)");
        }
        check_read_once(c, &format!("{at}.ocr.read_once"), &ocr.read_once);
    }
    if !cam.privacy.blur.is_empty() && cam.detect.is_empty() {
        c.err(format!("{at}.privacy.blur"), "blurs detections, but the camera detects nothing (`detect:`)");
    }
    for (k, label) in cam.privacy.blur.iter().enumerate() {
        if label.is_empty() {
            c.err(format!("{at}.privacy.blur[{k}]"), "a label, e.g. FACE_MALE");
        }
    }
    if cam.detect.is_empty() && cam.ocr.is_none() {
        c.err(at, "runs no model: set `detect`, `ocr` or both");
    }
}

fn check_filters(c: &mut Checker, at: &str, filters: &BTreeMap<String, LabelFilter>) {
    for (label, f) in filters {
        let fp = format!("{at}.filters.{label}");
        if let Some(v) = f.min_score {
            c.unit_interval(format!("{fp}.min_score"), v, false);
        }
        for (name, v) in [("min_area", f.min_area), ("max_area", f.max_area)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=1.0).contains(&v))
            {
                c.err(format!("{fp}.{name}"), format!("a fraction of the frame in [0, 1], got {v}"));
            }
        }
        if let (Some(lo), Some(hi)) = (f.min_area, f.max_area)
            && lo > hi
        {
            c.err(format!("{fp}.min_area"), format!("{lo} is above max_area {hi}"));
        }
    }
}

/// Farthest a track looks for its next observation, in box diagonals.
const MAX_TRACK_DISTANCE: f32 = 10.0;
/// Longest a lost track is kept.
const MAX_TRACK_LOST: std::time::Duration = std::time::Duration::from_secs(60);

fn check_tracking(c: &mut Checker, at: &str, t: &TrackingConfig) {
    c.unit_interval(format!("{at}.tracking.iou"), t.iou, true);
    if t.window == 0 || t.window > 100 {
        c.err(format!("{at}.tracking.window"), format!("must be in 1..=100, got {}", t.window));
    }
    c.at_most(format!("{at}.tracking.max_age"), t.max_age, MAX_TRACK_AGE);
    if !(t.max_distance.is_finite() && t.max_distance > 0.0 && t.max_distance <= MAX_TRACK_DISTANCE) {
        let got = t.max_distance;
        c.err(
            format!("{at}.tracking.max_distance"),
            format!("must be in (0, {MAX_TRACK_DISTANCE}] box diagonals, got {got}"),
        );
    }
    if t.max_lost > MAX_TRACK_LOST {
        let (got, max) = (humantime::format_duration(t.max_lost), humantime::format_duration(MAX_TRACK_LOST));
        c.err(format!("{at}.tracking.max_lost"), format!("must be at most {max}, got {got}"));
    }
    c.unit_interval(format!("{at}.tracking.text_similarity"), t.text_similarity, false);
    if t.min_hits == 0 || t.min_hits > t.window {
        c.err(format!("{at}.tracking.min_hits"), format!("must be in 1..=window ({}), got {}", t.window, t.min_hits));
    }
}

pub(super) fn check_roi(c: &mut Checker, at: &str, roi: &[Zone]) {
    let mut names = HashSet::new();
    for (k, zone) in roi.iter().enumerate() {
        let zp = format!("{at}.roi[{k}]");
        if !is_identifier(&zone.name) {
            c.err(format!("{zp}.name"), format!("zone name {IDENTIFIER_RULE}"));
        } else if !names.insert(zone.name.as_str()) {
            c.err(format!("{zp}.name"), format!("duplicate zone name {:?}", zone.name));
        }
        let n = zone.points.len();
        if n < 3 {
            c.err(&zp, format!("polygon needs >= 3 points, got {n}"));
        } else if n > MAX_ZONE_POINTS {
            c.err(&zp, format!("polygon has {n} points, over the limit of {MAX_ZONE_POINTS}"));
        }
        let mut in_range = true;
        for (p, [x, y]) in zone.points.iter().enumerate() {
            if !(x.is_finite() && y.is_finite() && (0.0..=1.0).contains(x) && (0.0..=1.0).contains(y)) {
                c.err(format!("{zp}.points[{p}]"), format!("coordinates are normalised to 0..1, got [{x}, {y}]"));
                in_range = false;
            }
        }
        if in_range && (3..=MAX_ZONE_POINTS).contains(&n) {
            if geometry::collinear(&zone.points) {
                c.err(&zp, "polygon has no area (its points are equal or on one line)");
            } else if !geometry::is_simple(&zone.points) {
                c.err(&zp, "polygon crosses itself (or repeats a point): list the corners in order around it");
            } else if geometry::polygon_area(&zone.points) < MIN_ZONE_AREA {
                c.err(&zp, format!("polygon has no area to speak of (under {MIN_ZONE_AREA} of the frame)"));
            }
        }
    }
}

fn check_source(c: &mut Checker, at: &str, s: &RawSource) -> Option<SourceSpec> {
    match s.kind {
        None => {
            c.err(format!("{at}.kind"), "required: file or kvs");
            None
        }
        Some(SourceKind::File) => {
            const WHY: &str = "by kind file";
            c.not_set(format!("{at}.stream_name"), &s.stream_name, WHY);
            c.not_set(format!("{at}.stream_arn"), &s.stream_arn, WHY);
            c.not_set(format!("{at}.start"), &s.start, WHY);
            c.not_set(format!("{at}.checkpoint_table"), &s.checkpoint_table, WHY);
            let Some(path) = &s.path else {
                c.err(format!("{at}.path"), "required for kind file");
                return None;
            };
            c.nonempty_path(format!("{at}.path"), path);
            Some(SourceSpec::File { path: path.clone(), loop_file: s.loop_file, realtime: s.realtime })
        }
        Some(SourceKind::Kvs) => {
            const WHY: &str = "by kind kvs";
            c.not_set(format!("{at}.path"), &s.path, WHY);
            if s.loop_file {
                c.err(format!("{at}.loop"), format!("not used {WHY}"));
            }
            if s.realtime {
                c.err(format!("{at}.realtime"), format!("not used {WHY}"));
            }
            let stream = match (&s.stream_name, &s.stream_arn) {
                (Some(name), None) => {
                    if name.is_empty()
                        || name.len() > MAX_STREAM_NAME_LEN
                        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
                    {
                        c.err(format!("{at}.stream_name"), format!("not a KVS stream name: {name:?}"));
                    }
                    Some(StreamRef::Name(name.clone()))
                }
                (None, Some(arn)) => {
                    if !arn.starts_with("arn:") || !arn.contains(":kinesisvideo:") {
                        c.err(format!("{at}.stream_arn"), format!("not a Kinesis Video stream ARN: {arn:?}"));
                    }
                    Some(StreamRef::Arn(arn.clone()))
                }
                (Some(_), Some(_)) => {
                    c.err(at, "set one of stream_name and stream_arn, not both");
                    None
                }
                (None, None) => {
                    c.err(format!("{at}.stream_name"), "required for kind kvs (or stream_arn)");
                    None
                }
            };
            let start = s.start.clone().unwrap_or(StartSelector::Now);
            match &start {
                StartSelector::FragmentNumber(n) if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) => {
                    c.err(format!("{at}.start.fragment_number"), format!("must be decimal digits, got {n:?}"))
                }
                StartSelector::ProducerTimestamp(t) | StartSelector::ServerTimestamp(t)
                    if humantime::parse_rfc3339_weak(t).is_err() =>
                {
                    c.err(format!("{at}.start"), format!("not an RFC 3339 time: {t:?}"))
                }
                _ => {}
            }
            if let Some(table) = &s.checkpoint_table {
                check_table_name(c, &format!("{at}.checkpoint_table"), table);
            }
            stream.map(|stream| SourceSpec::Kvs { stream, start, checkpoint_table: s.checkpoint_table.clone() })
        }
    }
}

pub(super) fn check_table_name(c: &mut Checker, at: &str, name: &str) {
    if !DYNAMODB_TABLE_NAME_LEN.contains(&name.len())
        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
    {
        c.err(at, format!("not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -): {name:?}"));
    }
}

/// Checks `at.motion`; `max_age` is the camera's `tracking.max_age`.
fn check_motion(c: &mut Checker, at: &str, m: &motion::MotionConfig, max_age: u32) -> motion::MotionSettings {
    if !(0.0..=1.0).contains(&m.sensitivity) {
        c.err(format!("{at}.motion.sensitivity"), format!("must be in [0, 1], got {}", m.sensitivity));
    }
    if !(m.min_area > 0.0 && m.min_area <= 1.0) {
        c.err(
            format!("{at}.motion.min_area"),
            format!("must be in (0, 1] (a share of the zones' area), got {}", m.min_area),
        );
    }
    let settle_frames = m.settle_frames.unwrap_or(max_age + 2);
    let max = motion::MAX_SETTLE_FRAMES;
    if settle_frames <= max_age || settle_frames > max {
        c.err(
            format!("{at}.motion.settle_frames"),
            format!(
                "must be in {}..={max} (more than tracking.max_age, so a track of an object that left ends), got {settle_frames}",
                max_age + 1
            ),
        );
    }
    c.duration(format!("{at}.motion.recheck"), m.recheck, *motion::RECHECK_RANGE.start(), *motion::RECHECK_RANGE.end());
    motion::MotionSettings {
        enabled: m.enabled,
        threshold: motion::threshold(m.sensitivity),
        min_area: m.min_area,
        settle_frames,
        recheck: m.recheck,
    }
}

/// Builds a camera's `ocr.text_rules`, reporting each wrong format or pattern.
fn check_text_rules(c: &mut Checker, at: &str, cam: &RawCamera) -> Option<std::sync::Arc<text_rules::TextRules>> {
    let rules = cam.ocr.as_ref()?.text_rules.as_ref()?;
    match rules.build() {
        Ok(rules) => Some(std::sync::Arc::new(rules)),
        Err(problems) => {
            for p in problems {
                c.err(format!("{at}.ocr.text_rules.{}", p.path), p.message);
            }
            None
        }
    }
}

/// Checks `at` (a camera's `ocr.read_once`).
fn check_read_once(c: &mut Checker, at: &str, r: &read_once::ReadOnceConfig) {
    let (lo, hi) = (*read_once::READINGS_RANGE.start(), *read_once::READINGS_RANGE.end());
    if !read_once::READINGS_RANGE.contains(&r.readings) {
        c.err(format!("{at}.readings"), format!("must be in {lo}..={hi}, got {}", r.readings));
    }
    if !(0.0..=1.0).contains(&r.min_score) {
        c.err(format!("{at}.min_score"), format!("must be in [0, 1], got {}", r.min_score));
    }
    if !(0.0..=1.0).contains(&r.max_resize) {
        c.err(
            format!("{at}.max_resize"),
            format!("must be in [0, 1] (a share of the box's size), got {}", r.max_resize),
        );
    }
    let (lo, hi) = (*read_once::MAX_REUSE_RANGE.start(), *read_once::MAX_REUSE_RANGE.end());
    if !read_once::MAX_REUSE_RANGE.contains(&r.max_reuse) {
        c.err(format!("{at}.max_reuse"), format!("must be in {lo}..={hi}, got {}", r.max_reuse));
    }
}
