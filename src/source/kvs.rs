//! Kinesis Video Streams as a camera: `GetDataEndpoint(GET_MEDIA)` (cached, refreshed on
//! connection failures and every [`ENDPOINT_TTL`]), then `GetMedia`, its body streamed chunk by
//! chunk into the camera's decode thread (a bounded channel: a slow decoder slows the read, and
//! no fragment is buffered twice).
//!
//! When a body ends (KVS closes them after about 45 minutes), breaks, or stays silent for
//! [`IDLE_TIMEOUT`], the source connects again with `FRAGMENT_NUMBER` / `AfterFragmentNumber` =
//! the last fragment the decode thread read completely; the decode thread skips the frames of the
//! partly read fragment it had already handed on, so every frame is analysed once. Before any
//! fragment is complete a new session starts after the stored checkpoint, or from the configured
//! start selector. Reconnects back off exponentially with jitter; `ClientLimitExceeded` (5 calls/s
//! per stream) and `ConnectionLimitExceeded` (3 connections per stream) back off from 1 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_kinesisvideo::types::ApiName;
use aws_sdk_kinesisvideomedia::types::{StartSelector as ApiSelector, StartSelectorType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoints;
use super::checkpointing::{
    CHECKPOINT_INTERVAL, CheckpointWriter, read_checkpoint, stream_retention, write_checkpoints,
};
use super::{RunningSource, SourceContext, SourceError, SourceOptions, SourceTasks};
use crate::config::{CameraId, StartSelector, StreamRef};
use crate::health::{CameraState, Component};
use crate::media::FragmentNumber;
use crate::media::progress::FragmentProgress;
use crate::media::stream::{ChannelSource, Chunk};
use kvs_infer_common::backoff::Backoff;

/// How long a data endpoint is used before GetDataEndpoint is asked again.
pub const ENDPOINT_TTL: Duration = Duration::from_secs(30 * 60);
/// A body that completes no fragment for this long of waiting on the network (bytes trickling
/// in or none at all; time the decoder holds the read back does not count) is treated as
/// stalled and replaced, and the camera shows as degraded until a fragment completes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// GetMedia answers its status at once (the body streams after): no response headers within
/// this long is a failed call.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// GetMedia is limited to 5 calls per second per stream: never call more often than this.
pub const MIN_CALL_INTERVAL: Duration = Duration::from_millis(250);
/// Backoff after ordinary failures.
pub const RECONNECT_BACKOFF: Backoff = Backoff { min: Duration::from_millis(250), max: Duration::from_secs(30) };
/// Backoff after ClientLimitExceeded / ConnectionLimitExceeded: the first retry waits 1-2 s.
pub const LIMIT_BACKOFF: Backoff = Backoff { min: Duration::from_secs(2), max: Duration::from_secs(30) };

/// GetMedia chunks waiting for the decode thread (a few hundred KiB at most).
const CHUNKS_QUEUED: usize = 16;

/// Starts a KVS camera: reads its checkpoint (waiting for the table: starting without it would
/// re-read or skip video), then starts the GetMedia reader and the checkpoint writer.
pub async fn open(
    ctx: &SourceContext,
    stream: &StreamRef,
    start: &StartSelector,
    checkpoint_table: Option<&str>,
) -> Result<RunningSource, SourceError> {
    let sdk = ctx.sdk.clone().ok_or_else(|| SourceError::NoAwsConfig { camera: ctx.camera.clone() })?;
    let checkpoints = checkpoint_table.map(|table| {
        let client = crate::aws::dynamodb_client(&sdk);
        let checkpoints = Checkpoints::new(client, table.to_owned(), stream.label().to_owned(), ctx.camera.clone());
        Arc::new(checkpoints.fenced(ctx.fence.clone()))
    });
    let checkpoint = match &checkpoints {
        Some(c) => read_checkpoint(&ctx.camera, c, &ctx.shutdown).await,
        None => None,
    };
    let progress = Arc::new(match &checkpoint {
        Some(c) => FragmentProgress::resumed(Arc::new(c.meta()), c.revision),
        None => FragmentProgress::default(),
    });
    let writer = checkpoints.map(|checkpoints| {
        let (camera, control, stream) = (ctx.camera.clone(), crate::aws::kinesis_video_client(&sdk), stream.clone());
        let (feed, delivered) = (progress.checkpoint_feed(), ctx.delivered.clone());
        tokio::spawn(async move {
            let retention = stream_retention(&control, &stream).await;
            let interval = CHECKPOINT_INTERVAL;
            write_checkpoints(CheckpointWriter { camera, checkpoints, feed, delivered, interval, retention }).await;
        })
    });
    let (resume_after, resume) = checkpoint.map_or((None, None), |c| (Some(c.fragment), c.analysis));
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let source = KvsSource {
        camera: ctx.camera.clone(),
        stream: stream.clone(),
        start: start.clone(),
        sdk,
        resume_after,
        progress: progress.clone(),
        shutdown: ctx.shutdown.clone(),
        health: ctx.health.clone(),
        timeouts: SessionTimeouts::default(),
    };
    let reader = tokio::spawn(source.run(tx));
    Ok(RunningSource {
        input: Box::new(ChannelSource(rx)),
        options: SourceOptions { live: true, pace: false, hands_over: checkpoint_table.is_some() },
        progress: Some(progress),
        resume: resume.map(Arc::from),
        tasks: SourceTasks::new([Some(reader), writer].into_iter().flatten().collect()),
    })
}

/// What a KVS camera needs.
pub struct KvsSource {
    pub camera: CameraId,
    pub stream: StreamRef,
    pub start: StartSelector,
    pub sdk: SdkConfig,
    /// The stored checkpoint: the first session starts after it.
    pub resume_after: Option<FragmentNumber>,
    pub progress: Arc<FragmentProgress>,
    pub shutdown: CancellationToken,
    /// A camera that cannot connect shows as `degraded: camera.{id}` (not a liveness failure:
    /// a new task would meet the same stream).
    pub health: crate::health::Health,
    /// How long a call or a body may make no progress.
    pub timeouts: SessionTimeouts,
}

/// How long a GetMedia session may make no progress before it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// Until the response headers.
    pub response: Duration,
    /// Waiting on the network with no fragment completed.
    pub idle: Duration,
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        Self { response: RESPONSE_TIMEOUT, idle: IDLE_TIMEOUT }
    }
}

