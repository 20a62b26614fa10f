//! ONNX smoke test: every provisioned model loads through ort on the CPU and runs one input.
//! Needs `make setup` (the test command runs it first).

use std::path::Path;

use kvs_infer::config::{ExecutionProviderKind, RuntimeConfig};
use kvs_infer::infer::InferError;
use kvs_infer::infer::runtime::{self, ActiveProvider};
use kvs_infer::infer::session::imgsz;
use ort::session::Session;
use ort::value::Tensor;

fn cpu_config() -> RuntimeConfig {
    RuntimeConfig { intra_op_threads: 1, ..RuntimeConfig::default() }
}

fn open(path: &str) -> Session {
    let rt = runtime::init(&cpu_config()).expect("ONNX Runtime loads (did `make setup` run?)");
    let (mut builder, provider) = runtime::session_builder(rt, &cpu_config()).expect("builder");
    assert_eq!(provider, ActiveProvider::Cpu);
    assert!(Path::new(path).is_file(), "{path} missing: run `make setup`");
    builder.commit_from_file(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs one input of `shape` filled with 0.5 and returns each output's shape.
fn run(session: &mut Session, shape: [usize; 4]) -> Vec<Vec<i64>> {
    let n = shape.iter().product();
    let input = Tensor::from_array((shape, vec![0.5_f32; n])).expect("tensor");
    let outputs = session.run(ort::inputs![input]).expect("run");
    outputs.values().map(|v| v.try_extract_tensor::<f32>().expect("f32 output").0.to_vec()).collect()
}

#[test]
fn yolo_v8_export_runs_and_has_ultralytics_metadata() {
    let mut s = open("models/320n.onnx");
    let meta = s.metadata().expect("metadata");
    let names = meta.custom("names").expect("names metadata");
    assert!(names.contains("FACE_FEMALE") && names.contains("FACE_MALE"), "{names}");
    assert_eq!(imgsz(&s), Some((320, 320)));
    drop(meta);
    let shapes = run(&mut s, [1, 3, 320, 320]);
    // [B, 4 + classes, anchors]: 320/8, /16, /32 grids → 1600 + 400 + 100 = 2100 anchors.
    let out = &shapes[0];
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!((out[0], out[2]), (1, 2100), "{out:?}");
    let classes = usize::try_from(out[1] - 4).expect("classes");
    assert_eq!(classes, names.matches(':').count(), "one row per class in `names`");
}

#[test]
fn ocr_detection_runs_on_a_dynamic_size() {
    let mut s = open("models/PP-OCRv6_det_small.onnx");
    let shapes = run(&mut s, [1, 3, 320, 640]);
    assert_eq!(shapes[0], vec![1, 1, 320, 640], "probability map at input resolution");
}

#[test]
fn ocr_recognition_runs_and_carries_its_dictionary() {
    let mut s = open("models/PP-OCRv6_rec_small.onnx");
    let meta = s.metadata().expect("metadata");
    let dictionary = meta.custom("character").expect("`character` metadata");
    let chars = dictionary.lines().count();
    assert!(chars > 1000, "PP-OCR's dictionary has thousands of characters, got {chars}");
    drop(meta);
    let shapes = run(&mut s, [1, 3, 48, 320]);
    let out = &shapes[0];
    assert_eq!(out[0], 1);
    // CTC classes = dictionary + blank (+ space on some exports).
    let classes = usize::try_from(out[2]).expect("classes");
    assert!((chars + 1..=chars + 2).contains(&classes), "{classes} classes vs {chars} characters");
}

#[test]
fn ocr_direction_classifier_runs() {
    let mut s = open("models/ch_ppocr_mobile_v2.0_cls_mobile.onnx");
    let shapes = run(&mut s, [1, 3, 48, 192]);
    assert_eq!(shapes[0], vec![1, 2], "0 and 180 degrees");
}

#[test]
fn cuda_is_refused_clearly_without_a_gpu_and_auto_falls_back() {
    let rt = runtime::init(&cpu_config()).expect("runtime");
    let cuda = RuntimeConfig { execution_provider: ExecutionProviderKind::Cuda, ..cpu_config() };
    match runtime::session_builder(rt, &cuda) {
        Err(e @ InferError::CudaUnavailable { .. }) => {
            assert!(e.to_string().contains("CUDA execution provider did not register"), "{e}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok((_, p)) => panic!("CUDA registered on a machine without it: {p:?}"),
    }
    let auto = RuntimeConfig { execution_provider: ExecutionProviderKind::Auto, ..cpu_config() };
    let (_, provider) = runtime::session_builder(rt, &auto).expect("auto never fails");
    assert_eq!(provider, ActiveProvider::Cpu);
}

#[tokio::test]
async fn a_rec_height_the_model_does_not_take_fails_startup_naming_both() {
    let yaml = std::fs::read_to_string("config/local.yaml").expect("config").replace(
        "      path: models/PP-OCRv6_rec_small.onnx\n",
        "      path: models/PP-OCRv6_rec_small.onnx\n      height: 32\n",
    );
    assert!(yaml.contains("height: 32"), "{yaml}");
    let cfg = kvs_infer::config::load_str(&yaml, "local.yaml", &kvs_infer::config::EnvOverrides::default())
        .expect("check-config cannot know the model's input");
    let err = kvs_infer::infer::engine::Engine::load(&cfg.runtime, &cfg.models).await.map(drop).expect_err("refused");
    let message = kvs_infer_common::error_chain(&err);
    assert!(message.contains("fixed at 48") && message.contains("rec.height is 32"), "{message}");
}
