//! `kvs-infer serve` as a child process with JSON logs, for tests that need the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Service {
    pub child: Child,
    logs: mpsc::Receiver<serde_json::Value>,
}

impl Service {
    /// Starts `serve` with `config` and extra environment; logs are JSON lines on stderr.
    pub fn start(config: &std::path::Path, env: &[(&str, String)]) -> Self {
        Self::start_wrapped(&[], config, env)
    }

    /// Starts `serve` as the last arguments of `wrapper` (a command that ends by `exec "$@"`, so
    /// the pid signalled is the service's).
    pub fn start_wrapped(wrapper: &[&str], config: &std::path::Path, env: &[(&str, String)]) -> Self {
        let binary = env!("CARGO_BIN_EXE_kvs-infer");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.args(["--config"]).arg(config).arg("serve").env("LOG_FORMAT", "json").env_remove("HTTP_PORT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn kvs-infer");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            let echo = std::env::var_os("TEST_SERVICE_LOGS").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[service] {line}");
                }
                let value = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self { child, logs }
    }

    /// The next log line with this message (JSON `message` field), within `within`.
    pub fn wait_for_log_within(&self, message: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.logs.recv_timeout(left) {
                Ok(v) if v["message"] == message => return v,
                Ok(_) => {}
                Err(e) => panic!("waiting for log {message:?}: {e}"),
            }
        }
        panic!("no log {message:?} within {within:?}");
    }

    /// Every log line not read yet, up to the process's exit (its stderr closing).
    pub fn remaining_logs(&self) -> Vec<serde_json::Value> {
        self.logs.iter().collect()
    }

    pub fn wait_for_log(&self, message: &str) -> serde_json::Value {
        self.wait_for_log_within(message, Duration::from_secs(60))
    }

    /// `http://addr` from the "HTTP server listening" log line.
    pub fn base_url(&self) -> String {
        let line = self.wait_for_log("HTTP server listening");
        format!("http://{}", line["addr"].as_str().expect("addr"))
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// The exit code, or `None` (and the process killed) if it did not exit in time.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`: status and body.
pub async fn get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<hyper::body::Bytes>>();
    let response = client.get(url.parse().expect("uri")).await.expect("get");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of an unlabelled metric in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}
