//! A KVS camera's checkpoints as the camera runs: read once at its start (waiting for the table),
//! then written by a task of their own ([`write_checkpoints`]) that follows the camera's
//! fragment progress and the sinks' delivered watermark: the newest fragment whose frames are
//! all analysed and whose events every sink has acknowledged, with its revisions (state changes
//! after it, such as an idle end). Storage is [`super::checkpoint`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::SourceError;
use super::checkpoint::{Checkpoint, Checkpoints};
use super::kvs::RECONNECT_BACKOFF;
use crate::config::{CameraId, StreamRef};
use crate::media::FragmentNumber;
use crate::media::progress::{CheckpointFeed, Processed};

/// A checkpoint write that takes longer is abandoned (the next one carries the progress), so a
/// table that does not answer never holds a camera's drain.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Checkpoints are written at most this often per camera.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a camera that stopped still waits for the sinks to deliver its last events, so its
/// checkpoint (and the next owner) starts after them. A sink that is down past this leaves the
/// checkpoint where it is: the next run analyses that video again and publishes the same ids.
pub const FINAL_DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// Warns when the video a restart would read again is older than this share of the stream's
/// data retention: past the retention, KVS has deleted it.
const RETENTION_WARN_SHARE: f64 = 0.5;

/// What the checkpoint writer of one camera follows and where it writes.
pub struct CheckpointWriter {
    pub camera: CameraId,
    pub checkpoints: Arc<Checkpoints>,
    pub feed: CheckpointFeed,
    /// The sinks' delivered watermark (`None`: events need no delivery, as in tests that
    /// collect them directly).
    pub delivered: Option<tokio::sync::watch::Receiver<u64>>,
    /// Checkpoints are written at most this often.
    pub interval: Duration,
    /// The stream's data retention, when known (for the warning).
    pub retention: Option<Duration>,
}

/// Writes the newest fragment whose frames are all analysed and whose events every sink has
/// delivered: at most once per `interval`, and once the camera stops, for as long as its last
/// events are still being delivered ([`FINAL_DELIVERY_WAIT`] at most).
pub async fn write_checkpoints(mut w: CheckpointWriter) {
    let mut written: Option<(FragmentNumber, u32)> = None;
    let mut ready: Option<Processed> = None;
    let mut last_write: Option<Instant> = None;
    let mut camera_running = true;
    let mut delivery_running = w.delivered.is_some();
    let mut give_up_at: Option<Instant> = None;
    let mut warned_at: Option<Instant> = None;
    loop {
        let delivered = w.delivered.as_ref().map_or(u64::MAX, |d| *d.borrow());
        if let Some(newer) = w.feed.take_delivered(delivered) {
            ready = Some(newer);
        }
        let due = last_write.is_none_or(|t| t.elapsed() >= w.interval);
        if due
            && let Some(p) = ready.take()
            && let (Some(number), revision) = p.position()
            && written.as_ref() != Some(&(number.clone(), revision))
        {
            last_write = Some(Instant::now());
            if write_one(&w.camera, &w.checkpoints, &p).await {
                written = Some((number.clone(), revision));
            } else {
                ready = Some(p);
            }
        }
        let lag = report_lag(&w, ready.as_ref(), &mut warned_at);
        let gave_up = give_up_at.is_some_and(|t| Instant::now() >= t);
        if !camera_running && (lag.is_none() || !delivery_running || gave_up) {
            if lag.is_some() {
                tracing::warn!(camera = %w.camera, "the camera stopped with events not yet delivered or checkpointed: its checkpoint stays before them");
            }
            crate::metrics::set_checkpoint_lag(&w.camera, 0.0);
            return;
        }
        let next_write = last_write.map_or_else(Instant::now, |t| t + w.interval);
        let give_up = give_up_at.unwrap_or(next_write);
        tokio::select! {
            alive = w.feed.changed(), if camera_running => {
                if !alive {
                    camera_running = false;
                    give_up_at = Some(Instant::now() + FINAL_DELIVERY_WAIT);
                }
            }
            more = delivered_changed(&mut w.delivered), if delivery_running => delivery_running = more,
            () = tokio::time::sleep_until(next_write.into()), if ready.is_some() => {}
            () = tokio::time::sleep_until(give_up.into()), if give_up_at.is_some() => {}
        }
    }
}

