//! Hostile input, class by class, each from a generated input: the clear error, the memory
//! bound, and the service going on.

use std::io::Write;
use std::time::Duration;

use crate::common::mkv::{cat, ebml_header, open_unknown, tracks, uint};
use crate::common::png::png_bomb;
use kvs_infer::config::{self, ConfigError, EnvOverrides};
use kvs_infer::media::MediaError;
use kvs_infer::media::demux::{DemuxConfig, demux_all};
use kvs_infer::media::{Event, image::ImageError, image::RgbImage};

const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const TAGS: u32 = 0x1254_C367;
const TAG: u32 = 0x7373;
const SIMPLE_TAG: u32 = 0x67C8;

fn errors(events: &[Event]) -> Vec<&MediaError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// A SimpleBlock declaring `declared` bytes inside an unknown-size Cluster, followed by `tail`
/// bytes and the end of the stream (the shape that panicked the demuxer).
fn oversized_block(declared: u64, tail: usize) -> Vec<u8> {
    let mut block = vec![0xA3];
    block.extend(crate::common::mkv::size(Some(declared)));
    block.extend([0x81, 0x00, 0x00, 0x80]);
    block.extend(std::iter::repeat_n(0x55u8, tail));
    cat(&[
        ebml_header(),
        open_unknown(SEGMENT),
        tracks("V_MPEG4/ISO/AVC", None),
        open_unknown(CLUSTER),
        uint(0xE7, 0),
        block,
    ])
}

/// `levels` SimpleTags, each of unknown size, inside one another.
fn nested_tags(levels: usize) -> Vec<u8> {
    let mut out = cat(&[ebml_header(), open_unknown(SEGMENT), open_unknown(TAGS), open_unknown(TAG)]);
    for _ in 0..levels {
        out.extend(open_unknown(SIMPLE_TAG));
    }
    out
}

#[test]
fn an_oversized_block_at_the_end_of_the_stream_is_an_error_not_a_panic() {
    for tail in [0, 1, 300 * 1024, 600 * 1024] {
        let data = oversized_block(40 * 1024 * 1024, tail);
        // Every chunking: the buffer is compacted while the oversized payload is skipped.
        for chunk in [7, 4096, 65536, data.len()] {
            let mut d = kvs_infer::media::demux::Demuxer::default();
            for piece in data.chunks(chunk) {
                d.push(piece);
                while d.next_event().is_some() {}
            }
            d.finish();
            let events: Vec<Event> = std::iter::from_fn(|| d.next_event()).collect();
            let _ = events;
        }
        let events = demux_all(&data, DemuxConfig::default());
        let errs = errors(&events);
        assert!(
            errs.iter().any(|e| matches!(e, MediaError::ElementTooLarge { size, .. } if *size == 40 * 1024 * 1024)),
            "{errs:?}"
        );
        assert!(errs.iter().all(|e| e.offset().is_some()), "every error names its offset: {errs:?}");
    }
}

#[test]
fn deep_nesting_is_refused_at_the_limit_with_its_offset() {
    let events = demux_all(&nested_tags(10_000), DemuxConfig::default());
    let errs = errors(&events);
    let deep = errs.iter().find(|e| matches!(e, MediaError::TooDeep { .. })).expect("a TooDeep error");
    assert!(deep.to_string().contains("over the limit of 32"), "{deep}");
    assert!(deep.offset().is_some());
    let limited = demux_all(&nested_tags(10), DemuxConfig { max_depth: 8, ..DemuxConfig::default() });
    assert!(errors(&limited).iter().any(|e| matches!(e, MediaError::TooDeep { cap: 8, .. })));
}

/// Runs the binary and returns its exit code, stderr and peak RSS in KiB. The peak is the
/// child's own `VmHWM` (its memory after exec), polled until it exits: `wait4`'s `ru_maxrss`
/// would count the test process's memory copied at fork.
fn run_measured(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, u64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), reader.join().expect("stderr"), peak_kib)
}

