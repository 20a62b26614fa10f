//! `validate()`: [`RawConfig`] → typed [`Config`], collecting every problem with its path.
//!
//! Nothing here touches the file system; [`check_paths`] does that separately so the rules stay
//! table-testable.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod cameras;
mod models;

use super::schema::*;
use super::{Config, ModelSpec, SourceSpec, Violation};
use cameras::{check_cameras, check_table_name};
use models::check_models;

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
/// One sampled frame per 100 s: anything slower is a typo.
pub const MIN_TARGET_FPS: f64 = 0.01;
/// The smallest outbox that holds one large snapshot, and the largest worth a local disk.
pub const MIN_OUTBOX_BYTES: u64 = 4 * 1024 * 1024;
pub const MAX_OUTBOX_BYTES: u64 = 1 << 40;
/// Polygons: corners, and the smallest area (a fraction of the frame) that is still a zone.
pub const MAX_ZONE_POINTS: usize = 256;
pub const MIN_ZONE_AREA: f64 = 1e-6;
pub const MAX_TRACK_AGE: u32 = 1000;
/// `fleet.lease_duration`: long enough for three renewals over a slow DynamoDB, short enough
/// that a lost task's cameras move within minutes.
pub const LEASE_DURATION: std::ops::RangeInclusive<Duration> = Duration::from_secs(3)..=Duration::from_secs(600);
pub const MAX_CAMERAS_PER_TASK: usize = 1000;
pub const MAX_TASK_ID_LEN: usize = 256;
/// Above the lag a live KVS camera shows anyway (a fragment, typically 2 s, plus upload), small
/// enough that a live camera's results stay seconds old.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(5);
/// A camera back from a deploy, a crash or a short outage catches up on everything; one that
/// was off for longer than this jumps to live (KVS keeps the video; nothing is analysed twice).
pub const DEFAULT_SKIP_AFTER: Duration = Duration::from_secs(30 * 60);
pub const MAX_LAG_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);
/// `tracking.idle_end`: default floor and bounds.
pub const MIN_IDLE_END: Duration = Duration::from_secs(2);
pub const IDLE_END_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(3600);
/// Upper bounds of the numbers that size memory, threads or queues (README lists them all).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;
pub const MAX_IMAGE_PIXELS: u64 = 16384 * 16384;
pub const MAX_CONNECTIONS: usize = 10_000;
pub const MAX_BATCH: usize = 256;
pub const MAX_QUEUE_CAPACITY: usize = 65_536;
pub const MAX_WARMUP_RUNS: u32 = 100;
pub const MAX_INTRA_OP_THREADS: usize = 1024;
pub const MAX_DEVICE_ID: u32 = 63;
pub const MAX_TTL_DAYS: u32 = 3650;
pub const MAX_DECODER_THREADS: usize = 16;

/// Collects violations as the checks walk the tree.
#[derive(Default)]
pub(super) struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation { path: path.into(), message: message.into() });
    }

    pub(super) fn unit_interval(&mut self, path: String, value: f32, open_low: bool) {
        let ok = value.is_finite() && value <= 1.0 && if open_low { value > 0.0 } else { value >= 0.0 };
        if !ok {
            let range = if open_low { "(0, 1]" } else { "[0, 1]" };
            self.err(path, format!("must be in {range}, got {value}"));
        }
    }

    pub(super) fn not_set<T>(&mut self, path: String, value: &Option<T>, why: &str) {
        if value.is_some() {
            self.err(path, format!("not used {why}"));
        }
    }

    /// `value <= max`, else "must be at most {max}".
    pub(super) fn at_most<T: PartialOrd + std::fmt::Display>(&mut self, path: String, value: T, max: T) {
        if value > max {
            self.err(path, format!("must be at most {max}, got {value}"));
        }
    }

    /// A duration in `min..=max`.
    fn duration(&mut self, path: String, value: Duration, min: Duration, max: Duration) {
        if value.is_zero() {
            self.err(path, "must be greater than 0");
        } else if value < min || value > max {
            self.err(path, format!("must be in {min:?}..={max:?}, got {value:?}"));
        }
    }

    pub(super) fn nonempty_path(&mut self, path: String, value: &Path) {
        if value.as_os_str().is_empty() {
            self.err(path, "a file path is required");
        }
    }
}

/// Is `s` usable as an id (metric label, partition key, file name)?
pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub(super) const IDENTIFIER_RULE: &str = "must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'";

