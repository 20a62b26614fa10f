//! Startup-path costs: config parse + validation, and rendering the `/healthz` body that ECS and
//! the ALB poll every few seconds.

use criterion::{Criterion, criterion_group, criterion_main};
use kvs_infer::config::{self, EnvOverrides};
use kvs_infer::health::{Health, Stage};

fn config_load(c: &mut Criterion) {
    let yaml = std::fs::read_to_string("config/cameras.example.yaml").expect("example config");
    c.bench_function("config_parse_validate_example", |b| {
        b.iter(|| config::load_str(&yaml, "bench", &EnvOverrides::default()).expect("valid"))
    });
}

fn healthz_body(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let health = Health::new();
    for stage in Stage::ALL {
        health.complete(stage, None);
    }
    health.set_degraded(&kvs_infer::health::Component::Sink("kinesis"), "ProvisionedThroughputExceeded");
    c.bench_function("healthz_snapshot_to_json", |b| b.iter(|| serde_json::to_vec(&health.snapshot()).expect("json")));
}

criterion_group!(benches, config_load, healthz_body);
criterion_main!(benches);
