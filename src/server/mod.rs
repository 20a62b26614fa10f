//! The HTTP surface: `fn app(state) -> Router` and the one place that maps state to status codes.
//!
//! | route | answers |
//! |---|---|
//! | `GET /livez` | 200 while the process can make progress, else 503 with the reasons |
//! | `GET /readyz`, `GET /healthz` | 200 at stage `ready` while live and not draining, else 503; body lists every stage |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /` | name, version and the routes above |

use std::time::Instant;

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
}

/// The service's router. Tests drive it with `oneshot`; `serve` binds it to a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
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
struct Index {
    name: &'static str,
    version: &'static str,
    routes: [&'static str; 4],
}

async fn index() -> Json<Index> {
    Json(Index {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        routes: ["/healthz", "/readyz", "/livez", "/metrics"],
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
