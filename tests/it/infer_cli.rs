//! `kvs-infer infer --config FILE IMAGE...`: one JSON line per image, in input pixels.

use std::process::Command;

use crate::common::cli::{CliOutput, json_lines};

const CONFIG: &str = r#"
runtime: { intra_op_threads: 1 }
logging: { level: warn }
models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx }
    cls: { path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx }
  faces: { kind: yolo, path: models/320n.onnx, confidence: 0.3, classes: [FACE_FEMALE, FACE_MALE] }
cameras:
  - { id: cli, source: { kind: file, path: tests/fixtures/kvs/vogels_480.mkv }, detect: [faces], ocr: { model: text } }
sinks: { local: {} }
"#;

fn infer(images: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("infer.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("--config")
        .arg(&config)
        .arg("infer")
        .args(images)
        .output()
        .expect("run");
    json_lines(out)
}

#[test]
fn text_and_faces_in_input_pixels() {
    let (code, lines, stderr) =
        infer(&["tests/fixtures/parity/text_plate_yellow.png", "tests/fixtures/parity/frame_talk_50.png"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 2);
    let plate = &lines[0];
    assert_eq!(plate["image"], "tests/fixtures/parity/text_plate_yellow.png");
    assert_eq!(plate["texts"][0]["text"], "EU-4711-K");
    let quad = plate["texts"][0]["quad"].as_array().expect("quad");
    assert_eq!(quad.len(), 4);
    assert!(quad.iter().all(|p| (0.0..=480.0).contains(&p[0].as_f64().expect("x"))));
    assert_eq!(plate["detections"], serde_json::json!([]));

    let frame = &lines[1];
    let faces = frame["detections"].as_array().expect("detections");
    assert!(!faces.is_empty(), "two people on screen");
    for face in faces {
        let label = face["label"].as_str().expect("label");
        assert!(label == "FACE_FEMALE" || label == "FACE_MALE", "class filter: {label}");
        let b: Vec<f64> = face["box"].as_array().expect("box").iter().filter_map(serde_json::Value::as_f64).collect();
        assert!(b[0] < b[2] && b[1] < b[3] && b[2] <= 1280.0 && b[3] <= 674.0, "{b:?}");
    }
    let texts: Vec<&str> =
        frame["texts"].as_array().expect("texts").iter().filter_map(|t| t["text"].as_str()).collect();
    assert!(texts.contains(&"Matt Yanchyshyn") && texts.contains(&"Anish Kejariwal"), "{texts:?}");
}

#[test]
fn an_unreadable_image_is_reported_and_the_rest_still_run() {
    let (code, lines, stderr) = infer(&["tests/fixtures/kvs/README.md", "tests/fixtures/parity/text_small.png"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("tests/fixtures/kvs/README.md"), "{stderr}");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["texts"][0]["text"], "order 48213 ready");
}
