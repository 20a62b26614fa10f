//! `kvs-infer serve` as a real process: 503 naming the stage while loading, 200 at ready,
//! exit 0 after SIGTERM; `cuda` without a GPU fails startup with a clear message.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kvs_infer::healthcheck::{self, Probe};

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

/// Starts `serve` with JSON logs; returns the child and a channel of its log lines.
fn start(config: &std::path::Path) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .args(["--config"])
        .arg(config)
        .arg("serve")
        .env("LOG_FORMAT", "json")
        .env_remove("HTTP_PORT")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn kvs-infer");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for_log(rx: &mpsc::Receiver<serde_json::Value>, message: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if v["message"] == message => return v,
            Ok(_) => {}
            Err(e) => panic!("waiting for log {message:?}: {e}"),
        }
    }
    panic!("no log {message:?} within 60 s");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_becomes_ready_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, logs) = start(&write_config(dir.path(), "cpu"));
    let listening = wait_for_log(&logs, "HTTP server listening");
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    let url = format!("http://{addr}/healthz");

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
    let body: serde_json::Value = get_json(&url).await;
    assert_eq!(body["info"]["execution_provider"], "cpu");
    assert!(body["time_to_ready_seconds"].as_f64().expect("time to ready") > 0.0);
    eprintln!("ready after {seen_503} 503 answer(s)");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0), "clean drain exits 0");
}

async fn get_json(url: &str) -> serde_json::Value {
    // The probe returns the body only for non-200; fetch the ready body through hyper directly.
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<hyper::body::Bytes>>();
    let response = client.get(url.parse().expect("uri")).await.expect("get");
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn cuda_without_a_gpu_fails_startup_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, logs) = start(&write_config(dir.path(), "cuda"));
    let failed = wait_for_log(&logs, "startup failed");
    let error = failed["error"].as_str().expect("error field");
    assert!(error.contains("execution_provider is cuda but no GPU is usable"), "{error}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(1));
}
