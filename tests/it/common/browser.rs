//! Headless Chromium driven over the DevTools protocol (a WebSocket per page): load a page,
//! evaluate JavaScript in it, click, take screenshots. Debian's `chromium` package; `.ci/run`
//! installs it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with its own profile, killed on drop.
pub struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` (or `$CHROMIUM`) headless with DevTools on a free port.
    pub fn launch() -> Self {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,1400",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary:?} ({e}): install Debian's chromium package (.ci/run does)")
            });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].to_owned());
                }
            }
        });
        let ws = rx.recv_timeout(Duration::from_secs(60)).expect("chromium did not print its DevTools address");
        // ws://127.0.0.1:PORT/devtools/browser/ID
        let port = ws["ws://".len()..].split(['/', ':']).nth(1).and_then(|p| p.parse().ok()).expect("DevTools port");
        Self { child, port, _profile: profile }
    }

    /// A new tab at `url`.
    pub async fn open(&self, url: &str) -> Page {
        use http_body_util::{BodyExt, Empty};
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<hyper::body::Bytes>>();
        let request = hyper::Request::put(format!("http://127.0.0.1:{}/json/new?{url}", self.port))
            .body(Empty::new())
            .expect("request");
        let response = client.request(request).await.expect("DevTools /json/new");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let target: Value = serde_json::from_slice(&body).expect("target JSON");
        let ws = target["webSocketDebuggerUrl"].as_str().expect("webSocketDebuggerUrl");
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.expect("DevTools WebSocket");
        Page { socket, next_id: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab.
pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    /// Calls a DevTools method; its result (events in between are ignored).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(request.to_string())).await.expect("send");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .expect("socket open")
                .expect("message");
            let Message::Text(text) = message else { continue };
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result["exceptionDetails"].is_null(), "{expression}: {}", result["exceptionDetails"]);
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (polling); its value. Panics after `within`.
    pub async fn wait_for(&mut self, what: &str, expression: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expression).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A left click at (x, y), CSS pixels of the viewport.
    pub async fn click(&mut self, x: f64, y: f64) {
        for kind in ["mousePressed", "mouseReleased"] {
            let params = json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 });
            self.call("Input.dispatchMouseEvent", params).await;
        }
    }

    /// A PNG of the whole page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64")
    }
}
