//! Every metric the service exports: names, help texts, buckets and the helpers that record them.
//!
//! Labels stay bounded: stage names, route templates, status codes, camera ids. Never a frame id,
//! a request id or a raw URL. A test checks that the README documents every name in [`CATALOGUE`].

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const BUILD_INFO: &str = "kvs_infer_build_info";
pub const STARTUP_STAGE_SECONDS: &str = "startup_stage_seconds";
pub const STARTUP_TIME_TO_READY_SECONDS: &str = "startup_time_to_ready_seconds";
pub const HEALTH_READY: &str = "health_ready";
pub const HEALTH_LIVE: &str = "health_live";
pub const HEALTH_DEGRADED_REASONS: &str = "health_degraded_reasons";
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
pub const MODEL_LOAD_SECONDS: &str = "model_load_seconds";
pub const MODEL_WARMUP_SECONDS: &str = "model_warmup_seconds";
pub const INFER_QUEUE_DEPTH: &str = "infer_queue_depth";
pub const INFER_REJECTED_TOTAL: &str = "infer_rejected_total";
pub const INFER_BATCH_SIZE: &str = "infer_batch_size";
pub const INFER_QUEUE_WAIT_SECONDS: &str = "infer_queue_wait_seconds";
pub const INFER_RUN_SECONDS: &str = "infer_run_seconds";
pub const INFER_STEP_SECONDS: &str = "infer_step_seconds";
pub const FRAMES_RECEIVED_TOTAL: &str = "frames_received_total";
pub const FRAMES_DECODED_TOTAL: &str = "frames_decoded_total";
pub const FRAMES_INFERRED_TOTAL: &str = "frames_inferred_total";
pub const FRAMES_DROPPED_TOTAL: &str = "frames_dropped_total";
pub const FRAME_LATENCY_SECONDS: &str = "frame_latency_seconds";
pub const MEDIA_ERRORS_TOTAL: &str = "media_errors_total";
pub const EVENTS_TOTAL: &str = "events_total";
pub const CAMERA_LAG_SECONDS: &str = "camera_lag_seconds";

/// Buckets for inference latencies (seconds): sub-millisecond CPU steps to multi-second runs.
const INFER_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];

/// Buckets for HTTP handler latency (seconds).
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Name, type and help of every metric, for `describe` and for the README table.
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    (BUILD_INFO, "gauge", "Always 1; labels: version."),
    (STARTUP_STAGE_SECONDS, "gauge", "How long each startup stage took; label: stage."),
    (STARTUP_TIME_TO_READY_SECONDS, "gauge", "Seconds from process start to ready."),
    (HEALTH_READY, "gauge", "1 while /readyz and /healthz answer 200."),
    (HEALTH_LIVE, "gauge", "1 while /livez answers 200."),
    (HEALTH_DEGRADED_REASONS, "gauge", "Outside problems currently reported as degraded (sinks down...)."),
    (HTTP_REQUESTS_TOTAL, "counter", "HTTP requests answered; labels: route, status."),
    (HTTP_REQUEST_DURATION_SECONDS, "histogram", "HTTP handler latency; label: route."),
    (MODEL_LOAD_SECONDS, "gauge", "Time to create each ONNX Runtime session; labels: model, part."),
    (MODEL_WARMUP_SECONDS, "gauge", "Time spent in warm-up runs; labels: model, part."),
    (INFER_QUEUE_DEPTH, "gauge", "Requests accepted by the inference worker and not yet answered."),
    (INFER_REJECTED_TOTAL, "counter", "Requests refused because the inference queue was full; labels: model, part."),
    (INFER_BATCH_SIZE, "histogram", "Items per batch run on the device; labels: model, part."),
    (INFER_QUEUE_WAIT_SECONDS, "histogram", "Longest wait of a batch's requests before it ran; labels: model, part."),
    (INFER_RUN_SECONDS, "histogram", "ONNX Runtime time per batch; labels: model, part."),
    (INFER_STEP_SECONDS, "histogram", "Time per step (preprocess, inference, postprocess); labels: model, part, step."),
    (FRAMES_RECEIVED_TOTAL, "counter", "Video frames demuxed; label: camera."),
    (FRAMES_DECODED_TOTAL, "counter", "Video frames decoded; label: camera."),
    (FRAMES_INFERRED_TOTAL, "counter", "Sampled frames analysed by the camera's models; label: camera."),
    (
        FRAMES_DROPPED_TOTAL,
        "counter",
        "Sampled frames not analysed; labels: camera, reason (inference_behind, inference_error).",
    ),
    (
        FRAME_LATENCY_SECONDS,
        "histogram",
        "Sampled frame to analysis done (models, pre/post-processing); label: camera.",
    ),
    (MEDIA_ERRORS_TOTAL, "counter", "Damaged input or undecodable frames, skipped; label: camera."),
    (EVENTS_TOTAL, "counter", "Events produced; labels: camera, type."),
    (
        CAMERA_LAG_SECONDS,
        "gauge",
        "Stream time between the newest decoded frame and the frame being analysed; label: camera.",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle (idempotent).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets: [(&str, &[f64]); 6] = [
                (FRAME_LATENCY_SECONDS, INFER_BUCKETS),
                (HTTP_REQUEST_DURATION_SECONDS, HTTP_BUCKETS),
                (INFER_BATCH_SIZE, BATCH_BUCKETS),
                (INFER_QUEUE_WAIT_SECONDS, INFER_BUCKETS),
                (INFER_RUN_SECONDS, INFER_BUCKETS),
                (INFER_STEP_SECONDS, INFER_BUCKETS),
            ];
            let recorder = buckets
                .into_iter()
                .try_fold(PrometheusBuilder::new(), |b, (name, values)| {
                    b.set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
                })
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only when another recorder is installed already (an embedding program's);
            // ours then records nothing, which the handle's empty output makes visible.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe_all();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe_all() {
    for &(name, kind, help) in CATALOGUE {
        match kind {
            "counter" => describe_counter!(name, help),
            "histogram" if name.ends_with("_seconds") => describe_histogram!(name, Unit::Seconds, help),
            "histogram" => describe_histogram!(name, help),
            _ => describe_gauge!(name, help),
        }
    }
}

pub fn record_stage(stage: &'static str, seconds: f64) {
    gauge!(STARTUP_STAGE_SECONDS, "stage" => stage).set(seconds);
}

pub fn record_time_to_ready(seconds: f64) {
    gauge!(STARTUP_TIME_TO_READY_SECONDS).set(seconds);
}

pub fn set_health(ready: bool, live: bool, degraded: usize) {
    gauge!(HEALTH_READY).set(f64::from(u8::from(ready)));
    gauge!(HEALTH_LIVE).set(f64::from(u8::from(live)));
    gauge!(HEALTH_DEGRADED_REASONS).set(degraded as f64);
}

pub fn record_http(route: String, status: u16, seconds: f64) {
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route).record(seconds);
}