/// Why a session ended, for `kvs_reconnects_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    BodyEnded,
    BodyError,
    Idle,
    /// Bytes arrived, but no fragment completed within [`IDLE_TIMEOUT`].
    Stalled,
    Shutdown,
    ReceiverGone,
    /// The camera is too far behind live: start again at the newest key frame.
    SkipAhead,
}

impl SessionEnd {
    fn reason(self) -> &'static str {
        match self {
            Self::BodyEnded => "body_ended",
            Self::BodyError => "body_error",
            Self::Idle => "idle",
            Self::Stalled => "stalled",
            Self::Shutdown => "shutdown",
            Self::ReceiverGone => "receiver_gone",
            Self::SkipAhead => "skip_ahead",
        }
    }
}

/// One GetMedia body: why it ended, the bytes it carried, and the fragments read before it.
struct Session {
    ended: SessionEnd,
    bytes: u64,
    fragments_before: u64,
}

impl Session {
    fn ended(mut self, why: SessionEnd) -> Self {
        self.ended = why;
        self
    }
}

/// What the reconnect loop remembers between sessions.
#[derive(Default)]
struct Reconnect {
    /// The data endpoint and when it was asked for.
    endpoint: Option<(String, Instant)>,
    /// Where to start before any fragment of this run is complete.
    resume_from_checkpoint: Option<FragmentNumber>,
    attempt: u32,
    last_call: Option<Instant>,
    /// After a skip-ahead: start at NOW until a fragment newer than this one has been read.
    skip_from: Option<Option<FragmentNumber>>,
}

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Again,
    Stop,
}

