//! Where events go, and how they get there without loss.
//!
//! `serve`: cameras → [`dispatch`] (snapshot JPEG, S3 key, `emitted_at`) → [`outbox`] (durable)
//! → one [`delivery`] task per sink → `local` | `kinesis` | `s3` | `dynamodb`. Each sink
//! acknowledges what it delivered; a sink that is down holds its backlog in the outbox and shows
//! as `degraded`, never as a liveness failure. Delivery is at-least-once: consumers de-duplicate
//! on `event_id`.
//!
//! `run-file` writes to the local sink directly (an offline tool, no outbox).

pub mod delivery;
pub mod dispatch;
pub mod dynamodb;
pub mod kinesis;
pub mod local;
pub mod outbox;
pub mod s3;
pub mod snapshot;

use std::future::Future;
use std::pin::Pin;

use kvs_infer_common::BoxError;

use self::outbox::OutboxRecord;

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

/// The sink names a configuration enables, in delivery order (the outbox keeps a cursor each).
pub fn configured(config: &crate::config::SinksConfig) -> Vec<&'static str> {
    let mut names = Vec::new();
    if config.local.is_some() {
        names.push("local");
    }
    if config.kinesis.is_some() {
        names.push("kinesis");
    }
    if config.s3.is_some() {
        names.push("s3");
    }
    if config.dynamodb.is_some() {
        names.push("dynamodb");
    }
    names
}

/// The running sink side of `serve`.
pub struct SinkSet {
    /// Where cameras send events. Once every sender is dropped and the service is shutting down,
    /// the delivery loops flush what their sinks will take and stop.
    pub events: tokio::sync::mpsc::Sender<crate::pipeline::events::EventWithFrame>,
    pub done: tokio::task::JoinHandle<()>,
}

/// What [`start`] needs.
pub struct SinkContext<'a> {
    pub config: &'a crate::config::Config,
    pub sdk: Option<&'a aws_config::SdkConfig>,
    pub outbox: std::sync::Arc<outbox::Outbox>,
    pub health: crate::health::Health,
    /// Events waiting for the dispatcher; cameras wait (never drop) when it is full.
    pub queue: usize,
    /// The service's shutdown: delivery loops keep retrying until it, then flush what they can.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Opens every configured sink and starts the dispatcher and one delivery loop per sink.
pub fn start(ctx: SinkContext<'_>) -> Result<SinkSet, SinkError> {
    use std::sync::Arc;
    let SinkContext { config, sdk, outbox, health, queue, shutdown } = ctx;
    let sinks_cfg = &config.sinks;
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(local) = &sinks_cfg.local {
        sinks.push(Arc::new(local::LocalOutboxSink::new(local::LocalSink::open(local)?)));
    }
    if let Some(sdk) = sdk {
        if let Some(k) = &sinks_cfg.kinesis {
            sinks.push(Arc::new(kinesis::KinesisSink::new(crate::aws::kinesis_client(sdk), k.stream_name.clone())));
        }
        if let Some(s3) = &sinks_cfg.s3 {
            sinks.push(Arc::new(s3::S3Sink::new(crate::aws::s3_client(sdk, &config.aws), s3.bucket.clone())));
        }
        if let Some(d) = &sinks_cfg.dynamodb {
            sinks.push(Arc::new(dynamodb::DynamoDbSink::new(crate::aws::dynamodb_client(sdk), d.clone())));
        }
    }
    let plan = dispatch::SnapshotPlan {
        enabled: sinks_cfg.s3.is_some() || sinks_cfg.local.as_ref().is_some_and(|l| l.snapshots),
        quality: sinks_cfg
            .s3
            .as_ref()
            .map(|s| s.jpeg_quality)
            .or(sinks_cfg.local.as_ref().map(|l| l.jpeg_quality))
            .unwrap_or(85),
        s3: sinks_cfg.s3.as_ref().map(|s| (s.bucket.clone(), s.prefix.clone())),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    let flush = tokio_util::sync::CancellationToken::new();
    let dctx = delivery::DeliveryContext {
        outbox: outbox.clone(),
        health: health.clone(),
        shutdown: flush.clone(),
        backoff: kvs_infer_common::backoff::Backoff::default(),
    };
    let loops: Vec<_> = sinks.into_iter().map(|sink| tokio::spawn(delivery::run(sink, dctx.clone()))).collect();
    let dispatcher = tokio::spawn(dispatch::run(rx, outbox, plan, health));
    let done = tokio::spawn(async move {
        // Cameras may end early (a file that does not loop): sinks still deliver until shutdown,
        // and then until the dispatcher has queued the last event.
        let _ = dispatcher.await;
        shutdown.cancelled().await;
        flush.cancel();
        for l in loops {
            let _ = l.await;
        }
    });
    Ok(SinkSet { events: tx, done })
}
