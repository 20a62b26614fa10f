//! The live page (`server.ui: true`): one HTML page embedded in the binary, and the JSON and
//! pictures it polls. Nothing here writes the configuration: the zone editor answers with the
//! YAML to paste, checked by `check-config`'s rules.
//!
//! | route | answers |
//! |---|---|
//! | `GET /ui` | the page |
//! | `GET /ui/state` | health (stages, degraded reasons, cameras) and each camera's view: rates, lag, the latest frame's number, its tracks, its zones |
//! | `GET /ui/cameras/{id}/frame.jpg` | the camera's latest picture, annotated (a placeholder before its first frame) |
//! | `GET /ui/events` | the last events, newest first |
//! | `GET /ui/events/{seq}/snapshot.jpg` | an event's snapshot |
//! | `POST /ui/roi` | `{"zones": [{"name", "points"}]}` → `{"yaml", "problems"}` |
//!
//! Cameras always keep their latest picture (`pipeline::live`); it is encoded only when a page
//! asks for it, at most every [`FRAME_INTERVAL`] per camera.

mod frame;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{AppState, no_store};
use crate::config::{Violation, Zone};
use crate::health::HealthSnapshot;
use crate::pipeline::live::{LiveViews, ViewSummary};
use crate::sink::recent::{RecentEvent, RecentEvents};

pub use frame::FRAME_INTERVAL;

/// The page, its styles and its script.
const PAGE: &str = include_str!("page.html");
/// The page's script, served apart so the policy allows no inline script at all.
const SCRIPT: &str = include_str!("page.js");

/// The live page's content security policy: its own script and requests only, no inline
/// script, never inside another site's frame.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// Largest zone-editor request.
const MAX_ROI_BYTES: usize = 64 * 1024;

/// What the page reads: the cameras' views, the recent events, the pictures' cache.
pub struct Ui {
    pub views: LiveViews,
    pub recent: Arc<RecentEvents>,
    frames: frame::FrameCache,
}

impl Ui {
    pub fn new(views: LiveViews, recent: Arc<RecentEvents>) -> Self {
        Self { views, recent, frames: frame::FrameCache::default() }
    }
}

/// The page's routes (mounted only with `server.ui: true`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/page.js", get(script))
        .route("/ui/state", get(state))
        .route("/ui/cameras/{id}/frame.jpg", get(frame))
        .route("/ui/events", get(events))
        .route("/ui/events/{seq}/snapshot.jpg", get(snapshot))
        .route("/ui/roi", post(roi))
}

/// The page's address for the log, one a person can open on this machine: the bound address
/// and port, with a wildcard address (`0.0.0.0`, `::`) shown as the loopback one.
pub fn page_url(bound: std::net::SocketAddr) -> String {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/ui", std::net::SocketAddr::new(ip, bound.port()))
}

fn ui(state: &AppState) -> Result<&Arc<Ui>, ApiError> {
    state.ui.as_ref().ok_or_else(|| ApiError::NotFound("the live page is off (server.ui)".into()))
}

async fn page() -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, Html(PAGE)).into_response()
}

async fn script() -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    (headers, SCRIPT).into_response()
}

#[derive(Serialize)]
struct PageState {
    health: HealthSnapshot,
    cameras: Vec<CameraEntry>,
    /// Seconds between two encodings of a camera's picture.
    frame_interval: f64,
}

#[derive(Serialize)]
struct CameraEntry {
    id: String,
    zones: Vec<Zone>,
    #[serde(flatten)]
    view: ViewSummary,
}

async fn state(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ui = ui(&state)?;
    let cameras = ui
        .views
        .all()
        .iter()
        .map(|v| CameraEntry { id: v.id.0.clone(), zones: v.zones.clone(), view: v.summary() })
        .collect();
    let body = PageState { health: super::current(&state), cameras, frame_interval: FRAME_INTERVAL.as_secs_f64() };
    Ok((no_store(), Json(body)).into_response())
}