#[test]
fn inspect_on_15_mb_of_nesting_stays_small_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested.mkv");
    // 15 MB of 8-byte unknown-size SimpleTag headers.
    std::fs::write(&path, nested_tags(15 * 1024 * 1024 / 12)).expect("write");
    let (code, stderr, rss_kib) = run_measured(&["inspect".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(0), "damage is reported, not fatal: {stderr}");
    assert!(stderr.contains("over the limit of 32"), "{stderr}");
    assert!(rss_kib < 200 * 1024, "peak RSS {} MiB for 15 MB of nesting", rss_kib / 1024);
}

#[test]
fn inspect_on_an_oversized_block_exits_0_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big-block.mkv");
    std::fs::write(&path, oversized_block(40 * 1024 * 1024, 400 * 1024)).expect("write");
    let (code, stderr, rss_kib) = run_measured(&["inspect".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("over the 33554432-byte element limit"), "{stderr}");
    assert!(rss_kib < 200 * 1024, "peak RSS {} MiB", rss_kib / 1024);
}

#[test]
fn an_image_bomb_is_refused_from_its_header() {
    let err = RgbImage::decode_within(&png_bomb(20_000, 20_000), 4096 * 4096).expect_err("refused");
    assert!(matches!(err, ImageError::TooManyPixels { width: 20_000, height: 20_000, .. }), "{err}");
    assert!(err.to_string().contains("16777216-pixel limit"), "{err}");
}

#[test]
fn infer_on_an_image_bomb_exits_1_naming_the_limit_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, png_bomb(20_000, 20_000)).expect("write");
    let (code, stderr, rss_kib) =
        run_measured(&["--config".as_ref(), "config/local.yaml".as_ref(), "infer".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("pixel limit"), "{stderr}");
    // The models take a few hundred MiB; decoding the bomb would take 1.2 GB more.
    assert!(rss_kib < 800 * 1024, "peak RSS {} MiB", rss_kib / 1024);
}

fn load(yaml: &str) -> Result<config::Config, ConfigError> {
    config::load_str(yaml, "hostile.yaml", &EnvOverrides::default())
}

const VALID: &str = "models: { m: { kind: yolo, path: m.onnx } }\n\
cameras: [ { id: c, source: { kind: file, path: v.mkv }, detect: [m] } ]\n\
sinks: { local: {} }\n";

#[test]
fn deeply_nested_config_text_is_refused_before_parsing() {
    let depth = 100_000;
    let yaml = format!("{VALID}bogus: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let started = std::time::Instant::now();
    let err = load(&yaml).expect_err("refused");
    assert!(matches!(err, ConfigError::TooDeep { line: 4, .. }), "{err}");
    // Refused without parsing: well under the minute the quadratic parser took.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let huge = format!("{VALID}# {}\n", "x".repeat(2 * 1024 * 1024));
    assert!(matches!(load(&huge), Err(ConfigError::TooLarge { .. })));
}

#[test]
fn bad_bytes_in_a_config_file_name_their_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("latin1.yaml");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(VALID.as_bytes()).expect("write");
    f.write_all(b"# caf\xE9\n").expect("write");
    drop(f);
    let err = config::load_file(&path, &EnvOverrides::default()).expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Encoding { line: 4, column: 6, byte: 0xE9, .. }), "{text}");
    assert!(text.contains("line 4, column 6") && text.contains("0xE9"), "{text}");
}