/// Validates a parsed file. Every violation is reported, not just the first.
/// The problems `check-config` finds in a camera's `roi` list (paths start at `roi`): what the
/// live page's zone editor checks a drawn zone with.
pub fn check_zones(roi: &[Zone]) -> Vec<Violation> {
    let mut c = Checker::default();
    cameras::check_roi(&mut c, "", roi);
    c.violations.into_iter().map(|v| Violation { path: v.path.trim_start_matches('.').to_owned(), ..v }).collect()
}

pub fn validate(raw: RawConfig) -> Result<Config, Vec<Violation>> {
    let mut c = Checker::default();

    check_server(&mut c, &raw.server);
    check_logging(&mut c, &raw.logging);
    check_health(&mut c, &raw.health);
    check_runtime(&mut c, &raw.runtime);
    check_aws(&mut c, &raw.aws);
    check_media(&mut c, &raw.media);
    let models = check_models(&mut c, &raw.models);
    let cameras = check_cameras(&mut c, &raw.cameras, &models, &raw.media);
    let watchlists = check_watchlists(&mut c, &raw.watchlists, &raw.cameras);
    check_sinks(&mut c, &raw.sinks, &raw.outbox);
    if let Some(fleet) = &raw.fleet {
        check_fleet(&mut c, fleet);
    }

    if !c.violations.is_empty() {
        return Err(c.violations);
    }
    Ok(Config {
        server: raw.server,
        logging: raw.logging,
        health: raw.health,
        runtime: raw.runtime,
        aws: raw.aws,
        media: raw.media,
        models,
        cameras,
        sinks: raw.sinks,
        outbox: raw.outbox,
        fleet: raw.fleet,
        watchlists,
    })
}

/// `watchlists:` and the cameras' references to them.
fn check_watchlists(
    c: &mut Checker,
    lists: &std::collections::BTreeMap<String, super::watchlist::WatchlistConfig>,
    cameras: &[RawCamera],
) -> Vec<super::watchlist::WatchlistSpec> {
    use super::watchlist::{MAX_DISTANCE, WatchlistSpec};
    let mut specs = Vec::new();
    for (name, list) in lists {
        let at = format!("watchlists.{name}");
        if !is_identifier(name) {
            c.err(at.clone(), format!("list name {IDENTIFIER_RULE}"));
        }
        if list.max_distance > MAX_DISTANCE {
            c.err(
                format!("{at}.max_distance"),
                format!("must be in 0..={MAX_DISTANCE} edits, got {}", list.max_distance),
            );
        }
        if list.from.is_none() && list.entries.is_empty() {
            c.err(at.clone(), "give `entries`, `from` (a file, ssm:/name or s3://bucket/key), or both");
        }
        let from = match list.from.as_deref().map(str::parse::<super::ConfigLocation>) {
            Some(Ok(location)) => Some(location),
            Some(Err(e)) => {
                c.err(format!("{at}.from"), e.to_string());
                None
            }
            None => None,
        };
        specs.push(WatchlistSpec {
            name: name.clone(),
            from,
            entries: list.entries.clone(),
            max_distance: list.max_distance,
        });
    }
    for (i, cam) in cameras.iter().enumerate() {
        for (k, name) in cam.watchlists.iter().enumerate() {
            if !lists.contains_key(name) {
                c.err(format!("cameras[{i}].watchlists[{k}]"), format!("no list {name:?} under `watchlists`"));
            }
        }
    }
    specs
}

fn check_fleet(c: &mut Checker, f: &FleetConfig) {
    if f.lease_table.is_empty() {
        c.err("fleet.lease_table", "required: the DynamoDB table of camera leases");
    } else {
        check_table_name(c, "fleet.lease_table", &f.lease_table);
    }
    let (lo, hi) = (*LEASE_DURATION.start(), *LEASE_DURATION.end());
    c.duration("fleet.lease_duration".into(), f.lease_duration, lo, hi);
    if let Some(n) = f.max_cameras_per_task
        && !(1..=MAX_CAMERAS_PER_TASK).contains(&n)
    {
        c.err("fleet.max_cameras_per_task", format!("must be in 1..={MAX_CAMERAS_PER_TASK}, got {n}"));
    }
    for (key, value) in [("metrics_namespace", &f.metrics_namespace), ("service_name", &f.service_name)] {
        if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
            c.err(format!("fleet.{key}"), format!("1..=255 printable characters, got {value:?}"));
        }
    }
    if let Some(id) = &f.task_id
        && (id.is_empty() || id.len() > MAX_TASK_ID_LEN || id.chars().any(char::is_control))
    {
        c.err("fleet.task_id", format!("1..={MAX_TASK_ID_LEN} printable characters, got {id:?}"));
    }
}

