//! End to end on the sample video (`tests/reference/make_sample_video.sh`): `run-file` reports
//! exactly the plates that drove through the ROI, each once as `new` and once as `end`; none
//! for the plate outside the ROI or the one shown too briefly; snapshots decode as JPEG.

use std::process::Command;

use crate::common::cli::{run_file, run_file_count};

#[test]
fn run_file_reports_exactly_the_plates_in_the_lane() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("realtime: true", "realtime: false")
        .replace("level: info", "level: warn")
        .replace("dir: out", &format!("dir: {}", out_dir.path().display()));
    let config_path = out_dir.path().join("local.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("--config")
        .arg(&config_path)
        .args(["run-file", "tests/fixtures/sample/plates.mkv"])
        .output()
        .expect("run-file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();

    let of = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> =
            events.iter().filter(|e| e["type"] == kind).filter_map(|e| e["text"].as_str().map(str::to_owned)).collect();
        v.sort();
        v
    };
    assert_eq!(of("new"), ["AB 123 CD", "KVS 2026"], "{events:#?}");
    assert_eq!(of("end"), ["AB 123 CD", "KVS 2026"]);
    assert!(events.iter().all(|e| e["zone"] == "lane" && e["camera"] == "local-0" && e["schema"] == 2));
    for e in &events {
        for key in ["event_id", "track_id", "label", "score", "box", "first_seen", "last_seen", "models"] {
            assert!(!e[key].is_null(), "{key} missing in {e}");
        }
        let snapshot = e["snapshot"].as_str().expect("new and end events have snapshots");
        let img = image::open(snapshot).unwrap_or_else(|err| panic!("{snapshot}: {err}"));
        assert_eq!((img.width(), img.height()), (640, 360));
    }
    // The same events are in events.jsonl.
    let log = std::fs::read_to_string(out_dir.path().join("events.jsonl")).expect("events.jsonl");
    assert_eq!(log.lines().count(), events.len());
}

/// The events `run-file` prints for `video` with the embedded default's models (no snapshots).
fn run_file_events(video: &str) -> Vec<serde_json::Value> {
    run_file_with(video, true).0
}

/// [`run_file_events`] with `ocr.read_once` on or off; also the recognitions it saved.
fn run_file_with(video: &str, read_once: bool) -> (Vec<serde_json::Value>, u64) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("realtime: true", "realtime: false")
        .replace("level: info", "level: warn")
        .replace("model: text ", &format!("read_once: {{ enabled: {read_once} }}\n      model: text "))
        .replace("dir: out", &format!("dir: {}\n    snapshots: false", out_dir.path().display()));
    let config_path = out_dir.path().join("local.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let (events, stderr) = run_file(&config_path, video);
    (events, run_file_count(&stderr, "recognitions saved"))
}

/// Reading a line once: with `read_once` the plates are recognised a few times and then keep
/// their reading while they drive through, and the events are the same as recognising every
/// frame: the same plates, each one `new` and one `end`, seen first and last on the same frames.
#[test]
fn reading_a_line_once_saves_recognitions_and_changes_no_event() {
    let video = "tests/fixtures/sample/plates.mkv";
    let ((once, saved), (every, none_saved)) = (run_file_with(video, true), run_file_with(video, false));
    let summary = |events: &[serde_json::Value]| -> Vec<String> {
        let mut v: Vec<String> = events
            .iter()
            .map(|e| format!("{} {} {} {} {}", e["type"], e["text"], e["zone"], e["first_seen"], e["last_seen"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(summary(&once), summary(&every), "{once:#?}\n{every:#?}");
    assert_eq!(once.len(), 4, "{once:#?}");
    assert_eq!(none_saved, 0, "read_once off recognises every line");
    // Two plates each in the lane for ~8 s at 5 fps: ~80 line readings; after 3 settled readings
    // and then one in every 11 (max_reuse 10), most are reused.
    assert!(saved >= 30, "only {saved} recognitions saved");
}

#[test]
fn the_h265_sample_gives_the_same_events_as_the_h264_one() {
    let (h264, h265) =
        (run_file_events("tests/fixtures/sample/plates.mkv"), run_file_events("tests/fixtures/sample/plates_h265.mkv"));
    let summary = |events: &[serde_json::Value]| -> Vec<(String, String, String)> {
        let mut v: Vec<_> =
            events.iter().map(|e| (e["type"].to_string(), e["text"].to_string(), e["zone"].to_string())).collect();
        v.sort();
        v
    };
    assert_eq!(summary(&h264), summary(&h265), "{h264:#?}\n{h265:#?}");
    // The same plates at the same stream times, within one sampled frame (5 fps).
    for e in h265.iter().filter(|e| e["type"] == "new") {
        let twin = h264.iter().find(|t| t["type"] == "new" && t["text"] == e["text"]).expect("same plate");
        let (a, b) = (e["first_seen"].as_f64().expect("t"), twin["first_seen"].as_f64().expect("t"));
        assert!((a - b).abs() <= 0.2 + 1e-9, "{} first seen at {a} (H.265) and {b} (H.264)", e["text"]);
    }
}
