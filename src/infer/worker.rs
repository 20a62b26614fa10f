//! The inference worker: one OS thread per device owns the ONNX Runtime sessions; everything
//! else talks to it through a cloneable [`InferHandle`].
//!
//! ```text
//! handles ──(bounded mpsc, try_send)──► batcher task ──(bounded, 2 batches)──► executor thread
//!    ▲                                  groups requests of the same model part and             │
//!    └────────────── oneshot replies ◄── input shape up to max_batch or max_delay ◄────────────┘
//! ```
//! Batching policy: a group is dispatched when it reaches `max_batch` items, when its oldest
//! request has waited `max_delay`, or at once when the device is idle (waiting then would only
//! add latency: at low load a request runs immediately; under load, requests that arrive while
//! the device is busy form the next batch).
//!
//! The batcher is an async task so its timing runs on tokio's clock (tests pause it); the
//! executor thread never touches the async runtime. A failed run answers every request of the
//! batch with the error and the worker carries on. A full queue is refused at once.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::model::{Part, PartKey};
use super::{InferError, Tensor};
use crate::config::ModelId;
use crate::metrics;

/// Runs one batch on the device. The service's implementation owns ONNX Runtime sessions;
/// tests use a fake to observe batching.
pub trait BatchRunner: Send + 'static {
    /// `input` is `[n, ...]`; the result must be `[n, ...]` too.
    fn run(&mut self, key: &PartKey, input: Tensor) -> Result<Tensor, InferError>;
}

struct Request {
    key: PartKey,
    input: Tensor,
    reply: oneshot::Sender<Result<Tensor, InferError>>,
    enqueued: Instant,
}

struct Batch {
    key: PartKey,
    requests: Vec<Request>,
}

/// Worker limits (from `runtime:` in the config).
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub queue_capacity: usize,
}

/// Live counters, read by health (stall detection) and metrics.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Requests accepted and not yet answered.
    pub queued: AtomicUsize,
    pub batches: AtomicU64,
    /// Milliseconds since the worker started when the last batch completed (0 = none yet).
    pub last_batch_ms: AtomicU64,
    pub failed_batches: AtomicU64,
    /// The first CUDA error a run reported (the context is unusable after one): health fails
    /// liveness on it.
    pub cuda_error: std::sync::OnceLock<String>,
}

