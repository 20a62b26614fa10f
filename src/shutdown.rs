//! One shutdown for the whole service.
//!
//! [`Shutdown`] carries the two moments of going down and everything long-lived runs under it:
//! - **intake**: stop taking new work. Cameras stop reading, the dispatcher finishes the events
//!   already made, the sinks flush what their services will take. It begins on the first
//!   SIGTERM/SIGINT, on a GPU fault, or when startup fails.
//! - **http**: the HTTP server stops, after the drain, so the load balancer keeps seeing
//!   `503 draining` (not a refused connection) and Prometheus can scrape the last numbers.
//!
//! Every long-lived task is spawned on its [`TaskTracker`]; [`Shutdown::drain`] waits for them
//! (within a deadline, or until a second signal) and returns an [`Outcome`] that `main` maps to
//! the exit code. Nothing below `main` exits the process.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::health::Health;

/// Why the service stopped taking work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal(&'static str),
    /// The GPU failed (a liveness failure of the GPU or CUDA): the process should exit with
    /// [`kvs_infer_common::exit::GPU_FAULT`] so ECS replaces the task and recovery diagnoses the
    /// instance.
    GpuFault(String),
    /// Startup failed before the service was ready.
    StartupFailed,
}

/// How the drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything finished within the deadline.
    Drained { reason: Option<StopReason> },
    /// The deadline passed with work in flight (the outbox keeps every event made).
    TimedOut { reason: Option<StopReason> },
    /// A second signal cut the drain short.
    Forced,
}

impl Outcome {
    /// Why the service stopped, when it was asked to.
    pub fn reason(&self) -> Option<&StopReason> {
        match self {
            Outcome::Drained { reason } | Outcome::TimedOut { reason } => reason.as_ref(),
            Outcome::Forced => None,
        }
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown {
    intake: CancellationToken,
    http: CancellationToken,
    forced: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when the service stops taking work.
    pub fn intake(&self) -> &CancellationToken {
        &self.intake
    }

    /// Cancelled when the HTTP server should stop.
    pub fn http(&self) -> &CancellationToken {
        &self.http
    }

    /// Stops taking work for `reason`; the first reason given is the one reported.
    pub fn begin(&self, reason: StopReason) {
        if self.reason.set(reason.clone()).is_ok() {
            info!(?reason, "shutting down");
        }
        self.intake.cancel();
    }

    /// Why the service stopped taking work, if it has.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().cloned()
    }

    /// Spawns a long-lived task that the drain waits for.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Waits for `work` and every tracked task, at most `deadline`, or until a second signal.
    /// Stops the HTTP server afterwards.
    pub async fn drain(&self, deadline: Duration, work: impl Future<Output = ()>) -> Outcome {
        self.tracker.close();
        let everything = async {
            work.await;
            self.tracker.wait().await;
        };
        let outcome = tokio::select! {
            finished = tokio::time::timeout(deadline, everything) => match finished {
                Ok(()) => Outcome::Drained { reason: self.reason() },
                Err(_) => Outcome::TimedOut { reason: self.reason() },
            },
            () = self.forced.cancelled() => Outcome::Forced,
        };
        self.http.cancel();
        outcome
    }

    /// First SIGTERM/SIGINT: not ready, stop taking work. Second: cut the drain short.
    pub fn watch_signals(&self, health: Health) {
        let shutdown = self.clone();
        // Not tracked: it lives until the process exits, and the drain must not wait for it.
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the service");
                    return;
                }
            };
            let mut signals = 0;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    r = tokio::signal::ctrl_c() => match r {
                        Ok(()) => "SIGINT",
                        Err(_) => return,
                    },
                };
                signals += 1;
                info!(signal = name, "signal received");
                if signals == 1 {
                    health.start_draining();
                    shutdown.begin(StopReason::Signal(name));
                } else {
                    warn!("second signal: exiting without finishing the drain");
                    shutdown.forced.cancel();
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_tracked_tasks_within_the_deadline() {
        let shutdown = Shutdown::new();
        let intake = shutdown.intake().clone();
        shutdown.spawn(async move {
            intake.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        shutdown.begin(StopReason::Signal("SIGTERM"));
        shutdown.begin(StopReason::StartupFailed);
        let outcome = shutdown.drain(Duration::from_secs(5), async {}).await;
        assert_eq!(outcome, Outcome::Drained { reason: Some(StopReason::Signal("SIGTERM")) }, "the first reason wins");
        assert!(shutdown.http().is_cancelled(), "the HTTP server stops after the drain");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_past_the_deadline_times_the_drain_out() {
        let shutdown = Shutdown::new();
        shutdown.spawn(tokio::time::sleep(Duration::from_secs(60)));
        let outcome = shutdown.drain(Duration::from_secs(5), async {}).await;
        assert_eq!(outcome, Outcome::TimedOut { reason: None });
    }

    #[tokio::test(start_paused = true)]
    async fn forcing_cuts_the_drain_short() {
        let shutdown = Shutdown::new();
        shutdown.spawn(tokio::time::sleep(Duration::from_secs(60)));
        let forced = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            forced.forced.cancel();
        });
        assert_eq!(shutdown.drain(Duration::from_secs(30), async {}).await, Outcome::Forced);
    }
}
