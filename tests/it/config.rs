//! Config: every rule, unknown keys, env overrides and error paths, table-driven.

use std::path::Path;
use std::time::Duration;

use kvs_infer::config::{
    self, ConfigError, EnvOverrides, ExecutionProviderKind, LogFormat, ModelSpec, SourceSpec, StartSelector, StreamRef,
};

/// A minimal valid file; each case appends or replaces YAML to break exactly one thing.
pub(super) const BASE: &str = r#"
models:
  text:
    kind: ocr
    det: { path: models/det.onnx }
    rec: { path: models/rec.onnx }
  faces:
    kind: yolo
    path: models/320n.onnx
cameras:
  - id: cam-1
    source: { kind: file, path: video.mkv }
    ocr: { model: text }
sinks:
  local: { dir: out }
"#;

fn load(yaml: &str) -> Result<config::Config, ConfigError> {
    config::load_str(yaml, "test.yaml", &EnvOverrides::default())
}

/// Each case's YAML reports a problem containing its expected text.
pub(super) fn expect_problems(cases: Vec<(&str, String, &str)>) {
    for (what, yaml, expected) in cases {
        let got = problems(&yaml);
        assert!(
            got.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem containing {expected:?}, got {got:?}"
        );
    }
}

pub(super) fn problems(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => vec![],
        Err(e) => e.problems(),
    }
}

/// Replaces the `cameras:` section of BASE.
pub(super) fn with_cameras(cameras: &str) -> String {
    let head = BASE.split("cameras:").next().expect("BASE has cameras");
    format!("{head}cameras:\n{cameras}\nsinks:\n  local: {{ dir: out }}\n")
}

#[test]
fn base_is_valid_and_typed() {
    let c = load(BASE).expect("valid");
    assert_eq!(c.cameras.len(), 1);
    assert_eq!(c.cameras[0].id.0, "cam-1");
    assert_eq!(c.cameras[0].target_fps, 5.0);
    assert!(matches!(c.cameras[0].source, SourceSpec::File { .. }));
    assert!(matches!(c.models.values().next(), Some(ModelSpec::Yolo(_))));
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.runtime.execution_provider, ExecutionProviderKind::Cpu);
    assert!(!c.requires_gpu());
}

