//! `kvs-infer serve` (the default): loads the config, starts logging and the runtime, runs the
//! service ([`crate::service::serve`]) and maps how it ended to the exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::ConfigLocation;
use crate::health::Health;
use crate::metrics;
use crate::service::{self, ServeContext};
use crate::shutdown::{Outcome, StopReason};

/// How long tasks still blocked after the drain (a decode thread mid-read) get before the
/// runtime is dropped.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

pub fn run(config_path: &ConfigLocation) -> anyhow::Result<ExitCode> {
    // The clock for stage `starting` runs from here; reading (or fetching) the config is part of it.
    let health_start = std::time::Instant::now();
    let config = super::load_config(config_path)?;
    kvs_infer_common::telemetry::init(&config.logging.level, config.logging.format);
    tracing::info!(
        config = %config_path,
        version = env!("CARGO_PKG_VERSION"),
        load_seconds = health_start.elapsed().as_secs_f64(),
        "configuration loaded"
    );
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let ctx = ServeContext { health: Health::new(), metrics: metrics::install(), config };
        service::serve(ctx).await
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
    let outcome = result.context("startup failed")?;
    Ok(exit_code(&outcome))
}

/// The exit code for how the service ended.
pub fn exit_code(outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Forced => ExitCode::from(kvs_infer_common::exit::FORCED),
        other => match other.reason() {
            Some(StopReason::GpuFault(reason)) => {
                tracing::error!(reason, exit_code = kvs_infer_common::exit::GPU_FAULT, "exiting after a GPU fault");
                ExitCode::from(kvs_infer_common::exit::GPU_FAULT)
            }
            _ => ExitCode::SUCCESS,
        },
    }
}
