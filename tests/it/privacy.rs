//! `cameras[].privacy.blur` end to end: `run-file` on a talk recording with the YOLO model's face
//! classes; the snapshots of face tracks show the faces pixelated, where the same run without
//! `privacy` shows them as they are.

use crate::common::cli::run_file;

fn config(dir: &std::path::Path, privacy: &str) -> std::path::PathBuf {
    let yaml = format!(
        "logging: {{ level: warn, format: text }}\n\
         runtime: {{ execution_provider: cpu, intra_op_threads: 2, warmup_runs: 1 }}\n\
         models:\n  faces: {{ kind: yolo, path: models/320n.onnx }}\n\
         cameras:\n  - id: talk\n    source: {{ kind: file, path: tests/fixtures/sample/faces.mkv }}\n    \
         detect: [faces]\n    motion: {{ enabled: false }}\n    tracking: {{ min_hits: 2, window: 3 }}\n{privacy}\
         sinks: {{ local: {{ dir: {} }} }}\n",
        dir.join("out").display()
    );
    let path = dir.join("privacy.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

/// Mean absolute difference between horizontal neighbours inside `bbox` (shrunk past the
/// outline the snapshot draws): how much detail is left there.
fn detail(snapshot: &str, bbox: &[f64]) -> f64 {
    let img = image::open(snapshot).unwrap_or_else(|e| panic!("{snapshot}: {e}")).into_luma8();
    let (x1, y1, x2, y2) = (bbox[0] as u32 + 6, bbox[1] as u32 + 6, bbox[2] as u32 - 6, bbox[3] as u32 - 6);
    let (mut sum, mut n) = (0f64, 0f64);
    for y in y1..y2 {
        for x in x1..x2.saturating_sub(1) {
            sum += (f64::from(img.get_pixel(x, y)[0]) - f64::from(img.get_pixel(x + 1, y)[0])).abs();
            n += 1.0;
        }
    }
    sum / n.max(1.0)
}

/// Each face track's `new` event: its box and snapshot.
fn faces(events: &[serde_json::Value]) -> Vec<(Vec<f64>, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "new" && e["label"].as_str().is_some_and(|l| l.starts_with("FACE_")))
        .map(|e| {
            let bbox = e["box"].as_array().expect("box").iter().map(|v| v.as_f64().expect("number")).collect();
            (bbox, e["snapshot"].as_str().expect("snapshot").to_owned())
        })
        .collect()
}

#[test]
fn faces_are_pixelated_in_snapshots_only_with_privacy_blur() {
    let open_dir = tempfile::tempdir().expect("tempdir");
    let (events, stderr) = run_file(&config(open_dir.path(), ""), "tests/fixtures/sample/faces.mkv");
    let plain = faces(&events);
    assert!(!plain.is_empty(), "the talk has faces: {events:#?}\n{stderr}");
    let hidden_dir = tempfile::tempdir().expect("tempdir");
    let privacy = "    privacy: { blur: [FACE_MALE, FACE_FEMALE] }\n";
    let (events, stderr) = run_file(&config(hidden_dir.path(), privacy), "tests/fixtures/sample/faces.mkv");
    let hidden = faces(&events);
    assert_eq!(hidden.len(), plain.len(), "the same tracks: {stderr}");
    for ((bbox, open), (_, blurred)) in plain.iter().zip(&hidden) {
        let (before, after) = (detail(open, bbox), detail(blurred, bbox));
        eprintln!("face {bbox:?}: detail {before:.2} -> {after:.2}");
        assert!(after < before * 0.5, "the face at {bbox:?} is not hidden: detail {before:.2} -> {after:.2}");
    }
}
