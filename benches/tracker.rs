//! The tracker's cost per analysed frame, and what checkpointing adds to it: a KVS camera with a
//! checkpoint table serialises the tracker after every frame (`Tracker::snapshot`) and a restart
//! reads it back once (`Tracker::restore`). Eight text tracks with a vote history each, the
//! default window.

use criterion::{Criterion, criterion_group, criterion_main};
use kvs_infer::config::TrackingConfig;
use kvs_infer::pipeline::tracker::{Observation, Tracker};

fn frame(i: usize) -> Vec<Observation> {
    (0..8)
        .map(|k| Observation {
            label: "text".into(),
            text: Some(format!("AB {k}{} CD", i % 3)),
            score: 0.9,
            bbox: [k as f32 * 80.0, 10.0, k as f32 * 80.0 + 60.0, 40.0],
            zone: "lane".into(),
            box_score: 0.8,
            reused: false,
            low: false,
        })
        .collect()
}

fn tracker(c: &mut Criterion) {
    let config = TrackingConfig::default();
    let mut tracked = Tracker::new(config.clone());
    for i in 0..20 {
        tracked.update(i as i64 * 200_000_000, frame(i));
    }
    let snapshot = tracked.snapshot();
    let mut g = c.benchmark_group("tracker");
    let mut i = 20usize;
    g.bench_function("update_8_tracks", |b| {
        b.iter(|| {
            i += 1;
            tracked.update(i as i64 * 200_000_000, frame(i))
        })
    });
    g.bench_function("snapshot_8_tracks", |b| b.iter(|| tracked.snapshot()));
    g.bench_function("restore_8_tracks", |b| b.iter(|| Tracker::restore(config.clone(), &snapshot).expect("restore")));
    g.finish();
    println!("snapshot of 8 tracks: {} bytes", snapshot.len());
}

criterion_group!(benches, tracker);
criterion_main!(benches);
