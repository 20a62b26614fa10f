//! One delivery loop per sink: take the records the sink has not acknowledged from the outbox,
//! deliver them, retry what is left with exponential backoff and jitter, acknowledge, repeat.
//!
//! A failing sink marks the service `degraded` (`sink.{name}` in the `/healthz` body) and never
//! fails liveness: a new task would not bring S3 back. On shutdown a loop keeps delivering while
//! its sink answers, and stops at the first failure: what is left stays in the outbox for the
//! next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::{Pending, Sink};
use crate::health::{Component, Health, SinkState};
use kvs_infer_common::backoff::Backoff;

/// What a delivery loop needs.
#[derive(Clone)]
pub struct DeliveryContext {
    pub outbox: Arc<Outbox>,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub backoff: Backoff,
}

/// Delivers to `sink` until shutdown (and, after it, while the sink keeps up).
pub async fn run(sink: Arc<dyn Sink>, ctx: DeliveryContext) {
    let mut loop_ = Delivery { name: sink.name(), sink, appended: ctx.outbox.subscribe(), ctx };
    let mut storage_attempt = 0u32;
    loop {
        let batch = match loop_.fetch().await {
            Ok(batch) => {
                storage_attempt = 0;
                batch
            }
            Err(Some(e)) => {
                tracing::error!(sink = loop_.name, error = %kvs_infer_common::error_chain(&e), "cannot read the outbox");
                storage_attempt += 1;
                if !sleep_or_shutdown(&loop_.ctx, loop_.ctx.backoff.delay(storage_attempt)).await {
                    return;
                }
                continue;
            }
            Err(None) => return,
        };
        if batch.is_empty() {
            if !loop_.wait_for_more().await {
                return;
            }
            continue;
        }
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        let pending: Vec<Pending> =
            batch.into_iter().map(|(seq, record)| Pending { seq, record, done: false }).collect();
        if !loop_.deliver(pending).await {
            return;
        }
        loop_.ack(last).await;
    }
}

/// One sink's delivery loop.
struct Delivery {
    name: &'static str,
    sink: Arc<dyn Sink>,
    appended: tokio::sync::watch::Receiver<u64>,
    ctx: DeliveryContext,
}

impl Delivery {
    /// The next records the sink has not acknowledged. `Err(None)`: the read task failed.
    async fn fetch(&self) -> Result<Vec<(u64, super::outbox::OutboxRecord)>, Option<super::outbox::OutboxError>> {
        let (limits, name, outbox) = (self.sink.limits(), self.name, self.ctx.outbox.clone());
        match tokio::task::spawn_blocking(move || outbox.pending(name, limits.records, limits.bytes)).await {
            Ok(result) => result.map_err(Some),
            Err(e) => {
                tracing::error!(sink = name, error = %e, "outbox read task failed");
                Err(None)
            }
        }
    }

    /// Nothing to deliver: report an empty backlog and wait for an append. `false` at shutdown.
    async fn wait_for_more(&mut self) -> bool {
        let name = self.name;
        crate::metrics::set_sink_backlog(name, 0);
        self.ctx.health.set_sink(name, SinkState::Ok, Some("backlog 0".to_owned()));
        if self.ctx.shutdown.is_cancelled() {
            return false;
        }
        self.appended.mark_unchanged();
        // Re-check after subscribing to changes: an append may have landed in between.
        let outbox = self.ctx.outbox.clone();
        let more = tokio::task::spawn_blocking(move || outbox.backlog(name)).await;
        if matches!(more, Ok(Ok(n)) if n > 0) {
            return true;
        }
        tokio::select! {
            _ = self.appended.changed() => {}
            () = self.ctx.shutdown.cancelled() => {}
        }
        true
    }

    /// Delivers the batch, retrying what is left with backoff. `false`: shutting down with
    /// records undelivered (they stay in the outbox).
    async fn deliver(&self, mut pending: Vec<Pending>) -> bool {
        let (name, component) = (self.name, Component::Sink(self.name));
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.sink.deliver(&mut pending).await {
                Ok(()) if pending.iter().all(|p| p.done) => break,
                Ok(()) => {
                    tracing::warn!(sink = name, "sink reported success but left records undelivered; retrying");
                }
                Err(e) => {
                    let left = pending.iter().filter(|p| !p.done).count();
                    crate::metrics::count_sink_error(name, e.reason());
                    self.ctx.health.set_degraded(&component, e.to_string());
                    let detail = format!("{e} ({left} record(s) of a batch waiting)");
                    self.ctx.health.set_sink(name, SinkState::Failing, Some(detail));
                    tracing::warn!(sink = name, records_left = left, attempt, error = %kvs_infer_common::error_chain(&e), "delivery failed; retrying");
                }
            }
            if self.ctx.shutdown.is_cancelled() {
                tracing::warn!(sink = name, "shutting down with undelivered records; they stay in the outbox");
                return false;
            }
            if !sleep_or_shutdown(&self.ctx, self.ctx.backoff.delay(attempt)).await {
                return false;
            }
            attempt = attempt.saturating_add(1);
        }
        self.ctx.health.clear_degraded(&component);
        crate::metrics::record_sink_delivery(name, pending.len(), started.elapsed());
        true
    }

    /// Records that everything up to `last` is delivered.
    async fn ack(&self, last: u64) {
        let (name, outbox) = (self.name, self.ctx.outbox.clone());
        let acked = tokio::task::spawn_blocking(move || {
            outbox.ack(name, last)?;
            outbox.backlog(name)
        })
        .await;
        match acked {
            Ok(Ok(backlog)) => {
                crate::metrics::set_sink_backlog(name, backlog);
                self.ctx.health.set_sink(name, SinkState::Ok, Some(format!("backlog {backlog}")));
            }
            Ok(Err(e)) => {
                tracing::error!(sink = name, error = %kvs_infer_common::error_chain(&e), "cannot record the acknowledgement; records will be delivered again")
            }
            Err(e) => tracing::error!(sink = name, error = %e, "outbox ack task failed"),
        }
    }
}

/// Sleeps for `delay`; `false` when shutdown came first.
async fn sleep_or_shutdown(ctx: &DeliveryContext, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = ctx.shutdown.cancelled() => false,
    }
}
