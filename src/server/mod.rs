//! The HTTP surface: `fn app(state) -> Router` and the one place that maps state to status codes.
//!
//! | route | answers |
//! |---|---|
//! | `GET /livez` | 200 while the process can make progress, else 503 with the reasons |
//! | `GET /readyz`, `GET /healthz` | 200 at stage `ready` while live and not draining, else 503; body lists every stage |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /v1/infer` | an image (JPEG/PNG) in, the first camera's detections and text out |
//! | `GET /` | name, version and the routes above |
//! | `GET /ui`, `/ui/...` | the live page and what it polls, with `server.ui: true` only ([`ui`]) |

pub mod error;
pub mod listen;
pub mod ui;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::routing::post;
use http_body_util::BodyExt;

use crate::config::{CameraSpec, ServerConfig};
use crate::infer::engine::{Analysis, Engine};
use crate::media::image::{ImageError, RgbImage};
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
    pub limits: ApiLimits,
    /// Images decoded or analysed at once: each holds its pixels until its answer is sent.
    images: Arc<tokio::sync::Semaphore>,
    /// The live page's data (`server.ui`); `None`: `/ui` is not served.
    pub ui: Option<Arc<ui::Ui>>,
    /// The token `/v1/infer` and `/ui` require (`server.auth`); `None`: open.
    pub token: Option<Arc<crate::config::auth::ApiToken>>,
}

/// What `/v1/infer` accepts.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_request_bytes: usize,
    pub max_image_pixels: u64,
    /// The whole body must arrive within this.
    pub body_timeout: Duration,
}

impl ApiLimits {
    /// The configured limits.
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            max_request_bytes: server.max_request_bytes,
            max_image_pixels: server.max_image_pixels,
            body_timeout: server.body_timeout,
        }
    }
}

/// What `/v1/infer` runs.
#[derive(Clone)]
pub struct InferTarget {
    pub engine: Engine,
    pub camera: CameraSpec,
}

impl AppState {
    /// State with no inference target yet (set it when the models are ready), the default image
    /// and time limits, and `max_request_bytes`.
    pub fn new(health: watch::Receiver<HealthSnapshot>, metrics: PrometheusHandle, max_request_bytes: usize) -> Self {
        let defaults = ServerConfig::default();
        let limits = ApiLimits { max_request_bytes, ..ApiLimits::from_config(&defaults) };
        Self::with_limits(health, metrics, limits)
    }

    pub fn with_limits(health: watch::Receiver<HealthSnapshot>, metrics: PrometheusHandle, limits: ApiLimits) -> Self {
        // One image per core: decoding and analysis are CPU work, and this bounds the pixels held.
        let images = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            health,
            metrics,
            infer: Arc::new(OnceLock::new()),
            limits,
            images: Arc::new(tokio::sync::Semaphore::new(images)),
            ui: None,
            token: None,
        }
    }
}

/// The service's router. Tests drive it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    let pages = if state.ui.is_some() { ui::routes() } else { Router::new() };
    // The models and the live page need the token when `server.auth` sets one.
    let guarded = Router::new()
        .merge(pages)
        .route("/v1/infer", post(infer))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(guarded)
        .route("/", get(index))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/metrics", get(prometheus))
        .layer(middleware::from_fn(track_requests))
        .layer(middleware::from_fn(no_sniff))
        .with_state(state)
}

/// What answers on a connection taken over `server.max_connections` (the listener's reserve):
/// the health probes, so ECS and the load balancer never mistake a busy task for a dead one;
/// anything else is 503.
pub fn probes(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .fallback(|| async {
            (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached: only /livez, /readyz and /healthz answer\n")
        })
        .layer(middleware::from_fn(no_sniff))
        .with_state(state)
}

/// With `server.auth`, a request must present the token: `Authorization: Bearer <token>`, or
/// `Basic` with the token as the password (a browser's login prompt for the live page).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(request).await };
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(credential);
    if presented.is_some_and(|c| token.matches(&c)) {
        return next.run(request).await;
    }
    ApiError::Unauthorized.into_response()
}

/// The secret an `Authorization` header carries: a bearer token, or a Basic password.
fn credential(value: &str) -> Option<String> {
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let decoded = base64_decode(value.strip_prefix("Basic ")?.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_owned())
}

/// Standard base64 (RFC 4648, padded or not); `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut bits, mut acc) = (Vec::with_capacity(text.len() * 3 / 4), 0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Every answer says what it is: browsers never guess a type (`X-Content-Type-Options`).
async fn no_sniff(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    response
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
async fn infer(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<InferResponse>, ApiError> {
    let target = match (state.health.borrow().ready, state.infer.get()) {
        (true, Some(t)) => t.clone(),
        _ => return Err(ApiError::NotReady),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(mime.as_str(), "image/jpeg" | "image/jpg" | "image/png") {
        return Err(ApiError::UnsupportedType(content_type));
    }
    let limits = state.limits;
    // Refused before a byte of the body is read (and before `100 Continue` is sent).
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_bytes as u64) {
        return Err(ApiError::TooLarge { limit: limits.max_request_bytes });
    }
    let body = read_body(body, &limits).await?;
    let permit = state.images.clone().acquire_owned().await.map_err(|_| ApiError::NotReady)?;
    let analysis = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let img = RgbImage::decode_within(&body, limits.max_image_pixels).map_err(|e| match e {
            ImageError::TooManyPixels { .. } => ApiError::ImageTooLarge(e),
            other => ApiError::Undecodable(other),
        })?;
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

/// The body, within the size and time limits: 413 over the size, 408 too slow, 400 malformed
/// framing (a broken chunked encoding, a connection cut mid-body).
async fn read_body(body: Body, limits: &ApiLimits) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limits.max_request_bytes);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout { after: limits.body_timeout }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit: limits.max_request_bytes })
        }
        Ok(Err(e)) => Err(ApiError::MalformedBody(e)),
    }
}

#[derive(Serialize)]
struct Index {
    name: &'static str,
    version: &'static str,
    routes: Vec<&'static str>,
}

async fn index(State(state): State<AppState>) -> Json<Index> {
    let mut routes = vec!["/healthz", "/readyz", "/livez", "/metrics", "/v1/infer"];
    if state.ui.is_some() {
        routes.push("/ui");
    }
    Json(Index { name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION"), routes })
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