#[test]
fn each_rule_reports_its_path() {
    // (what is wrong, yaml, the expected "path: message" prefix)
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown top-level key", format!("{BASE}\nbogus: 1\n"), "bogus: unknown key"),
        ("unknown nested key", BASE.replace("dir: out", "dir: out, colour: red"), "sinks.local.colour: unknown key"),
        ("port out of range", format!("{BASE}\nserver: {{ port: 70000 }}\n"), "server.port: invalid value"),
        ("bad host", format!("{BASE}\nserver: {{ host: 'my host' }}\n"), "server.host: must be an IP"),
        ("zero body limit", format!("{BASE}\nserver: {{ max_request_bytes: 0 }}\n"), "server.max_request_bytes"),
        ("bad log filter", format!("{BASE}\nlogging: {{ level: 'info,[[' }}\n"), "logging.level: not a valid"),
        ("bad log format", format!("{BASE}\nlogging: {{ format: xml }}\n"), "logging.format: unknown variant"),
        ("zero stall_after", format!("{BASE}\nhealth: {{ stall_after: 0s }}\n"), "health.stall_after: must be greater"),
        ("bad duration", format!("{BASE}\nhealth: {{ drain_timeout: soon }}\n"), "health.drain_timeout:"),
        ("zero drain", format!("{BASE}\nhealth: {{ drain_timeout: 0s }}\n"), "health.drain_timeout: must be"),
        ("zero poll", format!("{BASE}\nhealth: {{ gpu_poll_interval: 0s }}\n"), "health.gpu_poll_interval"),
        (
            "bad provider",
            format!("{BASE}\nruntime: {{ execution_provider: tpu }}\n"),
            "runtime.execution_provider: unknown variant",
        ),
        ("zero batch", format!("{BASE}\nruntime: {{ max_batch: 0 }}\n"), "runtime.max_batch: must be at least 1"),
        ("zero queue", format!("{BASE}\nruntime: {{ queue_capacity: 0 }}\n"), "runtime.queue_capacity"),
        ("long delay", format!("{BASE}\nruntime: {{ max_delay: 2s }}\n"), "runtime.max_delay: must be at most 1s"),
        ("bad opt level", format!("{BASE}\nruntime: {{ graph_optimization: max }}\n"), "runtime.graph_optimization"),
        (
            "bad arena",
            format!("{BASE}\nruntime: {{ cuda: {{ arena_extend_strategy: big }} }}\n"),
            "runtime.cuda.arena_extend_strategy",
        ),
        ("bad region", format!("{BASE}\naws: {{ region: 'EU West' }}\n"), "aws.region: not a region name"),
        (
            "bad endpoint",
            format!("{BASE}\naws: {{ endpoint_url: 'localhost:4566' }}\n"),
            "aws.endpoint_url: must be an http",
        ),
        ("model without kind", BASE.replace("kind: yolo\n", ""), "models.faces.kind: required"),
        (
            "yolo without path",
            BASE.replace("    path: models/320n.onnx\n", ""),
            "models.faces.path: required for kind yolo",
        ),
        (
            "yolo with det",
            BASE.replace("path: models/320n.onnx", "path: models/320n.onnx\n    det: { path: x }"),
            "models.faces.det: not used by kind yolo",
        ),
        (
            "yolo size",
            BASE.replace("path: models/320n.onnx", "path: models/320n.onnx\n    input_size: 100"),
            "models.faces.input_size: must be a multiple of 32",
        ),
        (
            "yolo confidence",
            BASE.replace("path: models/320n.onnx", "path: models/320n.onnx\n    confidence: 1.5"),
            "models.faces.confidence: must be in (0, 1]",
        ),
        (
            "yolo iou",
            BASE.replace("path: models/320n.onnx", "path: models/320n.onnx\n    iou: 0"),
            "models.faces.iou: must be in (0, 1]",
        ),
        (
            "yolo repeated class",
            BASE.replace("path: models/320n.onnx", "path: models/320n.onnx\n    classes: [a, a]"),
            "models.faces.classes[1]: empty or repeated",
        ),
        (
            "ocr with path",
            BASE.replace("kind: ocr", "kind: ocr\n    path: x.onnx"),
            "models.text.path: not used by kind ocr",
        ),
        (
            "ocr without rec",
            BASE.replace("    rec: { path: models/rec.onnx }\n", ""),
            "models.text.rec: required for kind ocr",
        ),
        (
            "ocr without det",
            BASE.replace("    det: { path: models/det.onnx }\n", ""),
            "models.text.det: required for kind ocr",
        ),
        (
            "ocr det side",
            BASE.replace("det: { path: models/det.onnx }", "det: { path: models/det.onnx, limit_side_len: 8 }"),
            "models.text.det.limit_side_len",
        ),
        (
            "ocr det limit type",
            BASE.replace("det: { path: models/det.onnx }", "det: { path: models/det.onnx, limit_type: both }"),
            "models.text.det.limit_type: unknown variant",
        ),
        (
            "ocr rec batch",
            BASE.replace("rec: { path: models/rec.onnx }", "rec: { path: models/rec.onnx, batch_size: 0 }"),
            "models.text.rec.batch_size",
        ),
        (
            "ocr cls batch",
            BASE.replace("kind: ocr", "kind: ocr\n    cls: { path: c.onnx, batch_size: 100 }"),
            "models.text.cls.batch_size",
        ),
        (
            "ocr det threshold",
            BASE.replace("det: { path: models/det.onnx }", "det: { path: models/det.onnx, threshold: 0 }"),
            "models.text.det.threshold",
        ),
        (
            "ocr unclip",
            BASE.replace("det: { path: models/det.onnx }", "det: { path: models/det.onnx, unclip_ratio: -1 }"),
            "models.text.det.unclip_ratio",
        ),
        (
            "ocr rec height",
            BASE.replace("rec: { path: models/rec.onnx }", "rec: { path: models/rec.onnx, height: 0 }"),
            "models.text.rec.height",
        ),
        (
            "ocr rec score",
            BASE.replace("rec: { path: models/rec.onnx }", "rec: { path: models/rec.onnx, min_score: 2 }"),
            "models.text.rec.min_score",
        ),
        (
            "ocr cls threshold",
            BASE.replace("kind: ocr", "kind: ocr\n    cls: { path: c.onnx, threshold: -0.1 }"),
            "models.text.cls.threshold",
        ),
        (
            "ocr empty det path",
            BASE.replace("det: { path: models/det.onnx }", "det: { threshold: 0.3 }"),
            "models.text.det.path: a file path is required",
        ),
        ("bad model id", BASE.replace("  faces:", "  'bad id':"), "models.bad id: model id must be"),
        (
            "no cameras",
            BASE.split("cameras:").next().unwrap_or_default().to_owned() + "sinks: { local: {} }\n",
            "cameras: at least one camera",
        ),
        ("no sinks", BASE.replace("sinks:\n  local: { dir: out }\n", ""), "sinks: at least one sink"),
        ("jpeg quality", BASE.replace("dir: out", "dir: out, jpeg_quality: 0"), "sinks.local.jpeg_quality"),
        (
            "kds name",
            format!("{BASE}  kinesis: {{ stream_name: 'a b' }}\n"),
            "sinks.kinesis.stream_name: not a Kinesis",
        ),
        ("s3 bucket", format!("{BASE}  s3: {{ bucket: Bad_Bucket }}\n"), "sinks.s3.bucket: not an S3 bucket"),
        ("s3 prefix", format!("{BASE}  s3: {{ bucket: ok-bucket, prefix: /x/ }}\n"), "sinks.s3.prefix"),
        (
            "ddb table",
            format!("{BASE}  dynamodb: {{ state_table: ab, events_table: events }}\n"),
            "sinks.dynamodb.state_table",
        ),
        (
            "ddb ttl",
            format!("{BASE}  dynamodb: {{ state_table: state, events_table: events, ttl_days: 0 }}\n"),
            "sinks.dynamodb.ttl_days",
        ),
        ("outbox size", format!("{BASE}\noutbox: {{ max_bytes: 0 }}\n"), "outbox.max_bytes"),
        (
            "outbox too small",
            format!("{BASE}\noutbox: {{ max_bytes: 100000 }}\n"),
            "outbox.max_bytes: must be at least",
        ),
        ("outbox dir", format!("{BASE}\noutbox: {{ dir: '' }}\n"), "outbox.dir"),
        ("s3 quality", format!("{BASE}  s3: {{ bucket: ok-bucket, jpeg_quality: 101 }}\n"), "sinks.s3.jpeg_quality"),
    ];
    expect_problems(cases);
}

