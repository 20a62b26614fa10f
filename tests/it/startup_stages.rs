//! Startup stages driven by `run_stages` with a fake GPU probe and a slow-loading model, under
//! paused time: at every moment `/healthz` and `/readyz` answer 503 naming the running stage,
//! with durations that match the time spent; 200 at ready; a failing step fails its stage.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kvs_infer::health::Health;
use kvs_infer::metrics;
use kvs_infer::server::{AppState, app};
use kvs_infer::startup::{StartupSteps, run_stages};
use serde_json::Value;
use tower::ServiceExt;

/// A GPU that answers in 2 s, models that load in 40 s (a big engine), warm-up in 15 s.
struct SlowSteps {
    fail_models: bool,
}

impl StartupSteps for SlowSteps {
    type Output = &'static str;

    async fn gpu(&mut self, health: &Health) -> anyhow::Result<String> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        health.set_info("gpu_name", "Tesla T4 (fake)");
        Ok("Tesla T4 (GPU-fake), index 0".into())
    }

    async fn load_models(&mut self, _: &Health) -> anyhow::Result<String> {
        tokio::time::sleep(Duration::from_secs(40)).await;
        if self.fail_models {
            anyhow::bail!("model plates: cannot load models/plates.onnx: no such file");
        }
        Ok("3 session(s)".into())
    }

    async fn warm_up(&mut self, _: &Health) -> anyhow::Result<(&'static str, String)> {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Ok(("engine", "2 run(s) per session".into()))
    }
}

async fn get(health: &Health, path: &str) -> (StatusCode, Value) {
    let state = AppState::new(health.subscribe(), metrics::install(), 1024);
    let response =
        app(state).oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json"))
}

/// Advances paused time to `at` seconds after the start and reads both endpoints.
async fn at(health: &Health, started: tokio::time::Instant, secs: u64) -> (StatusCode, Value) {
    tokio::time::sleep_until(started + Duration::from_secs(secs)).await;
    tokio::task::yield_now().await;
    let (ready_status, _) = get(health, "/readyz").await;
    let (status, body) = get(health, "/healthz").await;
    assert_eq!(ready_status, status, "/readyz and /healthz agree");
    (status, body)
}

fn duration(body: &Value, stage: usize) -> f64 {
    body["stages"][stage]["duration_seconds"].as_f64().expect("duration")
}

#[tokio::test(start_paused = true)]
async fn each_stage_is_named_while_it_runs_and_ready_is_200() {
    let health = Health::new();
    let started = tokio::time::Instant::now();
    let h = health.clone();
    let run = tokio::spawn(async move { run_stages(&h, &mut SlowSteps { fail_models: false }).await });

    let (status, body) = at(&health, started, 1).await;
    assert_eq!((status, body["stage"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("gpu")));
    assert_eq!(body["status"], "starting");

    let (status, body) = at(&health, started, 30).await;
    assert_eq!((status, body["stage"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("models_loaded")));
    assert_eq!(body["stages"][1]["state"], "done");
    assert_eq!(body["stages"][1]["detail"], "Tesla T4 (GPU-fake), index 0");
    assert!((duration(&body, 1) - 2.0).abs() < 0.01, "gpu took 2 s: {}", duration(&body, 1));
    assert!((duration(&body, 2) - 28.0).abs() < 0.01, "models_loaded running for 28 s: {}", duration(&body, 2));
    assert_eq!(body["info"]["gpu_name"], "Tesla T4 (fake)");

    let (status, body) = at(&health, started, 50).await;
    assert_eq!((status, body["stage"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("warmed_up")));
    assert!((duration(&body, 2) - 40.0).abs() < 0.01);

    let (status, body) = at(&health, started, 58).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    assert!((body["time_to_ready_seconds"].as_f64().expect("time to ready") - 57.0).abs() < 0.01);
    assert_eq!(run.await.expect("join").expect("started"), "engine");
    // Live the whole time: a slow start is never a liveness failure.
    assert_eq!(get(&health, "/livez").await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_fails_its_stage_and_never_becomes_ready() {
    let health = Health::new();
    let started = tokio::time::Instant::now();
    let result = run_stages(&health, &mut SlowSteps { fail_models: true }).await;
    let err = result.expect_err("models fail");
    assert!(err.to_string().contains("cannot load models/plates.onnx"));
    let (status, body) = at(&health, started, 120).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["stages"][2]["state"], "failed");
    assert!(body["stages"][2]["detail"].as_str().expect("detail").contains("no such file"));
    assert_eq!(body["stages"][3]["state"], "pending");
}
