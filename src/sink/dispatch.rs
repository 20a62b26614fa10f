//! The dispatcher: the one consumer of every camera's events in `serve`. For each event it stamps
//! `emitted_at`, encodes the annotated snapshot once, names its S3 object, and commits the record
//! to the outbox. When the outbox is full it waits for the sinks to free space (the bounded event
//! channel then holds the cameras back); nothing is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::info;

use super::outbox::{Outbox, OutboxError, OutboxRecord};
use super::recent::RecentEvents;
use super::registry::{self, SnapshotLocator};
use crate::config::SinksConfig;
use crate::health::{Component, Health};
use crate::pipeline::events::EventWithFrame;

/// How often a full outbox is tried again even without a wake-up.
const FULL_RETRY: Duration = Duration::from_secs(1);
/// Retries of an outbox whose disk failed: soon after space returns, the events flow again.
const STORAGE_RETRY: kvs_infer_common::backoff::Backoff =
    kvs_infer_common::backoff::Backoff { min: Duration::from_millis(200), max: Duration::from_secs(5) };

/// What to do with snapshots: one JPEG per event that comes with a frame, shared by every sink
/// that stores snapshots, at the best quality any of them asks for.
#[derive(Clone, Default)]
pub struct SnapshotPlan {
    /// JPEG quality; `None`: no sink stores snapshots.
    pub quality: Option<u8>,
    /// Names the snapshot's location in the event (the S3 sink's key).
    pub locator: Option<SnapshotLocator>,
    /// Some sink stores snapshots (else a snapshot is encoded for the live page only and not
    /// put in the outbox).
    pub stored: bool,
}

impl SnapshotPlan {
    /// What the configured sinks ask for.
    pub fn for_sinks(sinks: &SinksConfig) -> Self {
        let factories = registry::configured(sinks);
        let quality = factories.iter().filter_map(|s| s.snapshot_quality()).max();
        Self { quality, locator: factories.iter().find_map(|s| s.snapshot_locator()), stored: quality.is_some() }
    }

    /// The live page shows snapshots too: encoded even when no sink stores them.
    pub fn for_page(self) -> Self {
        Self { quality: self.quality.or(Some(super::recent::PAGE_SNAPSHOT_QUALITY)), ..self }
    }

    /// The record an event becomes: its annotated snapshot encoded (on a blocking thread) and
    /// located. A snapshot that cannot be encoded is logged; the event goes on without it.
    pub async fn record(&self, item: EventWithFrame, emitted_at: f64) -> OutboxRecord {
        let EventWithFrame { mut event, frame, .. } = item;
        let jpeg = match (frame, self.quality) {
            (Some(frame), Some(quality)) => {
                let e = event.clone();
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
        if let (Some(locate), Some(_)) = (&self.locator, &jpeg) {
            event.snapshot = Some(locate(&event, emitted_at));
        }
        OutboxRecord { event, snapshot: jpeg }
    }
}

/// Runs until every camera has dropped its sender.
pub async fn run(
    mut rx: mpsc::Receiver<EventWithFrame>,
    outbox: Arc<Outbox>,
    plan: SnapshotPlan,
    health: Health,
    recent: Option<Arc<RecentEvents>>,
) {
    while let Some(mut item) = rx.recv().await {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        item.event.emitted_at = Some((now * 1000.0).round() / 1000.0);
        // Held until the record is in the outbox: the camera's checkpoint waits for it.
        let stored = item.stored.take();
        let mut record = plan.record(item, now).await;
        if let Some(recent) = &recent {
            let snapshot = if plan.stored { record.snapshot.clone() } else { record.snapshot.take() };
            recent.push(record.event.clone(), snapshot.map(Arc::new));
        }
        let event = &record.event;
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
        let seq = append(&outbox, Arc::new(record), &health).await;
        crate::metrics::event_committed();
        if let (Some(stored), Some(seq)) = (stored, seq) {
            let _ = stored.send(seq);
        }
    }
}

/// Appends, waiting while the outbox is full or its disk fails (full, I/O errors: retried with
/// backoff, the outbox reopens itself, `/healthz` says `degraded: outbox` with the reason); the
/// camera waits meanwhile. Returns the record's sequence number; `None` only if the append task
/// itself failed (the event was never acknowledged to anyone, and its camera's checkpoint does
/// not pass it).
async fn append(outbox: &Arc<Outbox>, record: Arc<OutboxRecord>, health: &Health) -> Option<u64> {
    let mut full_reported = false;
    let mut attempt = 0u32;
    loop {
        let freed = outbox.freed();
        let (o, r) = (outbox.clone(), record.clone());
        match tokio::task::spawn_blocking(move || o.append(&r)).await {
            Ok(Ok(seq)) => {
                if full_reported {
                    health.clear_degraded(&Component::Outbox);
                    tracing::info!("the outbox takes events again");
                }
                return Some(seq);
            }
            Ok(Err(OutboxError::Full { bytes, max_bytes, .. })) => {
                if !full_reported {
                    tracing::warn!(bytes, max_bytes, "outbox full: events wait for the sinks to catch up");
                    health.set_degraded(&Component::Outbox, format!("outbox full ({bytes} of {max_bytes} bytes)"));
                    full_reported = true;
                }
                let _ = tokio::time::timeout(FULL_RETRY, freed).await;
            }
            Ok(Err(e)) => {
                let reason = kvs_infer_common::error_chain(&e);
                tracing::error!(error = %reason, event_id = record.event.event_id, "cannot write to the outbox; the camera waits and it is tried again");
                health.set_degraded(&Component::Outbox, reason);
                full_reported = true;
                attempt += 1;
                tokio::time::sleep(STORAGE_RETRY.delay(attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox append task failed");
                return None;
            }
        }
    }
}
