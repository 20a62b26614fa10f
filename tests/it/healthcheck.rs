//! `kvs-infer healthcheck` against a real server on port 0: 200 → exit 0; 503 or no server → 1.

use std::process::Command;
use std::time::Duration;

use kvs_infer::cli::healthcheck::{self, Probe};
use kvs_infer::health::{Health, Stage};
use kvs_infer::metrics;
use kvs_infer::server::{AppState, app};
use tokio::net::TcpListener;

/// Serves the real router on 127.0.0.1:0 and returns the port.
async fn spawn_server(health: &Health) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = app(AppState::new(health.subscribe(), metrics::install(), 1024 * 1024));
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

/// Runs the binary's `healthcheck` the way ECS does: only HTTP_PORT in the environment.
async fn exit_code(port: u16) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
            .arg("healthcheck")
            .env("HTTP_PORT", port.to_string())
            .output()
            .expect("run kvs-infer");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_follows_healthz() {
    let health = Health::new();
    let port = spawn_server(&health).await;

    let (code, stderr) = exit_code(port).await;
    assert_eq!(code, 1, "503 while starting → exit 1");
    assert!(stderr.contains("503"), "{stderr}");

    for stage in Stage::ALL {
        health.complete(stage, None);
    }
    let (code, stderr) = exit_code(port).await;
    assert_eq!(code, 0, "200 at ready → exit 0 ({stderr})");

    health.set_degraded(&kvs_infer::health::Component::Sink("kinesis"), "kinesis: PutRecords failed (timeout)");
    assert_eq!(exit_code(port).await.0, 0, "a sink outage is not a reason to replace the task");

    // A worker with work queued that completes no batch: the watchdog fails liveness.
    let stats = std::sync::Arc::new(kvs_infer::infer::worker::WorkerStats::default());
    stats.queued.store(2, std::sync::atomic::Ordering::Release);
    let stop = tokio_util::sync::CancellationToken::new();
    let dog = kvs_infer::infer::watchdog::Watchdog {
        stats: stats.clone(),
        stall_after: Duration::from_millis(300),
        health: health.clone(),
    };
    tokio::spawn(dog.run(Duration::from_millis(50), stop.clone()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, stderr) = exit_code(port).await;
    assert_eq!(code, 1, "stalled → exit 1");
    assert!(stderr.contains("inference worker completed no batch"), "{stderr}");
    // The batch completes and the queue empties: live again.
    stats.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    stats.queued.store(0, std::sync::atomic::Ordering::Release);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(exit_code(port).await.0, 0, "progress again → exit 0");
    stop.cancel();

    health.set_liveness_failure(&kvs_infer::health::Component::Gpu, "device lost");
    assert_eq!(exit_code(port).await.0, 1, "not live → exit 1");

    health.clear_liveness_failure(&kvs_infer::health::Component::Gpu);
    health.start_draining();
    assert_eq!(exit_code(port).await.0, 1, "draining → exit 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_unhealthy() {
    // Bind and drop to get a port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let (code, stderr) = exit_code(port).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("healthcheck"), "{stderr}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections but never writes: the probe must give up on its own.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("http://127.0.0.1:{port}/healthz");
    let probe = healthcheck::probe(&url, Duration::from_millis(300)).await.expect("valid url");
    assert!(matches!(probe, Probe::Unreachable { ref reason } if reason.contains("no answer")), "{probe:?}");
}