/// Whether a failed run's error comes from CUDA itself (a device fault, not bad input): ONNX
/// Runtime's CUDA provider reports them as `CUDA failure N: ...`, `CUDA error ...`,
/// `CUBLAS_STATUS_...` or `CUDNN_STATUS_...`.
pub fn is_cuda_fault(message: &str) -> bool {
    const MARKERS: &[&str] = &[
        "CUDA failure",
        "CUDA error",
        "cudaError",
        "CUBLAS_STATUS_",
        "CUDNN_STATUS_",
        "device-side assert",
        "illegal memory access",
        "unspecified launch failure",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

/// Cloneable access to the worker.
#[derive(Clone)]
pub struct InferHandle {
    tx: mpsc::Sender<Request>,
    capacity: usize,
    stats: Arc<WorkerStats>,
    started: std::time::Instant,
}

impl InferHandle {
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Time since the worker last completed a batch, or since it started if it never has.
    pub fn since_last_batch(&self) -> Duration {
        let last = self.stats.last_batch_ms.load(Ordering::Relaxed);
        self.started.elapsed().saturating_sub(Duration::from_millis(last))
    }

    fn submit(&self, key: PartKey, input: Tensor) -> Result<oneshot::Receiver<Result<Tensor, InferError>>, InferError> {
        let (reply, rx) = oneshot::channel();
        let request = Request { key, input, reply, enqueued: Instant::now() };
        // Count before sending: the executor may answer (and count down) before try_send returns.
        let depth = self.stats.queued.fetch_add(1, Ordering::AcqRel) + 1;
        match self.tx.try_send(request) {
            Ok(()) => {
                metrics::set_infer_queue_depth(depth);
                Ok(rx)
            }
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(r) => {
                        metrics::count_infer_rejected(&r.key.model.0, r.key.part.as_str());
                        Err(InferError::QueueFull { capacity: self.capacity })
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(InferError::WorkerStopped),
                }
            }
        }
    }

    /// Runs `input` (`[n, ...]`) through a model part, batched with other requests.
    pub async fn run(&self, key: PartKey, input: Tensor) -> Result<Tensor, InferError> {
        let rx = self.submit(key, input)?;
        rx.await.map_err(|_| InferError::WorkerStopped)?
    }

    /// The same, from a blocking thread (preprocessing and postprocessing run there).
    pub fn run_blocking(&self, key: PartKey, input: Tensor) -> Result<Tensor, InferError> {
        let rx = self.submit(key, input)?;
        rx.blocking_recv().map_err(|_| InferError::WorkerStopped)?
    }
}

impl super::model::Runner for InferHandle {
    fn run(&self, model: &ModelId, part: Part, input: Tensor) -> Result<Tensor, InferError> {
        self.run_blocking(PartKey { model: model.clone(), part }, input)
    }
}

/// A running worker: the handle everyone clones, and what it takes to stop it.
pub struct Worker {
    handle: InferHandle,
    stop: CancellationToken,
    batcher: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    pub fn handle(&self) -> &InferHandle {
        &self.handle
    }

    /// Stops taking requests, runs what is queued, and joins the executor thread. A run still
    /// going past `timeout` is left to the process exit.
    pub async fn shutdown(self, timeout: Duration) {
        let Worker { handle, stop, batcher, thread } = self;
        drop(handle);
        stop.cancel();
        let joined = async {
            let _ = batcher.await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        };
        if tokio::time::timeout(timeout, joined).await.is_err() {
            tracing::warn!(?timeout, "the inference worker did not stop in time");
        }
    }
}

/// Starts the batcher on the current tokio runtime and the executor on its own thread.
pub fn spawn(config: WorkerConfig, runner: impl BatchRunner) -> Result<Worker, InferError> {
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let (exec_tx, exec_rx) = mpsc::channel::<Batch>(2);
    let stats = Arc::new(WorkerStats::default());
    let started = std::time::Instant::now();
    let device = Arc::new(Device::default());
    let (thread_stats, thread_device) = (stats.clone(), device.clone());
    let thread = std::thread::Builder::new()
        .name("kvs-infer-worker".into())
        .spawn(move || execute(exec_rx, runner, thread_stats, thread_device, started))
        .map_err(InferError::WorkerStart)?;
    let stop = CancellationToken::new();
    let batcher = tokio::spawn(batcher(rx, exec_tx, config, device, stop.clone()));
    let handle = InferHandle { tx, capacity: config.queue_capacity, stats, started };
    Ok(Worker { handle, stop, batcher, thread })
}

/// Batches handed to the executor and not finished yet, and a wake-up when one finishes.
#[derive(Default)]
struct Device {
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Device {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Requests wait here until their group is full or their time is up.
struct Pending {
    requests: Vec<Request>,
    items: usize,
    deadline: Instant,
}

/// Requests batch together when they are for the same part and have the same per-item shape.
type GroupKey = (PartKey, Vec<usize>);

async fn batcher(
    mut rx: mpsc::Receiver<Request>,
    exec: mpsc::Sender<Batch>,
    config: WorkerConfig,
    device: Arc<Device>,
    stop: CancellationToken,
) {
    let mut pending: HashMap<GroupKey, Pending> = HashMap::new();
    loop {
        let next_deadline = pending.values().map(|p| p.deadline).min();
        // While something waits, a device that becomes idle is a reason to dispatch.
        let idle = device.idle.notified();
        tokio::select! {
            r = rx.recv() => match r {
                Some(request) => {
                    if add(&mut pending, request, &config, &exec, &device).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            () = sleep_until_opt(next_deadline) => {}
            () = idle, if !pending.is_empty() => {}
            () = stop.cancelled() => break,
        }
        let now = Instant::now();
        let idle_now = device.is_idle();
        let due: Vec<GroupKey> =
            pending.iter().filter(|(_, p)| p.deadline <= now || idle_now).map(|(k, _)| k.clone()).collect();
        // When idle, the oldest group goes first; the rest follow as the device frees up.
        let mut due = due;
        due.sort_by_key(|k| pending.get(k).map(|p| p.deadline));
        for group in due {
            let overdue = pending.get(&group).is_some_and(|p| p.deadline <= now);
            if !overdue && !device.is_idle() {
                continue;
            }
            if let Some(p) = pending.remove(&group)
                && send(&exec, &device, p.requests).await.is_err()
            {
                return;
            }
        }
    }
    // Shutting down: run what is left.
    for (_, p) in pending.drain() {
        let _ = send(&exec, &device, p.requests).await;
    }
}

/// Adds a request to its group, dispatching a group that reaches `max_batch`.
async fn add(
    pending: &mut HashMap<GroupKey, Pending>,
    request: Request,
    config: &WorkerConfig,
    exec: &mpsc::Sender<Batch>,
    device: &Device,
) -> Result<(), ()> {
    let items = request.input.shape.first().copied().unwrap_or(1);
    let group: GroupKey = (request.key.clone(), request.input.shape.get(1..).unwrap_or_default().to_vec());
    // A request that would overflow the group's batch sends the group first.
    if pending.get(&group).is_some_and(|p| p.items > 0 && p.items + items > config.max_batch)
        && let Some(full) = pending.remove(&group)
    {
        send(exec, device, full.requests).await?;
    }
    let entry = pending.entry(group.clone()).or_insert_with(|| Pending {
        requests: Vec::new(),
        items: 0,
        deadline: request.enqueued + config.max_delay,
    });
    entry.items += items;
    entry.requests.push(request);
    if entry.items >= config.max_batch
        && let Some(full) = pending.remove(&group)
    {
        send(exec, device, full.requests).await?;
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn send(exec: &mpsc::Sender<Batch>, device: &Device, requests: Vec<Request>) -> Result<(), ()> {
    let Some(first) = requests.first() else { return Ok(()) };
    let key = first.key.clone();
    device.in_flight.fetch_add(1, Ordering::AcqRel);
    exec.send(Batch { key, requests }).await.map_err(|_| ())
}

fn execute(
    mut rx: mpsc::Receiver<Batch>,
    mut runner: impl BatchRunner,
    stats: Arc<WorkerStats>,
    device: Arc<Device>,
    started: std::time::Instant,
) {
    while let Some(batch) = rx.blocking_recv() {
        let Batch { key, requests } = batch;
        let (model, part) = (key.model.0.clone(), key.part.as_str());
        let sizes: Vec<usize> = requests.iter().map(|r| r.input.shape.first().copied().unwrap_or(1)).collect();
        let total: usize = sizes.iter().sum();
        let wait = requests.iter().map(|r| r.enqueued.elapsed()).max().unwrap_or_default();
        metrics::record_infer_batch(&model, part, total, wait);
        let (replies, inputs): (Vec<_>, Vec<_>) = requests.into_iter().map(|r| (r.reply, r.input)).unzip();
        let run_started = std::time::Instant::now();
        let result = Tensor::concat(inputs).and_then(|input| {
            std::panic::catch_unwind(AssertUnwindSafe(|| runner.run(&key, input)))
                .unwrap_or_else(|_| Err(InferError::RunPanicked { model: model.clone(), part }))
        });
        metrics::record_infer_run(&model, part, run_started.elapsed());
        let done = replies.len();
        match result.and_then(|out| out.split(&sizes)) {
            Ok(outputs) => {
                for (reply, out) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let message = kvs_infer_common::error_chain(&e);
                if is_cuda_fault(&message) {
                    let _ = stats.cuda_error.set(message);
                }
                tracing::warn!(model, part, error = %e, "inference batch failed");
                let shared = Arc::new(e);
                for reply in replies {
                    let _ =
                        reply.send(Err(InferError::BatchFailed { model: model.clone(), part, source: shared.clone() }));
                }
            }
        }
        let left = stats.queued.fetch_sub(done, Ordering::AcqRel).saturating_sub(done);
        metrics::set_infer_queue_depth(left);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        stats.last_batch_ms.store(ms, Ordering::Relaxed);
        if device.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            device.idle.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Doubles every value; records batch sizes; fails when told to; can be held busy.
    struct Fake {
        batches: Arc<Mutex<Vec<usize>>>,
        fail: bool,
        /// While set, each run waits for a message before finishing.
        gate: Option<std::sync::mpsc::Receiver<()>>,
    }

    impl BatchRunner for Fake {
        fn run(&mut self, _: &PartKey, input: Tensor) -> Result<Tensor, InferError> {
            self.batches.lock().expect("lock").push(input.shape[0]);
            if let Some(gate) = &self.gate {
                let _ = gate.recv_timeout(Duration::from_secs(5));
            }
            if self.fail {
                let batch = self.batches.lock().expect("lock").len();
                // The fourth failed batch looks like what ONNX Runtime's CUDA provider reports.
                let reason =
                    if batch >= 4 { "CUDA failure 700: an illegal memory access was encountered" } else { "boom" };
                return Err(InferError::BadImage { reason: reason.into() });
            }
            Ok(Tensor { shape: input.shape, data: input.data.iter().map(|v| v * 2.0).collect() })
        }
    }

    fn key() -> PartKey {
        PartKey { model: ModelId("m".into()), part: Part::new("yolo") }
    }

    fn item(v: f32) -> Tensor {
        Tensor { shape: vec![1, 2], data: vec![v, v] }
    }

    fn start_with(
        max_batch: usize,
        delay_ms: u64,
        capacity: usize,
        fail: bool,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> (InferHandle, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let cfg = WorkerConfig { max_batch, max_delay: Duration::from_millis(delay_ms), queue_capacity: capacity };
        (spawn(cfg, Fake { batches: batches.clone(), fail, gate }).expect("worker").handle().clone(), batches)
    }

    fn start(max_batch: usize, delay_ms: u64, capacity: usize, fail: bool) -> (InferHandle, Arc<Mutex<Vec<usize>>>) {
        start_with(max_batch, delay_ms, capacity, fail, None)
    }

    /// Lets the batcher task and the executor thread catch up (the thread runs on real time).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_device_runs_a_lone_request_at_once() {
        let (h, batches) = start(8, 1000, 64, false);
        let out = h.run(key(), item(1.0)).await.expect("ran");
        assert_eq!(out.data, vec![2.0, 2.0]);
        assert_eq!(*batches.lock().expect("lock"), vec![1], "no max_delay wait when nothing else runs");
    }

    #[tokio::test(start_paused = true)]
    async fn while_busy_requests_batch_up_to_max_batch_then_max_delay() {
        let (go, gate) = std::sync::mpsc::channel();
        let (h, batches) = start_with(4, 10, 64, false, Some(gate));
        // The first request occupies the device.
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.run(key(), item(0.0)).await }
        });
        settle().await;
        let mut replies = Vec::new();
        for i in 1..=6 {
            let h = h.clone();
            replies.push(tokio::spawn(async move { h.run(key(), item(i as f32)).await }));
        }
        settle().await;
        // Four fill a batch at once (queued behind the busy device); two wait.
        assert_eq!(*batches.lock().expect("lock"), vec![1]);
        go.send(()).expect("release first");
        go.send(()).expect("release batch of 4");
        settle().await;
        // The last two did not wait for max_delay: the device went idle first.
        assert_eq!(*batches.lock().expect("lock"), vec![1, 4, 2]);
        go.send(()).expect("release batch of 2");
        first.await.expect("join").expect("ok");
        for (i, r) in replies.into_iter().enumerate() {
            let out = r.await.expect("join").expect("ok");
            assert_eq!(out.data, vec![(i + 1) as f32 * 2.0; 2], "each caller gets its own slice back");
        }
        assert_eq!(*batches.lock().expect("lock"), vec![1, 4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_busy_a_request_waits_at_most_max_delay() {
        let (go, gate) = std::sync::mpsc::channel();
        let (h, batches) = start_with(8, 20, 64, false, Some(gate));
        let first = tokio::spawn({
            let h = h.clone();
            async move { h.run(key(), item(0.0)).await }
        });
        settle().await;
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.run(key(), item(1.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(19)).await;
        settle().await;
        assert_eq!(*batches.lock().expect("lock"), vec![1], "not dispatched before max_delay");
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(*batches.lock().expect("lock"), vec![1], "dispatched at max_delay, queued behind the busy device");
        go.send(()).expect("release");
        go.send(()).expect("release");
        first.await.expect("join").expect("ok");
        second.await.expect("join").expect("ok");
        assert_eq!(*batches.lock().expect("lock"), vec![1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn different_shapes_never_share_a_batch() {
        let (h, batches) = start(8, 5, 64, false);
        let a = tokio::spawn({
            let h = h.clone();
            async move { h.run(key(), item(1.0)).await }
        });
        let b = tokio::spawn({
            let h = h.clone();
            async move { h.run(key(), Tensor { shape: vec![1, 3], data: vec![1.0; 3] }).await }
        });
        a.await.expect("join").expect("ok");
        b.await.expect("join").expect("ok");
        assert_eq!(*batches.lock().expect("lock"), vec![1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_run_answers_every_waiter_and_the_worker_goes_on() {
        let (h, batches) = start(2, 5, 64, true);
        let (a, b) = tokio::join!(h.run(key(), item(1.0)), h.run(key(), item(2.0)));
        for r in [a, b] {
            let e = r.expect_err("failed");
            assert!(matches!(e, InferError::BatchFailed { .. }), "{e}");
            assert!(format!("{e:?}").contains("boom"));
        }
        let again = h.run(key(), item(3.0)).await;
        assert!(matches!(again, Err(InferError::BatchFailed { .. })), "the worker is still there");
        let ran = batches.lock().expect("lock").len() as u64;
        assert_eq!(h.stats().failed_batches.load(Ordering::Relaxed), ran, "every batch failed and was counted");
        assert!(h.stats().cuda_error.get().is_none(), "bad input is not a CUDA fault");
        while h.stats().cuda_error.get().is_none() {
            assert!(h.run(key(), item(4.0)).await.is_err());
        }
        assert!(h.stats().cuda_error.get().is_some_and(|m| m.contains("illegal memory access")));
    }

    #[test]
    fn cuda_faults_are_told_from_other_failures() {
        assert!(is_cuda_fault(
            "model m (yolo): run failed: CUDA failure 700: an illegal memory access was encountered"
        ));
        assert!(is_cuda_fault("CUDNN_STATUS_EXECUTION_FAILED"));
        assert!(is_cuda_fault("device-side assert triggered"));
        assert!(!is_cuda_fault("Got invalid dimensions for input: images"));
        assert!(!is_cuda_fault("boom"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_is_refused_at_once() {
        // Capacity 1 and a batcher that cannot run (single-threaded runtime, no await yet).
        let (h, _) = start(8, 1000, 1, false);
        let first = h.submit(key(), item(1.0));
        assert!(first.is_ok());
        let second = h.submit(key(), item(2.0));
        match second {
            Err(e @ InferError::QueueFull { capacity: 1 }) => assert!(e.to_string().contains("queue is full")),
            other => panic!("expected QueueFull, got {:?}", other.map(|_| ())),
        }
    }
}
