//! Parity with the reference implementations on committed inputs (golden outputs made by
//! `tests/reference/make_parity_refs.py`: RapidOCR for PP-OCR, the Ultralytics ONNX recipe for
//! YOLOv8). Requirements: identical text on >= 98% of lines with box IoU >= 0.9; YOLO boxes
//! IoU >= 0.99, same classes, scores within 1e-3.

use std::path::Path;

use kvs_infer::config::{self, Config, EnvOverrides};
use kvs_infer::infer::engine::Engine;
use kvs_infer::media::image::RgbImage;
use serde_json::Value;

const DIR: &str = "tests/fixtures/parity";

/// The models as the references run them (one intra-op thread there and here).
const CONFIG: &str = r#"
runtime: { intra_op_threads: 1, max_batch: 8, max_delay: 1ms }
models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx }
    cls: { path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx }
  faces: { kind: yolo, path: models/320n.onnx, confidence: 0.05, iou: 0.45 }
cameras:
  - { id: parity, source: { kind: file, path: unused.mkv }, detect: [faces], ocr: { model: text } }
sinks: { local: {} }
"#;

fn golden() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/golden.json")).expect("golden.json (make reference)");
    serde_json::from_str(&text).expect("json")
}

async fn engine() -> (Config, Engine) {
    let cfg = config::load_str(CONFIG, "parity", &EnvOverrides::default()).expect("config");
    let (engine, _handle) =
        Engine::load(&cfg.runtime, &cfg.models).await.expect("ONNX Runtime and models (make setup)");
    (cfg, engine)
}

fn image(name: &str) -> RgbImage {
    RgbImage::decode(&std::fs::read(Path::new(DIR).join(name)).expect("image")).expect("png")
}

/// Axis-aligned IoU of two boxes `[x1, y1, x2, y2]`.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

fn bounds(quad: &[[f64; 2]]) -> [f64; 4] {
    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    [
        xs.clone().fold(f64::MAX, f64::min),
        ys.clone().fold(f64::MAX, f64::min),
        xs.fold(f64::MIN, f64::max),
        ys.fold(f64::MIN, f64::max),
    ]
}

fn quad_of(v: &Value) -> Vec<[f64; 2]> {
    v.as_array().expect("quad").iter().map(|p| [p[0].as_f64().expect("x"), p[1].as_f64().expect("y")]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_matches_rapidocr() {
    let golden = golden();
    let (cfg, engine) = engine().await;
    let model = cfg.cameras[0].ocr.as_ref().map(|o| config::ModelId(o.model.clone())).expect("ocr");
    let (mut total, mut same_text, mut boxes_ok, mut extra) = (0usize, 0usize, 0usize, 0usize);
    let mut report = Vec::new();
    for (name, want) in golden["ocr"].as_object().expect("ocr") {
        let (engine, model, img) = (engine.clone(), model.clone(), image(name));
        let ours =
            tokio::task::spawn_blocking(move || engine.read_text(&model, &img)).await.expect("join").expect("ocr");
        let want = want.as_array().expect("lines");
        let mut used = vec![false; ours.len()];
        for w in want {
            total += 1;
            let wb = bounds(&quad_of(&w["quad"]));
            let best = ours
                .iter()
                .enumerate()
                .filter(|(i, _)| !used[*i])
                .map(|(i, o)| (i, iou(wb, bounds(&o.quad.map(|p| [f64::from(p[0]), f64::from(p[1])])))))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let text = w["text"].as_str().expect("text");
            match best {
                Some((i, overlap)) if overlap > 0.3 => {
                    used[i] = true;
                    if ours[i].text == text {
                        same_text += 1;
                    } else {
                        report.push(format!("{name}: {:?} vs reference {text:?}", ours[i].text));
                    }
                    if overlap >= 0.9 {
                        boxes_ok += 1;
                    } else {
                        report.push(format!("{name}: {text:?} box IoU {overlap:.3}"));
                    }
                }
                _ => report.push(format!("{name}: reference line {text:?} not found")),
            }
        }
        for (i, o) in ours.iter().enumerate().filter(|(i, _)| !used[*i]) {
            extra += 1;
            report.push(format!("{name}: extra line {:?} ({i})", o.text));
        }
    }
    let text_ratio = same_text as f64 / total as f64;
    let box_ratio = boxes_ok as f64 / total as f64;
    eprintln!(
        "OCR parity: {same_text}/{total} identical texts ({:.1}%), {boxes_ok}/{total} boxes IoU >= 0.9, {extra} extra",
        text_ratio * 100.0
    );
    for line in &report {
        eprintln!("  {line}");
    }
    assert!(total >= 50, "the reference set is too small: {total} lines");
    assert!(text_ratio >= 0.98, "identical text on {:.1}% of lines (need 98%)", text_ratio * 100.0);
    assert!(box_ratio >= 0.98, "box IoU >= 0.9 on {:.1}% of lines (need 98%)", box_ratio * 100.0);
    assert!(extra as f64 <= 0.02 * total as f64, "{extra} lines the reference does not have");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yolo_matches_the_ultralytics_recipe() {
    let golden = golden();
    let (_, engine) = engine().await;
    let model = config::ModelId("faces".into());
    let mut compared = 0;
    for (name, want) in golden["yolo"]["images"].as_object().expect("yolo") {
        let (engine, model, img) = (engine.clone(), model.clone(), image(name));
        let ours =
            tokio::task::spawn_blocking(move || engine.detect(&model, &img)).await.expect("join").expect("detect");
        let want = want.as_array().expect("boxes");
        assert_eq!(ours.len(), want.len(), "{name}: {} boxes vs reference {}", ours.len(), want.len());
        for w in want {
            let wb: Vec<f64> = w["box"].as_array().expect("box").iter().filter_map(Value::as_f64).collect();
            let wb = [wb[0], wb[1], wb[2], wb[3]];
            let label = w["label"].as_str().expect("label");
            let score = w["score"].as_f64().expect("score");
            let best = ours
                .iter()
                .filter(|d| d.label == label)
                .map(|d| (d, iou(wb, d.bbox.map(f64::from))))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or_else(|| panic!("{name}: no {label} box"));
            assert!(best.1 >= 0.99, "{name}: {label} IoU {:.4}", best.1);
            assert!(
                (f64::from(best.0.score) - score).abs() <= 1e-3,
                "{name}: {label} score {} vs {score}",
                best.0.score
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} boxes compared");
}
