//! The YAML schema as written by users: plain serde structs with defaults.
//!
//! These types accept anything that parses; [`super::validate`] turns them into the typed
//! [`super::Config`] and reports every problem with its path. Unknown keys are not rejected by
//! serde here (that would stop at the first one): the loader collects them all with
//! `serde_ignored` and reports them together with the semantic errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::fleet::FleetConfig;
pub use super::start::StartSelector;
pub use super::tracking::TrackingConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: ServerConfig,
    pub logging: LoggingConfig,
    pub health: HealthConfig,
    pub runtime: RuntimeConfig,
    pub aws: AwsConfig,
    pub media: MediaConfig,
    /// Models by id. Cameras refer to them by this id.
    pub models: BTreeMap<String, RawModel>,
    pub cameras: Vec<RawCamera>,
    pub sinks: SinksConfig,
    pub outbox: OutboxConfig,
    /// Cameras shared by several tasks through DynamoDB leases (unset: this task runs them all).
    pub fleet: Option<FleetConfig>,
    /// Known plates by list name (`config::watchlist`); cameras name the lists they check.
    pub watchlists: BTreeMap<String, super::watchlist::WatchlistConfig>,
}

/// HTTP server for health, metrics and `/v1/infer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to bind. `0.0.0.0` in a container.
    pub host: String,
    /// TCP port. `HTTP_PORT` overrides it. 0 picks a free port (tests).
    pub port: u16,
    /// Largest request body accepted by `/v1/infer`, in bytes.
    pub max_request_bytes: usize,
    /// Largest image (width x height) `/v1/infer` decodes, checked from its header first.
    pub max_image_pixels: u64,
    /// HTTP connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Serve the live page (`/ui`): every camera's picture, tracks, events and a zone editor.
    pub ui: bool,
    /// A bearer token `/v1/infer` and `/ui` require (`config::auth`).
    pub auth: Option<super::auth::AuthConfig>,
    /// The token itself, read from `auth.token_from` by `cli::load_config`.
    #[serde(skip)]
    pub token: Option<super::auth::ApiToken>,
}

/// Default `server.max_image_pixels`: a 4096 x 4096 image, so any 4K frame in any orientation.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 4096 * 4096;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8080,
            max_request_bytes: 8 * 1024 * 1024,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            ui: false,
            auth: None,
            token: None,
        }
    }
}

pub use super::media::MediaConfig;

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// A `tracing` filter: `info`, `debug`, `kvs_infer=debug,ort=warn`. `LOG_LEVEL` overrides it.
    pub level: String,
    /// `text` for people, `json` for CloudWatch. `LOG_FORMAT` overrides it.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".to_owned(), format: LogFormat::Text }
    }
}

pub use kvs_infer_common::telemetry::LogFormat;

/// Liveness and shutdown timings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HealthConfig {
    /// `/livez` fails when the inference worker completed no batch for this long while work was queued.
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// On SIGTERM, everything in flight must be flushed within this time (under ECS's 30 s stopTimeout).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often the GPU probe samples NVML.
    #[serde(with = "humantime_serde")]
    pub gpu_poll_interval: Duration,
    /// On a GPU fault (device lost, reset-class XID, CUDA error) drain and exit with
    /// `EXIT_GPU_FAULT` (86) so ECS replaces the task at once and recovery tooling can tell a GPU
    /// failure from an application one. `false`: only `/livez` fails.
    pub exit_on_gpu_fault: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(25),
            gpu_poll_interval: Duration::from_secs(5),
            exit_on_gpu_fault: true,
        }
    }
}

/// ONNX Runtime and the inference worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// `cuda` (the GPU is required), `cpu`, or `auto` (CUDA when it registers, else CPU with a warning).
    pub execution_provider: ExecutionProviderKind,
    /// CUDA device ordinal.
    pub device_id: u32,
    /// Threads ONNX Runtime uses inside one operator on the CPU provider. 0 = ONNX Runtime's default.
    pub intra_op_threads: usize,
    pub graph_optimization: GraphOptimization,
    pub cuda: CudaOptions,
    /// Most requests the worker puts into one batch.
    pub max_batch: usize,
    /// Longest a request waits for others to fill a batch.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Requests waiting for the worker before new ones are rejected.
    pub queue_capacity: usize,
    /// Forward passes per model before the service reports `warmed_up`.
    pub warmup_runs: u32,
    /// Path of `libonnxruntime.so`. When unset: `ORT_DYLIB_PATH`, then `runtime/`, then beside the executable.
    pub library: Option<PathBuf>,
    /// Where video is decoded: `cpu`, `nvdec` (required), `auto` (NVDEC with the CUDA provider
    /// when it opens, else the CPU).
    pub decoder: DecoderKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    Cpu,
    Nvdec,
    #[default]
    Auto,
}

/// A camera's software decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct CameraDecoder {
    /// Decoder threads for this camera (many cameras share few cores).
    pub threads: usize,
    /// Frame threading: more throughput, a frame of latency per thread.
    pub frame_threads: bool,
}