#[test]
fn camera_rules_report_their_paths() {
    let cam = |body: &str| with_cameras(&format!("  - id: cam-1\n{body}"));
    let file = "    source: { kind: file, path: v.mkv }\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad id",
            with_cameras("  - id: 'a b'\n    source: { kind: file, path: v.mkv }\n    ocr: { model: text }"),
            "cameras[0].id: camera id must be",
        ),
        (
            "duplicate id",
            with_cameras(
                "  - { id: a, source: { kind: file, path: v.mkv }, ocr: { model: text } }\n  - { id: a, source: { kind: file, path: v.mkv }, ocr: { model: text } }",
            ),
            "cameras[1].id: duplicate camera id",
        ),
        (
            "no source kind",
            cam("    source: { path: v.mkv }\n    ocr: { model: text }"),
            "cameras[0].source.kind: required",
        ),
        (
            "file without path",
            cam("    source: { kind: file }\n    ocr: { model: text }"),
            "cameras[0].source.path: required for kind file",
        ),
        (
            "file with stream",
            cam("    source: { kind: file, path: v.mkv, stream_name: s }\n    ocr: { model: text }"),
            "cameras[0].source.stream_name: not used by kind file",
        ),
        (
            "kvs without stream",
            cam("    source: { kind: kvs }\n    ocr: { model: text }"),
            "cameras[0].source.stream_name: required for kind kvs",
        ),
        (
            "kvs with both",
            cam(
                "    source: { kind: kvs, stream_name: s, stream_arn: 'arn:aws:kinesisvideo:eu-west-1:1:stream/s/1' }\n    ocr: { model: text }",
            ),
            "cameras[0].source: set one of",
        ),
        (
            "kvs bad arn",
            cam("    source: { kind: kvs, stream_arn: 'arn:aws:s3:::b' }\n    ocr: { model: text }"),
            "cameras[0].source.stream_arn",
        ),
        (
            "kvs bad name",
            cam("    source: { kind: kvs, stream_name: 'a/b' }\n    ocr: { model: text }"),
            "cameras[0].source.stream_name: not a KVS",
        ),
        (
            "kvs with loop",
            cam("    source: { kind: kvs, stream_name: s, loop: true }\n    ocr: { model: text }"),
            "cameras[0].source.loop: not used by kind kvs",
        ),
        (
            "kvs with path",
            cam("    source: { kind: kvs, stream_name: s, path: v.mkv }\n    ocr: { model: text }"),
            "cameras[0].source.path: not used by kind kvs",
        ),
        (
            "bad fragment",
            cam(
                "    source: { kind: kvs, stream_name: s, start: { fragment_number: '12ab' } }\n    ocr: { model: text }",
            ),
            "cameras[0].source.start.fragment_number",
        ),
        (
            "bad timestamp",
            cam(
                "    source: { kind: kvs, stream_name: s, start: { producer_timestamp: yesterday } }\n    ocr: { model: text }",
            ),
            "cameras[0].source.start: not an RFC 3339",
        ),
        (
            "bad selector",
            cam("    source: { kind: kvs, stream_name: s, start: later }\n    ocr: { model: text }"),
            "cameras[0].source.start: unknown start selector",
        ),
        (
            "bad checkpoint table",
            cam("    source: { kind: kvs, stream_name: s, checkpoint_table: x }\n    ocr: { model: text }"),
            "cameras[0].source.checkpoint_table",
        ),
        (
            "fps zero",
            cam(&format!("{file}    target_fps: 0\n    ocr: {{ model: text }}")),
            "cameras[0].target_fps: must be in",
        ),
        ("fps huge", cam(&format!("{file}    target_fps: 500\n    ocr: {{ model: text }}")), "cameras[0].target_fps"),
        ("no model", cam(file), "cameras[0]: runs no model"),
        (
            "unknown detect",
            cam(&format!("{file}    detect: [plates]")),
            "cameras[0].detect[0]: no model with id \"plates\"",
        ),
        (
            "detect ocr model",
            cam(&format!("{file}    detect: [text]")),
            "cameras[0].detect[0]: model \"text\" is an ocr model",
        ),
        (
            "ocr yolo model",
            cam(&format!("{file}    ocr: {{ model: faces }}")),
            "cameras[0].ocr.model: model \"faces\" is a yolo model",
        ),
        ("ocr unknown model", cam(&format!("{file}    ocr: {{ model: nope }}")), "cameras[0].ocr.model: no model"),
        (
            "within without detect",
            cam(&format!("{file}    ocr: {{ model: text, within: [plate] }}")),
            "cameras[0].ocr.within",
        ),
        (
            "roi too few points",
            cam(&format!("{file}    ocr: {{ model: text }}\n    roi: [{{ name: z, points: [[0,0],[1,1]] }}]")),
            "cameras[0].roi[0]: polygon needs >= 3 points",
        ),
        (
            "roi outside",
            cam(&format!("{file}    ocr: {{ model: text }}\n    roi: [{{ name: z, points: [[0,0],[1,1],[1.5,0]] }}]")),
            "cameras[0].roi[0].points[2]: coordinates are normalised",
        ),
        (
            "roi unnamed",
            cam(&format!("{file}    ocr: {{ model: text }}\n    roi: [{{ points: [[0,0],[1,1],[1,0]] }}]")),
            "cameras[0].roi[0].name",
        ),
        (
            "roi duplicate",
            cam(&format!(
                "{file}    ocr: {{ model: text }}\n    roi: [{{ name: z, points: [[0,0],[1,1],[1,0]] }}, {{ name: z, points: [[0,0],[1,1],[1,0]] }}]"
            )),
            "cameras[0].roi[1].name: duplicate zone name",
        ),
        (
            "camera unknown key",
            cam(&format!("{file}    ocr: {{ model: text }}\n    fps: 3")),
            "cameras[0].fps: unknown key",
        ),
        (
            "wrong type",
            cam(&format!("{file}    ocr: {{ model: text }}\n    target_fps: fast")),
            "cameras[0].target_fps: invalid type",
        ),
        (
            "skip before the lag",
            cam(&format!("{file}    ocr: {{ model: text }}\n    max_lag: 10s\n    skip_after: 5s")),
            "cameras[0].skip_after: must be longer than max_lag",
        ),
        (
            "lag out of range",
            cam(&format!("{file}    ocr: {{ model: text }}\n    max_lag: 2days")),
            "cameras[0].max_lag: must be in",
        ),
        (
            "lag not a duration",
            cam(&format!("{file}    ocr: {{ model: text }}\n    max_lag: 5")),
            "cameras[0].max_lag: invalid value: string \"5\", expected a duration",
        ),
        (
            "idle end zero",
            cam(&format!("{file}    ocr: {{ model: text }}\n    tracking: {{ idle_end: 0s }}")),
            "cameras[0].tracking.idle_end: must be greater than 0",
        ),
    ];
    expect_problems(cases);
}

