//! `kvs-infer run-file FILE`: one MKV through the first camera's pipeline, as fast as possible
//! and without dropping sampled frames; every event as a JSON line on stdout. Snapshots are
//! rendered as `serve` renders them ([`SnapshotPlan`]) and the local sink, when configured,
//! writes them and the events.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::CameraCommand;
use crate::pipeline::camera::{self, CameraContext};
use crate::sink::dispatch::SnapshotPlan;
use crate::sink::local::LocalSink;
use crate::sink::registry::SinkFactory;

/// Events waiting to be written.
const EVENT_QUEUE: usize = 64;

pub fn run(config_path: &crate::config::ConfigLocation, video: PathBuf) -> anyhow::Result<ExitCode> {
    let CameraCommand { config, camera, runtime, engine, worker: _worker } =
        CameraCommand::start(config_path).context("run-file")?;
    runtime.block_on(async move {
        let mut sink = config.sinks.local.as_ref().map(LocalSink::open).transpose().context("run-file")?;
        // Only the local sink writes here: snapshots at its quality, named by its file paths.
        let quality = config.sinks.local.as_ref().and_then(SinkFactory::snapshot_quality);
        let plan = SnapshotPlan { quality, locator: None, stored: quality.is_some() };
        let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let decoder = super::decoder_settings(&config, &camera)?;
        let health = crate::health::Health::new();
        let ctx = CameraContext { camera, engine, events: tx, shutdown, health, decoder, pass: 0, view: None };
        let run = tokio::spawn(camera::run_file(ctx, video, false));
        while let Some(item) = rx.recv().await {
            let record = plan.record(item, 0.0).await;
            let event = match sink.as_mut() {
                Some(sink) => sink.write(&record).context("run-file")?,
                None => record.event,
            };
            println!("{}", serde_json::to_string(&event).context("run-file: event as JSON")?);
        }
        let stats = run.await.context("run-file: the camera task failed")?.context("run-file")?;
        eprintln!(
            "run-file: {} frames decoded, {} sampled, {} analysed, {} events, {} recognitions saved",
            stats.frames_decoded, stats.frames_sampled, stats.frames_analysed, stats.events, stats.recognitions_saved
        );
        Ok(ExitCode::SUCCESS)
    })
}
