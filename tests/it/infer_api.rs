//! `POST /v1/infer`: 503 until ready, 413 above the size limit, 415 for other types, 422 for an
//! undecodable image, and a real round trip through the worker and models.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kvs_infer::config::{self, EnvOverrides};
use kvs_infer::health::{Health, Stage};
use kvs_infer::infer::engine::Engine;
use kvs_infer::metrics;
use kvs_infer::server::{AppState, InferTarget, app};
use tower::ServiceExt;

const CONFIG: &str = r#"
runtime: { intra_op_threads: 1 }
models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx }
cameras: [ { id: api, source: { kind: file, path: x.mkv }, ocr: { model: text } } ]
sinks: { local: {} }
"#;

async fn post(state: &AppState, content_type: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let request =
        Request::post("/v1/infer").header("content-type", content_type).body(Body::from(body)).expect("request");
    let response = app(state.clone()).oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn png() -> Vec<u8> {
    std::fs::read("tests/fixtures/parity/text_plate_yellow.png").expect("png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_a_real_round_trip() {
    let health = Health::new();
    let state = AppState::new(health.subscribe(), metrics::install(), 64 * 1024);

    // Not ready yet.
    let (status, body) = post(&state, "image/png", png()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().expect("error").contains("not ready"), "{body}");

    // Ready: load the models and hand the engine to the state.
    let cfg = config::load_str(CONFIG, "api", &EnvOverrides::default()).expect("config");
    let (eng, _handle) = Engine::load(&cfg.runtime, &cfg.models).await.expect("models");
    assert!(state.infer.set(InferTarget { engine: eng, camera: cfg.cameras[0].clone() }).is_ok());
    for stage in Stage::ALL {
        health.complete(stage, None);
    }

    let (status, body) = post(&state, "image/png", png()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(480), Some(140)));
    assert_eq!(body["texts"][0]["text"], "EU-4711-K");
    assert_eq!(body["detections"], serde_json::json!([]));

    let (status, _) = post(&state, "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = post(&state, "image/jpeg", b"\xff\xd8 not really a jpeg".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = post(&state, "image/png", vec![0u8; 65 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Draining: not ready again.
    health.start_draining();
    let (status, _) = post(&state, "image/png", png()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
