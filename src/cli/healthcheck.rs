//! The container health check: `kvs-infer healthcheck` GETs `/healthz` on the local port.
//!
//! ECS runs it inside the container (`CMD kvs-infer healthcheck`), so the image needs no curl.
//! Exit 0 on HTTP 200, 1 on anything else: another status, no server, or no answer in time.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long ECS's own `timeout` would allow; we answer before it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The result of one probe.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Healthy,
    Unhealthy { status: u16, body: String },
    Unreachable { reason: String },
}

/// Why a probe URL could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid health-check URL {url}")]
pub struct BadUrl {
    url: String,
    #[source]
    source: hyper::http::uri::InvalidUri,
}

/// GETs `url` once, waiting at most `timeout` for the whole answer.
pub async fn probe(url: &str, timeout: Duration) -> Result<Probe, BadUrl> {
    let uri: hyper::Uri = url.parse().map_err(|source| BadUrl { url: url.to_owned(), source })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let attempt = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Probe::Unreachable { reason: format!("no answer within {timeout:?}") },
        Ok(Err(reason)) => Probe::Unreachable { reason },
        Ok(Ok((200, _))) => Probe::Healthy,
        Ok(Ok((status, body))) => Probe::Unhealthy { status, body },
    })
}

/// Probes `url` once: exit 0 on 200; 1 otherwise, with the status and body (or why there was no
/// answer) on stderr.
pub fn run(url: &str, timeout: Duration) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    use std::process::ExitCode;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("healthcheck: cannot start a runtime")?;
    let probe = rt.block_on(probe(url, timeout)).context("healthcheck")?;
    Ok(match probe {
        Probe::Healthy => ExitCode::SUCCESS,
        Probe::Unhealthy { status, body } => {
            eprintln!("healthcheck: {url} answered {status}: {body}");
            ExitCode::FAILURE
        }
        Probe::Unreachable { reason } => {
            eprintln!("healthcheck: {url}: {reason}");
            ExitCode::FAILURE
        }
    })
}
