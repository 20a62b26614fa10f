//! Motion gating's cost per sampled frame (the bound: well under 1 ms at 720p): the
//! brightness grid read from a 1280x720 luma plane, and the gate's verdict against its background.

use criterion::{Criterion, criterion_group, criterion_main};
use kvs_infer::config::Zone;
use kvs_infer::config::motion::MotionSettings;
use kvs_infer::media::decode::grey::GreyGrid;
use kvs_infer::pipeline::motion::MotionGate;

fn plane(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..w * h)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (90 + (i % w) / 20 + state % 9) as u8
        })
        .collect()
}

fn motion(c: &mut Criterion) {
    let (w, h) = (1280u32, 720u32);
    let frames: Vec<Vec<u8>> = (1..=8).map(|s| plane(w, h, s)).collect();
    c.bench_function("motion_grid_720p", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % frames.len();
            GreyGrid::from_bytes(&frames[i], w as usize, w, h)
        })
    });
    let settings = MotionSettings { enabled: true, ..MotionSettings::off() };
    let lane = vec![Zone { name: "lane".into(), points: vec![[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]] }];
    let grids: Vec<GreyGrid> = frames.iter().map(|p| GreyGrid::from_bytes(p, w as usize, w, h)).collect();
    c.bench_function("motion_grid_and_verdict_720p", |b| {
        let mut gate = MotionGate::new(settings, lane.clone());
        let (mut i, mut ts) = (0usize, 0i64);
        b.iter(|| {
            i = (i + 1) % frames.len();
            ts += 200_000_000;
            let grid = GreyGrid::from_bytes(&frames[i], w as usize, w, h);
            gate.judge(Some(&grid), ts)
        })
    });
    c.bench_function("motion_verdict_only", |b| {
        let mut gate = MotionGate::new(settings, lane.clone());
        let (mut i, mut ts) = (0usize, 0i64);
        b.iter(|| {
            i = (i + 1) % grids.len();
            ts += 200_000_000;
            gate.judge(Some(&grids[i]), ts)
        })
    });
}

criterion_group!(benches, motion);
criterion_main!(benches);
