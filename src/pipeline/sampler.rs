//! Choosing which frames reach inference, and dropping the oldest when inference lags.
//!
//! - [`RateGate`] admits frames at `target_fps` by their stream timestamps (not arrival time),
//!   so a burst after a reconnect is sampled like live video; optionally key frames only.
//! - [`DropOldest`] is the bounded hand-off to inference: pushing never waits; when full, the
//!   oldest waiting frame is dropped (and returned, to be counted), so the newest are processed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Frame-rate sampling by timestamps.
#[derive(Debug, Clone)]
pub struct RateGate {
    interval_ns: i64,
    next_due: Option<i64>,
    last_ns: Option<i64>,
    keyframes_only: bool,
}

impl RateGate {
    pub fn new(target_fps: f64, keyframes_only: bool) -> Self {
        let interval_ns = (1e9 / target_fps.max(1e-3)) as i64;
        Self { interval_ns, next_due: None, last_ns: None, keyframes_only }
    }

    /// Should the frame at `timestamp_ns` be sampled?
    pub fn admit(&mut self, timestamp_ns: i64, keyframe: bool) -> bool {
        if self.keyframes_only && !keyframe {
            return false;
        }
        // Time going backwards (a fragment restarting its timecodes, a reconnect): start over.
        if self.last_ns.is_some_and(|last| timestamp_ns < last) {
            self.next_due = None;
        }
        self.last_ns = Some(timestamp_ns);
        match self.next_due {
            Some(due) if timestamp_ns < due => false,
            Some(due) => {
                // Keep the cadence; after a gap, restart it from this frame.
                let next = due + self.interval_ns;
                self.next_due = Some(if next <= timestamp_ns { timestamp_ns + self.interval_ns } else { next });
                true
            }
            None => {
                self.next_due = Some(timestamp_ns + self.interval_ns);
                true
            }
        }
    }
}

/// A bounded queue that drops its oldest item instead of blocking the producer.
#[derive(Debug)]
pub struct DropOldest<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
    closed: AtomicBool,
}

impl<T> DropOldest<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds an item; returns the one dropped to make room, if any.
    pub fn push(&self, item: T) -> Option<T> {
        let dropped = {
            let mut q = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let dropped = if q.len() >= self.capacity { q.pop_front() } else { None };
            q.push_back(item);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The oldest item, waiting for one; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front() {
                return Some(item);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// No more items will come; `pop` drains what is left, then returns `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn rate_gate_samples_by_timestamp() {
        let mut g = RateGate::new(5.0, false);
        // 25 fps for 2 s: every 5th frame.
        let admitted: Vec<i64> = (0..50).map(|i| i * 40_000_000).filter(|&t| g.admit(t, false)).collect();
        assert_eq!(admitted.len(), 10);
        assert_eq!(admitted[1], 200_000_000);
        // Timestamps restarting (a new fragment at 0) restart the cadence instead of stalling.
        assert!(g.admit(0, false));
        let mut k = RateGate::new(30.0, true);
        assert!(!k.admit(0, false));
        assert!(k.admit(40_000_000, true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_sees_the_newest_frames_and_memory_stays_bounded() {
        let q = Arc::new(DropOldest::<u64>::new(2));
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut dropped = 0u64;
                let mut max_len = 0;
                // 25 fps for 10 s of (virtual) time; pushing never waits.
                for seq in 0..250u64 {
                    if q.push(seq).is_some() {
                        dropped += 1;
                    }
                    max_len = max_len.max(q.len());
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                q.close();
                (dropped, max_len)
            })
        };
        let mut processed = Vec::new();
        while let Some(seq) = q.pop().await {
            processed.push(seq);
            tokio::time::sleep(Duration::from_millis(500)).await; // slow inference
        }
        let (dropped, max_len) = producer.await.expect("producer");
        assert!(max_len <= 2, "bounded: {max_len}");
        assert_eq!(processed.len() as u64 + dropped, 250, "every frame is processed or counted as dropped");
        assert!(dropped > 200, "most frames dropped at 2 fps of 25: {dropped}");
        assert!(processed.windows(2).all(|w| w[0] < w[1]), "in order");
        // Each time the consumer comes back it gets one of the two newest frames.
        // (The last two are the queue drained after the producer stopped.)
        let n = processed.len();
        assert!(processed[..n - 1].windows(2).all(|w| w[1] - w[0] >= 10), "{processed:?}");
        assert!(*processed.last().expect("some") >= 248, "the last frames are not starved");
    }
}
