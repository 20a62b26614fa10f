//! Whole-pipeline throughput and latency on the sample video (`config/local.yaml`'s camera,
//! offline, CPU provider): frames/s over all cameras and per-frame latency (sampled frame taken
//! for inference → its events handed to the sinks), p50/p99, for 1, 2 and 4 cameras sharing
//! one worker. Prints a table (not a criterion benchmark: throughput of concurrent cameras).

use std::time::Instant;

use kvs_infer::config::{self, EnvOverrides};
use kvs_infer::infer::engine::Engine;
use kvs_infer::pipeline::camera::{CameraContext, run_file};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench. Under `cargo test --all-targets` (a debug build) a run takes
    // minutes and measures nothing useful: say so and stop.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline bench: run with `cargo bench --bench pipeline`");
        return;
    }
    let yaml = std::fs::read_to_string("config/local.yaml").expect("config").replace("level: info", "level: warn");
    let cfg = config::load_str(&yaml, "config/local.yaml", &EnvOverrides::default()).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (engine, _handle) =
        rt.block_on(Engine::load(&cfg.runtime, &cfg.models)).expect("ONNX Runtime and models (make setup)");
    println!("| cameras | frames analysed | wall s | frames/s | latency p50 ms | latency p99 ms |");
    println!("|---|---|---|---|---|---|");
    for cameras in [1usize, 2, 4] {
        let started = Instant::now();
        let results = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..cameras {
                let mut camera = cfg.cameras[0].clone();
                camera.id = config::CameraId(format!("bench-{i}"));
                let (tx, mut rx) = tokio::sync::mpsc::channel(64);
                tokio::spawn(async move { while rx.recv().await.is_some() {} });
                let health = kvs_infer::health::Health::new();
                let ctx = CameraContext {
                    camera,
                    engine: engine.clone(),
                    events: tx,
                    shutdown: Default::default(),
                    health,
                    decoder: Default::default(),
                    pass: 0,
                    view: None,
                };
                tasks.push(tokio::spawn(run_file(ctx, "tests/fixtures/sample/plates.mkv".into(), false)));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("join").expect("run"));
            }
            out
        });
        let wall = started.elapsed().as_secs_f64();
        let frames: u64 = results.iter().map(|r| r.frames_analysed).sum();
        let mut lat: Vec<f64> = results.iter().flat_map(|r| r.latencies.clone()).collect();
        lat.sort_by(f64::total_cmp);
        println!(
            "| {cameras} | {frames} | {wall:.1} | {:.1} | {:.0} | {:.0} |",
            frames as f64 / wall,
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3
        );
    }
}
