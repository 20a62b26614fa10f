//! Inference costs: letterbox and resizing, NMS on 8400 candidates, DB post-processing of a real
//! probability map, CTC decoding, and end to end: OCR of a 1280x674 frame with text, YOLO at
//! input sizes 320 and 640. CPU execution provider, one intra-op thread.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kvs_infer::config::{self, EnvOverrides, ModelId, OcrDetConfig};
use kvs_infer::infer::engine::{self, Engine};
use kvs_infer::infer::ocr;
use kvs_infer::infer::ocr::det::{self, DetGeometry};
use kvs_infer::infer::ocr::rec::Dictionary;
use kvs_infer::infer::preprocess::{Normalization, letterbox};
use kvs_infer::infer::yolo::{Candidate, nms};
use kvs_infer::media::image::RgbImage;

fn frame() -> RgbImage {
    RgbImage::decode(&std::fs::read("tests/fixtures/parity/frame_talk_50.png").expect("frame")).expect("png")
}

fn image_ops(c: &mut Criterion) {
    let img = frame().resize(1280, 720).expect("720p");
    c.bench_function("letterbox_1280x720_to_640", |b| {
        b.iter(|| letterbox(&img, 640, &Normalization::YOLO).expect("ok"))
    });
    c.bench_function("resize_opencv_exact_1280x720_to_640x360", |b| b.iter(|| img.resize(640, 360).expect("ok")));
    c.bench_function("resize_fast_image_resize_1280x720_to_640x360", |b| {
        b.iter(|| img.resize_fast(640, 360).expect("ok"))
    });
}

fn postprocess(c: &mut Criterion) {
    // 8400 candidates (a 640 YOLOv8 grid), clustered so NMS has real work.
    let candidates: Vec<Candidate> = (0..8400)
        .map(|i| {
            let (cx, cy) = ((i % 120) as f32 * 5.0, (i / 120) as f32 * 8.0);
            let jitter = (i % 7) as f32;
            Candidate {
                bbox: [cx + jitter, cy, cx + 40.0 + jitter, cy + 60.0],
                score: 0.3 + (i % 97) as f32 / 200.0,
                class_id: i % 3,
            }
        })
        .collect();
    c.bench_function("nms_8400_candidates", |b| b.iter(|| nms(candidates.clone(), 0.45, 300).len()));

    // CTC over 80 steps x 18710 classes (PP-OCRv6 rec output for a 640-wide line).
    let classes = 18710;
    let dictionary = Dictionary::from_metadata(
        &(0..classes - 2)
            .map(|i| char::from_u32(0x4E00 + i as u32).unwrap_or('x').to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let probs: Vec<f32> =
        (0..80 * classes).map(|i| if i % classes == (i / classes * 37) % classes { 0.9 } else { 0.00001 }).collect();
    c.bench_function("ctc_decode_80x18710", |b| b.iter(|| dictionary.decode(&probs, classes)));
}

fn start() -> (tokio::runtime::Runtime, Engine, config::Config) {
    let yaml = r#"
runtime: { intra_op_threads: 1, max_batch: 8, max_delay: 2ms }
models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx }
    cls: { path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx }
  yolo320: { kind: yolo, path: models/320n.onnx }
  yolo640: { kind: yolo, path: models/320n.onnx, input_size: 640 }
cameras: [ { id: bench, source: { kind: file, path: unused.mkv }, detect: [yolo320], ocr: { model: text } } ]
sinks: { local: {} }
"#;
    let cfg = config::load_str(yaml, "bench", &EnvOverrides::default()).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (engine, _) =
        rt.block_on(Engine::load(&cfg.runtime, &cfg.models)).expect("ONNX Runtime and models (make setup)");
    (rt, engine, cfg)
}

fn end_to_end(c: &mut Criterion) {
    let (_rt, engine, _cfg) = start();
    let img = frame();
    let engine = Arc::new(engine);
    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10);
    g.bench_function("ocr_1280x674_frame", |b| {
        b.iter(|| engine.read_text(&ModelId("text".into()), &img).expect("ocr").len())
    });
    g.bench_function("yolo_320", |b| b.iter(|| engine.detect(&ModelId("yolo320".into()), &img).expect("yolo").len()));
    g.bench_function("yolo_640", |b| b.iter(|| engine.detect(&ModelId("yolo640".into()), &img).expect("yolo").len()));
    g.finish();

    // DB post-processing of the real probability map of that frame.
    let cfg = OcrDetConfig::default();
    let (dw, dh) = det::input_size(img.width, img.height, &cfg);
    let map = engine_det_map(&img, dw, dh);
    let g2 = DetGeometry {
        padded_width: img.width,
        padded_height: img.height,
        pad_top: 0,
        ratio_w: 1.0,
        ratio_h: 1.0,
        src_width: img.width,
        src_height: img.height,
    };
    c.bench_function("db_postprocess_1408x736_map", |b| {
        b.iter(|| det::postprocess(&map, dw as usize, dh as usize, &cfg, &g2).len())
    });
}

/// Runs the detector once, directly, for the post-processing benchmark's input.
fn engine_det_map(img: &RgbImage, dw: u32, dh: u32) -> Vec<f32> {
    let cfg = config::load_str(
        "models: { text: { kind: ocr, det: { path: models/PP-OCRv6_det_small.onnx }, rec: { path: models/PP-OCRv6_rec_small.onnx } } }\ncameras: [ { id: b, source: { kind: file, path: x.mkv }, ocr: { model: text } } ]\nsinks: { local: {} }\n",
        "bench",
        &EnvOverrides::default(),
    )
    .expect("config");
    let mut loaded = engine::load_models(&cfg.runtime, &cfg.models).expect("ONNX Runtime and models (make setup)");
    let det = loaded.models.sessions.iter_mut().find(|s| s.part == ocr::DET).expect("det session");
    let resized = img.resize(dw, dh).expect("resize");
    let mut input = vec![0f32; 3 * (dw * dh) as usize];
    kvs_infer::infer::preprocess::write_chw(&resized, &Normalization::PADDLE, &mut input, dw as usize, dh as usize);
    let value = ort::value::Tensor::from_array(([1usize, 3, dh as usize, dw as usize], input)).expect("tensor");
    let out = det.session.run(ort::inputs![value]).expect("run");
    out[0].try_extract_tensor::<f32>().expect("f32").1.to_vec()
}

criterion_group!(benches, image_ops, postprocess, end_to_end);
criterion_main!(benches);
