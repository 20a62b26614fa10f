//! Issue 29: a KVS session that makes no progress is never "fine". Against the GetMedia test
//! server: a call that gets no response headers times out (and never holds a shutdown), a body
//! that trickles bytes without completing a fragment is stalled, both show the camera as
//! degraded with the reason until a fragment completes, and garbage bodies back off instead of
//! reconnecting at the call rate.

use std::time::{Duration, Instant};

use crate::common::kvs_camera::{CAMERA, CameraRun, engine_and_camera};
use crate::common::kvs_server::{Fault, Fragment, KvsServer, fragments_of};
use kvs_infer::config::StartSelector;
use kvs_infer::media::FragmentNumber;
use kvs_infer::source::kvs::SessionTimeouts;

fn capture() -> Vec<Fragment> {
    let data = std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture");
    fragments_of(&data)
}

const SHORT: SessionTimeouts = SessionTimeouts { response: Duration::from_secs(1), idle: Duration::from_secs(2) };

fn degraded(run: &CameraRun) -> Option<String> {
    run.health.snapshot().degraded.get(&format!("camera.{CAMERA}")).cloned()
}

/// Waits (60 s at most) until the camera shows degraded with a reason containing `what`.
async fn until_degraded(run: &CameraRun, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(reason) = degraded(run).filter(|r| r.contains(what)) {
            return reason;
        }
        assert!(Instant::now() < deadline, "never degraded with {what:?}: {:?}", degraded(run));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_calls_and_trickling_bodies_are_degraded_until_a_fragment_completes() {
    let fragments = capture();
    let last = fragments.last().expect("fragments").number.clone();
    let server = KvsServer::start(fragments, vec![Fault::NoHeaders, Fault::Trickle]).await;
    let (engine, camera, _worker) = engine_and_camera().await;
    let run = CameraRun::start_with(&server, &engine, &camera, StartSelector::Earliest, None, SHORT).await;
    let reason = until_degraded(&run, "no response headers").await;
    assert!(reason.contains("GetMedia"), "{reason}");
    let reason = until_degraded(&run, "stalled").await;
    assert!(reason.contains("no fragment completed"), "{reason}");
    // Then a session that delivers: every fragment, and the camera is fine again.
    let until = FragmentNumber::parse(&last);
    run.wait_until("the last fragment arrived", |r| {
        r.progress.last_demuxed().and_then(|m| m.fragment_number.clone()) == until
    })
    .await;
    run.wait_until("the degraded reason cleared", |r| degraded(r).is_none()).await;
    let calls = server.calls();
    assert!(calls.len() >= 3, "silent, trickling, then a good session: {calls:#?}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_answers_does_not_hold_the_shutdown() {
    let server = KvsServer::start(capture(), vec![Fault::NoHeaders; 100]).await;
    let (engine, camera, _worker) = engine_and_camera().await;
    // The default timeouts: the call would wait 10 s for its headers.
    let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, None).await;
    run.wait_until("the call is made", |_| !server.calls().is_empty()).await;
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), run.stop()).await.expect("the camera stops");
    assert!(stopping.elapsed() < Duration::from_secs(5), "stopped in {:?}", stopping.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_back_off_instead_of_reconnecting_at_the_call_rate() {
    let server = KvsServer::start(capture(), vec![Fault::Garbage(50_000); 200]).await;
    let (engine, camera, _worker) = engine_and_camera().await;
    let run = CameraRun::start_with(&server, &engine, &camera, StartSelector::Earliest, None, SHORT).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = server.calls().len();
    run.stop().await;
    // The call rate alone would allow 24 calls in 6 s; backing off from 250 ms doubles each wait.
    assert!((2..=8).contains(&calls), "{calls} GetMedia calls in 6 s of garbage");
}
