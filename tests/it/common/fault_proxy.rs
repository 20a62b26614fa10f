//! An HTTP proxy in front of moto that turns Kinesis `PutRecords` calls into partial failures:
//! the first time it sees a record whose position in its call is in `fail_every` (every third
//! by default) it keeps it from moto and answers `ProvisionedThroughputExceededException` for it,
//! merging moto's answer for the rest, in order. Everything else passes through untouched.
//! Every PutRecords call's record data (base64, as sent) is recorded. DynamoDB can be cut off:
//! its calls then get no answer, as from a network partition.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Default)]
struct Inner {
    dynamodb_cut: bool,
    seen: HashSet<String>,
    calls: Vec<Vec<String>>,
    failed: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    inner: Arc<Mutex<Inner>>,
}

pub struct FaultProxy {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared {
            upstream: upstream.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            inner: inner.clone(),
        };
        let app = Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// Record data of every PutRecords call, in call order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.inner.lock().expect("lock").calls.clone()
    }

    /// Cuts DynamoDB off (its calls hang) or restores it.
    pub fn cut_dynamodb(&self, cut: bool) {
        self.inner.lock().expect("lock").dynamodb_cut = cut;
    }

    /// Records answered as failed.
    pub fn failed(&self) -> Vec<String> {
        self.inner.lock().expect("lock").failed.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(s: &Shared, parts: &axum::http::request::Parts, body: Bytes) -> (axum::http::response::Parts, Bytes) {
    let uri = format!("{}{}", s.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut req = hyper::Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let req = req.header("content-length", body.len()).body(Full::new(body)).expect("request");
    let resp = s.client.request(req).await.expect("upstream");
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.expect("upstream body").to_bytes())
}

async fn forward(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if target.starts_with("DynamoDB_") && s.inner.lock().expect("lock").dynamodb_cut {
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
    if target != "Kinesis_20131202.PutRecords" {
        let (rp, rb) = send(&s, &parts, body).await;
        return Response::from_parts(rp, Body::from(rb));
    }
    let mut request: serde_json::Value = serde_json::from_slice(&body).expect("PutRecords JSON");
    let records: Vec<serde_json::Value> = request["Records"].as_array().cloned().unwrap_or_default();
    let data: Vec<String> = records.iter().map(|r| r["Data"].as_str().unwrap_or_default().to_owned()).collect();
    let fail: Vec<bool> = {
        let mut inner = s.inner.lock().expect("lock");
        inner.calls.push(data.clone());
        let fail: Vec<bool> = data.iter().enumerate().map(|(i, d)| i % 3 == 1 && !inner.seen.contains(d)).collect();
        for (d, f) in data.iter().zip(&fail) {
            inner.seen.insert(d.clone());
            if *f {
                inner.failed.push(d.clone());
            }
        }
        fail
    };
    let kept: Vec<serde_json::Value> =
        records.iter().zip(&fail).filter(|(_, f)| !**f).map(|(r, _)| r.clone()).collect();
    let mut answers = Vec::new();
    if !kept.is_empty() {
        request["Records"] = serde_json::Value::Array(kept);
        let (rp, rb) = send(&s, &parts, Bytes::from(serde_json::to_vec(&request).expect("json"))).await;
        assert!(rp.status.is_success(), "moto refused PutRecords: {}", String::from_utf8_lossy(&rb));
        let upstream: serde_json::Value = serde_json::from_slice(&rb).expect("moto JSON");
        answers = upstream["Records"].as_array().cloned().unwrap_or_default();
    }
    let mut answers = answers.into_iter();
    let merged: Vec<serde_json::Value> = fail
        .iter()
        .map(|f| {
            if *f {
                serde_json::json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (test proxy)"
                })
            } else {
                answers.next().expect("an answer per kept record")
            }
        })
        .collect();
    let failed = fail.iter().filter(|f| **f).count();
    let body = serde_json::json!({ "FailedRecordCount": failed, "Records": merged });
    Response::builder()
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}