impl KvsSource {
    fn kvs_error(
        &self,
        operation: &'static str,
        reason: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SourceError {
        SourceError::Kvs {
            camera: self.camera.clone(),
            stream: self.stream.label().to_owned(),
            operation,
            reason,
            source: Box::new(source),
        }
    }

    /// Streams into `tx` until shutdown (or the receiver goes away).
    pub async fn run(self, tx: mpsc::Sender<Chunk>) {
        let control = crate::aws::kinesis_video_client(&self.sdk);
        let mut r = Reconnect { resume_from_checkpoint: self.resume_after.clone(), ..Reconnect::default() };
        while !self.shutdown.is_cancelled() {
            if self.session(&control, &mut r, &tx).await == Next::Stop {
                break;
            }
        }
        crate::metrics::set_kvs_connected(&self.camera, false);
    }

    /// One GetMedia session: connect (after the endpoint, within the call rate), stream the
    /// body, close the session with the decode thread.
    async fn session(
        &self,
        control: &aws_sdk_kinesisvideo::Client,
        r: &mut Reconnect,
        tx: &mpsc::Sender<Chunk>,
    ) -> Next {
        if let Some(at) = r.last_call
            && let Some(wait) = MIN_CALL_INTERVAL.checked_sub(at.elapsed())
            && !self.sleep(wait).await
        {
            return Next::Stop;
        }
        let url = match self.endpoint(control, r).await {
            Ok(url) => url,
            Err(e) => {
                self.failed(&e, "endpoint_error");
                return self.back_off(r, is_limit(&e)).await;
            }
        };
        let last_read = self.progress.last_demuxed().and_then(|m| m.fragment_number.clone());
        if r.skip_from.as_ref().is_some_and(|from| *from != last_read) {
            r.skip_from = None;
        }
        let after = last_read.or_else(|| r.resume_from_checkpoint.clone());
        let selector = match self.selector(after.as_ref(), r.skip_from.is_some()) {
            Ok(s) => s,
            Err(e) => {
                // The config was validated; a selector the API refuses to build is a bug.
                tracing::error!(camera = %self.camera, error = %kvs_infer_common::error_chain(&e), "cannot build the start selector; camera stopped");
                return Next::Stop;
            }
        };
        r.last_call = Some(Instant::now());
        let call = tokio::select! {
            call = self.get_media(&url, selector) => call,
            // A call that never answers must not hold a drain.
            () = self.shutdown.cancelled() => return Next::Stop,
        };
        let body = match call {
            Ok(body) => body,
            Err(e) => {
                let limited = is_limit(&e);
                if !limited {
                    // The endpoint may have moved: ask again next time.
                    r.endpoint = None;
                }
                self.failed(&e, e.reason());
                return self.back_off(r, limited).await;
            }
        };
        tracing::info!(camera = %self.camera, after = after.as_ref().map(ToString::to_string), "GetMedia connected");
        crate::metrics::set_kvs_connected(&self.camera, true);
        let detail = after.as_ref().map(|n| format!("after fragment {n}"));
        self.health.set_camera(&self.camera, CameraState::Streaming, detail);
        let session = self.stream_body(body, tx).await;
        crate::metrics::set_kvs_connected(&self.camera, false);
        self.end_session(r, tx, session).await
    }

    /// The cached data endpoint, or a fresh one from GetDataEndpoint.
    async fn endpoint(&self, control: &aws_sdk_kinesisvideo::Client, r: &mut Reconnect) -> Result<String, SourceError> {
        if let Some((url, at)) = &r.endpoint
            && at.elapsed() < ENDPOINT_TTL
        {
            return Ok(url.clone());
        }
        let url = self.data_endpoint(control).await?;
        r.endpoint = Some((url.clone(), Instant::now()));
        Ok(url)
    }

    /// Calls GetMedia; the body streams the media.
    async fn get_media(
        &self,
        url: &str,
        selector: ApiSelector,
    ) -> Result<aws_sdk_kinesisvideomedia::primitives::ByteStream, SourceError> {
        let media = crate::aws::kinesis_video_media_client(&self.sdk, url);
        let request = media.get_media().start_selector(selector);
        let request = match &self.stream {
            StreamRef::Name(n) => request.stream_name(n),
            StreamRef::Arn(a) => request.stream_arn(a),
        };
        let answered = tokio::time::timeout(self.timeouts.response, request.send()).await;
        let Ok(answered) = answered else {
            let silent = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no response headers within {:?}", self.timeouts.response),
            );
            return Err(self.kvs_error("GetMedia", "timeout", silent));
        };
        match answered {
            Ok(output) => Ok(output.payload),
            Err(e) => {
                let service = e.as_service_error();
                let reason = match service {
                    Some(s) if s.is_client_limit_exceeded_exception() => "throttled",
                    Some(s) if s.is_connection_limit_exceeded_exception() => "connection_limit",
                    Some(s) if s.is_resource_not_found_exception() => "not_found",
                    Some(s) if s.is_not_authorized_exception() => "not_authorized",
                    Some(s) if s.is_invalid_endpoint_exception() => "invalid_endpoint",
                    Some(_) => "service",
                    None => "network",
                };
                Err(self.kvs_error("GetMedia", reason, e))
            }
        }
    }

