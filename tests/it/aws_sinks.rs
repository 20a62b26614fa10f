//! The Kinesis, S3 and DynamoDB sinks behind the outbox, against moto over HTTP: what lands
//! where, with which headers and attributes; conditional state writes; a Kinesis partial failure
//! (through a proxy that fails every third record once) retries only the failed records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fault_proxy::FaultProxy;
use crate::common::moto::{self, Moto};
use aws_sdk_dynamodb::types::AttributeValue;
use kvs_infer::config::{AwsConfig, DynamoDbSinkConfig};
use kvs_infer::health::Health;
use kvs_infer::pipeline::events::Event;
use kvs_infer::sink::delivery::{self, DeliveryContext};
use kvs_infer::sink::dynamodb::DynamoDbSink;
use kvs_infer::sink::kinesis::KinesisSink;
use kvs_infer::sink::outbox::{Outbox, OutboxRecord};
use kvs_infer::sink::s3::{S3Sink, snapshot_key};
use kvs_infer::sink::{Pending, Sink};
use kvs_infer_common::backoff::Backoff;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "events";
const BUCKET: &str = "kvs-infer-snapshots";

fn event(camera: &str, n: u64, producer_ms: i64) -> Event {
    serde_json::from_value(serde_json::json!({
        "schema": 1, "event_id": format!("{camera}:run1:{n}:new:{n}000"), "type": "new", "camera": camera,
        "track_id": n, "label": "text", "text": format!("京A {n}"), "score": 0.875, "box": [1.0, 2.0, 30.0, 40.0],
        "zone": "lane", "first_seen": 0.5, "last_seen": n as f64, "models": ["text"],
        "fragment_number": "91343852333181432392682062607743920146159169392",
        "producer_timestamp": format!("{}.{:03}", producer_ms / 1000, producer_ms % 1000),
        "emitted_at": 1_795_000_000.25
    }))
    .expect("event")
}

