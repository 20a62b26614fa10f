//! Liveness from the inference worker: a stall (work queued, no batch completed for
//! `health.stall_after`) and a CUDA error in a run. Both are failures a restart fixes: a wedged
//! driver call or a corrupted CUDA context never recovers inside the process.
//!
//! Progress is judged by the worker's batch counter, on tokio's clock (so tests run it under
//! paused time): an idle worker (nothing queued) is never stalled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::worker::WorkerStats;
use crate::health::{Component, Health};

/// How often the watchdog looks.
pub const TICK: Duration = Duration::from_secs(1);

pub struct Watchdog {
    pub stats: Arc<WorkerStats>,
    pub stall_after: Duration,
    pub health: Health,
}

impl Watchdog {
    /// Runs until `stop`.
    pub async fn run(self, tick: Duration, stop: CancellationToken) {
        let mut last_batches = self.stats.batches.load(Ordering::Relaxed);
        let mut last_progress = Instant::now();
        let mut stalled = false;
        let mut cuda_reported = false;
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = stop.cancelled() => return,
            }
            let now = Instant::now();
            let batches = self.stats.batches.load(Ordering::Relaxed);
            let queued = self.stats.queued.load(Ordering::Acquire);
            if batches != last_batches || queued == 0 {
                last_batches = batches;
                last_progress = now;
            }
            let waited = now.saturating_duration_since(last_progress);
            let is_stalled = queued > 0 && waited >= self.stall_after;
            if is_stalled && !stalled {
                let reason = format!(
                    "inference worker completed no batch for {}s with {queued} request(s) queued",
                    waited.as_secs()
                );
                tracing::error!(reason, "inference stalled: failing liveness");
                self.health.set_liveness_failure(&Component::Inference, reason);
            } else if !is_stalled && stalled {
                tracing::info!("inference worker is completing batches again");
                self.health.clear_liveness_failure(&Component::Inference);
            }
            stalled = is_stalled;
            crate::metrics::set_infer_stalled(stalled);
            if !cuda_reported && let Some(error) = self.stats.cuda_error.get() {
                tracing::error!(error, "CUDA error in an inference run: failing liveness");
                self.health.set_liveness_failure(&Component::Cuda, format!("CUDA error in an inference run: {error}"));
                cuda_reported = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog(stall_after: Duration) -> (Arc<WorkerStats>, Health, CancellationToken) {
        let stats = Arc::new(WorkerStats::default());
        let health = Health::new();
        let stop = CancellationToken::new();
        let dog = Watchdog { stats: stats.clone(), stall_after, health: health.clone() };
        tokio::spawn(dog.run(TICK, stop.clone()));
        (stats, health, stop)
    }

    async fn wait(d: Duration) {
        tokio::time::sleep(d).await;
        // Let the watchdog's tick run.
        tokio::task::yield_now().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_stops_completing_batches_fails_liveness_after_stall_after() {
        let (stats, health, stop) = watchdog(Duration::from_secs(30));
        stats.queued.store(3, Ordering::Release);
        wait(Duration::from_secs(29)).await;
        assert!(health.snapshot().live, "29 s without a batch is not yet a stall");
        wait(Duration::from_secs(2)).await;
        let snap = health.snapshot();
        assert!(!snap.live);
        assert!(snap.liveness_failures["inference"].contains("3 request(s) queued"), "{:?}", snap.liveness_failures);

        // It completes a batch again: liveness recovers.
        stats.batches.fetch_add(1, Ordering::Relaxed);
        wait(Duration::from_secs(2)).await;
        assert!(health.snapshot().live);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_or_a_busy_one_that_progresses_is_live() {
        let (stats, health, stop) = watchdog(Duration::from_secs(10));
        wait(Duration::from_secs(60)).await;
        assert!(health.snapshot().live, "nothing queued: idle, not stalled");
        stats.queued.store(8, Ordering::Release);
        for _ in 0..30 {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            wait(Duration::from_secs(5)).await;
        }
        assert!(health.snapshot().live, "slow but progressing is live");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cuda_error_fails_liveness_for_good() {
        let (stats, health, stop) = watchdog(Duration::from_secs(30));
        let _ = stats.cuda_error.set("CUDA failure 700: an illegal memory access was encountered".into());
        wait(Duration::from_secs(2)).await;
        let snap = health.snapshot();
        assert!(!snap.live && !snap.ready);
        assert!(snap.liveness_failures["cuda"].contains("illegal memory access"));
        stats.batches.fetch_add(1, Ordering::Relaxed);
        wait(Duration::from_secs(5)).await;
        assert!(!health.snapshot().live, "the CUDA context stays broken until a restart");
        stop.cancel();
    }
}