fn check_server(c: &mut Checker, s: &ServerConfig) {
    if let Some(auth) = &s.auth
        && let Err(e) = auth.token_from.parse::<super::ConfigLocation>()
    {
        c.err("server.auth.token_from", e.to_string());
    }
    if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
        c.err("server.host", format!("must be an IP address or localhost, got {:?}", s.host));
    }
    if s.max_request_bytes == 0 {
        c.err("server.max_request_bytes", "must be greater than 0");
    }
    c.at_most("server.max_request_bytes".into(), s.max_request_bytes, MAX_REQUEST_BYTES);
    if s.max_image_pixels == 0 {
        c.err("server.max_image_pixels", "must be greater than 0");
    }
    c.at_most("server.max_image_pixels".into(), s.max_image_pixels, MAX_IMAGE_PIXELS);
    if s.max_connections == 0 {
        c.err("server.max_connections", "must be at least 1");
    }
    c.at_most("server.max_connections".into(), s.max_connections, MAX_CONNECTIONS);
    let second = Duration::from_secs(1);
    c.duration("server.header_timeout".into(), s.header_timeout, second, Duration::from_secs(60));
    c.duration("server.body_timeout".into(), s.body_timeout, second, Duration::from_secs(300));
}

fn check_media(c: &mut Checker, m: &MediaConfig) {
    for (key, problem) in m.problems() {
        c.err(key, problem);
    }
}

fn check_logging(c: &mut Checker, l: &LoggingConfig) {
    if let Err(e) = kvs_infer_common::telemetry::check_filter(&l.level) {
        c.err("logging.level", format!("not a valid tracing filter ({e})"));
    }
}

fn check_health(c: &mut Checker, h: &HealthConfig) {
    let (ms, s, hour) = (Duration::from_millis(100), Duration::from_secs(1), Duration::from_secs(3600));
    c.duration("health.stall_after".into(), h.stall_after, s, hour);
    c.duration("health.drain_timeout".into(), h.drain_timeout, s, Duration::from_secs(600));
    c.duration("health.gpu_poll_interval".into(), h.gpu_poll_interval, ms, Duration::from_secs(60));
}

fn check_runtime(c: &mut Checker, r: &RuntimeConfig) {
    if r.max_batch == 0 {
        c.err("runtime.max_batch", "must be at least 1");
    }
    if r.queue_capacity == 0 {
        c.err("runtime.queue_capacity", "must be at least 1");
    }
    if r.max_delay > Duration::from_secs(1) {
        c.err("runtime.max_delay", "must be at most 1s (frames would go stale)");
    }
    c.at_most("runtime.max_batch".into(), r.max_batch, MAX_BATCH);
    c.at_most("runtime.queue_capacity".into(), r.queue_capacity, MAX_QUEUE_CAPACITY);
    c.at_most("runtime.warmup_runs".into(), r.warmup_runs, MAX_WARMUP_RUNS);
    c.at_most("runtime.intra_op_threads".into(), r.intra_op_threads, MAX_INTRA_OP_THREADS);
    c.at_most("runtime.device_id".into(), r.device_id, MAX_DEVICE_ID);
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

pub(super) fn check_url(c: &mut Checker, path: &str, url: &str) {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(str::is_empty) {
        c.err(path, format!("must be an http:// or https:// URL, got {url:?}"));
    }
}

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
    c.at_most("outbox.max_bytes".into(), o.max_bytes, MAX_OUTBOX_BYTES);
    if o.dir.as_os_str().is_empty() {
        c.err("outbox.dir", "a folder is required");
    }
    if let Some(d) = &s.dynamodb {
        check_table_name(c, "sinks.dynamodb.state_table", &d.state_table);
        check_table_name(c, "sinks.dynamodb.events_table", &d.events_table);
        if d.ttl_days == 0 {
            c.err("sinks.dynamodb.ttl_days", "must be at least 1");
        }
        c.at_most("sinks.dynamodb.ttl_days".into(), d.ttl_days, MAX_TTL_DAYS);
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