/// Delivers everything in the outbox to `sinks`, then stops the loops.
async fn deliver_all(outbox: Arc<Outbox>, sinks: Vec<Arc<dyn Sink>>) {
    let stop = CancellationToken::new();
    let ctx = DeliveryContext {
        outbox: outbox.clone(),
        health: Health::new(),
        shutdown: stop.clone(),
        backoff: Backoff { min: Duration::from_millis(50), max: Duration::from_millis(500) },
    };
    let names: Vec<&'static str> = sinks.iter().map(|s| s.name()).collect();
    let loops: Vec<_> = sinks.into_iter().map(|s| tokio::spawn(delivery::run(s, ctx.clone()))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (o, names) = (outbox.clone(), names.clone());
        let left: u64 = tokio::task::spawn_blocking(move || names.iter().map(|n| o.backlog(n).expect("backlog")).sum())
            .await
            .expect("join");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} records still undelivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for l in loops {
        l.await.expect("delivery loop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_in_kinesis_s3_and_dynamodb() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    moto::create_resources(&sdk, STREAM, BUCKET, "camera-state", "camera-events").await;
    let aws = AwsConfig { region: Some(moto::REGION.into()), endpoint_url: Some(moto.url()) };

    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(Outbox::open(dir.path(), 64 << 20, &["kinesis", "s3", "dynamodb"]).expect("outbox"));
    let mut events = Vec::new();
    for (i, camera) in ["gate-1", "gate-2", "gate-1", "gate-1"].iter().enumerate() {
        let mut e = event(camera, i as u64 + 1, 1_795_000_000_000 + i as i64 * 1000);
        let with_snapshot = i != 2;
        if with_snapshot {
            e.snapshot = Some(format!("s3://{BUCKET}/{}", snapshot_key("snapshots", &e, 1_795_000_000.25)));
        }
        let jpeg = with_snapshot.then(|| vec![0xFF, 0xD8, 0xFF, i as u8, 0xFF, 0xD9]);
        outbox.append(&OutboxRecord { event: e.clone(), snapshot: jpeg }).expect("append");
        events.push(e);
    }
    let ddb_cfg =
        DynamoDbSinkConfig { state_table: "camera-state".into(), events_table: "camera-events".into(), ttl_days: 7 };
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(KinesisSink::new(kvs_infer::aws::kinesis_client(&sdk), STREAM.into())),
        Arc::new(S3Sink::new(kvs_infer::aws::s3_client(&sdk, &aws), BUCKET.into())),
        Arc::new(DynamoDbSink::new(kvs_infer::aws::dynamodb_client(&sdk), ddb_cfg.clone())),
    ];
    deliver_all(outbox.clone(), sinks).await;
    assert_eq!(outbox.stats().records, 0, "every sink acknowledged, so the outbox is empty");

    // Kinesis: every event, as the schema's JSON, in order.
    let records = moto::read_stream(&sdk, STREAM).await;
    let got: Vec<Event> = records.iter().map(|r| serde_json::from_value(r.clone()).expect("event JSON")).collect();
    assert_eq!(got, events);

    // S3: snapshots under the documented key, encrypted, typed, with the event's metadata.
    let s3 = kvs_infer::aws::s3_client(&sdk, &aws);
    for (i, e) in events.iter().enumerate() {
        let Some(uri) = &e.snapshot else { continue };
        let key = uri.strip_prefix(&format!("s3://{BUCKET}/")).expect("uri");
        assert!(key.starts_with(&format!("snapshots/{}/2026/11/18/", e.camera)), "{key}");
        assert!(key.ends_with(".jpg") && !key.contains(':'), "{key}");
        let head = s3.head_object().bucket(BUCKET).key(key).send().await.expect("head");
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
        assert_eq!(head.content_type(), Some("image/jpeg"));
        let meta = head.metadata().expect("metadata");
        assert_eq!(meta.get("event-id").map(String::as_str), Some(e.event_id.as_str()));
        assert_eq!(meta.get("text").map(String::as_str), Some(format!("%E4%BA%ACA {}", i + 1).as_str()));
        let body =
            s3.get_object().bucket(BUCKET).key(key).send().await.expect("get").body.collect().await.expect("body");
        assert_eq!(body.into_bytes().as_ref(), [0xFF, 0xD8, 0xFF, i as u8, 0xFF, 0xD9]);
    }
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.expect("list");
    assert_eq!(listed.key_count(), Some(3), "one object per event with a snapshot");

    // DynamoDB: one item per event with a TTL; per camera the latest state.
    let ddb = kvs_infer::aws::dynamodb_client(&sdk);
    for e in &events {
        let item = ddb
            .get_item()
            .table_name("camera-events")
            .key("event_id", AttributeValue::S(e.event_id.clone()))
            .send()
            .await
            .expect("get")
            .item
            .expect("event item");
        let expires: i64 = item["expires_at"].as_n().expect("ttl").parse().expect("number");
        assert_eq!(expires, 1_795_000_000 + 7 * 86_400);
        assert_eq!(item["event"].as_s().ok().map(|s| serde_json::from_str::<Event>(s).expect("json")), Some(e.clone()));
    }
    let state = |camera: &'static str| {
        let ddb = ddb.clone();
        async move {
            ddb.get_item()
                .table_name("camera-state")
                .key("camera", AttributeValue::S(camera.into()))
                .send()
                .await
                .expect("get")
                .item
                .expect("state item")
        }
    };
    assert_eq!(state("gate-1").await["event_id"].as_s().expect("id"), &events[3].event_id);
    assert_eq!(state("gate-2").await["event_id"].as_s().expect("id"), &events[1].event_id);

    // An older event delivered late (a redelivery after a restart) does not overwrite the state.
    let sink = DynamoDbSink::new(kvs_infer::aws::dynamodb_client(&sdk), ddb_cfg);
    let mut late =
        vec![Pending { seq: 1, record: OutboxRecord { event: events[0].clone(), snapshot: None }, done: false }];
    sink.deliver(&mut late).await.expect("a stale state write is not an error");
    assert!(late[0].done);
    assert_eq!(state("gate-1").await["event_id"].as_s().expect("id"), &events[3].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_partial_failure_retries_only_the_failed_records() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    aws_sdk_kinesis::Client::new(&sdk).create_stream().stream_name(STREAM).shard_count(1).send().await.expect("stream");
    let proxy = FaultProxy::start(&moto.url()).await;
    let proxied = moto::sdk_for(&proxy.url).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(Outbox::open(dir.path(), 64 << 20, &["kinesis"]).expect("outbox"));
    let mut events = Vec::new();
    for n in 0..20 {
        let e = event(["a", "b"][n as usize % 2], n, 1_795_000_000_000);
        outbox.append(&OutboxRecord { event: e.clone(), snapshot: None }).expect("append");
        events.push(e);
    }
    let sink: Arc<dyn Sink> = Arc::new(KinesisSink::new(kvs_infer::aws::kinesis_client(&proxied), STREAM.into()));
    deliver_all(outbox, vec![sink]).await;

    let calls = proxy.calls();
    let failed = proxy.failed();
    assert_eq!(calls[0].len(), 20, "one PutRecords for the whole batch");
    assert_eq!(failed.len(), 7, "every third record failed once");
    let mut retried = calls[1].clone();
    retried.sort();
    let mut expected = failed.clone();
    expected.sort();
    assert_eq!(retried, expected, "the retry carries exactly the failed records");
    assert!(calls.len() >= 2);

    // Every event is in the stream exactly once: nothing lost, nothing sent twice.
    let mut ids: Vec<String> = moto::read_stream(&sdk, STREAM)
        .await
        .into_iter()
        .map(|r| r["event_id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
}
