//! The ECS container health check, simulated as ECS applies it, with the settings we document
//! (the task definition's `healthCheck`, `ecs/templates/task-definition.json`), against a real `serve` process running the real
//! `kvs-infer healthcheck` command:
//! - a slow start (40 warm-up runs) is never marked UNHEALTHY, and the task turns HEALTHY once
//!   ready;
//! - a GPU lost while serving (through the fake-GPU test seam) turns it UNHEALTHY within
//!   `retries x interval` (plus one poll and one command timeout);
//! - a stall or a lost GPU is a liveness failure: `/livez` fails too; a sink outage is not
//!   (see `tests/it/aws_e2e.rs`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::ecs::{HealthCheck, Simulator, Status};
use crate::common::service::{self, Service};

fn documented() -> (HealthCheck, Vec<String>) {
    let text = std::fs::read_to_string("ecs/templates/task-definition.json").expect("task definition");
    let task: serde_json::Value = serde_json::from_str(&text).expect("json (placeholders are inside strings)");
    let v = &task["containerDefinitions"][0]["healthCheck"];
    let secs = |k: &str| Duration::from_secs(v[k].as_u64().unwrap_or_else(|| panic!("{k}")));
    let cfg = HealthCheck {
        interval: secs("interval"),
        timeout: secs("timeout"),
        retries: v["retries"].as_u64().expect("retries") as u32,
        start_period: secs("startPeriod"),
    };
    let command: Vec<String> =
        v["command"].as_array().expect("command").iter().map(|c| c.as_str().expect("string").to_owned()).collect();
    assert_eq!(command[0], "CMD");
    assert!(command[1].ends_with("/kvs-infer") && command[2] == "healthcheck", "{command:?}");
    (cfg, command[2..].to_vec())
}

const GPU_OK: &str = r#"{"info": {"index": 0, "name": "Tesla T4 (fake)", "uuid": "GPU-fake-0", "driver_version": "580.65.06",
  "cuda_driver_version": "13.0", "memory_total_bytes": 16106127360},
 "sample": {"utilization_ratio": 0.42, "memory_used_bytes": 2147483648, "memory_total_bytes": 16106127360,
  "temperature_celsius": 51, "power_watts": 31.5, "ecc_corrected_total": 0, "ecc_uncorrected_total": 0}}"#;
const GPU_LOST: &str = r#"{"info": {"index": 0, "name": "Tesla T4 (fake)", "uuid": "GPU-fake-0"},
 "sample": {"xids": [79], "lost": null}}"#;

fn write_config(dir: &Path, warmup_runs: u32, exit_on_gpu_fault: bool) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace("warmup_runs: 1", &format!("warmup_runs: {warmup_runs}"))
        .replace(
            "dir: out",
            &format!(
                "dir: {}\noutbox:\n  dir: {}\nhealth:\n  gpu_poll_interval: 1s\n  exit_on_gpu_fault: {exit_on_gpu_fault}",
                dir.join("out").display(),
                dir.join("outbox").display()
            ),
        );
    let path = dir.join("ecs.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_keeps_a_slow_start_and_replaces_a_task_whose_gpu_is_lost() {
    let (cfg, args) = documented();
    let dir = tempfile::tempdir().expect("tempdir");
    let gpu = dir.path().join("gpu.json");
    std::fs::write(&gpu, GPU_OK).expect("fake gpu");
    // The health-check path alone: the service does not exit on the fault (see the next test).
    let svc =
        Service::start(&write_config(dir.path(), 40, false), &[("KVS_INFER_FAKE_GPU", gpu.display().to_string())]);
    let base = svc.base_url();
    let healthcheck = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kvs-infer"));
        c.args(&args).args(["--url", &format!("{base}/healthz")]).stdout(Stdio::null()).stderr(Stdio::null());
        c
    };

    // Slow start: checks fail (503, stage named) until ready; ECS does not count them.
    let mut ecs = Simulator::new(cfg);
    let deadline = Instant::now() + cfg.start_period;
    while ecs.tick(&mut healthcheck()) != Status::Healthy {
        assert_ne!(ecs.status, Status::Unhealthy, "marked UNHEALTHY during a slow start: {:?}", ecs.checks);
        assert!(Instant::now() < deadline, "not HEALTHY within startPeriod: {:?}", ecs.checks);
    }
    assert!(ecs.checks.iter().any(|c| !c.passed), "the start was slow enough to fail checks first: {:?}", ecs.checks);
    let (_, body) = service::get(&format!("{base}/healthz")).await;
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["info"]["gpu_name"], "Tesla T4 (fake)");
    assert_eq!(body["cameras"]["local-0"]["state"], "running", "{body}");
    let (_, metrics) = service::get(&format!("{base}/metrics")).await;
    assert_eq!(
        service::metric(&metrics, "gpu_temperature_celsius{gpu=\"GPU-fake-0\",index=\"0\"}"),
        Some(51.0),
        "GPU telemetry is exported"
    );

    // Healthy for a while.
    for _ in 0..2 {
        assert_eq!(ecs.tick(&mut healthcheck()), Status::Healthy);
    }

    // The GPU falls off the bus (XID 79).
    replace(&gpu, GPU_LOST);
    let lost = Instant::now();
    while ecs.tick(&mut healthcheck()) != Status::Unhealthy {
        let bound = cfg.interval * cfg.retries + Duration::from_secs(1) + cfg.timeout + cfg.interval;
        assert!(lost.elapsed() < bound, "not UNHEALTHY within retries x interval: {:?}", ecs.checks);
    }
    let detected = lost.elapsed();
    eprintln!("GPU loss marked UNHEALTHY after {:.1} s", detected.as_secs_f64());
    let (status, body) = service::get(&format!("{base}/livez")).await;
    assert_eq!(status, 503, "a lost GPU is a liveness failure");
    assert!(body.contains("XID 79"), "{body}");
    let (_, metrics) = service::get(&format!("{base}/metrics")).await;
    let xids = service::metric(&metrics, "gpu_xid_errors_total{gpu=\"GPU-fake-0\",index=\"0\",xid=\"79\"}");
    assert!(xids.is_some_and(|n| n >= 1.0), "XIDs are counted: {xids:?}");
    drop(svc);
}

/// Replaces the fake GPU's file in one step: the service polls it, and must never read it half
/// written (an empty file is a different failure than the one the test makes).
fn replace(gpu: &std::path::Path, content: &str) {
    let next = gpu.with_extension("next");
    std::fs::write(&next, content).expect("write the fake gpu");
    std::fs::rename(&next, gpu).expect("replace the fake gpu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_gpu_drains_and_exits_with_the_gpu_fault_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gpu = dir.path().join("gpu.json");
    std::fs::write(&gpu, GPU_OK).expect("fake gpu");
    let mut svc =
        Service::start(&write_config(dir.path(), 1, true), &[("KVS_INFER_FAKE_GPU", gpu.display().to_string())]);
    svc.wait_for_log("ready");
    replace(&gpu, GPU_LOST);
    let lost = Instant::now();
    let fault = svc.wait_for_log("GPU fault: draining, then exiting");
    assert!(fault["reason"].as_str().expect("reason").contains("XID 79"), "{fault}");
    let code = svc.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(i32::from(kvs_infer_common::exit::GPU_FAULT)), "ECS sees the GPU-fault exit code");
    eprintln!("exited {:.1} s after the GPU loss", lost.elapsed().as_secs_f64());
}