async fn delivered_changed(delivered: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match delivered {
        Some(d) => d.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// One checkpoint write: `true` when the table now holds it (or refused it for good: stale,
/// fenced), `false` to try again.
async fn write_one(camera: &CameraId, checkpoints: &Checkpoints, p: &Processed) -> bool {
    let write = tokio::time::timeout(CHECKPOINT_TIMEOUT, checkpoints.write(p));
    let result = write.await.unwrap_or_else(|_| {
        Err(SourceError::Checkpoint {
            table: checkpoints.table().to_owned(),
            stream: camera.to_string(),
            operation: "PutItem",
            source: Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")),
        })
    });
    match result {
        Ok(w) => {
            crate::metrics::count_kvs_checkpoint(camera, w.as_str());
            if w == super::checkpoint::Written::Fenced {
                tracing::warn!(camera = %camera, "checkpoint refused: this task no longer holds the camera's lease");
            }
            true
        }
        Err(e) => {
            crate::metrics::count_kvs_checkpoint(camera, "error");
            tracing::warn!(camera = %camera, error = %kvs_infer_common::error_chain(&e), "checkpoint not written; the next one will be");
            false
        }
    }
}

/// `checkpoint_lag_seconds`: how much video (KVS server time) the checkpoint is held back by:
/// from the oldest analysed fragment it does not cover yet to the newest analysed one; 0 when it
/// covers everything (a backlog read at full speed with its events delivered stays near 0).
/// Returns it (`None`: nothing waits), and warns when the held-back video's age nears the
/// stream's retention (past it, a restart cannot read it again).
fn report_lag(w: &CheckpointWriter, ready: Option<&Processed>, warned_at: &mut Option<Instant>) -> Option<f64> {
    let Some(oldest) = ready.cloned().or_else(|| w.feed.oldest_waiting()) else {
        crate::metrics::set_checkpoint_lag(&w.camera, 0.0);
        return None;
    };
    let at = |p: &Processed| p.fragment.server_timestamp.or(p.fragment.producer_timestamp).map(|t| t.millis);
    let held_from = at(&oldest);
    let newest = w.feed.newest().as_ref().and_then(at);
    let lag = match (held_from, newest) {
        (Some(from), Some(to)) => (to - from).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    crate::metrics::set_checkpoint_lag(&w.camera, lag);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let age = held_from.map_or(0.0, |from| (now - from).max(0) as f64 / 1000.0);
    if let Some(retention) = w.retention
        && age > retention.as_secs_f64() * RETENTION_WARN_SHARE
        && warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(300))
    {
        *warned_at = Some(Instant::now());
        tracing::warn!(
            camera = %w.camera,
            held_back_seconds = lag,
            age_seconds = age,
            retention_seconds = retention.as_secs(),
            "the checkpoint is held back (events not delivered) and nears the stream's data retention: video older than the retention cannot be read again"
        );
    }
    Some(lag)
}

/// The stream's data retention (`DescribeStream`), for the warning when a held-back checkpoint
/// nears it; `None` when it cannot be read (the warning is then off, nothing else changes).
pub async fn stream_retention(control: &aws_sdk_kinesisvideo::Client, stream: &StreamRef) -> Option<Duration> {
    let request = match stream {
        StreamRef::Name(name) => control.describe_stream().stream_name(name),
        StreamRef::Arn(arn) => control.describe_stream().stream_arn(arn),
    };
    match tokio::time::timeout(Duration::from_secs(10), request.send()).await {
        Ok(Ok(out)) => out
            .stream_info()
            .and_then(|i| i.data_retention_in_hours())
            .map(|h| Duration::from_secs(h.max(0) as u64 * 3600)),
        Ok(Err(e)) => {
            tracing::debug!(stream = stream.label(), error = %kvs_infer_common::error_chain(&e), "cannot read the stream's retention");
            None
        }
        Err(_) => None,
    }
}

/// The stored checkpoint, retried until the table answers (or shutdown).
pub async fn read_checkpoint(
    camera: &CameraId,
    checkpoints: &Checkpoints,
    shutdown: &CancellationToken,
) -> Option<Checkpoint> {
    let mut attempt = 0;
    loop {
        match checkpoints.read().await {
            Ok(found) => {
                tracing::info!(
                    camera = %camera,
                    checkpoint = found.as_ref().map(|c| c.fragment.to_string()),
                    analysis = found.as_ref().is_some_and(|c| c.analysis.is_some()),
                    "checkpoint read"
                );
                return found;
            }
            Err(e) => {
                // Starting without it would re-read or skip video: wait for the table instead.
                tracing::warn!(camera = %camera, error = %kvs_infer_common::error_chain(&e), "cannot read the checkpoint; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_BACKOFF.delay(attempt)) => {}
                    () = shutdown.cancelled() => return None,
                }
                attempt += 1;
            }
        }
    }
}
