//! The HTTP/1.1 listener: axum's router behind hyper with the limits a public port needs.
//!
//! - at most `server.max_connections` connections at once. Past three quarters of them, a new
//!   connection answers one request and closes (idle keep-alive connections cannot fill the
//!   rest). Past all of them, a reserve of [`PROBE_RESERVE`] more answers only the health probes
//!   (`/livez`, `/readyz`, `/healthz`; anything else 503), one request each with a short header
//!   deadline, so ECS and the load balancer never mistake a busy task for a dead one. Past the
//!   reserve, a connection is closed on accept and counted (`http_connections_refused_total`);
//! - a client that has not sent its request headers within `server.header_timeout` is
//!   disconnected (slow-loris); the body has its own deadline in the handlers that read one;
//! - on stop, idle connections close and requests in flight finish, within the caller's deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics;

/// Connections over `max_connections` that still get the health probes.
pub const PROBE_RESERVE: usize = 8;
/// A probe connection sends its request headers within this long (or the header timeout, if
/// shorter).
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` (and `probes` on connections over the limit), then
/// lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    probes: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let reserve = Arc::new(Semaphore::new(PROBE_RESERVE));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (slot, router, keep_alive, header_timeout) = if let Ok(slot) = slots.clone().try_acquire_owned() {
            // The last quarter of the slots is for connections that come and go.
            let keep_alive = slots.available_permits() >= max / 4;
            (slot, app.clone(), keep_alive, limits.header_timeout)
        } else if let Ok(slot) = reserve.clone().try_acquire_owned() {
            metrics::count_http_connection_reserved();
            (slot, probes.clone(), false, limits.header_timeout.min(PROBE_HEADER_TIMEOUT))
        } else {
            metrics::count_http_connection_refused();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router);
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(keep_alive);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
