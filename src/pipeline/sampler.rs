//! Choosing which frames reach inference, and dropping the oldest when inference lags.
//!
//! - [`RateGate`] admits frames at `target_fps` by their stream timestamps (not arrival time),
//!   so a burst after a reconnect is sampled like live video; optionally key frames only. The
//!   cadence starts over at each fragment, so which frames are sampled depends on the fragment
//!   alone, not on where a run started: a restart after a checkpoint samples what an
//!   uninterrupted run sampled.
//! - [`DropOldest`] is the bounded hand-off to inference: at live pushing never waits; when
//!   full, the oldest waiting frame is dropped (and returned, to be counted), so the newest are
//!   processed. A camera catching up pushes with [`DropOldest::push_wait`] instead, which waits
//!   for room: nothing is dropped and the reader slows down.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

    /// Should the frame at `timestamp_ns` be sampled? `fragment_start`: the first frame of a
    /// fragment (the cadence starts over).
    pub fn admit(&mut self, timestamp_ns: i64, keyframe: bool, fragment_start: bool) -> bool {
        if fragment_start {
            self.next_due = None;
        }
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
    /// Signalled when an item leaves (for [`DropOldest::push_wait`]).
    space: Condvar,
    closed: AtomicBool,
}

/// How often a blocked [`DropOldest::push_wait`] looks at its stop token.
const PUSH_WAIT_POLL: Duration = Duration::from_millis(50);

impl<T> DropOldest<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            ready: Notify::new(),
            space: Condvar::new(),
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

    /// Adds an item, blocking this (non-async) thread while the queue is full. Gives the item
    /// back once the queue is closed or `stop` is cancelled.
    pub fn push_wait(&self, item: T, stop: &CancellationToken) -> Result<(), T> {
        let mut q = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while q.len() >= self.capacity {
            if self.closed.load(Ordering::Acquire) || stop.is_cancelled() {
                return Err(item);
            }
            q = self.space.wait_timeout(q, PUSH_WAIT_POLL).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item, waiting for one; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            let popped = self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
            if let Some(item) = popped {
                self.space.notify_one();
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
        self.space.notify_all();
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
        let admitted: Vec<i64> = (0..50).map(|i| i * 40_000_000).filter(|&t| g.admit(t, false, false)).collect();
        assert_eq!(admitted.len(), 10);
        assert_eq!(admitted[1], 200_000_000);
        // Timestamps restarting (a new fragment at 0) restart the cadence instead of stalling.
        assert!(g.admit(0, false, false));
        let mut k = RateGate::new(30.0, true);
        assert!(!k.admit(0, false, false));
        assert!(k.admit(40_000_000, true, false));
    }

    #[test]
    fn sampling_depends_on_the_fragment_not_on_where_the_run_started() {
        // 3 fps over 25 fps fragments of 1.04 s: an uninterrupted run and one starting at the
        // second fragment sample the same frames of it.
        let fragment = |start: i64| (0..26).map(move |i| (start + i * 40_000_000, i == 0));
        let sample = |g: &mut RateGate, f: &mut dyn Iterator<Item = (i64, bool)>| {
            f.filter(|&(t, first)| g.admit(t, first, first)).map(|(t, _)| t).collect::<Vec<_>>()
        };
        let mut whole = RateGate::new(3.0, false);
        sample(&mut whole, &mut fragment(0));
        let second = sample(&mut whole, &mut fragment(1_040_000_000));
        let mut resumed = RateGate::new(3.0, false);
        assert_eq!(sample(&mut resumed, &mut fragment(1_040_000_000)), second);
        assert_eq!(second.first(), Some(&1_040_000_000), "a fragment's first frame is sampled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn push_wait_loses_nothing_and_stays_bounded() {
        let q = Arc::new(DropOldest::<u64>::new(2));
        let stop = CancellationToken::new();
        let producer = {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut max_len = 0;
                for seq in 0..50u64 {
                    q.push_wait(seq, &stop).expect("open");
                    max_len = max_len.max(q.len());
                }
                q.close();
                max_len
            })
        };
        let mut got = Vec::new();
        while let Some(seq) = q.pop().await {
            got.push(seq);
            tokio::task::yield_now().await;
        }
        assert_eq!(got, (0..50).collect::<Vec<_>>(), "every item, in order");
        assert!(producer.join().expect("producer") <= 2);
        // A stopped producer gets its item back instead of waiting forever.
        let full = DropOldest::<u64>::new(1);
        full.push(1);
        stop.cancel();
        assert_eq!(full.push_wait(2, &stop), Err(2));
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
