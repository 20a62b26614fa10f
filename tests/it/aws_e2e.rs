//! `kvs-infer serve` end to end against moto: the sample camera's events land in Kinesis (read
//! back with GetRecords), their snapshots in S3 (with the SSE header) and state and events in
//! DynamoDB, through a 20-second emulator outage (SIGSTOP) during which the service stays healthy
//! and says `degraded`; and after a SIGKILL the restarted service delivers the outbox backlog.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::moto::{self, Moto};
use crate::common::service::{self, Service};
use aws_sdk_dynamodb::types::AttributeValue;

const STREAM: &str = "kvs-infer-events";
const BUCKET: &str = "kvs-infer-snapshots";

fn write_config(dir: &Path, realtime: bool) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace("realtime: true ", &format!("realtime: {realtime} "))
        .replace("loop: true ", "loop: false ")
        .replace(
            "sinks:\n  local:\n    dir: out",
            &format!(
                "health:\n  drain_timeout: 20s\n\
                 sinks:\n  local:\n    dir: {out}\n  kinesis:\n    stream_name: {STREAM}\n  \
                 s3:\n    bucket: {BUCKET}\n    prefix: snaps\n  \
                 dynamodb:\n    state_table: camera-state\n    events_table: camera-events\n\
                 outbox:\n  dir: {outbox}\n",
                out = dir.join("out").display(),
                outbox = dir.join("outbox").display(),
            ),
        );
    assert!(yaml.contains(STREAM) && yaml.contains(&format!("realtime: {realtime}")), "{yaml}");
    let path = dir.join("aws.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

fn local_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn ids(events: &[serde_json::Value]) -> BTreeSet<String> {
    events.iter().map(|e| e["event_id"].as_str().expect("event_id").to_owned()).collect()
}

/// Waits until every sink has acknowledged everything (`outbox_records 0`) after `min_events`,
/// and nothing new has arrived for a second (the dispatcher may still be appending the last
/// events of a camera that has just stopped).
async fn wait_delivered(url: &str, dir: &Path, min_events: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let mut settled: Option<(usize, Instant)> = None;
    loop {
        let (_, metrics) = service::get(&format!("{url}/metrics")).await;
        let outbox = service::metric(&metrics, "outbox_records");
        let seen = local_events(dir).len();
        if seen >= min_events && outbox == Some(0.0) {
            match settled {
                Some((n, since)) if n == seen && since.elapsed() >= Duration::from_secs(1) => return,
                Some((n, _)) if n == seen => {}
                _ => settled = Some((seen, Instant::now())),
            }
        } else {
            settled = None;
        }
        assert!(Instant::now() < deadline, "not delivered in {within:?}: outbox_records {outbox:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Everything the local sink wrote is in Kinesis, S3 (when it has a snapshot) and DynamoDB.
async fn assert_everywhere(moto: &Moto, events: &[serde_json::Value], latest_state: bool) {
    let sdk = moto.sdk().await;
    let in_stream = ids(&moto::read_stream(&sdk, STREAM).await);
    let missing: Vec<_> = ids(events).difference(&in_stream).cloned().collect();
    assert!(missing.is_empty(), "not in Kinesis: {missing:?}");

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for e in events {
        let id = e["event_id"].as_str().expect("id");
        let uri = e["snapshot"].as_str().expect("new and end events have snapshots");
        let key = uri.strip_prefix(&format!("s3://{BUCKET}/")).unwrap_or_else(|| panic!("{uri} is not in the bucket"));
        assert!(key.starts_with("snaps/local-0/"), "{key}");
        let head = s3.head_object().bucket(BUCKET).key(key).send().await.unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
        assert_eq!(head.content_type(), Some("image/jpeg"));
        let item = ddb
            .get_item()
            .table_name("camera-events")
            .key("event_id", AttributeValue::S(id.to_owned()))
            .send()
            .await
            .expect("get")
            .item;
        assert!(item.is_some_and(|i| i.contains_key("expires_at")), "{id} not in DynamoDB");
    }
    if !latest_state {
        return;
    }
    let state = ddb
        .get_item()
        .table_name("camera-state")
        .key("camera", AttributeValue::S("local-0".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("camera state");
    assert!(ids(events).contains(state["event_id"].as_s().expect("id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_through_a_20s_emulator_outage() {
    let moto = Moto::start();
    moto::create_resources(&moto.sdk().await, STREAM, BUCKET, "camera-state", "camera-events").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), true);
    let mut svc = Service::start(&config, &moto::env_for(&moto.url()));
    let url = svc.base_url();
    svc.wait_for_log("ready");

    // The first event is out: freeze the emulator for 20 s while the camera keeps producing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while local_events(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "no event within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto.pause();
    let paused = Instant::now();
    let mut degraded_seen = false;
    while paused.elapsed() < Duration::from_secs(20) {
        let (status, body) = service::get(&format!("{url}/healthz")).await;
        assert_eq!(status, 200, "a sink outage is not a health failure: {body}");
        degraded_seen |= body.contains("\"sink.");
        assert_eq!(service::get(&format!("{url}/livez")).await.0, 200, "nor a liveness failure");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    moto.resume();
    let resumed = Instant::now();
    assert!(degraded_seen, "the outage showed as degraded in /healthz");

    // Recovery: the camera finishes its 12 s of video; every event reaches every sink.
    svc.wait_for_log_within("camera stopped", Duration::from_secs(120));
    wait_delivered(&url, dir.path(), local_events(dir.path()).len(), Duration::from_secs(120)).await;
    let events = local_events(dir.path());
    eprintln!("backlog delivered {:.1} s after the emulator came back", resumed.elapsed().as_secs_f64());
    assert!(events.len() >= 4, "{events:#?}");
    assert_everywhere(&moto, &events, true).await;
    let (status, body) = service::get(&format!("{url}/healthz")).await;
    assert_eq!(status, 200);
    assert!(!body.contains("\"sink."), "degraded clears after recovery: {body}");

    svc.signal("-TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_restarted_service_delivers_the_backlog() {
    let moto = Moto::start();
    moto::create_resources(&moto.sdk().await, STREAM, BUCKET, "camera-state", "camera-events").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), false);

    // Run 1: AWS unreachable (a port that accepts and never answers, held so no other test can
    // take it); the local sink gets every event at once, the outbox holds them for the others.
    // Then SIGKILL: no drain, no goodbye.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let dead = black_hole.local_addr().expect("addr");
    let first = {
        let svc = Service::start(&config, &moto::env_for(&format!("http://{dead}")));
        let url = svc.base_url();
        svc.wait_for_log_within("camera stopped", Duration::from_secs(120));
        let deadline = Instant::now() + Duration::from_secs(30);
        while local_events(dir.path()).len() < 4 {
            assert!(Instant::now() < deadline, "local sink did not get the 4 events");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, metrics) = service::get(&format!("{url}/metrics")).await;
        assert_eq!(service::metric(&metrics, "outbox_records"), Some(4.0), "the backlog is in the outbox");
        svc.signal("-KILL");
        local_events(dir.path())
    };
    drop(black_hole);

    // Run 2: AWS is back. The backlog from run 1 is delivered (besides run 2's own events).
    let svc = Service::start(&config, &moto::env_for(&moto.url()));
    let url = svc.base_url();
    svc.wait_for_log("ready");
    svc.wait_for_log_within("camera stopped", Duration::from_secs(120));
    wait_delivered(&url, dir.path(), local_events(dir.path()).len(), Duration::from_secs(120)).await;
    // Read after delivery: the last events may reach the local sink after "camera stopped".
    let all = local_events(dir.path());
    assert_everywhere(&moto, &first, false).await;
    assert_everywhere(&moto, &all, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kvs_camera_streams_through_serve_and_checkpoints_on_shutdown() {
    use crate::common::kvs_server::{KvsServer, fragments_of};
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    moto::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "kvs-checkpoints", "stream").await;
    let fragments = fragments_of(&std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture"));
    let server = KvsServer::start(fragments.clone(), vec![]).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace("id: local-0", "id: gate")
        .replace(
            "kind: file\n      path: tests/fixtures/sample/plates.mkv\n      realtime: true          # paced like a live camera\n      loop: true              # and, like one, never ends: the live page stays alive",
            "kind: kvs\n      stream_name: gate-stream\n      start: earliest\n      checkpoint_table: kvs-checkpoints",
        )
        .replace("dir: out", &format!("dir: {}\noutbox:\n  dir: {}", dir.path().join("out").display(), dir.path().join("outbox").display()));
    assert!(yaml.contains("kind: kvs"), "{yaml}");
    let config = dir.path().join("kvs.yaml");
    std::fs::write(&config, yaml).expect("config");
    // Everything goes to moto except Kinesis Video, which one SDK variable sends to the test server.
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    let mut svc = Service::start(&config, &env);
    let url = svc.base_url();
    svc.wait_for_log("ready");

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, metrics) = service::get(&format!("{url}/metrics")).await;
        if service::metric(&metrics, "kvs_fragments_total{camera=\"gate\"}") == Some(5.0) {
            break;
        }
        assert!(Instant::now() < deadline, "5 fragments not read: {:?}", server.calls());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.calls()[0].selector["StartSelectorType"], "EARLIEST");
    assert_eq!(server.calls()[0].stream.as_deref(), Some("gate-stream"));
    svc.signal("-TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));

    let item = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name("kvs-checkpoints")
        .key("stream", AttributeValue::S("gate-stream".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("a checkpoint was written");
    let stored = item["fragment_number"].as_s().expect("number");
    let pos = fragments.iter().position(|f| &f.number == stored).expect("a fragment of the stream");
    assert!(pos >= 3, "checkpoint at fragment {} of 5", pos + 1);
}
