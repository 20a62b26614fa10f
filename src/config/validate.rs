//! `validate()`: [`RawConfig`] → typed [`Config`], collecting every problem with its path.
//!
//! Nothing here touches the file system; [`check_paths`] does that separately so the rules stay
//! table-testable.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::schema::*;
use super::{CameraId, CameraSpec, Config, ModelId, ModelSpec, OcrSpec, SourceSpec, StreamRef, Violation, YoloSpec};

/// Limits the KVS, KDS, S3 and DynamoDB APIs put on names.
pub const MAX_STREAM_NAME_LEN: usize = 256;
pub const MAX_KDS_STREAM_NAME_LEN: usize = 128;
pub const S3_BUCKET_NAME_LEN: std::ops::RangeInclusive<usize> = 3..=63;
pub const DYNAMODB_TABLE_NAME_LEN: std::ops::RangeInclusive<usize> = 3..=255;
/// Frame rates above this are not a sampling rate but a misunderstanding.
pub const MAX_TARGET_FPS: f64 = 120.0;
pub const DEFAULT_TARGET_FPS: f64 = 5.0;
pub const DEFAULT_YOLO_CONFIDENCE: f32 = 0.25;
pub const DEFAULT_YOLO_IOU: f32 = 0.45;

/// Collects violations as the checks walk the tree.
#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation { path: path.into(), message: message.into() });
    }

    fn unit_interval(&mut self, path: String, value: f32, open_low: bool) {
        let ok = value.is_finite() && value <= 1.0 && if open_low { value > 0.0 } else { value >= 0.0 };
        if !ok {
            let range = if open_low { "(0, 1]" } else { "[0, 1]" };
            self.err(path, format!("must be in {range}, got {value}"));
        }
    }

    fn not_set<T>(&mut self, path: String, value: &Option<T>, why: &str) {
        if value.is_some() {
            self.err(path, format!("not used {why}"));
        }
    }

    fn nonempty_path(&mut self, path: String, value: &Path) {
        if value.as_os_str().is_empty() {
            self.err(path, "a file path is required");
        }
    }
}

/// Is `s` usable as an id (metric label, partition key, file name)?
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

const IDENTIFIER_RULE: &str = "must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'";

/// Validates a parsed file. Every violation is reported, not just the first.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<Violation>> {
    let mut c = Checker::default();

    check_server(&mut c, &raw.server);
    check_logging(&mut c, &raw.logging);
    check_health(&mut c, &raw.health);
    check_runtime(&mut c, &raw.runtime);
    check_aws(&mut c, &raw.aws);
    let models = check_models(&mut c, &raw.models);
    let cameras = check_cameras(&mut c, &raw.cameras, &models);
    check_sinks(&mut c, &raw.sinks, &raw.outbox);

    if !c.violations.is_empty() {
        return Err(c.violations);
    }
    Ok(Config {
        server: raw.server,
        logging: raw.logging,
        health: raw.health,
        runtime: raw.runtime,
        aws: raw.aws,
        models,
        cameras,
        sinks: raw.sinks,
        outbox: raw.outbox,
    })
}

fn check_server(c: &mut Checker, s: &ServerConfig) {
    if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
        c.err("server.host", format!("must be an IP address or localhost, got {:?}", s.host));
    }
    if s.max_request_bytes == 0 {
        c.err("server.max_request_bytes", "must be greater than 0");
    }
}

fn check_logging(c: &mut Checker, l: &LoggingConfig) {
    if let Err(e) = kvs_infer_common::telemetry::check_filter(&l.level) {
        c.err("logging.level", format!("not a valid tracing filter ({e})"));
    }
}

fn check_health(c: &mut Checker, h: &HealthConfig) {
    for (name, d) in
        [("stall_after", h.stall_after), ("drain_timeout", h.drain_timeout), ("gpu_poll_interval", h.gpu_poll_interval)]
    {
        if d.is_zero() {
            c.err(format!("health.{name}"), "must be greater than 0");
        }
    }
}

