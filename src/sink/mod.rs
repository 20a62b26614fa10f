//! Where events go, and how they get there without loss.
//!
//! `serve`: cameras → [`dispatch`] (snapshot JPEG, S3 key, `emitted_at`) → [`outbox`] (durable)
//! → one [`delivery`] task per sink → `local` | `kinesis` | `s3` | `dynamodb`. Each sink
//! acknowledges what it delivered; a sink that is down holds its backlog in the outbox and shows
//! as `degraded`, never as a liveness failure. Delivery is at-least-once: consumers de-duplicate
//! on `event_id`.
//!
//! Each sink's configuration builds its sink through the [`registry`]. `run-file` renders
//! snapshots with the same [`dispatch::SnapshotPlan`] and writes to the local sink directly (an
//! offline tool, no outbox).

pub mod delivery;
pub mod dispatch;
pub mod dynamodb;
pub mod kinesis;
pub mod local;
pub mod outbox;
pub mod recent;
pub mod registry;
pub mod s3;
pub mod snapshot;

use std::future::Future;
use std::pin::Pin;

use kvs_infer_common::BoxError;

use self::outbox::OutboxRecord;
use crate::pipeline::events::EventWithFrame;

/// The sink layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("local sink: cannot write {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot of {event_id}: cannot encode the JPEG")]
    Encode {
        event_id: String,
        #[source]
        source: image::ImageError,
    },
    #[error("{sink}: {operation} failed ({reason})")]
    Remote {
        sink: &'static str,
        operation: &'static str,
        /// A short, bounded classification for metrics: `throttled`, `timeout`, `network`, ...
        reason: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{sink}: needs the AWS configuration, which was not loaded")]
    NoAwsConfig { sink: &'static str },
    #[error("{sink}: {failed} of {total} records were not accepted (first error: {code})")]
    Partial { sink: &'static str, failed: usize, total: usize, code: String },
}

impl SinkError {
    /// The bounded label for `sink_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Write { .. } => "io",
            Self::Encode { .. } => "encode",
            Self::Remote { reason, .. } => reason,
            Self::Partial { .. } => "partial",
            Self::NoAwsConfig { .. } => "config",
        }
    }
}

/// A record on its way to one sink, and whether that sink has taken it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: u64,
    pub record: OutboxRecord,
    pub done: bool,
}

/// How many records (and bytes) one delivery call takes.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub records: usize,
    pub bytes: usize,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for events. Implementations deliver what is not yet `done`, mark each record
/// they delivered, and return an error when any is left; the caller retries only those.
pub trait Sink: Send + Sync {
    /// `local`, `kinesis`, `s3`, `dynamodb`: the cursor name, metric label and health key.
    fn name(&self) -> &'static str;
    fn limits(&self) -> BatchLimits;
    fn deliver<'a>(&'a self, batch: &'a mut [Pending]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// `event_id` as a file or object name: anything but ASCII letters, digits and `-` becomes `_`.
pub fn file_safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// Classifies an AWS SDK error for metrics and logs, keeping the error itself as the source.
pub fn remote_error<E, R>(
    sink: &'static str,
    operation: &'static str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> SinkError
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let reason = match &err {
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "network",
        SdkError::ResponseError(_) => "response",
        SdkError::ConstructionFailure(_) => "request",
        SdkError::ServiceError(e) => match e.err().code() {
            Some(c) if c.contains("Throughput") || c.contains("Throttl") || c.contains("SlowDown") => "throttled",
            Some(c) if c.contains("NotFound") || c == "NoSuchBucket" => "not_found",
            Some(c) if c.contains("AccessDenied") || c.contains("Unauthorized") => "access_denied",
            _ => "service",
        },
        _ => "other",
    };
    SinkError::Remote { sink, operation, reason, source: Box::new(err) }
}

/// What [`start`] needs.
pub struct SinkContext<'a> {
    pub config: &'a crate::config::Config,
    pub sdk: Option<&'a aws_config::SdkConfig>,
    pub outbox: std::sync::Arc<outbox::Outbox>,
    pub health: crate::health::Health,
    /// Events waiting for the dispatcher; cameras wait (never drop) when it is full.
    pub queue: usize,
    /// The dispatcher and the delivery loops run on its tracker. Delivery keeps retrying until
    /// its intake ends, then flushes what the sinks will take.
    pub shutdown: crate::shutdown::Shutdown,
    /// The live page's list of events (`server.ui`): every committed event goes in too.
    pub recent: Option<std::sync::Arc<recent::RecentEvents>>,
}

/// Builds every configured sink and starts the dispatcher and one delivery loop per sink.
/// Returns where cameras send events: once every sender is dropped and the intake has ended,
/// the delivery loops flush and stop.
pub fn start(ctx: SinkContext<'_>) -> Result<tokio::sync::mpsc::Sender<EventWithFrame>, SinkError> {
    let SinkContext { config, sdk, outbox, health, queue, shutdown, recent } = ctx;
    let build = registry::BuildContext { sdk, aws: &config.aws };
    let sinks = registry::configured(&config.sinks)
        .into_iter()
        .map(|factory| factory.build(&build))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = dispatch::SnapshotPlan::for_sinks(&config.sinks);
    if recent.is_some() {
        plan = plan.for_page();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    let flush = tokio_util::sync::CancellationToken::new();
    let dctx = delivery::DeliveryContext {
        outbox: outbox.clone(),
        health: health.clone(),
        shutdown: flush.clone(),
        backoff: kvs_infer_common::backoff::Backoff::default(),
    };
    for sink in sinks {
        shutdown.spawn(delivery::run(sink, dctx.clone()));
    }
    let dispatcher = shutdown.spawn(dispatch::run(rx, outbox, plan, health, recent));
    let intake = shutdown.intake().clone();
    shutdown.spawn(async move {
        // Cameras may end early (a file that does not loop): sinks still deliver until the
        // intake ends, and then until the dispatcher has queued the last event.
        let _ = dispatcher.await;
        intake.cancelled().await;
        flush.cancel();
    });
    Ok(tx)
}
