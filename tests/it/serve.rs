//! `kvs-infer serve` as a real process: 503 naming the stage while loading, 200 at ready,
//! exit 0 after SIGTERM; `cuda` without a GPU fails startup with a clear message.

use std::time::{Duration, Instant};

use crate::common::service::Service;

use kvs_infer::cli::healthcheck::{self, Probe};

fn write_config(dir: &std::path::Path, provider: &str) -> std::path::PathBuf {
    let cwd = std::env::current_dir().expect("cwd");
    let yaml = format!(
        "server: {{ host: 127.0.0.1, port: 0 }}\n\
         health: {{ drain_timeout: 5s }}\n\
         runtime: {{ execution_provider: {provider}, intra_op_threads: 1, warmup_runs: 2 }}\n\
         models:\n  faces: {{ kind: yolo, path: {model} }}\n\
         cameras:\n  - {{ id: cam, source: {{ kind: file, path: {video} }}, detect: [faces] }}\n\
         sinks: {{ local: {{ dir: {out} }} }}\n\
         outbox: {{ dir: {outbox} }}\n",
        model = cwd.join("models/320n.onnx").display(),
        video = cwd.join("tests/fixtures/kvs/vogels_480.mkv").display(),
        out = dir.join("out").display(),
        outbox = dir.join("outbox").display(),
    );
    let path = dir.join("serve.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_becomes_ready_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut svc = Service::start(&write_config(dir.path(), "cpu"), &[]);
    let url = format!("{}/healthz", svc.base_url());

    // Poll like a load balancer until 200; every non-200 answer must name the stage.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_503 = 0;
    loop {
        match healthcheck::probe(&url, Duration::from_secs(3)).await.expect("url") {
            Probe::Healthy => break,
            Probe::Unhealthy { status, body } => {
                assert_eq!(status, 503);
                let body: serde_json::Value = serde_json::from_str(&body).expect("json body");
                assert!(body["stage"].is_string(), "{body}");
                seen_503 += 1;
            }
            Probe::Unreachable { reason } => panic!("server bound but unreachable: {reason}"),
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The probe returns the body only for non-200: fetch the ready body directly.
    let body: serde_json::Value = serde_json::from_str(&crate::common::service::get(&url).await.1).expect("json");
    assert_eq!(body["info"]["execution_provider"], "cpu");
    assert!(body["time_to_ready_seconds"].as_f64().expect("time to ready") > 0.0);
    eprintln!("ready after {seen_503} 503 answer(s)");

    svc.signal("-TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(0), "clean drain exits 0");
}

#[test]
fn cuda_without_a_gpu_fails_startup_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut svc = Service::start(&write_config(dir.path(), "cuda"), &[]);
    let failed = svc.wait_for_log("exiting after a GPU fault");
    let reason = failed["reason"].as_str().expect("reason field");
    assert!(reason.contains("execution_provider is cuda but no GPU is usable"), "{reason}");
    // A required GPU that is not usable is a GPU fault: the distinct exit code that the
    // recovery function (kvs-infer-recovery) reads as "diagnose this instance".
    assert_eq!(svc.wait_exit(Duration::from_secs(10)), Some(86));
}
