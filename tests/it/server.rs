//! Server: every endpoint through `app().oneshot()`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kvs_infer::health::{Health, Stage};
use kvs_infer::metrics;
use kvs_infer::server::{AppState, app};
use serde_json::Value;
use tower::ServiceExt;

fn state(health: &Health) -> AppState {
    AppState::new(health.subscribe(), metrics::install(), 1024 * 1024)
}

async fn get(health: &Health, path: &str) -> (StatusCode, String) {
    let response =
        app(state(health)).oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

async fn get_json(health: &Health, path: &str) -> (StatusCode, Value) {
    let (status, body) = get(health, path).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

fn stage_states(body: &Value) -> Vec<(String, String)> {
    body["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| (s["stage"].as_str().expect("stage").to_owned(), s["state"].as_str().expect("state").to_owned()))
        .collect()
}

#[tokio::test]
async fn healthz_is_503_with_every_stage_until_ready_then_200() {
    let health = Health::new();
    for path in ["/healthz", "/readyz"] {
        let (status, body) = get_json(&health, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["ready"], false);
        assert_eq!(body["status"], "starting");
        assert_eq!(body["stage"], "starting");
        let names: Vec<String> = stage_states(&body).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["starting", "gpu", "models_loaded", "warmed_up", "ready"]);
    }

    health.begin(Stage::Gpu);
    health.begin(Stage::ModelsLoaded);
    let (status, body) = get_json(&health, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["stage"], "models_loaded");
    assert_eq!(
        stage_states(&body),
        [
            ("starting".into(), "done".into()),
            ("gpu".into(), "done".into()),
            ("models_loaded".into(), "running".into()),
            ("warmed_up".into(), "pending".into()),
            ("ready".into(), "pending".into()),
        ]
    );
    let loading = &body["stages"][2];
    assert!(loading["started_at"].is_string(), "{loading}");
    assert!(loading["duration_seconds"].as_f64().is_some(), "{loading}");

    health.begin(Stage::WarmedUp);
    health.complete(Stage::Ready, None);
    for path in ["/healthz", "/readyz"] {
        let (status, body) = get_json(&health, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["ready"], true);
        assert_eq!(body["status"], "ready");
        assert!(stage_states(&body).iter().all(|(_, s)| s == "done"), "{body}");
        assert!(body["time_to_ready_seconds"].as_f64().is_some());
    }
}

#[tokio::test]
async fn livez_fails_only_on_liveness_failures() {
    let health = Health::new();
    let (status, body) = get_json(&health, "/livez").await;
    assert_eq!(status, StatusCode::OK, "live while starting");
    assert_eq!(body["live"], true);

    health.set_degraded(&kvs_infer::health::Component::Sink("kinesis"), "throttled");
    assert_eq!(get(&health, "/livez").await.0, StatusCode::OK, "a sink outage is not a liveness failure");

    health.set_liveness_failure(&kvs_infer::health::Component::Inference, "no batch completed for 30s with 4 queued");
    let (status, body) = get_json(&health, "/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["failures"]["inference"], "no batch completed for 30s with 4 queued");
}

#[tokio::test]
async fn degraded_and_draining_show_in_the_body() {
    let health = Health::new();
    for stage in Stage::ALL {
        health.complete(stage, None);
    }
    health.set_degraded(&kvs_infer::health::Component::Sink("s3"), "connection refused");
    let (status, body) = get_json(&health, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "degraded stays healthy");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["degraded"]["sink.s3"], "connection refused");

    health.start_draining();
    let (status, body) = get_json(&health, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "draining");
    assert_eq!(get(&health, "/livez").await.0, StatusCode::OK, "draining is still live");
}

#[tokio::test]
async fn a_failed_stage_is_reported() {
    let health = Health::new();
    health.begin(Stage::ModelsLoaded);
    health.fail(Stage::ModelsLoaded, "model text (ocr_det): cannot load models/det.onnx");
    let (status, body) = get_json(&health, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["stages"][2]["state"], "failed");
    assert_eq!(body["stages"][2]["detail"], "model text (ocr_det): cannot load models/det.onnx");
}

#[tokio::test]
async fn metrics_is_valid_prometheus_text() {
    let health = Health::new();
    for stage in Stage::ALL {
        health.complete(stage, None);
    }
    // One request first, so the request counter has a sample.
    let _ = get(&health, "/livez").await;
    let response = app(state(&health))
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");

    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    let find = |name: &str| scrape.samples.iter().filter(|s| s.metric == name).collect::<Vec<_>>();

    let stages: Vec<String> =
        find("startup_stage_seconds").iter().filter_map(|s| s.labels.get("stage").map(str::to_owned)).collect();
    for stage in ["starting", "gpu", "models_loaded", "warmed_up", "ready"] {
        assert!(stages.iter().any(|s| s == stage), "no startup_stage_seconds{{stage={stage}}} in {stages:?}");
    }
    assert!(!find("kvs_infer_build_info").is_empty());
    assert!(!find("health_ready").is_empty());
    let livez = find("http_requests_total")
        .into_iter()
        .any(|s| s.labels.get("route") == Some("/livez") && s.labels.get("status") == Some("200"));
    assert!(livez, "http_requests_total{{route=/livez,status=200}} missing");
    assert!(scrape.docs.contains_key("startup_stage_seconds"), "HELP text missing");
}

#[tokio::test]
async fn index_and_unknown_routes() {
    let health = Health::new();
    let (status, body) = get_json(&health, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "kvs-infer");
    assert_eq!(get(&health, "/nope").await.0, StatusCode::NOT_FOUND);
}

#[test]
fn readme_documents_every_metric() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    for (name, _, _) in metrics::CATALOGUE {
        assert!(readme.contains(&format!("`{name}`")), "README.md does not document metric `{name}`");
    }
}
