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
    let name = sink.name();
    let component = Component::Sink(name);
    let mut appended = ctx.outbox.subscribe();
    let mut storage_attempt = 0u32;
    loop {
        let limits = sink.limits();
        let outbox = ctx.outbox.clone();
        let fetched = tokio::task::spawn_blocking(move || outbox.pending(name, limits.records, limits.bytes)).await;
        let batch = match fetched {
            Ok(Ok(batch)) => {
                storage_attempt = 0;
                batch
            }
            Ok(Err(e)) => {
                tracing::error!(sink = name, error = %kvs_infer_common::error_chain(&e), "cannot read the outbox");
                storage_attempt += 1;
                if !sleep_or_shutdown(&ctx, ctx.backoff.delay(storage_attempt)).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(sink = name, error = %e, "outbox read task failed");
                return;
            }
        };
        if batch.is_empty() {
            crate::metrics::set_sink_backlog(name, 0);
            ctx.health.set_sink(name, SinkState::Ok, Some("backlog 0".to_owned()));
            if ctx.shutdown.is_cancelled() {
                return;
            }
            appended.mark_unchanged();
            // Re-check after subscribing to changes: an append may have landed in between.
            let outbox = ctx.outbox.clone();
            let more = tokio::task::spawn_blocking(move || outbox.backlog(name)).await;
            if matches!(more, Ok(Ok(n)) if n > 0) {
                continue;
            }
            tokio::select! {
                _ = appended.changed() => {}
                () = ctx.shutdown.cancelled() => {}
            }
            continue;
        }
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        let mut pending: Vec<Pending> =
            batch.into_iter().map(|(seq, record)| Pending { seq, record, done: false }).collect();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match sink.deliver(&mut pending).await {
                Ok(()) if pending.iter().all(|p| p.done) => break,
                Ok(()) => {
                    tracing::warn!(sink = name, "sink reported success but left records undelivered; retrying");
                }
                Err(e) => {
                    let left = pending.iter().filter(|p| !p.done).count();
                    crate::metrics::count_sink_error(name, e.reason());
                    ctx.health.set_degraded(&component, e.to_string());
                    ctx.health.set_sink(
                        name,
                        SinkState::Failing,
                        Some(format!("{e} ({left} record(s) of a batch waiting)")),
                    );
                    tracing::warn!(sink = name, records_left = left, attempt, error = %kvs_infer_common::error_chain(&e), "delivery failed; retrying");
                }
            }
            if ctx.shutdown.is_cancelled() {
                tracing::warn!(sink = name, "shutting down with undelivered records; they stay in the outbox");
                return;
            }
            if !sleep_or_shutdown(&ctx, ctx.backoff.delay(attempt)).await {
                return;
            }
            attempt = attempt.saturating_add(1);
        }
        ctx.health.clear_degraded(&component);
        crate::metrics::record_sink_delivery(name, pending.len(), started.elapsed());
        let outbox = ctx.outbox.clone();
        let acked = tokio::task::spawn_blocking(move || {
            outbox.ack(name, last)?;
            outbox.backlog(name)
        })
        .await;
        match acked {
            Ok(Ok(backlog)) => {
                crate::metrics::set_sink_backlog(name, backlog);
                ctx.health.set_sink(name, SinkState::Ok, Some(format!("backlog {backlog}")));
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