#[test]
fn catch_up_and_idle_end_default_sensibly() {
    let cfg = load(&with_cameras(
        "  - { id: a, source: { kind: file, path: v.mkv }, ocr: { model: text } }\n  - { id: b, source: { kind: file, path: v.mkv }, ocr: { model: text }, target_fps: 0.5, max_lag: 30s, skip_after: 2h, tracking: { max_age: 4 } }",
    ))
    .expect("valid");
    let (a, b) = (&cfg.cameras[0], &cfg.cameras[1]);
    assert_eq!(a.catch_up, config::CatchUp { max_lag: Duration::from_secs(5), skip_after: Duration::from_secs(1800) });
    assert_eq!(a.idle_end, Duration::from_secs(2), "3 frames at 5 fps is under the 2 s floor");
    assert_eq!(b.catch_up, config::CatchUp { max_lag: Duration::from_secs(30), skip_after: Duration::from_secs(7200) });
    assert_eq!(b.idle_end, Duration::from_secs(8), "4 frames at 0.5 fps");
}

#[test]
fn fleet_keys_default_and_are_checked() {
    let fleet = |body: &str| {
        format!(
            "{}fleet: {body}\n",
            with_cameras("  - { id: a, source: { kind: file, path: v.mkv }, ocr: { model: text } }")
        )
    };
    let cfg = load(&fleet("{ lease_table: leases }")).expect("valid");
    let f = cfg.fleet.expect("fleet");
    assert_eq!((f.lease_duration, f.max_cameras_per_task, f.task_id), (Duration::from_secs(20), None, None));
    let got = problems(&fleet("{ lease_table: 'a b', lease_duration: 1s, max_cameras_per_task: 0, task_id: '' }"));
    for expected in ["fleet.lease_table", "fleet.lease_duration", "fleet.max_cameras_per_task", "fleet.task_id"] {
        assert!(got.iter().any(|p| p.starts_with(expected)), "{expected}: {got:?}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = with_cameras(
        "  - id: cam-1\n    source: { kind: file, path: v.mkv }\n    ocr: { model: nope }\n    roi: [{ name: z, points: [[0,0],[1,1]] }]\n    colour: red",
    ) + "bogus: 1\nruntime: { max_batch: 0 }\n";
    let got = problems(&yaml);
    for expected in [
        "cameras[0].colour: unknown key",
        "bogus: unknown key",
        "cameras[0].ocr.model: no model",
        "cameras[0].roi[0]: polygon needs >= 3 points",
        "runtime.max_batch: must be at least 1",
    ] {
        assert!(got.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {got:?}");
    }
}

#[test]
fn kvs_start_selectors_parse() {
    let cases = [
        ("now", StartSelector::Now),
        ("earliest", StartSelector::Earliest),
        (
            "{ fragment_number: '91343852333181432392682062607743920146264440287' }",
            StartSelector::FragmentNumber("91343852333181432392682062607743920146264440287".into()),
        ),
        (
            "{ producer_timestamp: '2026-11-23T10:00:00Z' }",
            StartSelector::ProducerTimestamp("2026-11-23T10:00:00Z".into()),
        ),
        (
            "{ server_timestamp: '2026-11-23T10:00:00.250Z' }",
            StartSelector::ServerTimestamp("2026-11-23T10:00:00.250Z".into()),
        ),
    ];
    for (yaml, expected) in cases {
        let c = load(&with_cameras(&format!(
            "  - id: cam-1\n    source: {{ kind: kvs, stream_name: gate, start: {yaml} }}\n    ocr: {{ model: text }}"
        )))
        .unwrap_or_else(|e| panic!("{yaml}: {e}"));
        match &c.cameras[0].source {
            SourceSpec::Kvs { stream, start, .. } => {
                assert_eq!(stream, &StreamRef::Name("gate".into()));
                assert_eq!(start, &expected);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn env_overrides_apply_and_are_validated() {
    let env = EnvOverrides {
        http_port: Some("9090".into()),
        log_level: Some("debug".into()),
        log_format: Some("json".into()),
        aws_region: Some("eu-central-1".into()),
    };
    let c = config::load_str(BASE, "t", &env).expect("valid");
    assert_eq!(c.server.port, 9090);
    assert_eq!(c.logging.level, "debug");
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.aws.region.as_deref(), Some("eu-central-1"));

    let bad = EnvOverrides {
        http_port: Some("http".into()),
        log_level: Some("info,[[".into()),
        log_format: Some("xml".into()),
        aws_region: Some("Mars 1".into()),
    };
    let got = config::load_str(BASE, "t", &bad).map(|_| ()).expect_err("invalid").problems();
    for expected in ["HTTP_PORT: must be a port", "LOG_FORMAT: must be text or json", "logging.level", "aws.region"] {
        assert!(got.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {got:?}");
    }
}

#[test]
fn empty_and_malformed_files() {
    let got = problems("");
    assert!(got.iter().any(|p| p.starts_with("cameras: at least one camera")), "{got:?}");
    let got = problems("cameras: [\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("test.yaml:"), "{got:?}");
    let got = problems("- just\n- a list\n");
    assert!(got[0].contains("invalid type"), "{got:?}");
}

#[test]
fn missing_files_are_reported_by_load_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, BASE.replace("models/320n.onnx", "models/absent-320n.onnx")).expect("write");
    let got = config::load_file(&path, &EnvOverrides::default()).map(|_| ()).expect_err("missing files").problems();
    for expected in
        ["models.faces.path: no such file", "models.text.det.path", "models.text.rec.path", "cameras[0].source.path"]
    {
        assert!(got.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {got:?}");
    }
    let err =
        config::load_file(&dir.path().join("absent.yaml"), &EnvOverrides::default()).map(|_| ()).expect_err("absent");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.problems()[0].contains("No such file or directory"), "the OS's reason: {:?}", err.problems());
}

/// The shipped configs are valid: the local one against the provisioned models (`make setup` ran
/// first); the ECS ones (the example and ecs/config/service.yaml rendered as deploy.sh renders it)
/// name the image's model files, which are the provisioned ones, and streams the task may read.
#[test]
fn shipped_configs_are_valid() {
    let local = config::load_file(Path::new("config/local.yaml"), &EnvOverrides::default()).expect("local.yaml");
    assert!(!local.cameras.is_empty());
    let example = std::fs::read_to_string("config/cameras.example.yaml").expect("example");
    let mut service = std::fs::read_to_string("ecs/config/service.yaml").expect("ecs/config/service.yaml");
    for (var, value) in [
        ("AWS_REGION", "eu-west-1"),
        ("KVS_STREAM_PREFIX", "camera-"),
        ("CHECKPOINT_TABLE", "kvs-infer-example-checkpoints"),
        ("EVENTS_STREAM", "kvs-infer-example-events"),
        ("SNAPSHOT_BUCKET", "kvs-infer-example-snapshots-123456789012"),
        ("STATE_TABLE", "kvs-infer-example-camera-state"),
        ("EVENTS_TABLE", "kvs-infer-example-events"),
        ("LEASE_TABLE", "kvs-infer-example-leases"),
        ("METRICS_NAMESPACE", "KvsInfer"),
        ("NAME", "kvs-infer-example"),
    ] {
        service = service.replace(&format!("${{{var}}}"), value);
    }
    assert!(!service.contains("${"), "a placeholder of ecs/config/service.yaml has no test value");
    // The stream prefix of ecs/env/example.env, which the task role's KVS statement is limited to.
    let env = std::fs::read_to_string("ecs/env/example.env").expect("example.env");
    let prefix = env.lines().find_map(|l| l.strip_prefix("KVS_STREAM_PREFIX=")).expect("KVS_STREAM_PREFIX");
    for (file, yaml) in [("config/cameras.example.yaml", example), ("ecs/config/service.yaml", service)] {
        let c = config::load_str(&yaml, file, &EnvOverrides::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(c.requires_gpu(), "{file}");
        assert!(c.sinks.kinesis.is_some() && c.sinks.s3.is_some() && c.sinks.dynamodb.is_some(), "{file}");
        for camera in &c.cameras {
            let SourceSpec::Kvs { stream: StreamRef::Name(name), .. } = &camera.source else {
                panic!("{file}: {} is not a KVS camera named by stream name", camera.id)
            };
            assert!(name.starts_with(prefix), "{file}: stream {name} is outside the task role's prefix {prefix}");
        }
        let paths: Vec<String> = yaml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("path: "))
            .map(|p| p.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        assert!(paths.len() >= 3, "{file}: {paths:?}");
        for path in paths {
            let file_name = path
                .strip_prefix("/opt/kvs-infer/models/")
                .unwrap_or_else(|| panic!("{file}: {path} is not in the image"));
            assert!(Path::new("models").join(file_name).exists(), "{file}: {path} is not a model the image carries");
        }
    }
}