pub fn record_model_load(model: &str, part: &'static str, seconds: f64) {
    gauge!(MODEL_LOAD_SECONDS, "model" => model.to_owned(), "part" => part).set(seconds);
}

pub fn record_model_warmup(model: &str, part: &'static str, seconds: f64) {
    gauge!(MODEL_WARMUP_SECONDS, "model" => model.to_owned(), "part" => part).set(seconds);
}

pub fn set_infer_queue_depth(depth: usize) {
    gauge!(INFER_QUEUE_DEPTH).set(depth as f64);
}

pub fn count_infer_rejected(model: &str, part: &'static str) {
    metrics::counter!(INFER_REJECTED_TOTAL, "model" => model.to_owned(), "part" => part).increment(1);
}

pub fn record_infer_batch(model: &str, part: &'static str, items: usize, longest_wait: std::time::Duration) {
    histogram!(INFER_BATCH_SIZE, "model" => model.to_owned(), "part" => part).record(items as f64);
    histogram!(INFER_QUEUE_WAIT_SECONDS, "model" => model.to_owned(), "part" => part)
        .record(longest_wait.as_secs_f64());
}

pub fn record_infer_run(model: &str, part: &'static str, took: std::time::Duration) {
    histogram!(INFER_RUN_SECONDS, "model" => model.to_owned(), "part" => part).record(took.as_secs_f64());
}

pub fn record_infer_step(model: &str, part: &'static str, step: &'static str, took: std::time::Duration) {
    histogram!(INFER_STEP_SECONDS, "model" => model.to_owned(), "part" => part, "step" => step)
        .record(took.as_secs_f64());
}

/// Frame counters by pipeline stage.
#[derive(Debug, Clone, Copy)]
pub enum FrameStage {
    Received,
    Decoded,
    Inferred,
}

pub fn count_frame(camera: &str, stage: FrameStage) {
    let name = match stage {
        FrameStage::Received => FRAMES_RECEIVED_TOTAL,
        FrameStage::Decoded => FRAMES_DECODED_TOTAL,
        FrameStage::Inferred => FRAMES_INFERRED_TOTAL,
    };
    metrics::counter!(name, "camera" => camera.to_owned()).increment(1);
}

pub fn count_dropped(camera: &str, reason: &'static str) {
    metrics::counter!(FRAMES_DROPPED_TOTAL, "camera" => camera.to_owned(), "reason" => reason).increment(1);
}

pub fn record_frame_latency(camera: &str, took: std::time::Duration) {
    histogram!(FRAME_LATENCY_SECONDS, "camera" => camera.to_owned()).record(took.as_secs_f64());
}

pub fn count_media_error(camera: &str) {
    metrics::counter!(MEDIA_ERRORS_TOTAL, "camera" => camera.to_owned()).increment(1);
}

pub fn count_event(camera: &str, kind: &'static str) {
    metrics::counter!(EVENTS_TOTAL, "camera" => camera.to_owned(), "type" => kind).increment(1);
}

pub fn set_camera_lag(camera: &str, seconds: f64) {
    gauge!(CAMERA_LAG_SECONDS, "camera" => camera.to_owned()).set(seconds);
}
