//! `kvs-infer serve` on a KVS backlog, killed with SIGKILL in the middle and started again
//! (issue 15): the restart resumes after the checkpoint with the tracker it stored, re-analyses
//! what followed, and every event it publishes again carries the id it had. After removing
//! duplicates by `event_id`, Kinesis (moto) holds exactly the events of an uninterrupted run.
//! Issue 28: a restart after the idle end publishes nothing; and with Kinesis down, a task
//! killed with its outbox folder lost (the instance gone) is replaced by one that publishes every
//! event, because the checkpoint never passed an undelivered one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::events::deduplicated;
use crate::common::kvs_capture::{Stamps, capture};
use crate::common::kvs_server::{Fragment, KvsServer};
use crate::common::moto::{self, Moto};
use crate::common::service::{self, Service};

/// `config/local.yaml` with its camera reading the KVS stream from `earliest`, checkpointed in
/// `table`, and a Kinesis sink writing to `stream`; its own local sink and outbox under `dir`.
fn config(dir: &Path, stream: &str, table: &str) -> PathBuf {
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace(
            "kind: file\n      path: tests/fixtures/sample/plates.mkv\n      realtime: true          # paced like a live camera\n      loop: true              # and, like one, never ends: the live page stays alive",
            &format!("kind: kvs\n      stream_name: plates\n      start: earliest\n      checkpoint_table: {table}"),
        )
        .replace("max_age: 3 }", "max_age: 3, idle_end: 2s }")
        .replace(
            "dir: out",
            &format!(
                "dir: {}\n  kinesis:\n    stream_name: {stream}\noutbox:\n  dir: {}",
                dir.join("out").display(),
                dir.join("outbox").display()
            ),
        );
    assert!(yaml.contains("kind: kvs") && yaml.contains("idle_end") && yaml.contains(stream), "{yaml}");
    let path = dir.join("kvs.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

async fn checkpoint(moto: &Moto, table: &str) -> Option<String> {
    let item = aws_sdk_dynamodb::Client::new(&moto.sdk().await)
        .get_item()
        .table_name(table)
        .key("stream", aws_sdk_dynamodb::types::AttributeValue::S("plates".into()))
        .send()
        .await
        .expect("get")
        .item?;
    item.get("fragment_number").and_then(|v| v.as_s().ok()).cloned()
}

/// The plate video as a two-minute-old KVS backlog behind the GetMedia test server, and moto with
/// a Kinesis stream and a checkpoint table for each of `names`.
struct Backlog {
    fragments: Vec<Fragment>,
    last: String,
    server: KvsServer,
    moto: Moto,
    sdk: aws_config::SdkConfig,
}

impl Backlog {
    async fn start(names: &[&str]) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let fragments: Vec<Fragment> = capture(
            "tests/fixtures/sample/plates.mkv",
            &Stamps { producer_start_ms: now - 120_000, behind_ms: |_| 800 },
        );
        let last = fragments.last().expect("fragments").number.clone();
        let server = KvsServer::start(fragments.clone(), vec![]).await;
        let moto = Moto::start();
        let sdk = moto.sdk().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        for name in names {
            let kinesis = aws_sdk_kinesis::Client::new(&sdk);
            kinesis.create_stream().stream_name(*name).shard_count(1).send().await.expect("stream");
            moto::create_table(&ddb, name, "stream").await;
        }
        Self { fragments, last, server, moto, sdk }
    }
}

/// Starts the service and waits until the camera has checkpointed `last` and Kinesis holds
/// every event (as many `end` events as `new` ones, the outbox empty), then stops it; returns
/// its log lines.
async fn run_to_the_end(
    moto: &Moto,
    server: &KvsServer,
    cfg: &Path,
    table: &str,
    stream: &str,
    last: &str,
) -> Vec<serde_json::Value> {
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    let mut svc = Service::start(cfg, &env);
    let url = svc.base_url();
    svc.wait_for_log("ready");
    let sdk = moto.sdk().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, metrics) = service::get(&format!("{url}/metrics")).await;
        let records = moto::read_stream(&sdk, stream).await;
        let count = |kind: &str| deduplicated(records.clone()).values().filter(|e| e["type"] == kind).count();
        if checkpoint(moto, table).await.as_deref() == Some(last)
            && service::metric(&metrics, "outbox_records") == Some(0.0)
            && count("new") > 0
            && count("new") == count("end")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog was not analysed and delivered; records: {records:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    svc.signal("-TERM");
    let logs = svc.remaining_logs();
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_mid_backlog_kinesis_holds_the_uninterrupted_runs_events_once_deduplicated() {
    let Backlog { fragments, last, server, moto, sdk } = Backlog::start(&["whole", "killed"]).await;

    let whole = tempfile::tempdir().expect("tempdir");
    let whole_cfg = config(whole.path(), "whole", "whole");
    run_to_the_end(&moto, &server, &whole_cfg, "whole", "whole", &last).await;
    let published = moto::read_stream(&sdk, "whole").await;
    let expected = deduplicated(published.clone());
    assert!(expected.values().any(|e| e["text"] == "KVS 2026"), "{expected:#?}");

    // Started again after the idle end ended every track: the checkpoint holds no track, so
    // nothing ends twice (idle_end is 2 s: three of them pass).
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    let mut again = Service::start(&whole_cfg, &env);
    again.wait_for_log("ready");
    let read = again.wait_for_log("checkpoint read");
    assert_eq!(read["checkpoint"], last.as_str(), "{read}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    again.signal("-TERM");
    let logs = again.remaining_logs();
    assert_eq!(again.wait_exit(Duration::from_secs(30)), Some(0));
    let resumed = logs.iter().find(|l| l["message"] == "tracks resumed from the checkpoint");
    assert!(resumed.is_none_or(|l| l["tracks"] == 0), "the ended tracks came back: {resumed:?}");
    assert!(!logs.iter().any(|l| l["message"] == "event"), "published again: {logs:#?}");
    assert_eq!(moto::read_stream(&sdk, "whole").await.len(), published.len(), "nothing more in Kinesis");

    // Killed once the checkpoint has passed the sixth of 12 fragments: no drain, no last write.
    let killed = tempfile::tempdir().expect("tempdir");
    let cfg = config(killed.path(), "killed", "killed");
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    let mut svc = Service::start(&cfg, &env);
    svc.wait_for_log("ready");
    let sixth = fragments[5].number.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint(&moto, "killed").await < Some(sixth.clone()) {
        assert!(Instant::now() < deadline, "the checkpoint never passed fragment 6");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.signal("-KILL");
    svc.wait_exit(Duration::from_secs(10));
    assert_ne!(checkpoint(&moto, "killed").await.as_deref(), Some(last.as_str()), "killed before the end");

    let logs = run_to_the_end(&moto, &server, &cfg, "killed", "killed", &last).await;
    let resumed = logs.iter().find(|l| l["message"] == "tracks resumed from the checkpoint");
    assert!(resumed.is_some_and(|l| l["tracks"].as_u64() > Some(0)), "the plate seen across the kill: {resumed:?}");
    let records = moto::read_stream(&sdk, "killed").await;
    let seen = deduplicated(records);
    assert_eq!(seen, expected, "deduplicated by event_id: the uninterrupted run's events");
}

/// A port nothing listens on: calls to it are refused at once.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kinesis_down_a_task_killed_with_its_disk_is_replaced_without_losing_an_event() {
    let Backlog { last, server, moto, sdk, .. } = Backlog::start(&["whole", "lost"]).await;
    let whole = tempfile::tempdir().expect("tempdir");
    run_to_the_end(&moto, &server, &config(whole.path(), "whole", "whole"), "whole", "whole", &last).await;
    let expected = deduplicated(moto::read_stream(&sdk, "whole").await);
    let first_fragment = expected.values().filter_map(|e| e["fragment_number"].as_str()).min().expect("fragments");

    // Kinesis unreachable, DynamoDB fine: events wait in the outbox, and the checkpoint waits
    // for them.
    let lost = tempfile::tempdir().expect("tempdir");
    let cfg = config(lost.path(), "lost", "lost");
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    env.push(("AWS_ENDPOINT_URL_KINESIS", refused_url()));
    let mut svc = Service::start(&cfg, &env);
    let url = svc.base_url();
    svc.wait_for_log("ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, metrics) = service::get(&format!("{url}/metrics")).await;
        // The held-back checkpoint shows: more than a second of analysed video not covered.
        let lag = service::metric(&metrics, "checkpoint_lag_seconds{camera=\"local-0\"}");
        if service::metric(&metrics, "outbox_records").is_some_and(|n| n >= 3.0) && lag.is_some_and(|s| s > 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no events waited in the outbox with the checkpoint held back: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.signal("-KILL");
    svc.wait_exit(Duration::from_secs(10));
    let held = checkpoint(&moto, "lost").await;
    assert!(
        held.as_deref().is_none_or(|c| c < first_fragment),
        "the checkpoint {held:?} passed undelivered events (first event in fragment {first_fragment})"
    );
    // The instance is gone with its disk.
    std::fs::remove_dir_all(lost.path().join("outbox")).expect("remove the outbox");

    let logs = run_to_the_end(&moto, &server, &cfg, "lost", "lost", &last).await;
    assert!(logs.iter().any(|l| l["message"] == "event"), "the replacement published the events again");
    assert_eq!(deduplicated(moto::read_stream(&sdk, "lost").await), expected, "every event, by event_id");
}