impl Default for CameraDecoder {
    fn default() -> Self {
        Self { threads: 1, frame_threads: false }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            execution_provider: ExecutionProviderKind::Cpu,
            device_id: 0,
            intra_op_threads: 0,
            graph_optimization: GraphOptimization::All,
            cuda: CudaOptions::default(),
            max_batch: 8,
            max_delay: Duration::from_millis(5),
            queue_capacity: 64,
            warmup_runs: 2,
            library: None,
            decoder: DecoderKind::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProviderKind {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    All,
}

/// Options passed to ONNX Runtime's CUDA execution provider.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CudaOptions {
    pub arena_extend_strategy: ArenaExtendStrategy,
    pub cudnn_conv_algo_search: ConvAlgoSearch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArenaExtendStrategy {
    #[default]
    NextPowerOfTwo,
    SameAsRequested,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvAlgoSearch {
    #[default]
    Exhaustive,
    Heuristic,
    Default,
}

/// Where AWS clients go. Credentials only ever come from the SDK's default chain.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AwsConfig {
    /// Region. `AWS_REGION` overrides it.
    pub region: Option<String>,
    /// Send every AWS call here (an emulator, a VPC endpoint). The SDK's `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
}

/// One model entry. Which keys apply depends on `kind`; `validate()` says which do not.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawModel {
    /// `yolo` (an Ultralytics detect export) or `ocr` (PP-OCR det + rec, optional cls).
    pub kind: Option<ModelKind>,
    // --- yolo ---
    /// ONNX file of a `yolo` model.
    pub path: Option<PathBuf>,
    /// Square input size; defaults to the model's `imgsz` metadata.
    pub input_size: Option<u32>,
    /// Minimum class score kept before NMS.
    pub confidence: Option<f32>,
    /// IoU above which NMS suppresses the lower-scored box of the same class.
    pub iou: Option<f32>,
    /// Class names to keep (from the model's `names` metadata). Empty = all.
    pub classes: Vec<String>,
    // --- ocr ---
    pub det: Option<OcrDetConfig>,
    pub cls: Option<OcrClsConfig>,
    pub rec: Option<OcrRecConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Yolo,
    Ocr,
}

/// PP-OCR text detection (DB).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OcrDetConfig {
    pub path: PathBuf,
    /// Side length the image is scaled to: the shorter side up to it (`min`, the PP-OCR
    /// mobile default) or the longer side down to it (`max`); then rounded to multiples of 32.
    pub limit_side_len: u32,
    pub limit_type: DetLimitType,
    /// Probability-map binarisation threshold.
    pub threshold: f32,
    /// Minimum mean probability inside a box.
    pub box_threshold: f32,
    /// How far a box is grown around the shrunk text kernel.
    pub unclip_ratio: f32,
    /// Boxes with a shorter side (pixels) are dropped.
    pub min_size: f32,
}

impl Default for OcrDetConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            limit_side_len: 736,
            limit_type: DetLimitType::Min,
            threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            min_size: 3.0,
        }
    }
}

/// How `limit_side_len` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetLimitType {
    /// Scale up so the shorter side is at least `limit_side_len`.
    Min,
    /// Scale down so the longer side is at most `limit_side_len`.
    Max,
    /// Scale down so the area is at most `limit_side_len`² pixels (a pixel budget): a wide,
    /// short zone crop keeps its native resolution where `max` would halve it.
    Area,
}

/// PP-OCR 0/180-degree text direction classifier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OcrClsConfig {
    pub path: PathBuf,
    /// A line is rotated when the classifier says "180" with more than this score.
    pub threshold: f32,
    /// Lines per classifier run.
    pub batch_size: usize,
}

impl Default for OcrClsConfig {
    fn default() -> Self {
        Self { path: PathBuf::new(), threshold: 0.9, batch_size: 6 }
    }
}

/// PP-OCR text recognition (CTC).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OcrRecConfig {
    pub path: PathBuf,
    /// Input height; PP-OCRv3+ use 48.
    pub height: u32,
    /// Lines read with a lower mean confidence are dropped.
    pub min_score: f32,
    /// Lines per recognition run; lines are sorted by width and each run is padded to its
    /// widest line (at least 320 px at height 48).
    pub batch_size: usize,
}

impl Default for OcrRecConfig {
    fn default() -> Self {
        Self { path: PathBuf::new(), height: 48, min_score: 0.5, batch_size: 6 }
    }
}