#[test]
fn degenerate_zones_and_absurd_numbers_are_all_reported_at_once() {
    let yaml = format!(
        "{VALID}runtime: {{ max_batch: 4294967296, warmup_runs: 1000000000, intra_op_threads: 1000000 }}\n\
         server: {{ max_request_bytes: 1000000000000000000 }}\n"
    )
    .replace(
        "detect: [m] }",
        "detect: [m], target_fps: 1e-300, roi: [ \
           { name: same, points: [[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]] }, \
           { name: line, points: [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]] }, \
           { name: bowtie, points: [[0, 0], [1, 1], [1, 0], [0, 1]] } ] }",
    );
    let problems = load(&yaml).expect_err("invalid").problems();
    for needle in [
        "runtime.max_batch: must be at most 256",
        "runtime.warmup_runs: must be at most 100",
        "runtime.intra_op_threads: must be at most 1024",
        "server.max_request_bytes: must be at most",
        "cameras[0].target_fps: must be in [0.01, 120]",
        "cameras[0].roi[0]: polygon has no area",
        "cameras[0].roi[1]: polygon has no area",
        "cameras[0].roi[2]: polygon crosses itself",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(needle)), "{needle} missing from {problems:#?}");
    }
}

#[test]
fn a_type_error_does_not_hide_unknown_keys_or_other_type_errors() {
    let yaml = format!("{VALID}server: {{ port: many, colour: red }}\nruntime: {{ max_batch: lots }}\nbogus: 1\n");
    let problems = load(&yaml).expect_err("invalid").problems();
    for needle in [
        "server.port: invalid type",
        "runtime.max_batch: invalid type",
        "server.colour: unknown key",
        "bogus: unknown key",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(needle)), "{needle} missing from {problems:#?}");
    }
}

/// A byte source with a bug: it panics on its first read.
struct Panicking;

