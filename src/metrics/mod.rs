//! Every metric the service exports: names, help texts, buckets and the helpers that record them.
//!
//! Labels stay bounded: stage names, route templates, status codes, camera ids. Never a frame id,
//! a request id or a raw URL. A test checks that the README documents every name in [`CATALOGUE`].

use std::sync::OnceLock;

use crate::config::CameraId;
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
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "http_connections_refused_total";
pub const HTTP_CONNECTIONS_RESERVED_TOTAL: &str = "http_connections_reserved_total";
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
pub const CAMERA_RESTARTS_TOTAL: &str = "camera_restarts_total";
pub const CAMERA_LAG_SECONDS: &str = "camera_lag_seconds";
pub const CAMERA_BEHIND_LIVE_SECONDS: &str = "camera_behind_live_seconds";
pub const CAMERA_ANALYSED_AREA_RATIO: &str = "camera_analysed_area_ratio";
pub const RECOGNITION_RUNS_SAVED_TOTAL: &str = "recognition_runs_saved_total";
pub const TEXTS_REJECTED_TOTAL: &str = "texts_rejected_total";
pub const WATCHLIST_MATCHES_TOTAL: &str = "watchlist_matches_total";
pub const UI_FRAMES_ENCODED_TOTAL: &str = "ui_frames_encoded_total";
pub const CAMERA_CATCHING_UP: &str = "camera_catching_up";
pub const FRAMES_SKIPPED_TOTAL: &str = "frames_skipped_total";
pub const STREAM_SKIPPED_SECONDS_TOTAL: &str = "stream_skipped_seconds_total";
pub const FLEET_CAMERAS_OWNED: &str = "fleet_cameras_owned";
pub const FLEET_LIVE_TASKS: &str = "fleet_live_tasks";
pub const FLEET_LEASE_ACQUIRED_TOTAL: &str = "fleet_lease_acquired_total";
pub const FLEET_LEASE_LOST_TOTAL: &str = "fleet_lease_lost_total";
pub const OUTBOX_RECORDS: &str = "outbox_records";
pub const OUTBOX_BYTES: &str = "outbox_bytes";
pub const OUTBOX_MAX_BYTES: &str = "outbox_max_bytes";
pub const OUTBOX_FULL_TOTAL: &str = "outbox_full_total";
pub const OUTBOX_CORRUPT_TOTAL: &str = "outbox_corrupt_total";
pub const OUTBOX_IO_ERRORS_TOTAL: &str = "outbox_io_errors_total";
pub const CHECKPOINT_LAG_SECONDS: &str = "checkpoint_lag_seconds";
pub const SINK_DELIVERED_TOTAL: &str = "sink_delivered_total";
pub const SINK_ERRORS_TOTAL: &str = "sink_errors_total";
pub const SINK_BACKLOG: &str = "sink_backlog";
pub const SINK_DELIVERY_SECONDS: &str = "sink_delivery_seconds";
pub const KVS_CONNECTED: &str = "kvs_connected";
pub const KVS_RECONNECTS_TOTAL: &str = "kvs_reconnects_total";
pub const KVS_FRAGMENTS_TOTAL: &str = "kvs_fragments_total";
pub const KVS_BYTES_TOTAL: &str = "kvs_bytes_total";
pub const KVS_MILLIS_BEHIND_NOW: &str = "kvs_millis_behind_now";
pub const KVS_ERROR_FRAGMENTS_TOTAL: &str = "kvs_error_fragments_total";
pub const KVS_CHECKPOINTS_TOTAL: &str = "kvs_checkpoints_total";
pub const GPU_UTILIZATION_RATIO: &str = "gpu_utilization_ratio";
pub const GPU_MEMORY_USED_BYTES: &str = "gpu_memory_used_bytes";
pub const GPU_MEMORY_TOTAL_BYTES: &str = "gpu_memory_total_bytes";
pub const GPU_TEMPERATURE_CELSIUS: &str = "gpu_temperature_celsius";
pub const GPU_POWER_WATTS: &str = "gpu_power_watts";
pub const GPU_ECC_ERRORS_TOTAL: &str = "gpu_ecc_errors_total";
pub const GPU_XID_ERRORS_TOTAL: &str = "gpu_xid_errors_total";
pub const INFER_STALLED: &str = "infer_stalled";

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
    (
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        "counter",
        "Connections closed on accept because server.max_connections and the probe reserve were open.",
    ),
    (
        HTTP_CONNECTIONS_RESERVED_TOTAL,
        "counter",
        "Connections over server.max_connections taken by the reserve that answers only the health probes.",
    ),
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
        CAMERA_RESTARTS_TOTAL,
        "counter",
        "Camera runs that failed and were restarted with backoff; labels: camera, reason (source, stream, panic, ...).",
    ),
    (
        CAMERA_LAG_SECONDS,
        "gauge",
        "Stream time between the newest decoded frame and the frame being analysed; label: camera.",
    ),
    (
        CAMERA_BEHIND_LIVE_SECONDS,
        "gauge",
        "How far the decoded stream is behind live (KVS MILLIS_BEHIND_NOW, else the producer clock); label: camera.",
    ),
    (
        CAMERA_ANALYSED_AREA_RATIO,
        "gauge",
        "Share of the frame the models looked at last: the zones' bounding box, padded, or on motion the changed region and the open tracks; label: camera.",
    ),
    (
        UI_FRAMES_ENCODED_TOTAL,
        "counter",
        "Pictures encoded for the live page (server.ui): at most 2 a second per camera, only when a page asks; label: camera.",
    ),
    (
        WATCHLIST_MATCHES_TOTAL,
        "counter",
        "Events whose text matched a watchlist entry (cameras[].watchlists); labels: camera, list, type (new, update, end).",
    ),
    (
        TEXTS_REJECTED_TOTAL,
        "counter",
        "Readings that fit no ocr.text_rules format or pattern: they neither start nor confirm a track; labels: camera, reason (format, empty).",
    ),
    (
        RECOGNITION_RUNS_SAVED_TOTAL,
        "counter",
        "Lines of text whose settled reading was reused instead of recognised again (ocr.read_once); label: camera.",
    ),
    (
        CAMERA_CATCHING_UP,
        "gauge",
        "1 while the camera is behind live by more than max_lag (or reads faster than real time) and analyses every sampled frame.",
    ),
    (
        FRAMES_SKIPPED_TOTAL,
        "counter",
        "Frames not analysed: decoded frames a skip-ahead jumped over (reason lag), sampled frames motion gating found still (reason motion); labels: camera, reason.",
    ),
    (
        STREAM_SKIPPED_SECONDS_TOTAL,
        "counter",
        "Stream time jumped over by skip-aheads (how far behind live each was decided at); label: camera.",
    ),
    (FLEET_CAMERAS_OWNED, "gauge", "Cameras this task holds the lease of and runs (fleet mode)."),
    (FLEET_LIVE_TASKS, "gauge", "Tasks whose heartbeat moved within a lease duration, this one included."),
    (FLEET_LEASE_ACQUIRED_TOTAL, "counter", "Leases this task took; label: reason (free, expired, stolen)."),
    (FLEET_LEASE_LOST_TOTAL, "counter", "Cameras this task gave up; label: reason (taken, unrenewed)."),
    (OUTBOX_RECORDS, "gauge", "Events in the durable outbox not yet acknowledged by every sink."),
    (OUTBOX_BYTES, "gauge", "Bytes those records take (event JSON + snapshot)."),
    (OUTBOX_MAX_BYTES, "gauge", "The configured bound (outbox.max_bytes); at it new events wait."),
    (OUTBOX_FULL_TOTAL, "counter", "Appends refused because the outbox was full (the event waits, it is not dropped)."),
    (OUTBOX_CORRUPT_TOTAL, "counter", "Outbox records that failed their checksum and were quarantined."),
    (
        OUTBOX_IO_ERRORS_TOTAL,
        "counter",
        "Outbox calls that failed with an I/O error (a full disk): the event waits, the outbox reopens itself.",
    ),
    (
        CHECKPOINT_LAG_SECONDS,
        "gauge",
        "Video (KVS server time) the checkpoint is held back by: from the oldest analysed fragment it does \
         not cover yet (its events not delivered by every sink, or the write not done) to the newest \
         analysed one; 0 when it covers everything; label: camera.",
    ),
    (SINK_DELIVERED_TOTAL, "counter", "Records a sink acknowledged; label: sink."),
    (SINK_ERRORS_TOTAL, "counter", "Failed delivery attempts (each is retried); labels: sink, reason."),
    (SINK_BACKLOG, "gauge", "Outbox records a sink has not acknowledged yet; label: sink."),
    (SINK_DELIVERY_SECONDS, "histogram", "Time to deliver one batch, retries included; label: sink."),
    (KVS_CONNECTED, "gauge", "1 while a GetMedia connection is streaming; label: camera."),
    (KVS_RECONNECTS_TOTAL, "counter", "GetMedia sessions started again; labels: camera, reason."),
    (KVS_FRAGMENTS_TOTAL, "counter", "Complete fragments received from GetMedia; label: camera."),
    (KVS_BYTES_TOTAL, "counter", "GetMedia body bytes received; label: camera."),
    (KVS_MILLIS_BEHIND_NOW, "gauge", "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW of the latest fragment; label: camera."),
    (KVS_ERROR_FRAGMENTS_TOTAL, "counter", "Error fragments KVS sent instead of media; labels: camera, code."),
    (KVS_CHECKPOINTS_TOTAL, "counter", "Checkpoint writes; labels: camera, result (ok, stale, error)."),
    (GPU_UTILIZATION_RATIO, "gauge", "GPU busy fraction over NVML's last sample period; labels: gpu (UUID), index."),
    (GPU_MEMORY_USED_BYTES, "gauge", "GPU memory in use; labels: gpu, index."),
    (GPU_MEMORY_TOTAL_BYTES, "gauge", "GPU memory size; labels: gpu, index."),
    (GPU_TEMPERATURE_CELSIUS, "gauge", "GPU core temperature; labels: gpu, index."),
    (GPU_POWER_WATTS, "gauge", "GPU power draw; labels: gpu, index."),
    (
        GPU_ECC_ERRORS_TOTAL,
        "counter",
        "ECC errors since the driver loaded; labels: gpu, index, type (corrected, uncorrected).",
    ),
    (GPU_XID_ERRORS_TOTAL, "counter", "XID events seen; labels: gpu, index, xid."),
    (
        INFER_STALLED,
        "gauge",
        "1 while the inference worker has work queued and completed no batch for health.stall_after.",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle (idempotent).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets: [(&str, &[f64]); 7] = [
                (SINK_DELIVERY_SECONDS, HTTP_BUCKETS),
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

pub fn count_frame(camera: &CameraId, stage: FrameStage) {
    let name = match stage {
        FrameStage::Received => FRAMES_RECEIVED_TOTAL,
        FrameStage::Decoded => FRAMES_DECODED_TOTAL,
        FrameStage::Inferred => FRAMES_INFERRED_TOTAL,
    };
    metrics::counter!(name, "camera" => camera.0.clone()).increment(1);
}

pub fn count_dropped(camera: &CameraId, reason: &'static str) {
    metrics::counter!(FRAMES_DROPPED_TOTAL, "camera" => camera.0.clone(), "reason" => reason).increment(1);
}

pub fn record_frame_latency(camera: &CameraId, took: std::time::Duration) {
    histogram!(FRAME_LATENCY_SECONDS, "camera" => camera.0.clone()).record(took.as_secs_f64());
}

pub fn count_media_error(camera: &CameraId) {
    metrics::counter!(MEDIA_ERRORS_TOTAL, "camera" => camera.0.clone()).increment(1);
}

pub fn count_camera_restart(camera: &CameraId, reason: &'static str) {
    metrics::counter!(CAMERA_RESTARTS_TOTAL, "camera" => camera.0.clone(), "reason" => reason).increment(1);
}

pub fn count_event(camera: &str, kind: &'static str) {
    metrics::counter!(EVENTS_TOTAL, "camera" => camera.to_owned(), "type" => kind).increment(1);
}

pub fn set_camera_lag(camera: &CameraId, seconds: f64) {
    gauge!(CAMERA_LAG_SECONDS, "camera" => camera.0.clone()).set(seconds);
    let mut lags = LAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lags.insert(camera.0.clone(), (seconds, std::time::Instant::now()));
}

/// What the CloudWatch alarms watch, published by `fleet::emf` (the Prometheus exporter cannot be
/// read back, so the two values are kept here too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// The largest `camera_lag_seconds` of a camera that analysed a frame in the last [`SIGNAL_WINDOW`].
    pub camera_lag_max_seconds: f64,
    /// `outbox_records` now.
    pub outbox_records: u64,
    /// The largest `checkpoint_lag_seconds` reported in the last [`SIGNAL_WINDOW`].
    pub checkpoint_lag_max_seconds: f64,
}

/// A camera whose lag was not updated for this long (stopped, handed over) no longer counts.
pub const SIGNAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

static LAGS: std::sync::Mutex<std::collections::BTreeMap<String, (f64, std::time::Instant)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
static CHECKPOINT_LAGS: std::sync::Mutex<std::collections::BTreeMap<String, (f64, std::time::Instant)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
static OUTBOX_RECORDS_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn signals() -> Signals {
    let mut lags = LAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lags.retain(|_, (_, at)| at.elapsed() < SIGNAL_WINDOW);
    let mut checkpoint_lags = CHECKPOINT_LAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    checkpoint_lags.retain(|_, (_, at)| at.elapsed() < SIGNAL_WINDOW);
    Signals {
        camera_lag_max_seconds: lags.values().map(|(lag, _)| *lag).fold(0.0, f64::max),
        outbox_records: OUTBOX_RECORDS_NOW.load(std::sync::atomic::Ordering::Relaxed),
        checkpoint_lag_max_seconds: checkpoint_lags.values().map(|(lag, _)| *lag).fold(0.0, f64::max),
    }
}

pub fn count_ui_frame(camera: &CameraId) {
    metrics::counter!(UI_FRAMES_ENCODED_TOTAL, "camera" => camera.0.clone()).increment(1);
}

pub fn count_watchlist_match(camera: &CameraId, list: &str, kind: &'static str) {
    metrics::counter!(WATCHLIST_MATCHES_TOTAL, "camera" => camera.0.clone(), "list" => list.to_owned(), "type" => kind)
        .increment(1);
}

pub fn count_text_rejected(camera: &CameraId, reason: &'static str) {
    metrics::counter!(TEXTS_REJECTED_TOTAL, "camera" => camera.0.clone(), "reason" => reason).increment(1);
}

pub fn count_recognitions_saved(camera: &CameraId, lines: u64) {
    metrics::counter!(RECOGNITION_RUNS_SAVED_TOTAL, "camera" => camera.0.clone()).increment(lines);
}

pub fn set_analysed_area(camera: &CameraId, share: f64) {
    gauge!(CAMERA_ANALYSED_AREA_RATIO, "camera" => camera.0.clone()).set(share);
}

pub fn set_behind_live(camera: &CameraId, seconds: f64, catching_up: bool) {
    gauge!(CAMERA_BEHIND_LIVE_SECONDS, "camera" => camera.0.clone()).set(seconds);
    gauge!(CAMERA_CATCHING_UP, "camera" => camera.0.clone()).set(if catching_up { 1.0 } else { 0.0 });
}

pub fn set_fleet(owned: usize, live_tasks: usize) {
    gauge!(FLEET_CAMERAS_OWNED).set(owned as f64);
    gauge!(FLEET_LIVE_TASKS).set(live_tasks as f64);
}

pub fn count_fleet_lease_acquired(reason: &'static str) {
    metrics::counter!(FLEET_LEASE_ACQUIRED_TOTAL, "reason" => reason).increment(1);
}

pub fn count_fleet_lease_lost(reason: &'static str) {
    metrics::counter!(FLEET_LEASE_LOST_TOTAL, "reason" => reason).increment(1);
}

pub fn count_skipped(camera: &CameraId, reason: &'static str, frames: u64) {
    metrics::counter!(FRAMES_SKIPPED_TOTAL, "camera" => camera.0.clone(), "reason" => reason).increment(frames);
}

pub fn count_skipped_stream(camera: &CameraId, seconds: f64) {
    metrics::counter!(STREAM_SKIPPED_SECONDS_TOTAL, "camera" => camera.0.clone()).increment(seconds.round() as u64);
}

pub fn set_outbox(records: u64, bytes: u64, max_bytes: u64) {
    OUTBOX_RECORDS_NOW.store(records, std::sync::atomic::Ordering::Relaxed);
    gauge!(OUTBOX_RECORDS).set(records as f64);
    gauge!(OUTBOX_BYTES).set(bytes as f64);
    gauge!(OUTBOX_MAX_BYTES).set(max_bytes as f64);
}

/// Events a camera has sent that the dispatcher has not yet committed to the outbox (not a
/// Prometheus metric: the drain's account of what a timeout leaves behind).
static EVENTS_UNCOMMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn event_sent() {
    EVENTS_UNCOMMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The dispatcher is done with an event (committed, or given up with the process).
pub fn event_committed() {
    let _ = EVENTS_UNCOMMITTED.fetch_update(
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
        |n| Some(n.saturating_sub(1)),
    );
}

pub fn events_uncommitted() -> u64 {
    EVENTS_UNCOMMITTED.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn count_outbox_io_error() {
    metrics::counter!(OUTBOX_IO_ERRORS_TOTAL).increment(1);
}

pub fn set_checkpoint_lag(camera: &CameraId, seconds: f64) {
    gauge!(CHECKPOINT_LAG_SECONDS, "camera" => camera.0.clone()).set(seconds);
    let mut lags = CHECKPOINT_LAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lags.insert(camera.0.clone(), (seconds, std::time::Instant::now()));
}

pub fn count_outbox_full() {
    metrics::counter!(OUTBOX_FULL_TOTAL).increment(1);
}

pub fn count_outbox_corrupt() {
    metrics::counter!(OUTBOX_CORRUPT_TOTAL).increment(1);
}

pub fn record_sink_delivery(sink: &'static str, records: usize, took: std::time::Duration) {
    metrics::counter!(SINK_DELIVERED_TOTAL, "sink" => sink).increment(records as u64);
    histogram!(SINK_DELIVERY_SECONDS, "sink" => sink).record(took.as_secs_f64());
}

pub fn count_sink_error(sink: &'static str, reason: &'static str) {
    metrics::counter!(SINK_ERRORS_TOTAL, "sink" => sink, "reason" => reason).increment(1);
}

pub fn set_sink_backlog(sink: &'static str, records: u64) {
    gauge!(SINK_BACKLOG, "sink" => sink).set(records as f64);
}

pub fn set_kvs_connected(camera: &CameraId, connected: bool) {
    gauge!(KVS_CONNECTED, "camera" => camera.0.clone()).set(if connected { 1.0 } else { 0.0 });
}

pub fn count_kvs_reconnect(camera: &CameraId, reason: &'static str) {
    metrics::counter!(KVS_RECONNECTS_TOTAL, "camera" => camera.0.clone(), "reason" => reason).increment(1);
}

pub fn count_kvs_fragment(camera: &CameraId, millis_behind_now: Option<u64>) {
    metrics::counter!(KVS_FRAGMENTS_TOTAL, "camera" => camera.0.clone()).increment(1);
    if let Some(ms) = millis_behind_now {
        gauge!(KVS_MILLIS_BEHIND_NOW, "camera" => camera.0.clone()).set(ms as f64);
    }
}

pub fn count_kvs_bytes(camera: &CameraId, bytes: usize) {
    metrics::counter!(KVS_BYTES_TOTAL, "camera" => camera.0.clone()).increment(bytes as u64);
}

pub fn count_kvs_error_fragment(camera: &CameraId, code: &str) {
    // KVS error codes are a small fixed set; anything else is folded into "other".
    let code =
        if code.len() <= 48 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') { code } else { "other" };
    metrics::counter!(KVS_ERROR_FRAGMENTS_TOTAL, "camera" => camera.0.clone(), "code" => code.to_owned()).increment(1);
}

pub fn count_kvs_checkpoint(camera: &CameraId, result: &'static str) {
    metrics::counter!(KVS_CHECKPOINTS_TOTAL, "camera" => camera.0.clone(), "result" => result).increment(1);
}

/// A GPU gauge (one of the `GPU_*` gauge names) for the device `uuid` at NVML `index`.
pub fn set_gpu_gauge(name: &'static str, uuid: &str, index: u32, value: f64) {
    gauge!(name, "gpu" => uuid.to_owned(), "index" => index.to_string()).set(value);
}

/// The device's ECC error total of `kind` (`corrected`, `uncorrected`), as NVML counts it.
pub fn set_gpu_ecc_total(uuid: &str, index: u32, kind: &'static str, total: u64) {
    metrics::counter!(GPU_ECC_ERRORS_TOTAL, "gpu" => uuid.to_owned(), "index" => index.to_string(), "type" => kind)
        .absolute(total);
}

pub fn count_gpu_xid(uuid: &str, index: u32, xid: u64) {
    metrics::counter!(GPU_XID_ERRORS_TOTAL, "gpu" => uuid.to_owned(), "index" => index.to_string(), "xid" => xid.to_string())
        .increment(1);
}

pub fn count_http_connection_reserved() {
    metrics::counter!(HTTP_CONNECTIONS_RESERVED_TOTAL).increment(1);
}

pub fn count_http_connection_refused() {
    metrics::counter!(HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
}

pub fn set_infer_stalled(stalled: bool) {
    gauge!(INFER_STALLED).set(if stalled { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_report_the_most_behind_camera() {
        set_camera_lag(&CameraId("signals-a".into()), 2.5);
        set_camera_lag(&CameraId("signals-b".into()), 9_000.0);
        set_camera_lag(&CameraId("signals-b".into()), 40.0);
        let now = signals();
        // Other tests in this process may report lags too; these two are the ones set here.
        assert!(now.camera_lag_max_seconds >= 40.0 && now.camera_lag_max_seconds < 9_000.0, "{now:?}");
    }
}