/// One camera as written in the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawCamera {
    /// Unique id; used as metric label and KDS partition key.
    pub id: String,
    pub source: RawSource,
    /// Frames per second sent to inference, chosen by frame timestamps.
    pub target_fps: Option<f64>,
    /// Only ever sample key frames.
    pub keyframes_only: bool,
    /// Ids of `yolo` models run on the whole frame.
    pub detect: Vec<String>,
    /// OCR on the whole frame, or inside detections of chosen labels.
    pub ocr: Option<CameraOcr>,
    /// Zones of interest, in normalised coordinates (0..1). None = the whole frame.
    pub roi: Vec<Zone>,
    /// Which point of a detection must lie in a zone: `bottom_center` (where an object stands)
    /// or `center`. Text lines always use their centre.
    pub anchor: Anchor,
    /// Per-label filters applied before tracking (labels of detections, or `text`).
    pub filters: BTreeMap<String, LabelFilter>,
    pub tracking: TrackingConfig,
    /// Names of the `watchlists` this camera's readings are checked against.
    pub watchlists: Vec<String>,
    /// What pictures of this camera hide.
    pub privacy: PrivacyConfig,
    /// Change detection deciding which sampled frames need the models (`config::motion`).
    pub motion: super::motion::MotionConfig,
    pub decoder: CameraDecoder,
    /// Behind live by more than this (KVS), every sampled frame is analysed and the read slows
    /// down to match; within it, a camera slower than its frame rate drops the oldest frames.
    #[serde(default, with = "humantime_serde")]
    pub max_lag: Option<Duration>,
    /// Behind live by more than this (KVS's `MILLIS_BEHIND_NOW`), the camera skips ahead to the
    /// newest key frame instead of catching up.
    #[serde(default, with = "humantime_serde")]
    pub skip_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    #[default]
    BottomCenter,
    Center,
}

/// Drops weak or implausibly sized observations of a label.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LabelFilter {
    pub min_score: Option<f32>,
    /// Box area as a fraction of the frame (0..1).
    pub min_area: Option<f64>,
    pub max_area: Option<f64>,
}

/// `cameras[].privacy`: detections pixelated in snapshots and on the live page (`pipeline::privacy`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Labels of the camera's detections to pixelate (e.g. a YOLO model's face classes).
    pub blur: Vec<String>,
}

/// OCR stage of a camera.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CameraOcr {
    /// Id of an `ocr` model.
    pub model: String,
    /// Labels of this camera's detections to read text inside (e.g. `[plate]`). Empty = whole frame.
    pub within: Vec<String>,
    /// When a settled reading stops being recognised again on every frame.
    pub read_once: super::read_once::ReadOnceConfig,
    /// Which readings are number plates (`None`: every reading counts, as read).
    pub text_rules: Option<super::text_rules::TextRulesConfig>,
}

/// A named polygon zone.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Zone {
    pub name: String,
    /// Vertices `[x, y]` in 0..1, in order.
    pub points: Vec<[f64; 2]>,
}

/// Where a camera's video comes from. Which keys apply depends on `kind`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSource {
    /// `file` (a local MKV) or `kvs` (Kinesis Video Streams GetMedia).
    pub kind: Option<SourceKind>,
    // --- file ---
    pub path: Option<PathBuf>,
    /// Start again at the end of the file (a stand-in for a live camera).
    #[serde(rename = "loop")]
    pub loop_file: bool,
    /// Pace frames at their timestamps instead of as fast as possible.
    pub realtime: bool,
    // --- kvs ---
    pub stream_name: Option<String>,
    pub stream_arn: Option<String>,
    /// Where a new GetMedia session starts when no checkpoint exists.
    pub start: Option<StartSelector>,
    /// Keep a per-stream checkpoint in this DynamoDB table and resume after it.
    pub checkpoint_table: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    File,
    Kvs,
}

/// Where events go. Any number of sinks; at least one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SinksConfig {
    pub local: Option<LocalSinkConfig>,
    pub kinesis: Option<KinesisSinkConfig>,
    pub s3: Option<S3SinkConfig>,
    pub dynamodb: Option<DynamoDbSinkConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LocalSinkConfig {
    /// Folder for `events.jsonl` and `snapshots/`.
    pub dir: PathBuf,
    /// Write annotated JPEG snapshots for `new` and `end` events.
    pub snapshots: bool,
    pub jpeg_quality: u8,
}

impl Default for LocalSinkConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("out"), snapshots: true, jpeg_quality: 85 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct KinesisSinkConfig {
    pub stream_name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct S3SinkConfig {
    pub bucket: String,
    /// Key prefix; keys are `{prefix}/{camera}/{yyyy}/{mm}/{dd}/{event_id}.jpg`.
    pub prefix: String,
    /// JPEG quality of snapshots (the local sink stores the same bytes when both are on).
    pub jpeg_quality: u8,
}

impl Default for S3SinkConfig {
    fn default() -> Self {
        Self { bucket: String::new(), prefix: "snapshots".to_owned(), jpeg_quality: 85 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DynamoDbSinkConfig {
    /// One item per camera with its latest state.
    pub state_table: String,
    /// One item per event, expiring after `ttl_days`.
    pub events_table: String,
    pub ttl_days: u32,
}

impl Default for DynamoDbSinkConfig {
    fn default() -> Self {
        Self { state_table: String::new(), events_table: String::new(), ttl_days: 7 }
    }
}

/// The durable queue between events and remote sinks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OutboxConfig {
    pub dir: PathBuf,
    /// When the backlog reaches this size new events are refused (and counted); nothing is dropped.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("data/outbox"), max_bytes: 1024 * 1024 * 1024 }
    }
}