    /// Lets the decode thread close the session before choosing where the next one starts.
    async fn end_session(&self, r: &mut Reconnect, tx: &mpsc::Sender<Chunk>, session: Session) -> Next {
        let Session { ended, bytes, fragments_before } = session;
        if matches!(ended, SessionEnd::Shutdown | SessionEnd::ReceiverGone) {
            return Next::Stop;
        }
        let (done, closed) = tokio::sync::oneshot::channel();
        let end = if ended == SessionEnd::SkipAhead { Chunk::SkipEnd(done) } else { Chunk::SessionEnd(done) };
        if tx.send(end).await.is_err() {
            return Next::Stop;
        }
        tokio::select! {
            r = closed => if r.is_err() { return Next::Stop },
            () = self.shutdown.cancelled() => return Next::Stop,
        }
        // Progress is a fragment read completely, not bytes: garbage or a trickle resets nothing.
        let progressed = self.progress.fragments_read() > fragments_before;
        if progressed {
            r.attempt = 0;
            // Once this session read a fragment, that (not the checkpoint) is where to resume.
            if self.progress.last_demuxed().is_some() {
                r.resume_from_checkpoint = None;
            }
        }
        crate::metrics::count_kvs_reconnect(&self.camera, ended.reason());
        tracing::info!(camera = %self.camera, reason = ended.reason(), bytes, progressed, "GetMedia session ended; reconnecting");
        self.health.set_camera(&self.camera, CameraState::Reconnecting, Some(ended.reason().to_owned()));
        if ended == SessionEnd::Stalled {
            let why = format!("GetMedia stalled: {bytes} bytes, no fragment completed in {:?}", self.timeouts.idle);
            self.health.set_degraded(&self.component(), why);
        }
        if ended == SessionEnd::SkipAhead {
            r.skip_from = Some(self.progress.last_demuxed().and_then(|m| m.fragment_number.clone()));
            r.resume_from_checkpoint = None;
            return Next::Again;
        }
        if ended != SessionEnd::BodyEnded {
            r.endpoint = None;
        }
        if !progressed {
            return self.back_off(r, false).await;
        }
        Next::Again
    }

    /// Waits before the next attempt (longer after a rate or connection limit).
    async fn back_off(&self, r: &mut Reconnect, limited: bool) -> Next {
        let backoff = if limited { LIMIT_BACKOFF } else { RECONNECT_BACKOFF };
        if !self.sleep(backoff.delay(r.attempt)).await {
            return Next::Stop;
        }
        r.attempt = r.attempt.saturating_add(1);
        Next::Again
    }

    /// Forwards the body's chunks; returns why it stopped and what it carried. Only the time
    /// spent waiting on the network counts towards [`IDLE_TIMEOUT`]; it starts over at every
    /// fragment read completely.
    async fn stream_body(
        &self,
        mut body: aws_sdk_kinesisvideomedia::primitives::ByteStream,
        tx: &mpsc::Sender<Chunk>,
    ) -> Session {
        let fragments_before = self.progress.fragments_read();
        let mut session = Session { ended: SessionEnd::BodyEnded, bytes: 0, fragments_before };
        let (mut fragments, mut waited) = (fragments_before, Duration::ZERO);
        loop {
            let now = self.progress.fragments_read();
            if now != fragments {
                if fragments == fragments_before {
                    // The session delivers: a stall or a failed call before it is over.
                    self.health.clear_degraded(&self.component());
                }
                (fragments, waited) = (now, Duration::ZERO);
            }
            let Some(left) = self.timeouts.idle.checked_sub(waited).filter(|d| !d.is_zero()) else {
                session.ended = if session.bytes > 0 { SessionEnd::Stalled } else { SessionEnd::Idle };
                return session;
            };
            let asked = Instant::now();
            let next = tokio::select! {
                next = tokio::time::timeout(left, body.next()) => next,
                () = self.shutdown.cancelled() => return session.ended(SessionEnd::Shutdown),
                () = self.progress.skip_requested() => return session.ended(SessionEnd::SkipAhead),
            };
            waited += asked.elapsed();
            match next {
                Err(_) => continue,
                Ok(None) => return session.ended(SessionEnd::BodyEnded),
                Ok(Some(Err(e))) => {
                    tracing::warn!(camera = %self.camera, error = %kvs_infer_common::error_chain(&e), "GetMedia body broke");
                    return session.ended(SessionEnd::BodyError);
                }
                Ok(Some(Ok(data))) => {
                    session.bytes += data.len() as u64;
                    crate::metrics::count_kvs_bytes(&self.camera, data.len());
                    // Back-pressure: a slow decoder slows the read instead of growing a buffer.
                    let sent = tokio::select! {
                        sent = tx.send(Chunk::Data(data)) => sent.is_ok(),
                        () = self.shutdown.cancelled() => return session.ended(SessionEnd::Shutdown),
                        () = self.progress.skip_requested() => return session.ended(SessionEnd::SkipAhead),
                    };
                    if !sent {
                        return session.ended(SessionEnd::ReceiverGone);
                    }
                }
            }
        }
    }