async fn frame(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let ui = ui(&state)?;
    let view = ui.views.get(&id).ok_or_else(|| ApiError::NotFound(format!("no camera {id:?} runs in this task")))?;
    let jpeg = match ui.frames.picture(&view).await {
        Some(jpeg) => jpeg,
        None => frame::placeholder().map_err(ApiError::Picture)?,
    };
    Ok(jpeg_response(jpeg))
}

fn jpeg_response(jpeg: Arc<Vec<u8>>) -> Response {
    let body = Body::from(Arc::unwrap_or_clone(jpeg));
    ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

async fn events(State(state): State<AppState>) -> Result<Response, ApiError> {
    let list: Vec<Arc<RecentEvent>> = ui(&state)?.recent.list();
    let list: Vec<&RecentEvent> = list.iter().map(AsRef::as_ref).collect();
    Ok((no_store(), Json(list)).into_response())
}

async fn snapshot(State(state): State<AppState>, Path(seq): Path<String>) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound(format!("no recent event {seq:?} with a snapshot"));
    let n: u64 = seq.parse().map_err(|_| missing())?;
    let event = ui(&state)?.recent.get(n).ok_or_else(missing)?;
    let jpeg = event.snapshot.clone().ok_or_else(missing)?;
    Ok(jpeg_response(jpeg))
}

#[derive(Deserialize)]
struct RoiRequest {
    zones: Vec<Zone>,
}

#[derive(Serialize)]
struct RoiAnswer {
    /// The `roi:` entry to paste under the camera.
    yaml: String,
    /// What `check-config` would say of it (paths from `roi`); empty: valid.
    problems: Vec<Violation>,
}

/// The zones drawn, checked, as the YAML to paste.
async fn roi(State(state): State<AppState>, body: Body) -> Result<Json<RoiAnswer>, ApiError> {
    ui(&state)?;
    let limits = super::ApiLimits { max_request_bytes: MAX_ROI_BYTES, ..state.limits };
    let bytes = super::read_body(body, &limits).await?;
    let request: RoiRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"zones\": [...]}}: {e}")))?;
    let problems = crate::config::validate::check_zones(&request.zones);
    Ok(Json(RoiAnswer { yaml: roi_yaml(&request.zones), problems }))
}

/// `roi:` with each zone's points rounded to 3 decimals, one zone per item.
pub fn roi_yaml(zones: &[Zone]) -> String {
    let mut out = String::from("roi:\n");
    for z in zones {
        let points: Vec<String> = z.points.iter().map(|[x, y]| format!("[{}, {}]", round3(*x), round3(*y))).collect();
        let name = if plain(&z.name) { z.name.clone() } else { serde_json::to_string(&z.name).unwrap_or_default() };
        out.push_str(&format!("  - name: {name}\n    points: [{}]\n", points.join(", ")));
    }
    out
}

/// A name YAML reads back as the same string without quotes.
fn plain(name: &str) -> bool {
    const WORDS: [&str; 10] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"];
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !WORDS.contains(&name.to_ascii_lowercase().as_str())
}

fn round3(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r.fract() == 0.0 { format!("{r:.1}") } else { format!("{r}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_url_is_one_to_open_on_this_machine() {
        let url = |a: &str| page_url(a.parse().expect("address"));
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/ui");
        assert_eq!(url("0.0.0.0:9000"), "http://127.0.0.1:9000/ui");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/ui");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/ui");
    }

    #[test]
    fn drawn_zones_become_the_yaml_to_paste() {
        let zones = vec![
            Zone { name: "lane".into(), points: vec![[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]] },
            Zone { name: "gate 2".into(), points: vec![[0.12345, 0.5], [0.3, 0.5], [0.3, 0.8]] },
        ];
        assert_eq!(
            roi_yaml(&zones),
            "roi:\n  - name: lane\n    points: [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]\n  - name: \"gate 2\"\n    points: [[0.123, 0.5], [0.3, 0.5], [0.3, 0.8]]\n"
        );
        let problems = crate::config::validate::check_zones(&zones);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].path == "roi[1].name", "{problems:?}");
        let line = vec![Zone { name: "z".into(), points: vec![[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]] }];
        assert!(crate::config::validate::check_zones(&line)[0].message.contains("no area"));
    }
}
