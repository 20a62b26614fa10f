//! Motion gating end to end on a mostly still gate scene with sensor noise and lighting drift
//! (`tests/fixtures/sample/gate_still.mkv`, made by `tests/reference/make_gate_scene.py still
//! --size 640x360 --seconds 30 --crf 30`; one plate drives through the lane from 8 to 14 s): the
//! gated run reports the same plate as the ungated one, one `new` and one `end` with `first_seen`
//! within one sampled frame, while analysing under half of the sampled frames. Sampled at 2 fps
//! to keep the (debug-build) runs short.

use crate::common::cli::{run_file, run_file_count};

const FIXTURE: &str = "tests/fixtures/sample/gate_still.mkv";
/// 2 sampled frames a second.
const FRAME_S: f64 = 0.5;

/// `run-file` on the fixture: the events and (sampled, analysed).
fn run(gated: bool) -> (Vec<serde_json::Value>, (u64, u64)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
logging: {{ level: warn }}
models:
  text:
    kind: ocr
    det: {{ path: models/PP-OCRv6_det_small.onnx }}
    cls: {{ path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }}
    rec: {{ path: models/PP-OCRv6_rec_small.onnx, min_score: 0.8 }}
cameras:
  - id: gate
    source: {{ kind: file, path: {FIXTURE} }}
    target_fps: 2
    ocr: {{ model: text }}
    roi:
      - name: lane
        points: [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]
    motion: {{ enabled: {gated} }}
    # The plate moves ~65 px between frames sampled at 2 fps: a looser match than the default.
    tracking: {{ iou: 0.1 }}
sinks:
  local: {{ dir: {} }}
"#,
        dir.path().display()
    );
    let path = dir.path().join("gate.yaml");
    std::fs::write(&path, config).expect("config");
    let (events, stderr) = run_file(&path, FIXTURE);
    (events, (run_file_count(&stderr, "sampled,"), run_file_count(&stderr, "analysed,")))
}

/// (text, type) → first_seen, for every event.
fn by_plate(events: &[serde_json::Value]) -> Vec<(String, String, f64)> {
    let mut v: Vec<(String, String, f64)> = events
        .iter()
        .map(|e| {
            let text = e["text"].as_str().unwrap_or("").to_owned();
            (text, e["type"].as_str().expect("type").to_owned(), e["first_seen"].as_f64().expect("first_seen"))
        })
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

#[test]
fn gated_runs_report_the_same_plates_on_a_fraction_of_the_frames() {
    let (gated, (sampled, analysed_gated)) = run(true);
    let (ungated, (sampled_ungated, analysed_ungated)) = run(false);
    assert_eq!(sampled, sampled_ungated);
    assert_eq!(analysed_ungated, sampled, "without gating every sampled frame is analysed");
    assert!(analysed_gated * 2 < sampled, "gating analysed {analysed_gated} of {sampled} sampled frames");
    let (a, b) = (by_plate(&gated), by_plate(&ungated));
    let plates = |v: &[(String, String, f64)]| v.iter().map(|(t, k, _)| format!("{t}/{k}")).collect::<Vec<_>>();
    assert_eq!(plates(&a), plates(&b), "gated {gated:#?}\nungated {ungated:#?}");
    assert_eq!(plates(&a), ["KVS 2026/end", "KVS 2026/new"]);
    for (x, y) in a.iter().zip(&b) {
        assert!((x.2 - y.2).abs() <= FRAME_S + 1e-6, "{}: first_seen gated {} ungated {}", x.0, x.2, y.2);
    }
}

/// A gated camera on a paced (realtime) file: the stream never runs ahead of the clock while
/// still frames go unanalysed, so `camera_lag_seconds` stays small (it read 5 s, the re-check
/// interval, when only analysed frames were paced), and a paced file is never judged a backlog
/// (`catching up`: its next bytes are always ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_realtime_file_keeps_to_the_clock() {
    use kvs_infer::config::{self, EnvOverrides};
    use kvs_infer::pipeline::camera::{CameraContext, run_file};
    use kvs_infer::pipeline::live::LiveViews;
    let cfg = config::load_file(std::path::Path::new("config/local.yaml"), &EnvOverrides::default()).expect("config");
    let (engine, _worker) = kvs_infer::infer::engine::Engine::load(&cfg.runtime, &cfg.models).await.expect("models");
    let mut camera = cfg.cameras[0].clone();
    camera.target_fps = 2.0;
    let (events, mut rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let views = LiveViews::on();
    let view = views.camera(&camera.id, &camera.roi).expect("view");
    let ctx = CameraContext {
        camera,
        engine,
        events,
        shutdown: Default::default(),
        health: kvs_infer::health::Health::new(),
        decoder: Default::default(),
        pass: 0,
        view: Some(view.clone()),
    };
    let started = std::time::Instant::now();
    let run = tokio::spawn(run_file(ctx, FIXTURE.into(), true));
    let (mut worst_lag, mut caught_up) = (0f64, false);
    // The live page's picture: refreshed from still frames while nothing is analysed.
    let (mut still_pictures, mut last_seq, mut changed_at, mut longest_wait) = (0, 0, started, 0f64);
    while !run.is_finished() {
        let now = view.summary();
        worst_lag = worst_lag.max(now.lag_seconds);
        caught_up |= now.catching_up;
        if let Some(frame) = now.frame.filter(|f| f.seq != last_seq) {
            still_pictures += usize::from(!frame.analysed);
            longest_wait = longest_wait.max(changed_at.elapsed().as_secs_f64());
            (last_seq, changed_at) = (frame.seq, std::time::Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stats = run.await.expect("join").expect("run");
    assert!(stats.frames_still > stats.frames_analysed, "mostly still: {stats:?}");
    // The 30 s fixture plays in real time (a generous ceiling for loaded machines).
    let took = started.elapsed().as_secs_f64();
    assert!((29.0..90.0).contains(&took), "played in {took:.1} s");
    assert!(worst_lag < 2.5, "camera lag reached {worst_lag:.2} s");
    assert!(!caught_up, "a paced file was judged behind live");
    assert!(still_pictures >= 10, "still frames refreshed the page's picture: {still_pictures}");
    // About once a second (STILL_PICTURE_INTERVAL); a generous ceiling for loaded machines.
    assert!(longest_wait < 4.0, "the picture stayed the same for {longest_wait:.1} s");
}