fn check_runtime(c: &mut Checker, r: &RuntimeConfig) {
    if r.max_batch == 0 {
        c.err("runtime.max_batch", "must be at least 1");
    }
    if r.queue_capacity == 0 {
        c.err("runtime.queue_capacity", "must be at least 1");
    }
    if r.max_delay > std::time::Duration::from_secs(1) {
        c.err("runtime.max_delay", "must be at most 1s (frames would go stale)");
    }
    if let Some(lib) = &r.library {
        c.nonempty_path("runtime.library".into(), lib);
    }
}

fn check_aws(c: &mut Checker, a: &AwsConfig) {
    if let Some(region) = &a.region
        && (region.is_empty() || !region.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'))
    {
        c.err("aws.region", format!("not a region name: {region:?}"));
    }
    if let Some(url) = &a.endpoint_url {
        check_url(c, "aws.endpoint_url", url);
    }
}

fn check_url(c: &mut Checker, path: &str, url: &str) {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(str::is_empty) {
        c.err(path, format!("must be an http:// or https:// URL, got {url:?}"));
    }
}

fn check_models(c: &mut Checker, models: &BTreeMap<String, RawModel>) -> BTreeMap<ModelId, ModelSpec> {
    let mut out = BTreeMap::new();
    for (id, m) in models {
        let at = format!("models.{id}");
        if !is_identifier(id) {
            c.err(&at, format!("model id {IDENTIFIER_RULE}"));
        }
        let spec = match m.kind {
            None => {
                c.err(format!("{at}.kind"), "required: yolo or ocr");
                None
            }
            Some(ModelKind::Yolo) => check_yolo(c, &at, m).map(ModelSpec::Yolo),
            Some(ModelKind::Ocr) => check_ocr(c, &at, m).map(ModelSpec::Ocr),
        };
        if let Some(spec) = spec {
            out.insert(ModelId(id.clone()), spec);
        }
    }
    out
}

fn check_yolo(c: &mut Checker, at: &str, m: &RawModel) -> Option<YoloSpec> {
    const WHY: &str = "by kind yolo";
    c.not_set(format!("{at}.det"), &m.det, WHY);
    c.not_set(format!("{at}.cls"), &m.cls, WHY);
    c.not_set(format!("{at}.rec"), &m.rec, WHY);
    let Some(path) = &m.path else {
        c.err(format!("{at}.path"), "required for kind yolo");
        return None;
    };
    c.nonempty_path(format!("{at}.path"), path);
    if let Some(size) = m.input_size
        && (!(32..=4096).contains(&size) || size % 32 != 0)
    {
        c.err(format!("{at}.input_size"), format!("must be a multiple of 32 in 32..=4096, got {size}"));
    }
    let confidence = m.confidence.unwrap_or(DEFAULT_YOLO_CONFIDENCE);
    c.unit_interval(format!("{at}.confidence"), confidence, true);
    let iou = m.iou.unwrap_or(DEFAULT_YOLO_IOU);
    c.unit_interval(format!("{at}.iou"), iou, true);
    let mut seen = HashSet::new();
    for (i, class) in m.classes.iter().enumerate() {
        if class.is_empty() || !seen.insert(class) {
            c.err(format!("{at}.classes[{i}]"), format!("empty or repeated class name {class:?}"));
        }
    }
    Some(YoloSpec { path: path.clone(), input_size: m.input_size, confidence, iou, classes: m.classes.clone() })
}

fn check_ocr(c: &mut Checker, at: &str, m: &RawModel) -> Option<OcrSpec> {
    const WHY: &str = "by kind ocr (set det.path, rec.path and optionally cls.path)";
    c.not_set(format!("{at}.path"), &m.path, WHY);
    c.not_set(format!("{at}.input_size"), &m.input_size, WHY);
    c.not_set(format!("{at}.confidence"), &m.confidence, WHY);
    c.not_set(format!("{at}.iou"), &m.iou, WHY);
    if !m.classes.is_empty() {
        c.err(format!("{at}.classes"), format!("not used {WHY}"));
    }
    if let Some(det) = &m.det {
        let p = format!("{at}.det");
        c.nonempty_path(format!("{p}.path"), &det.path);
        if !(32..=4096).contains(&det.limit_side_len) {
            c.err(format!("{p}.limit_side_len"), format!("must be in 32..=4096, got {}", det.limit_side_len));
        }
        c.unit_interval(format!("{p}.threshold"), det.threshold, true);
        c.unit_interval(format!("{p}.box_threshold"), det.box_threshold, true);
        if !(det.unclip_ratio.is_finite() && det.unclip_ratio > 0.0) {
            c.err(format!("{p}.unclip_ratio"), "must be greater than 0");
        }
        if !(det.min_size.is_finite() && det.min_size >= 0.0) {
            c.err(format!("{p}.min_size"), "must be 0 or more");
        }
    } else {
        c.err(format!("{at}.det"), "required for kind ocr");
    }
    if let Some(rec) = &m.rec {
        let p = format!("{at}.rec");
        c.nonempty_path(format!("{p}.path"), &rec.path);
        if rec.height == 0 || rec.height > 256 {
            c.err(format!("{p}.height"), format!("must be in 1..=256, got {}", rec.height));
        }
        c.unit_interval(format!("{p}.min_score"), rec.min_score, false);
        if !(1..=64).contains(&rec.batch_size) {
            c.err(format!("{p}.batch_size"), format!("must be in 1..=64, got {}", rec.batch_size));
        }
    } else {
        c.err(format!("{at}.rec"), "required for kind ocr");
    }
    if let Some(cls) = &m.cls {
        c.nonempty_path(format!("{at}.cls.path"), &cls.path);
        c.unit_interval(format!("{at}.cls.threshold"), cls.threshold, false);
        if !(1..=64).contains(&cls.batch_size) {
            c.err(format!("{at}.cls.batch_size"), format!("must be in 1..=64, got {}", cls.batch_size));
        }
    }
    Some(OcrSpec { det: m.det.clone()?, cls: m.cls.clone(), rec: m.rec.clone()? })
}

fn check_cameras(c: &mut Checker, cameras: &[RawCamera], models: &BTreeMap<ModelId, ModelSpec>) -> Vec<CameraSpec> {
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
        if let Some(camera) = check_camera(c, &at, cam, models) {
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
) -> Option<CameraSpec> {
    let source = check_source(c, &format!("{at}.source"), &cam.source);
    let target_fps = cam.target_fps.unwrap_or(DEFAULT_TARGET_FPS);
    if !(target_fps.is_finite() && target_fps > 0.0 && target_fps <= MAX_TARGET_FPS) {
        c.err(format!("{at}.target_fps"), format!("must be in (0, {MAX_TARGET_FPS}], got {target_fps}"));
    }
    check_camera_models(c, at, cam, models);
    check_roi(c, at, &cam.roi);
    check_filters(c, at, &cam.filters);
    check_tracking(c, at, &cam.tracking);
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
    })
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

fn check_tracking(c: &mut Checker, at: &str, t: &TrackingConfig) {
    c.unit_interval(format!("{at}.tracking.iou"), t.iou, true);
    if t.window == 0 || t.window > 100 {
        c.err(format!("{at}.tracking.window"), format!("must be in 1..=100, got {}", t.window));
    }
    if t.min_hits == 0 || t.min_hits > t.window {
        c.err(format!("{at}.tracking.min_hits"), format!("must be in 1..=window ({}), got {}", t.window, t.min_hits));
    }
}

fn check_roi(c: &mut Checker, at: &str, roi: &[Zone]) {
    let mut names = HashSet::new();
    for (k, zone) in roi.iter().enumerate() {
        let zp = format!("{at}.roi[{k}]");
        if !is_identifier(&zone.name) {
            c.err(format!("{zp}.name"), format!("zone name {IDENTIFIER_RULE}"));
        } else if !names.insert(zone.name.as_str()) {
            c.err(format!("{zp}.name"), format!("duplicate zone name {:?}", zone.name));
        }
        if zone.points.len() < 3 {
            c.err(&zp, format!("polygon needs >= 3 points, got {}", zone.points.len()));
        }
        for (p, [x, y]) in zone.points.iter().enumerate() {
            if !(x.is_finite() && y.is_finite() && (0.0..=1.0).contains(x) && (0.0..=1.0).contains(y)) {
                c.err(format!("{zp}.points[{p}]"), format!("coordinates are normalised to 0..1, got [{x}, {y}]"));
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

fn check_table_name(c: &mut Checker, at: &str, name: &str) {
    if !DYNAMODB_TABLE_NAME_LEN.contains(&name.len())
        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
    {
        c.err(at, format!("not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -): {name:?}"));
    }
}

/// The smallest outbox that holds one large snapshot.
const MIN_OUTBOX_BYTES: u64 = 4 * 1024 * 1024;

fn check_sinks(c: &mut Checker, s: &SinksConfig, o: &OutboxConfig) {
    if s.local.is_none() && s.kinesis.is_none() && s.s3.is_none() && s.dynamodb.is_none() {
        c.err("sinks", "at least one sink is required (local, kinesis, s3, dynamodb)");
    }
    if let Some(local) = &s.local {
        if local.dir.as_os_str().is_empty() {
            c.err("sinks.local.dir", "a folder is required");
        }
        if !(1..=100).contains(&local.jpeg_quality) {
            c.err("sinks.local.jpeg_quality", format!("must be in 1..=100, got {}", local.jpeg_quality));
        }
    }
    if let Some(k) = &s.kinesis {
        let n = &k.stream_name;
        if n.is_empty()
            || n.len() > MAX_KDS_STREAM_NAME_LEN
            || !n.chars().all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            c.err("sinks.kinesis.stream_name", format!("not a Kinesis data stream name: {n:?}"));
        }
    }
    if let Some(s3) = &s.s3 {
        let b = &s3.bucket;
        if !S3_BUCKET_NAME_LEN.contains(&b.len())
            || !b.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.')
        {
            c.err("sinks.s3.bucket", format!("not an S3 bucket name: {b:?}"));
        }
        if s3.prefix.starts_with('/') || s3.prefix.ends_with('/') {
            c.err("sinks.s3.prefix", "must not start or end with '/'");
        }
        if !(1..=100).contains(&s3.jpeg_quality) {
            c.err("sinks.s3.jpeg_quality", format!("must be in 1..=100, got {}", s3.jpeg_quality));
        }
    }
    if o.max_bytes < MIN_OUTBOX_BYTES {
        c.err("outbox.max_bytes", format!("must be at least {MIN_OUTBOX_BYTES} (one snapshot), got {}", o.max_bytes));
    }
    if o.dir.as_os_str().is_empty() {
        c.err("outbox.dir", "a folder is required");
    }
    if let Some(d) = &s.dynamodb {
        check_table_name(c, "sinks.dynamodb.state_table", &d.state_table);
        check_table_name(c, "sinks.dynamodb.events_table", &d.events_table);
        if d.ttl_days == 0 {
            c.err("sinks.dynamodb.ttl_days", "must be at least 1");
        }
    }
}

/// Every file the config names must exist. Separate from [`validate`] so rule tests need no files.
pub fn check_paths(config: &Config) -> Vec<Violation> {
    let mut c = Checker::default();
    let mut exists = |path: String, file: &PathBuf, hint: &str| {
        if !file.is_file() {
            c.err(path, format!("no such file: {}{hint}", file.display()));
        }
    };
    const MODEL_HINT: &str = " (the bundled models come from `make setup`)";
    for (id, model) in &config.models {
        match model {
            ModelSpec::Yolo(y) => exists(format!("models.{id}.path"), &y.path, MODEL_HINT),
            ModelSpec::Ocr(o) => {
                exists(format!("models.{id}.det.path"), &o.det.path, MODEL_HINT);
                exists(format!("models.{id}.rec.path"), &o.rec.path, MODEL_HINT);
                if let Some(cls) = &o.cls {
                    exists(format!("models.{id}.cls.path"), &cls.path, MODEL_HINT);
                }
            }
        }
    }
    for (i, cam) in config.cameras.iter().enumerate() {
        if let SourceSpec::File { path, .. } = &cam.source {
            exists(format!("cameras[{i}].source.path"), path, "");
        }
    }
    if let Some(lib) = &config.runtime.library {
        exists("runtime.library".into(), lib, "");
    }
    c.violations
}
