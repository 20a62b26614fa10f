//! The dispatcher: the one consumer of every camera's events in `serve`. For each event it stamps
//! `emitted_at`, encodes the annotated snapshot once, names its S3 object, and commits the record
//! to the outbox. When the outbox is full it waits for the sinks to free space (the bounded event
//! channel then holds the cameras back); nothing is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::info;

use super::outbox::{Outbox, OutboxError, OutboxRecord};
use crate::health::Health;
use crate::pipeline::events::EventWithFrame;

/// How often a full outbox is tried again even without a wake-up.
const FULL_RETRY: Duration = Duration::from_secs(1);
const HEALTH_KEY: &str = "outbox";

/// What to do with snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotPlan {
    /// Encode a JPEG for events that come with a frame.
    pub enabled: bool,
    pub quality: u8,
    /// `(bucket, prefix)` when the S3 sink is configured.
    pub s3: Option<(String, String)>,
}

/// Runs until every camera has dropped its sender.
pub async fn run(mut rx: mpsc::Receiver<EventWithFrame>, outbox: Arc<Outbox>, plan: SnapshotPlan, health: Health) {
    while let Some(EventWithFrame { mut event, frame }) = rx.recv().await {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        event.emitted_at = Some((now * 1000.0).round() / 1000.0);
        let jpeg = match frame {
            Some(frame) if plan.enabled => {
                let (e, quality) = (event.clone(), plan.quality);
                match tokio::task::spawn_blocking(move || super::snapshot::encode(&frame, &e, quality)).await {
                    Ok(Ok(jpeg)) => Some(jpeg),
                    Ok(Err(e)) => {
                        tracing::error!(error = %kvs_infer_common::error_chain(&e), "snapshot not encoded; the event goes on without it");
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "snapshot task failed");
                        None
                    }
                }
            }
            _ => None,
        };
        if let (Some((bucket, prefix)), Some(_)) = (&plan.s3, &jpeg) {
            event.snapshot = Some(format!("s3://{bucket}/{}", super::s3::snapshot_key(prefix, &event, now)));
        }
        crate::metrics::count_event(&event.camera, event.kind.as_str());
        info!(
            camera = event.camera,
            kind = event.kind.as_str(),
            track = event.track_id,
            label = event.label,
            text = event.text.as_deref().unwrap_or(""),
            zone = event.zone,
            event_id = event.event_id,
            "event"
        );
        let record = Arc::new(OutboxRecord { event, snapshot: jpeg });
        append(&outbox, record, &health).await;
    }
}

/// Appends, waiting while the outbox is full. Storage errors are retried too: the event is only
/// given up if the process ends (and then it was never acknowledged to anyone).
async fn append(outbox: &Arc<Outbox>, record: Arc<OutboxRecord>, health: &Health) {
    let mut full_reported = false;
    let mut attempt = 0u32;
    loop {
        let freed = outbox.freed();
        let (o, r) = (outbox.clone(), record.clone());
        match tokio::task::spawn_blocking(move || o.append(&r)).await {
            Ok(Ok(_)) => break,
            Ok(Err(OutboxError::Full { bytes, max_bytes, .. })) => {
                if !full_reported {
                    tracing::warn!(bytes, max_bytes, "outbox full: events wait for the sinks to catch up");
                    health.set_degraded(HEALTH_KEY, format!("outbox full ({bytes} of {max_bytes} bytes)"));
                    full_reported = true;
                }
                let _ = tokio::time::timeout(FULL_RETRY, freed).await;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %kvs_infer_common::error_chain(&e), event_id = record.event.event_id, "cannot write to the outbox; retrying");
                health.set_degraded(HEALTH_KEY, e.to_string());
                full_reported = true;
                attempt += 1;
                tokio::time::sleep(kvs_infer_common::backoff::Backoff::default().delay(attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox append task failed");
                break;
            }
        }
    }
    if full_reported {
        health.clear_degraded(HEALTH_KEY);
    }
}
