//! The durable outbox: one event with a 40 KB snapshot committed (fsync) per append, and the
//! delivery side (read a batch of 100, acknowledge, delete), on the machine's local disk.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kvs_infer::sink::outbox::{Outbox, OutboxRecord};

fn record(n: u64) -> OutboxRecord {
    let event = serde_json::from_value(serde_json::json!({
        "schema": 1, "event_id": format!("cam:run:{n}:new:{n}"), "type": "new", "camera": "cam",
        "track_id": n, "label": "text", "text": "AB 123 CD", "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0],
        "zone": "lane", "first_seen": 0.0, "last_seen": 1.0, "models": ["text"]
    }))
    .expect("event");
    OutboxRecord { event, snapshot: Some(vec![7u8; 40_000]) }
}

fn outbox(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 32, &["kinesis"]).expect("open");
    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(1));
    let mut n = 0;
    g.bench_function("append_40k_snapshot_durable", |b| {
        b.iter(|| {
            n += 1;
            outbox.append(&record(n)).expect("append")
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("pending_100_and_ack", |b| {
        b.iter_batched(
            || {
                for i in 0..100 {
                    outbox.append(&record(i)).expect("append");
                }
            },
            |()| {
                let batch = outbox.pending("kinesis", 100, usize::MAX).expect("pending");
                outbox.ack("kinesis", batch.last().expect("some").0).expect("ack");
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = outbox
}
criterion_main!(benches);
