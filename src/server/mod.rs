//! The HTTP surface: `fn app(state) -> Router` and the one place that maps state to status codes.
//!
//! | route | answers |
//! |---|---|
//! | `GET /livez` | 200 while the process can make progress, else 503 with the reasons |
//! | `GET /readyz`, `GET /healthz` | 200 at stage `ready` while live and not draining, else 503; body lists every stage |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /v1/infer` | an image (JPEG/PNG) in, the first camera's detections and text out |
//! | `GET /` | name, version and the routes above |

pub mod error;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::post;

use crate::config::CameraSpec;
use crate::infer::engine::{Analysis, Engine};
use crate::media::image::RgbImage;
use error::ApiError;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;

use crate::health::HealthSnapshot;
use crate::metrics;

/// What handlers read. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub health: watch::Receiver<HealthSnapshot>,
    pub metrics: PrometheusHandle,
    /// Set once the models are warm: the engine and the camera whose models `/v1/infer` runs.
    pub infer: Arc<OnceLock<InferTarget>>,
    pub max_request_bytes: usize,
}

/// What `/v1/infer` runs.
#[derive(Clone)]
pub struct InferTarget {
    pub engine: Engine,
    pub camera: CameraSpec,
}

impl AppState {
    /// State with no inference target yet (set it when the models are ready).
    pub fn new(health: watch::Receiver<HealthSnapshot>, metrics: PrometheusHandle, max_request_bytes: usize) -> Self {
        Self { health, metrics, infer: Arc::new(OnceLock::new()), max_request_bytes }
    }
}

/// The service's router. Tests drive it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/v1/infer", post(infer).layer(DefaultBodyLimit::max(limit)))
        .route("/", get(index))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/metrics", get(prometheus))
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// Status codes for health, decided here and nowhere else.
fn health_status(ok: bool) -> StatusCode {
    if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

/// The snapshot with running stages' durations brought up to now.
fn current(state: &AppState) -> HealthSnapshot {
    state.health.borrow().clone().refreshed()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let snapshot = current(&state);
    (health_status(snapshot.ready), no_store(), Json(snapshot)).into_response()
}

#[derive(Serialize)]
struct LiveBody {
    live: bool,
    failures: std::collections::BTreeMap<String, String>,
}

async fn livez(State(state): State<AppState>) -> Response {
    let snapshot = current(&state);
    let body = LiveBody { live: snapshot.live, failures: snapshot.liveness_failures };
    (health_status(body.live), no_store(), Json(body)).into_response()
}

async fn prometheus(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

#[derive(Serialize)]
struct InferResponse {
    width: u32,
    height: u32,
    #[serde(flatten)]
    analysis: Analysis,
}

/// An image in, the first camera's models' findings out.
async fn infer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<InferResponse>, ApiError> {
    let target = match (state.health.borrow().ready, state.infer.get()) {
        (true, Some(t)) => t.clone(),
        _ => return Err(ApiError::NotReady),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(mime.as_str(), "image/jpeg" | "image/jpg" | "image/png") {
        return Err(ApiError::UnsupportedType(content_type));
    }
    let body = body.map_err(|_| ApiError::TooLarge { limit: state.max_request_bytes })?;
    let analysis = tokio::task::spawn_blocking(move || {
        let img = RgbImage::decode(&body).map_err(ApiError::Undecodable)?;
        let (width, height) = (img.width, img.height);
        let analysis = target.engine.analyze(&target.camera, &img).map_err(|e| match e {
            crate::infer::InferError::QueueFull { .. } => ApiError::Busy(e),
            other => ApiError::Inference(other),
        })?;
        Ok::<_, ApiError>(InferResponse { width, height, analysis })
    })
    .await
    .map_err(ApiError::Task)??;
    Ok(Json(analysis))
}

#[derive(Serialize)]
struct Index {
    name: &'static str,
    version: &'static str,
    routes: [&'static str; 5],
}

async fn index() -> Json<Index> {
    Json(Index {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        routes: ["/healthz", "/readyz", "/livez", "/metrics", "/v1/infer"],
    })
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// Counts every request by route template (bounded) and status.
async fn track_requests(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics::record_http(route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