impl kvs_infer::media::stream::ByteSource for Panicking {
    fn next_chunk(&mut self) -> Option<Result<kvs_infer::media::stream::Chunk, kvs_infer_common::BoxError>> {
        panic!("a bug deep in the camera's path");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_cameras_path_is_that_cameras_failure() {
    use kvs_infer::pipeline::camera::{self, CameraContext, PipelineError};
    use kvs_infer::source::{RunningSource, SourceOptions, SourceTasks};
    let cfg = config::load_file(std::path::Path::new("config/local.yaml"), &EnvOverrides::default()).expect("config");
    let (engine, _worker) = kvs_infer::infer::engine::Engine::load(&cfg.runtime, &cfg.models).await.expect("models");
    let (events, _rx) = tokio::sync::mpsc::channel(8);
    let health = kvs_infer::health::Health::new();
    let ctx = CameraContext {
        camera: cfg.cameras[0].clone(),
        engine,
        events,
        shutdown: Default::default(),
        health,
        decoder: Default::default(),
        pass: 0,
        view: None,
    };
    let source = RunningSource {
        input: Box::new(Panicking),
        options: SourceOptions::default(),
        progress: None,
        resume: None,
        tasks: SourceTasks::default(),
    };
    let err = camera::run(ctx, source).await.expect_err("the camera failed");
    assert!(matches!(err, PipelineError::Panicked { .. }), "{err}");
    assert_eq!(err.reason(), "panic");
    assert!(err.to_string().contains("a bug deep in the camera's path"), "{err}");
}

#[test]
fn run_file_exits_non_zero_when_its_camera_fails() {
    // A folder opens as a file but cannot be read: the camera's source fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .args(["--config", "config/local.yaml", "run-file"])
        .arg(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("reading the source failed"), "{stderr}");
}

/// The camera's value of a labelled metric.
fn camera_metric(body: &str, name: &str, camera: &str) -> f64 {
    let prefix = format!("{name}{{camera=\"{camera}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0.0)
}

/// A config in `dir` serving one camera on `video` (face detection at 1 fps, local sink).
fn one_camera_config(dir: &std::path::Path, id: &str, video: &std::path::Path, looping: bool) -> std::path::PathBuf {
    let cwd = std::env::current_dir().expect("cwd");
    let yaml = format!(
        "server: {{ host: 127.0.0.1, port: 0 }}\n\
         runtime: {{ intra_op_threads: 1, warmup_runs: 1 }}\n\
         models: {{ faces: {{ kind: yolo, path: {model} }} }}\n\
         cameras: [ {{ id: {id}, source: {{ kind: file, path: {video}, loop: {looping} }}, detect: [faces], target_fps: 1 }} ]\n\
         sinks: {{ local: {{ dir: {out}, snapshots: false }} }}\n\
         outbox: {{ dir: {outbox} }}\n",
        model = cwd.join("models/320n.onnx").display(),
        video = video.display(),
        out = dir.join("out").display(),
        outbox = dir.join("outbox").display(),
    );
    let config = dir.join(format!("{id}.yaml"));
    std::fs::write(&config, yaml).expect("config");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_hostile_camera_file_stays_ready_and_says_what_happened() {
    use crate::common::service::{Service, get};
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = std::fs::read("tests/fixtures/kvs/vogels_480.mkv").expect("fixture");
    // Nesting past the limit, then an oversized block cut by a new document, then a real
    // capture the camera must still analyse.
    let video = cat(&[nested_tags(200), oversized_block(40 * 1024 * 1024, 1000), fixture]);
    let video_path = dir.path().join("hostile.mkv");
    std::fs::write(&video_path, video).expect("write");
    let config = one_camera_config(dir.path(), "hostile", &video_path, false);
    let svc = Service::start(&config, &[]);
    let base = svc.base_url();
    svc.wait_for_log("ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let camera = loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        assert_eq!(status, 200, "ready while the camera runs and after it stopped: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        if body["cameras"]["hostile"]["state"] == "stopped" {
            break body["cameras"]["hostile"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "the camera never finished: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let detail = camera["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("media error"), "the camera says what happened: {camera}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(camera_metric(&metrics, "media_errors_total", "hostile") >= 2.0, "{metrics}");
    assert!(
        camera_metric(&metrics, "frames_decoded_total", "hostile") > 0.0,
        "the capture after the damage was decoded"
    );
    assert_eq!(get(&format!("{base}/livez")).await.0, 200);
}

/// Polls `/healthz` until `done` holds for its body (always answered 200), within a generous ceiling.
async fn healthz_until(base: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    use crate::common::service::get;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        assert_eq!(status, 200, "a failed camera degrades the service, it does not fail it: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        if done(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restarts_a_failed_camera_with_backoff_shows_it_and_clears_it_when_it_runs_again() {
    use crate::common::service::{Service, get};
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = std::fs::read("tests/fixtures/media/cabac_high_poc2.mkv").expect("fixture");
    let video = dir.path().join("looping.mkv");
    std::fs::write(&video, &clip).expect("write");
    let config = one_camera_config(dir.path(), "looping", &video, true);
    let svc = Service::start(&config, &[]);
    let base = svc.base_url();
    svc.wait_for_log("ready");

    // The file goes away: the next pass cannot open it, and the camera restarts with backoff.
    std::fs::remove_file(&video).expect("remove");
    let body = healthz_until(&base, "the failure shows", |b| {
        b["cameras"]["looping"]["state"] == "restarting" && b["degraded"]["camera.looping"].is_string()
    })
    .await;
    assert_eq!(body["status"], "degraded", "{body}");
    let reason = body["degraded"]["camera.looping"].as_str().unwrap_or_default();
    assert!(reason.contains("looping.mkv"), "the reason names the file: {reason}");
    let restarts = |metrics: &str| {
        let prefix = "camera_restarts_total{camera=\"looping\",reason=\"source\"} ";
        metrics.lines().find_map(|l| l.strip_prefix(prefix)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while restarts(&get(&format!("{base}/metrics")).await.1) < 2.0 {
        assert!(std::time::Instant::now() < deadline, "a second restart after the backoff");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // It comes back: the camera runs again and the degraded reason clears.
    std::fs::write(&video, &clip).expect("restore");
    healthz_until(&base, "the camera recovers", |b| {
        b["cameras"]["looping"]["state"] == "running"
            && !b["degraded"].as_object().is_some_and(|d| d.contains_key("camera.looping"))
    })
    .await;
    assert_eq!(get(&format!("{base}/livez")).await.0, 200);
}
