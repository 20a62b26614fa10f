//! The durable outbox: order per camera, one cursor per sink, deletion only when every sink has a
//! record, the size bound, damaged records quarantined, and crash safety: a writer killed with
//! SIGKILL in the middle of its commits reopens with every acknowledged record intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kvs_infer::pipeline::events::Event;
use kvs_infer::sink::outbox::{Outbox, OutboxError, OutboxRecord};

fn event(camera: &str, n: u64) -> Event {
    serde_json::from_value(serde_json::json!({
        "schema": 1, "event_id": format!("{camera}:r:{n}:new:{n}"), "type": "new", "camera": camera,
        "track_id": n, "label": "text", "text": format!("PLATE {n}"), "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0],
        "zone": "lane", "first_seen": 0.0, "last_seen": n as f64, "models": ["text"]
    }))
    .expect("event")
}

fn record(camera: &str, n: u64, snapshot: usize) -> OutboxRecord {
    OutboxRecord { event: event(camera, n), snapshot: (snapshot > 0).then(|| vec![(n % 251) as u8; snapshot]) }
}

#[test]
fn records_round_trip_and_damage_is_detected() {
    let r = record("a", 7, 1000);
    let bytes = r.encode().expect("encode");
    assert_eq!(OutboxRecord::decode(&bytes), Some(r.clone()));
    for cut in [0, 3, 8, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(OutboxRecord::decode(&bytes[..cut]), None, "torn at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[bytes.len() - 10] ^= 0x40;
    assert_eq!(OutboxRecord::decode(&flipped), None, "a flipped bit fails the checksum");
}

#[test]
fn every_sink_sees_every_record_in_order_and_records_go_when_all_have_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 64 << 20, &["kinesis", "s3"]).expect("open");
    let mut seqs = Vec::new();
    for n in 0..30 {
        let camera = ["a", "b", "c"][n as usize % 3];
        seqs.push(outbox.append(&record(camera, n, 100)).expect("append"));
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "sequence numbers grow");

    // Kinesis takes everything in batches of 7, in order; per camera the order is production order.
    let mut seen = Vec::new();
    loop {
        let batch = outbox.pending("kinesis", 7, usize::MAX).expect("pending");
        let Some(&(last, _)) = batch.last() else { break };
        seen.extend(batch.into_iter().map(|(_, r)| r.event));
        outbox.ack("kinesis", last).expect("ack");
    }
    assert_eq!(seen.len(), 30);
    for camera in ["a", "b", "c"] {
        let ids: Vec<u64> = seen.iter().filter(|e| e.camera == camera).map(|e| e.track_id).collect();
        assert!(ids.windows(2).all(|w| w[1] > w[0]), "camera {camera} out of order: {ids:?}");
    }
    assert_eq!(outbox.backlog("kinesis").expect("backlog"), 0);
    assert_eq!(outbox.stats().records, 30, "S3 has not taken them yet: nothing is deleted");

    let s3 = outbox.pending("s3", 10, usize::MAX).expect("pending");
    outbox.ack("s3", s3.last().expect("some").0).expect("ack");
    assert_eq!(outbox.stats().records, 20, "records both sinks have are deleted");

    // A restart keeps the backlog and the cursors; a sink added since starts at the oldest record.
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 64 << 20, &["kinesis", "s3", "dynamodb"]).expect("reopen");
    assert_eq!(outbox.stats().records, 20);
    assert_eq!(outbox.backlog("kinesis").expect("backlog"), 0);
    assert_eq!(outbox.backlog("s3").expect("backlog"), 20);
    assert_eq!(outbox.backlog("dynamodb").expect("backlog"), 20);
    let first = outbox.pending("s3", 1, usize::MAX).expect("pending");
    assert_eq!(first[0].1.event.track_id, 10, "s3 goes on after what it acknowledged");

    // A sink removed from the config no longer holds records back.
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 64 << 20, &["kinesis"]).expect("reopen");
    outbox.ack("kinesis", 0).expect("ack");
    assert_eq!(outbox.stats().records, 0);
}

#[test]
fn the_bound_refuses_new_records_until_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 100_000, &["kinesis"]).expect("open");
    let mut appended = 0;
    let err = loop {
        match outbox.append(&record("a", appended, 30_000)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(appended, 3);
    assert!(matches!(err, OutboxError::Full { max_bytes: 100_000, .. }), "{err}");
    assert!(err.to_string().contains("outbox full"), "{err}");
    assert!(outbox.stats().bytes <= 100_000);
    let batch = outbox.pending("kinesis", 1, usize::MAX).expect("pending");
    outbox.ack("kinesis", batch[0].0).expect("ack");
    outbox.append(&record("a", 99, 30_000)).expect("space was freed");
    // Nothing was lost: the three that fit plus the one after the ack.
    let all: Vec<u64> = outbox
        .pending("kinesis", 100, usize::MAX)
        .expect("pending")
        .into_iter()
        .map(|(_, r)| r.event.track_id)
        .collect();
    assert_eq!(all, [1, 2, 99]);
}

#[test]
fn a_damaged_record_is_quarantined_and_delivery_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 64 << 20, &["kinesis"]).expect("open");
    for n in 0..5 {
        outbox.append(&record("a", n, 10)).expect("append");
    }
    let mut torn = record("a", 2, 10).encode().expect("encode");
    torn.truncate(torn.len() - 5);
    outbox.damage_for_tests(3, &torn).expect("damage");
    let ids: Vec<u64> = outbox
        .pending("kinesis", 100, usize::MAX)
        .expect("pending")
        .into_iter()
        .map(|(_, r)| r.event.track_id)
        .collect();
    assert_eq!(ids, [0, 1, 3, 4], "the torn record (seq 3, track 2) is skipped");
    assert_eq!(outbox.quarantined().expect("quarantined"), 1, "and kept aside, not silently dropped");
    assert_eq!(outbox.stats().records, 4);
}

