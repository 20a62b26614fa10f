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

async fn send(state: AppState, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = app(state).oneshot(request).await.expect("infallible");
    let status = response.status();
    let kind = response.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned());
    (status, kind, response.into_body().collect().await.expect("body").to_bytes().to_vec())
}

/// A state with the live page on, one camera view with one analysed frame kept.
fn with_ui(health: &Health) -> AppState {
    use kvs_infer::config::{CameraId, Zone};
    use kvs_infer::media::image::RgbImage;
    use kvs_infer::pipeline::live::LiveViews;
    let mut state = state(health);
    let views = LiveViews::on();
    let zone = Zone { name: "lane".into(), points: vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]] };
    let view = views.camera(&CameraId("cam-1".into()), std::slice::from_ref(&zone)).expect("view");
    view.analysed(&RgbImage::new(64, 32, vec![90; 64 * 32 * 3]).expect("image"), 2_000_000_000, 0.1, Vec::new());
    // A camera that has not decoded its first frame yet.
    views.camera(&CameraId("cam-2".into()), &[zone]).expect("view");
    state.ui = Some(std::sync::Arc::new(kvs_infer::server::ui::Ui::new(views, Default::default())));
    state
}

#[tokio::test]
async fn the_live_page_is_404_unless_server_ui_is_on() {
    let health = Health::new();
    for path in ["/ui", "/ui/state", "/ui/events", "/ui/cameras/cam-1/frame.jpg"] {
        assert_eq!(get(&health, path).await.0, StatusCode::NOT_FOUND, "{path} with server.ui off");
    }
    let (status, kind, body) = send(with_ui(&health), Request::get("/ui").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("text/html; charset=utf-8"));
    let page = String::from_utf8(body).expect("utf-8");
    // Nothing loaded from elsewhere (the SVG namespace is a name, not a request).
    let page = page.replace("\"http://www.w3.org/2000/svg\"", "");
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<link"), "external resources");
    // No inline script: the page's one script is its own file.
    assert_eq!(page.matches("<script").count(), 1, "one script");
    assert!(page.contains("<script src=\"/ui/page.js\"></script>"), "its own file");
    let response =
        app(with_ui(&health)).oneshot(Request::get("/ui").body(Body::empty()).expect("request")).await.expect("ok");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = header("content-security-policy");
    let script_src = csp.split(';').find(|d| d.trim().starts_with("script-src")).expect("script-src");
    assert!(!script_src.contains("unsafe-inline") && script_src.contains("'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let (status, kind, script) =
        send(with_ui(&health), Request::get("/ui/page.js").body(Body::empty()).expect("request")).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("text/javascript; charset=utf-8")));
    assert!(String::from_utf8(script).expect("utf-8").contains("pollState()"));
    // Every route says what it serves.
    let response =
        app(state(&health)).oneshot(Request::get("/metrics").body(Body::empty()).expect("r")).await.expect("ok");
    assert_eq!(response.headers().get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
}

#[tokio::test]
async fn the_live_page_routes_answer_with_the_api_error_rules() {
    let health = Health::new();
    let ui = with_ui(&health);
    let get_ui = |path: &str| send(ui.clone(), Request::get(path).body(Body::empty()).expect("request"));
    let (status, kind, jpeg) = get_ui("/ui/cameras/cam-1/frame.jpg").await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("image/jpeg")));
    assert_eq!(image::load_from_memory(&jpeg).expect("a JPEG").width(), 64);
    // Before its first frame a camera's picture is a placeholder, not a 404: a page shows it at once.
    let (status, kind, jpeg) = get_ui("/ui/cameras/cam-2/frame.jpg").await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("image/jpeg")));
    assert_eq!(image::load_from_memory(&jpeg).expect("a JPEG").width(), 320);
    let (status, _, body) = get_ui("/ui/cameras/nope/frame.jpg").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(error["error"].as_str().expect("error").contains("no camera \"nope\""), "{error}");
    let (status, _, body) = get_ui("/ui/state").await;
    assert_eq!(status, StatusCode::OK);
    let state: Value = serde_json::from_slice(&body).expect("state");
    assert_eq!(state["cameras"][0]["id"], "cam-1");
    assert_eq!(state["cameras"][0]["frame"]["timestamp"], 2.0);
    assert_eq!(state["cameras"][0]["zones"][0]["name"], "lane");
    assert_eq!(state["health"]["ready"], false);
    let (status, _, body) = get_ui("/ui/events").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"[]".as_slice()));
    assert_eq!(get_ui("/ui/events/1/snapshot.jpg").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get_ui("/ui/events/x/snapshot.jpg").await.0, StatusCode::NOT_FOUND);

    let post = |body: Vec<u8>| {
        send(
            ui.clone(),
            Request::post("/ui/roi")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
    };
    let (status, _, body) =
        post(br#"{"zones":[{"name":"gate","points":[[0.1,0.6],[0.5,0.6],[0.5,0.9]]}]}"#.to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("answer");
    assert_eq!(answer["yaml"], "roi:\n  - name: gate\n    points: [[0.1, 0.6], [0.5, 0.6], [0.5, 0.9]]\n");
    assert_eq!(answer["problems"], serde_json::json!([]));
    let (_, _, body) = post(br#"{"zones":[{"name":"a b","points":[[0.1,0.6],[1.5,0.6]]}]}"#.to_vec()).await;
    let answer: Value = serde_json::from_slice(&body).expect("answer");
    let paths: Vec<&str> =
        answer["problems"].as_array().expect("problems").iter().map(|p| p["path"].as_str().expect("path")).collect();
    assert_eq!(paths, ["roi[0].name", "roi[0]", "roi[0].points[1]"], "{answer}");
    assert_eq!(post(b"not json".to_vec()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(vec![b' '; 65 * 1024]).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn with_server_auth_the_models_and_the_live_page_need_the_token_and_the_probes_do_not() {
    use base64::Engine as _;
    let health = Health::new();
    let token = "0123456789abcdef-token";
    let mut state = with_ui(&health);
    state.token = Some(std::sync::Arc::new(kvs_infer::config::auth::ApiToken::parse(token).expect("token")));
    let request = |path: &str, auth: Option<String>| {
        let mut r = Request::get(path);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::empty()).expect("request")
    };
    for path in ["/ui", "/ui/state", "/ui/cameras/cam-1/frame.jpg"] {
        let response = app(state.clone()).oneshot(request(path, None)).await.expect("ok");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(challenge.starts_with("Basic realm=\"kvs-infer\""), "a browser is asked: {challenge}");
        let (status, _, _) = send(state.clone(), request(path, Some(format!("Bearer {token}")))).await;
        assert_eq!(status, StatusCode::OK, "{path} with the bearer token");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
        let (status, _, _) = send(state.clone(), request(path, Some(format!("Basic {basic}")))).await;
        assert_eq!(status, StatusCode::OK, "{path} with the token as a Basic password");
        let (status, _, _) = send(state.clone(), request(path, Some("Bearer 0123456789abcdef-wrong".into()))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with another token");
    }
    let post =
        Request::post("/v1/infer").header("content-type", "image/png").body(Body::from(vec![0u8; 8])).expect("r");
    let (status, _, body) = send(state.clone(), post).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("server.auth"));
    for open in ["/livez", "/metrics", "/"] {
        let (status, _, _) = send(state.clone(), request(open, None)).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{open} stays open (the load balancer keeps it in the VPC)");
    }
}