    async fn data_endpoint(&self, control: &aws_sdk_kinesisvideo::Client) -> Result<String, SourceError> {
        let mut request = control.get_data_endpoint().api_name(ApiName::GetMedia);
        request = match &self.stream {
            StreamRef::Name(n) => request.stream_name(n),
            StreamRef::Arn(a) => request.stream_arn(a),
        };
        let out = request.send().await.map_err(|e| {
            let reason = match e.as_service_error() {
                Some(s) if s.is_client_limit_exceeded_exception() => "throttled",
                Some(s) if s.is_resource_not_found_exception() => "not_found",
                Some(_) => "service",
                None => "network",
            };
            self.kvs_error("GetDataEndpoint", reason, e)
        })?;
        match out.data_endpoint() {
            Some(url) => Ok(url.to_owned()),
            None => Err(self.kvs_error(
                "GetDataEndpoint",
                "service",
                std::io::Error::other("no DataEndpoint in the response"),
            )),
        }
    }

    /// The API selector: NOW after a skip-ahead, after `after` when there is one, else the
    /// configured start.
    fn selector(&self, after: Option<&FragmentNumber>, skip: bool) -> Result<ApiSelector, SourceError> {
        let builder = ApiSelector::builder();
        let builder = match (after, &self.start) {
            _ if skip => builder.start_selector_type(StartSelectorType::Now),
            (Some(n), _) => {
                builder.start_selector_type(StartSelectorType::FragmentNumber).after_fragment_number(n.as_str())
            }
            (None, StartSelector::Now) => builder.start_selector_type(StartSelectorType::Now),
            (None, StartSelector::Earliest) => builder.start_selector_type(StartSelectorType::Earliest),
            (None, StartSelector::FragmentNumber(n)) => {
                builder.start_selector_type(StartSelectorType::FragmentNumber).after_fragment_number(n)
            }
            (None, StartSelector::ProducerTimestamp(t)) => {
                builder.start_selector_type(StartSelectorType::ProducerTimestamp).start_timestamp(self.timestamp(t)?)
            }
            (None, StartSelector::ServerTimestamp(t)) => {
                builder.start_selector_type(StartSelectorType::ServerTimestamp).start_timestamp(self.timestamp(t)?)
            }
        };
        builder.build().map_err(|source| SourceError::StartSelector {
            camera: self.camera.clone(),
            value: format!("{:?}", self.start),
            source: Box::new(source),
        })
    }

    fn timestamp(&self, rfc3339: &str) -> Result<aws_smithy_types::DateTime, SourceError> {
        humantime::parse_rfc3339_weak(rfc3339).map(aws_smithy_types::DateTime::from).map_err(|source| {
            SourceError::StartSelector {
                camera: self.camera.clone(),
                value: rfc3339.to_owned(),
                source: Box::new(source),
            }
        })
    }

    fn component(&self) -> Component {
        Component::Camera(self.camera.clone())
    }

    fn failed(&self, e: &SourceError, reason: &'static str) {
        crate::metrics::count_kvs_reconnect(&self.camera, reason);
        // With its cause: "no response headers within 10s", "connection refused", ...
        let why = kvs_infer_common::error_chain(e);
        self.health.set_degraded(&self.component(), why.clone());
        self.health.set_camera(&self.camera, CameraState::Reconnecting, Some(why.clone()));
        tracing::warn!(camera = %self.camera, error = %why, "KVS call failed; retrying");
    }

    /// Sleeps for `d`; `false` when shutdown came first.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}

fn is_limit(e: &SourceError) -> bool {
    matches!(e, SourceError::Kvs { reason: "throttled" | "connection_limit", .. })
}
