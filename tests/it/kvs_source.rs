//! The KVS source against a GetMedia test server serving a real 5-fragment capture
//! (`output_get_media.mkv`): every fragment is processed exactly once across cut bodies,
//! aborted connections and throttling; checkpoints (DynamoDB, in moto) never move backwards and a
//! restart resumes after the checkpointed fragment.

use std::sync::Arc;
use std::time::Duration;

use crate::common::kvs_camera::{CameraRun, STREAM, engine_and_camera};
use crate::common::kvs_server::{Fault, Fragment, KvsServer, fragments_of};
use crate::common::moto::{self, Moto};
use kvs_infer::config::{self, StartSelector};
use kvs_infer::media::progress::Processed;
use kvs_infer::media::{FragmentMeta, FragmentNumber, KvsTimestamp};
use kvs_infer::pipeline::camera::RunStats;
use kvs_infer::source::checkpoint::{Checkpoints, Written};

fn capture() -> Vec<Fragment> {
    let data = std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture");
    let fragments = fragments_of(&data);
    assert_eq!(fragments.len(), 5);
    fragments
}

/// Runs source + pipeline until the last fragment has been read (and, with checkpoints, until
/// `before_last` is analysed), then shuts down.
async fn run_until_last(
    server: &KvsServer,
    start: StartSelector,
    checkpoints: Option<Arc<Checkpoints>>,
    until: &str,
    before_last: Option<FragmentNumber>,
) -> RunStats {
    let (engine, camera, _worker) = engine_and_camera().await;
    let with_checkpoints = checkpoints.is_some();
    let run = CameraRun::start(server, &engine, &camera, start, checkpoints).await;
    let until = FragmentNumber::parse(until);
    run.wait_until("the last fragment arrived", |r| {
        r.progress.last_demuxed().and_then(|m| m.fragment_number.clone()) == until
    })
    .await;
    if with_checkpoints {
        // Checkpoints follow analysis; wait for it (a loaded machine analyses slowly) instead
        // of racing the shutdown.
        run.wait_until("the analysis reached the last fragments", |r| {
            r.processed().and_then(|n| FragmentNumber::parse(&n)) >= before_last
        })
        .await;
    }
    run.stop().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fragment_once_across_cuts_aborts_and_throttling() {
    let fragments = capture();
    let size = |i: usize| fragments[i].bytes.len();
    let faults = vec![
        Fault::Throttle,
        // Session 1 (from the start): broken in the middle of fragment 2.
        Fault::AbortAfter(size(0) + size(1) / 2),
        Fault::ConnectionLimit,
        // Session 2 (after fragment 1): ends cleanly a third into fragment 3.
        Fault::EndAfter(size(1) + size(2) / 3),
        // Session 3 (after fragment 2): 10 bytes, not even an EBML header.
        Fault::AbortAfter(10),
    ];
    let server = KvsServer::start(fragments.clone(), faults).await;
    let stats = run_until_last(&server, StartSelector::Earliest, None, &fragments[4].number, None).await;

    assert_eq!(stats.fragments, 5, "{stats:?}");
    assert_eq!(stats.frames_decoded, 300, "each of the 5 x 60 frames exactly once: {stats:?}");
    assert!(stats.frames_repeated > 0, "re-read frames of cut fragments were decoded but not handed on");

    let calls = server.calls();
    let selectors: Vec<(String, Option<String>)> = calls
        .iter()
        .map(|c| {
            (
                c.selector["StartSelectorType"].as_str().unwrap_or_default().to_owned(),
                c.selector["AfterFragmentNumber"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let after = |i: usize| ("FRAGMENT_NUMBER".to_owned(), Some(fragments[i].number.clone()));
    assert_eq!(selectors[0], ("EARLIEST".to_owned(), None));
    assert_eq!(selectors[1], ("EARLIEST".to_owned(), None), "a throttled call is retried as it was");
    assert_eq!(selectors[2], after(0), "after the abort: resume after the last complete fragment");
    assert_eq!(selectors[3], after(0), "a refused call is retried as it was");
    assert_eq!(selectors[4], after(1), "the clean end a third into fragment 3 completed fragment 2");
    assert_eq!(selectors[5], after(1), "10 bytes completed nothing");
    assert!(calls[1].at - calls[0].at >= Duration::from_secs(1), "ClientLimitExceeded backs off at least 1 s");
    assert!(calls[3].at - calls[2].at >= Duration::from_secs(1), "ConnectionLimitExceeded backs off at least 1 s");
    for pair in calls.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(200), "at most 5 GetMedia calls per second");
    }
    assert!(server.endpoint_calls() >= 1);
    assert!(
        server.endpoint_calls() < calls.len(),
        "the data endpoint is cached ({} GetDataEndpoint for {} GetMedia)",
        server.endpoint_calls(),
        calls.len()
    );
    assert!(calls.iter().all(|c| c.stream.as_deref() == Some(STREAM)));
}

fn meta(f: &Fragment) -> Processed {
    let fragment = FragmentMeta {
        fragment_number: FragmentNumber::parse(&f.number),
        producer_timestamp: Some(KvsTimestamp { millis: f.producer_ms }),
        ..FragmentMeta::default()
    };
    Processed { fragment: Arc::new(fragment), state: None, receipt: 0, revision: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_never_move_back_and_a_restart_resumes_after_them() {
    let fragments = capture();
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    moto::create_table(&ddb, "kvs-checkpoints", "stream").await;
    let checkpoints = Arc::new(Checkpoints::new(
        ddb.clone(),
        "kvs-checkpoints".into(),
        STREAM.into(),
        config::CameraId("kvs-cam".into()),
    ));

    assert_eq!(checkpoints.read().await.expect("read"), None);
    assert_eq!(checkpoints.write(&meta(&fragments[1])).await.expect("write"), Written::Advanced);
    assert_eq!(checkpoints.write(&meta(&fragments[0])).await.expect("write"), Written::Stale, "older never wins");
    assert_eq!(checkpoints.write(&meta(&fragments[1])).await.expect("write"), Written::Stale);
    // A later state of the same fragment (tracks ended on an idle stream) is a newer revision.
    let ended = Processed { revision: 1, state: Some("after the idle end".into()), ..meta(&fragments[1]) };
    assert_eq!(checkpoints.write(&ended).await.expect("write"), Written::Advanced);
    assert_eq!(checkpoints.write(&meta(&fragments[1])).await.expect("write"), Written::Stale, "revision 0 is older");
    let stored = checkpoints.read().await.expect("read").expect("a checkpoint");
    assert_eq!(Some(&stored.fragment), FragmentNumber::parse(&fragments[1].number).as_ref());
    assert_eq!((stored.revision, stored.analysis.as_deref()), (1, Some("after the idle end")));
    assert_eq!(
        stored.producer_timestamp.map(|t| t.millis),
        Some(fragments[1].producer_ms),
        "kept for the next revision"
    );

    // A restart: the configured start (EARLIEST) is overridden by the checkpoint.
    let server = KvsServer::start(fragments.clone(), vec![]).await;
    let stats = run_until_last(
        &server,
        StartSelector::Earliest,
        Some(checkpoints.clone()),
        &fragments[4].number,
        FragmentNumber::parse(&fragments[3].number),
    )
    .await;
    let first = &server.calls()[0];
    assert_eq!(first.selector["StartSelectorType"], "FRAGMENT_NUMBER");
    assert_eq!(first.selector["AfterFragmentNumber"], fragments[1].number.as_str());
    assert_eq!(stats.fragments, 3, "fragments 3, 4 and 5 only: {stats:?}");
    assert_eq!(stats.frames_decoded, 180);

    // Fragment 4's frames were all analysed once a frame of fragment 5 was taken.
    let stored = checkpoints.read().await.expect("read").expect("a checkpoint").fragment;
    assert!(stored >= FragmentNumber::parse(&fragments[3].number).expect("number"), "checkpoint {stored} not advanced");
    let item = ddb
        .get_item()
        .table_name("kvs-checkpoints")
        .key("stream", aws_sdk_dynamodb::types::AttributeValue::S(STREAM.into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert!(item.contains_key("producer_timestamp") && item.contains_key("updated_at"), "{item:?}");
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_selectors_reach_the_api() {
    let fragments = capture();
    let server = KvsServer::start(fragments.clone(), vec![]).await;
    // PRODUCER_TIMESTAMP: the fragment containing that time is the first one served.
    let t = fragments[2].producer_ms + 500;
    let rfc3339 = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(t as u64)).to_string();
    let stats =
        run_until_last(&server, StartSelector::ProducerTimestamp(rfc3339), None, &fragments[4].number, None).await;
    let first = &server.calls()[0];
    assert_eq!(first.selector["StartSelectorType"], "PRODUCER_TIMESTAMP");
    assert_eq!((first.selector["StartTimestamp"].as_f64().expect("epoch seconds") * 1000.0).round() as i64, t);
    assert_eq!(first.first, Some(2));
    assert_eq!(stats.fragments, 3);
}
