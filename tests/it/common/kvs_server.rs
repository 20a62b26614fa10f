//! A Kinesis Video Streams stand-in for tests: `POST /getDataEndpoint` answers with its own URL,
//! `POST /getMedia` streams the fragments of real captures (each KVS fragment is one MKV
//! document) from where the StartSelector says. A fault plan, one entry per GetMedia call, can
//! refuse a call with `ClientLimitExceededException` / `ConnectionLimitExceededException` or cut
//! the body after N bytes (cleanly, or by aborting the connection). Every call is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use kvs_infer::media::Event;
use kvs_infer::media::demux::{DemuxConfig, demux_all};

/// What to do with one GetMedia call.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 400 ClientLimitExceededException.
    Throttle,
    /// 400 ConnectionLimitExceededException.
    ConnectionLimit,
    /// Send this many bytes of the body, then end it normally.
    EndAfter(usize),
    /// Send this many bytes, then abort the connection.
    AbortAfter(usize),
    /// Accept the call and never answer (no response headers).
    NoHeaders,
    /// Answer, then send the body one byte every 100 ms.
    Trickle,
    /// Answer with this many bytes of garbage, then end the body.
    Garbage(usize),
}

/// One fragment of the served stream.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub number: String,
    pub producer_ms: i64,
    pub bytes: Bytes,
}

/// One GetMedia call as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub selector: serde_json::Value,
    pub stream: Option<String>,
    /// Index of the first fragment served (None when refused).
    pub first: Option<usize>,
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<Fault>,
    calls: Vec<Call>,
    endpoint_calls: usize,
}

#[derive(Clone)]
struct Shared {
    fragments: Arc<Vec<Fragment>>,
    url: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct KvsServer {
    pub url: String,
    pub fragments: Arc<Vec<Fragment>>,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

/// Splits a capture into its fragments (documents), with their numbers and producer timestamps.
pub fn fragments_of(data: &[u8]) -> Vec<Fragment> {
    let events = demux_all(data, DemuxConfig::default());
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| if let Event::DocumentStart { offset, .. } = e { Some(*offset) } else { None })
        .collect();
    let metas: Vec<_> = events
        .iter()
        .filter_map(|e| if let Event::FragmentStart { meta, .. } = e { Some(meta.clone()) } else { None })
        .collect();
    assert_eq!(starts.len(), metas.len(), "one fragment per document");
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).map_or(data.len(), |&e| e as usize);
            Fragment {
                number: metas[i].fragment_number.as_ref().map(ToString::to_string).unwrap_or_default(),
                producer_ms: metas[i].producer_timestamp.map_or(0, |t| t.millis),
                bytes: Bytes::copy_from_slice(&data[start as usize..end]),
            }
        })
        .collect()
}

impl KvsServer {
    pub async fn start(fragments: Vec<Fragment>, faults: Vec<Fault>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner { faults: faults.into(), ..Inner::default() }));
        let fragments = Arc::new(fragments);
        let shared = Shared { fragments: fragments.clone(), url: url.clone(), inner: inner.clone() };
        let app = Router::new()
            .route("/getDataEndpoint", post(data_endpoint))
            .route("/getMedia", post(get_media))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, fragments, inner, task }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("lock").calls.clone()
    }

    pub fn endpoint_calls(&self) -> usize {
        self.inner.lock().expect("lock").endpoint_calls
    }
}

impl Drop for KvsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn data_endpoint(State(s): State<Shared>) -> Response {
    s.inner.lock().expect("lock").endpoint_calls += 1;
    axum::Json(serde_json::json!({ "DataEndpoint": s.url })).into_response()
}

fn error(kind: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", kind.parse().expect("header"));
    (StatusCode::BAD_REQUEST, headers, axum::Json(serde_json::json!({ "Message": format!("{kind} (test server)") })))
        .into_response()
}

async fn get_media(State(s): State<Shared>, body: Bytes) -> Response {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let selector = request["StartSelector"].clone();
    let fault = s.inner.lock().expect("lock").faults.pop_front();
    let first = match fault {
        Some(Fault::Throttle | Fault::ConnectionLimit) => None,
        _ => Some(start_index(&s.fragments, &selector)),
    };
    s.inner.lock().expect("lock").calls.push(Call {
        at: Instant::now(),
        selector: selector.clone(),
        stream: request["StreamName"].as_str().map(str::to_owned),
        first,
    });
    match fault {
        Some(Fault::Throttle) => return error("ClientLimitExceededException"),
        Some(Fault::ConnectionLimit) => return error("ConnectionLimitExceededException"),
        _ => {}
    }
    let Some(first) = first else {
        return error("InvalidArgumentException");
    };
    match fault {
        Some(Fault::NoHeaders) => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return error("InvalidArgumentException");
        }
        Some(Fault::Garbage(n)) => {
            return Response::builder()
                .header("content-type", "video/webm")
                .body(Body::from(vec![0xAB_u8; n]))
                .expect("response");
        }
        Some(Fault::Trickle) => {
            let bytes: Vec<u8> =
                s.fragments[first.min(s.fragments.len())..].iter().flat_map(|f| f.bytes.to_vec()).collect();
            let stream = futures_util::stream::unfold(bytes.into_iter(), |mut it| async move {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let byte = it.next()?;
                Some((Ok::<_, std::io::Error>(Bytes::copy_from_slice(&[byte])), it))
            });
            return Response::builder()
                .header("content-type", "video/webm")
                .body(Body::from_stream(stream))
                .expect("response");
        }
        _ => {}
    }
    let mut data: Vec<u8> =
        s.fragments[first.min(s.fragments.len())..].iter().flat_map(|f| f.bytes.iter().copied()).collect();
    let abort = match fault {
        Some(Fault::EndAfter(n)) => {
            data.truncate(n);
            false
        }
        Some(Fault::AbortAfter(n)) => {
            data.truncate(n);
            true
        }
        _ => false,
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(32 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(abort.then(|| Err(std::io::Error::other("connection cut by the test server"))))
        .collect();
    // The abort waits until the bytes before it have been read, so the cut lands where asked.
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
        let item = it.next()?;
        if item.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        Some((item, it))
    });
    Response::builder().header("content-type", "video/webm").body(Body::from_stream(stream)).expect("response")
}

/// Index of the first fragment a selector asks for (past the end when nothing is left).
fn start_index(fragments: &[Fragment], selector: &serde_json::Value) -> usize {
    match selector["StartSelectorType"].as_str().unwrap_or("NOW") {
        "EARLIEST" => 0,
        "FRAGMENT_NUMBER" => {
            let after = selector["AfterFragmentNumber"].as_str().unwrap_or_default();
            fragments.iter().position(|f| f.number == after).map_or(0, |i| i + 1)
        }
        "PRODUCER_TIMESTAMP" | "SERVER_TIMESTAMP" => {
            // The fragment containing the time: the last one starting at or before it.
            let t = (selector["StartTimestamp"].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            fragments.iter().position(|f| f.producer_ms > t).unwrap_or(fragments.len()).saturating_sub(1)
        }
        // NOW: the newest fragment.
        _ => fragments.len().saturating_sub(1),
    }
}
