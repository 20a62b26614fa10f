//! Where a camera's video comes from: [`open`] starts a configured source and returns it
//! running: its byte input (read by the camera's frame stream), how its frames should flow, and
//! the background tasks it runs.
//!
//! - [`file`]: a local MKV file (the embedded default).
//! - [`kvs`]: Kinesis Video Streams GetMedia, resumed after the last complete fragment when the
//!   body ends or breaks, with optional DynamoDB [`checkpoint`]s (written as the camera goes by
//!   [`checkpointing`]) so a restarted task resumes where the last one stopped.
//!
//! Adding a source: a `config::SourceSpec` variant, a file here that opens it into a
//! [`RunningSource`], one arm in [`open`].

pub mod checkpoint;
pub mod checkpointing;
pub mod file;
pub mod kvs;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{CameraId, SourceSpec};
use crate::health::Health;
use crate::media::progress::FragmentProgress;
use crate::media::stream::ByteSource;

/// The source layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("camera {camera}: cannot read {}", path.display())]
    File {
        camera: CameraId,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {camera}: {operation} on stream {stream} failed ({reason})")]
    Kvs {
        camera: CameraId,
        stream: String,
        operation: &'static str,
        /// Bounded classification for metrics: `throttled`, `connection_limit`, `not_found`, ...
        reason: &'static str,
        #[source]
        source: kvs_infer_common::BoxError,
    },
    #[error("camera {camera}: start selector {value:?} is not usable")]
    StartSelector {
        camera: CameraId,
        value: String,
        #[source]
        source: kvs_infer_common::BoxError,
    },
    #[error("camera {camera}: a KVS source needs the AWS configuration, which was not loaded")]
    NoAwsConfig { camera: CameraId },
    #[error("checkpoint table {table}: {operation} for stream {stream} failed")]
    Checkpoint {
        table: String,
        stream: String,
        operation: &'static str,
        #[source]
        source: kvs_infer_common::BoxError,
    },
}

impl SourceError {
    /// The bounded label for `kvs_reconnects_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Kvs { reason, .. } => reason,
            SourceError::Checkpoint { .. } => "checkpoint",
            SourceError::File { .. } | SourceError::StartSelector { .. } | SourceError::NoAwsConfig { .. } => "error",
        }
    }
}

/// What a source needs to start.
#[derive(Clone)]
pub struct SourceContext {
    pub camera: CameraId,
    /// The AWS configuration, when any camera or sink needs AWS.
    pub sdk: Option<aws_config::SdkConfig>,
    pub health: Health,
    /// Stops the source's background tasks.
    pub shutdown: CancellationToken,
    /// Fleet mode: checkpoints are written only while this task holds the camera's lease.
    pub fence: Option<checkpoint::Fence>,
    /// The sinks' delivered watermark (the outbox's lowest acknowledged sequence): a checkpoint
    /// never passes an event below it. `None`: nothing to wait for.
    pub delivered: Option<tokio::sync::watch::Receiver<u64>>,
}

/// How a source's frames flow to inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// A live camera: frames are handed off through the drop-oldest queue, never waiting for
    /// inference. Otherwise every sampled frame is analysed (a bounded channel holds the read).
    pub live: bool,
    /// Pace frames at their timestamps (a file standing in for a camera).
    pub pace: bool,
    /// Checkpoints store the analysis state: at shutdown open tracks are left to the next run
    /// (which resumes them) instead of ended, so a camera moving between tasks ends each once.
    pub hands_over: bool,
}

/// A started source.
pub struct RunningSource {
    /// The bytes, read by the camera's frame stream on its decode thread.
    pub input: Box<dyn ByteSource>,
    pub options: SourceOptions,
    /// Fragment completion (KVS sources): reconnects and checkpoints follow it.
    pub progress: Option<Arc<FragmentProgress>>,
    /// The analysis state a checkpoint stored with the fragment the source resumes after.
    pub resume: Option<Arc<str>>,
    /// What the source runs beside the input (the GetMedia reader, the checkpoint writer).
    pub tasks: SourceTasks,
}

/// A source's background tasks; [`SourceTasks::finish`] waits for them once the camera has let
/// go of the input.
#[derive(Default)]
pub struct SourceTasks(Vec<JoinHandle<()>>);

impl SourceTasks {
    pub fn new(tasks: Vec<JoinHandle<()>>) -> Self {
        Self(tasks)
    }

    pub async fn finish(self) {
        for task in self.0 {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a source task failed");
            }
        }
    }
}

/// Starts the source `spec` describes.
pub async fn open(spec: &SourceSpec, ctx: &SourceContext) -> Result<RunningSource, SourceError> {
    match spec {
        SourceSpec::File { path, realtime, .. } => file::open(ctx, path, *realtime),
        SourceSpec::Kvs { stream, start, checkpoint_table } => {
            kvs::open(ctx, stream, start, checkpoint_table.as_deref()).await
        }
    }
}