/// The child side of the crash test: appends records forever, printing each acknowledged seq.
#[test]
#[ignore = "run by sigkill_mid_commit_loses_nothing_acknowledged"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var("OUTBOX_CRASH_DIR") else { return };
    let outbox = Outbox::open(std::path::Path::new(&dir), 1 << 30, &["kinesis"]).expect("open");
    let start = outbox.stats().records;
    for n in start.. {
        let seq = outbox.append(&record("a", n, 20_000)).expect("append");
        println!("committed {seq} {n}");
    }
}

#[test]
fn sigkill_mid_commit_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "crash_writer_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("OUTBOX_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Let it commit a while (a different number of records each round), then kill it mid-write.
        let target = 20 + round * 17;
        let mut this_round = 0;
        for line in lines.by_ref() {
            let line = line.expect("line");
            if let Some(rest) = line.strip_prefix("committed ") {
                let mut it = rest.split(' ').map(|v| v.parse::<u64>().expect("number"));
                acknowledged.push((it.next().expect("seq"), it.next().expect("n")));
                this_round += 1;
                if this_round == target {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(3 * round as u64));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        // Commits printed after our last read still count: read what the pipe holds.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("committed ") {
                let mut it = rest.split(' ').map(|v| v.parse::<u64>().expect("number"));
                acknowledged.push((it.next().expect("seq"), it.next().expect("n")));
            }
        }

        let outbox = Outbox::open(dir.path(), 1 << 30, &["kinesis"]).expect("reopens after SIGKILL");
        let stored: Vec<(u64, OutboxRecord)> = outbox.pending("kinesis", usize::MAX, usize::MAX).expect("pending");
        assert_eq!(outbox.quarantined().expect("quarantine"), 0, "no torn record is ever visible");
        let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
        for (seq, n) in &acknowledged {
            let found = stored.iter().find(|(s, _)| s == seq).unwrap_or_else(|| panic!("acknowledged seq {seq} lost"));
            assert_eq!(found.1, record("a", *n, 20_000), "seq {seq} intact");
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no holes: {seqs:?}");
        assert_eq!(outbox.stats().records, stored.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_holds_events_back_says_degraded_and_loses_nothing() {
    use kvs_infer::health::Health;
    use kvs_infer::pipeline::events::EventWithFrame;
    use kvs_infer::sink::dispatch::{self, SnapshotPlan};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let one = record("a", 0, 0).encode().expect("encode").len() as u64;
    let outbox = Arc::new(Outbox::open(dir.path(), one * 3 + one / 2, &["kinesis"]).expect("open"));
    let health = Health::new();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let plan = SnapshotPlan::default();
    let dispatcher = tokio::spawn(dispatch::run(rx, outbox.clone(), plan, health.clone(), None));
    let producer = tokio::spawn(async move {
        for n in 0..6 {
            tx.send(EventWithFrame::new(event("a", n), None)).await.expect("send");
        }
    });
    // Three fit; the fourth waits in the dispatcher and the channel fills behind it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !health.snapshot().degraded.contains_key("outbox") {
        assert!(std::time::Instant::now() < deadline, "a full outbox is reported as degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outbox.stats().records, 3);
    assert!(!producer.is_finished(), "back-pressure reaches the producer");
    assert!(health.snapshot().liveness_failures.is_empty(), "a full outbox is not a liveness failure");

    // A sink catches up: the waiting events go in, in order, and the degraded reason clears.
    let mut delivered = Vec::new();
    while delivered.len() < 6 {
        let o = outbox.clone();
        let batch = tokio::task::spawn_blocking(move || o.pending("kinesis", 2, usize::MAX).expect("pending"))
            .await
            .expect("join");
        if let Some(&(last, _)) = batch.last() {
            delivered.extend(batch.into_iter().map(|(_, r)| r.event.track_id));
            let o = outbox.clone();
            tokio::task::spawn_blocking(move || o.ack("kinesis", last).expect("ack")).await.expect("join");
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(delivered, [0, 1, 2, 3, 4, 5]);
    producer.await.expect("producer");
    dispatcher.await.expect("dispatcher");
    assert!(!health.snapshot().degraded.contains_key("outbox"));
}
