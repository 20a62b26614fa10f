//! Hostile HTTP clients against the real listener: malformed framing, declared lengths over the
//! limit, image bombs, slow headers, and more connections than allowed.

use std::time::Duration;

use crate::common::png::png_bomb;
use kvs_infer::config::{self, EnvOverrides};
use kvs_infer::health::{Health, Stage};
use kvs_infer::infer::engine::Engine;
use kvs_infer::metrics;
use kvs_infer::server::listen::{self, ConnectionLimits};
use kvs_infer::server::{ApiLimits, AppState, InferTarget, app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = "runtime: { intra_op_threads: 1 }\n\
models: { faces: { kind: yolo, path: models/320n.onnx } }\n\
cameras: [ { id: api, source: { kind: file, path: x.mkv }, detect: [faces] } ]\n\
sinks: { local: {} }\n";

/// A ready service on a free port with the given limits; stops when the token is cancelled.
async fn start(limits: ConnectionLimits, engine: Option<(Engine, config::CameraSpec)>) -> (String, CancellationToken) {
    let health = Health::new();
    for stage in Stage::ALL {
        health.complete(stage, None);
    }
    let api =
        ApiLimits { max_request_bytes: 64 * 1024, max_image_pixels: 4096 * 4096, body_timeout: Duration::from_secs(2) };
    let state = AppState::with_limits(health.subscribe(), metrics::install(), api);
    if let Some((engine, camera)) = engine {
        assert!(state.infer.set(InferTarget { engine, camera }).is_ok());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = CancellationToken::new();
    let probes = kvs_infer::server::probes(state.clone());
    tokio::spawn(listen::serve(listener, app(state), probes, limits, stop.clone()));
    // The health stays alive in the state's watch channel.
    std::mem::forget(health);
    (addr, stop)
}

/// Sends `request` and reads what comes back until the server closes or `within` passes.
async fn exchange(addr: &str, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_clear_status_and_the_server_goes_on() {
    let cfg = config::load_str(CONFIG, "http", &EnvOverrides::default()).expect("config");
    let (engine, _worker) = Engine::load(&cfg.runtime, &cfg.models).await.expect("models (make setup)");
    let limits = ConnectionLimits { max_connections: 16, header_timeout: Duration::from_secs(1) };
    let (addr, stop) = start(limits, Some((engine, cfg.cameras[0].clone()))).await;
    let long = Duration::from_secs(20);

    let chunked = b"POST /v1/infer HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n";
    let answer = exchange(&addr, chunked, long).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "malformed chunked body: {answer}");

    let declared = b"POST /v1/infer HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let answer = exchange(&addr, declared, long).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "refused before the body, no 100 Continue: {answer}");
    assert!(answer.contains("65536-byte limit"), "{answer}");

    let bomb = png_bomb(20_000, 20_000);
    let mut request =
        format!("POST /v1/infer HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bomb.len())
            .into_bytes();
    request.extend(bomb);
    let answer = exchange(&addr, &request, long).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "image bomb: {answer}");
    assert!(answer.contains("20000x20000") && answer.contains("server.max_image_pixels"), "{answer}");

    // Half a header line: the connection is closed once the header timeout passes.
    let started = std::time::Instant::now();
    let answer = exchange(&addr, b"GET /healthz HTTP/1.1\r\nHo", long).await;
    assert!(started.elapsed() < long, "a slow client is disconnected ({answer:?})");

    // The server goes on.
    let answer = exchange(&addr, b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", long).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_only_the_probes_answer_and_past_the_reserve_connections_close_at_once() {
    let limits = ConnectionLimits { max_connections: 2, header_timeout: Duration::from_secs(30) };
    let (addr, stop) = start(limits, None).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        // A request proves the connection was taken by the server before the next connects.
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("answer");
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    // The cap is reached: the reserve answers the probes, once per connection, and nothing else.
    let probe = exchange(&addr, b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(10)).await;
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    let other = exchange(&addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(10)).await;
    assert!(other.starts_with("HTTP/1.1 503"), "{other}");
    assert!(other.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{other}");
    // Silent connections fill the reserve (each held until its 2 s header deadline): then a
    // connection is closed at once, without an answer.
    let mut silent = Vec::new();
    for _ in 0..listen::PROBE_RESERVE {
        silent.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&addr).await.expect("the kernel accepts");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), over.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed at once without an answer: {read:?}");
    drop((held, silent));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_never_lock_the_health_probes_out() {
    let limits = ConnectionLimits { max_connections: 16, header_timeout: Duration::from_secs(30) };
    let (addr, stop) = start(limits, None).await;
    // Many more clients than the cap, each keeping its connection open after one answer.
    let mut idle = Vec::new();
    for _ in 0..64 {
        let Ok(mut s) = TcpStream::connect(&addr).await else { continue };
        let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let mut buf = [0u8; 12];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await;
        idle.push(s);
    }
    for attempt in 0..14 {
        let answer =
            exchange(&addr, b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", Duration::from_secs(10))
                .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "probe {attempt}: {answer:?}");
    }
    drop(idle);
    stop.cancel();
}
