//! `kvs-infer evaluate --truth TRUTH.json VIDEO`: runs the first camera's pipeline over the video
//! as `run-file` does (offline, every sampled frame) and scores its events against ground truth
//! (`pipeline::evaluation`): plates read exactly, misread, missed, junk tracks, extra tracks, by
//! tag. A table for people, `--json` for machines; `--min-recall` and `--max-junk` make it a
//! regression gate (exit 1 when either is not met).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::CameraCommand;
use crate::pipeline::camera::{self, CameraContext};
use crate::pipeline::evaluation::{PublishedTrack, Score, Truth, score};
use crate::sink::dispatch::SnapshotPlan;

/// Events waiting to be scored.
const EVENT_QUEUE: usize = 64;

/// What `evaluate` is asked.
pub struct Evaluate {
    pub truth: PathBuf,
    pub video: PathBuf,
    pub json: bool,
    /// Exit 1 when plates read exactly / plates is below this.
    pub min_recall: Option<f64>,
    /// Exit 1 when more tracks than this match no plate.
    pub max_junk: Option<usize>,
}

pub fn run(config_path: &crate::config::ConfigLocation, args: Evaluate) -> anyhow::Result<ExitCode> {
    if let Some(r) = args.min_recall {
        anyhow::ensure!((0.0..=1.0).contains(&r), "evaluate: --min-recall must be in 0..1, got {r}");
    }
    let truth = read_truth(&args.truth)?;
    let CameraCommand { config, camera, runtime, engine, worker: _worker } =
        CameraCommand::start(config_path).context("evaluate")?;
    let events = runtime.block_on(async move {
        // No snapshots: only the events' fields are scored.
        let plan = SnapshotPlan { quality: None, locator: None, stored: false };
        let (tx, mut rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let decoder = super::decoder_settings(&config, &camera)?;
        let ctx = CameraContext {
            camera,
            engine,
            events: tx,
            shutdown: tokio_util::sync::CancellationToken::new(),
            health: crate::health::Health::new(),
            decoder,
            pass: 0,
            view: None,
        };
        let run = tokio::spawn(camera::run_file(ctx, args.video.clone(), false));
        let mut events = Vec::new();
        while let Some(item) = rx.recv().await {
            let record = plan.record(item, 0.0).await;
            events.push(serde_json::to_value(&record.event).context("evaluate: event as JSON")?);
        }
        run.await.context("evaluate: the camera task failed")?.context("evaluate")?;
        anyhow::Ok(events)
    })?;
    let result = score(&truth, &PublishedTrack::from_events(&events));
    if args.json {
        println!("{}", serde_json::to_string(&result).context("evaluate: score as JSON")?);
    } else {
        print!("{}", result.table());
    }
    let failures = gate(&result, args.min_recall, args.max_junk);
    for f in &failures {
        eprintln!("evaluate: {f}");
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn read_truth(path: &Path) -> anyhow::Result<Truth> {
    let text = std::fs::read_to_string(path).with_context(|| format!("evaluate: cannot read {}", path.display()))?;
    Truth::parse(&text).with_context(|| format!("evaluate: {}", path.display()))
}

/// The thresholds not met, each as a sentence.
fn gate(score: &Score, min_recall: Option<f64>, max_junk: Option<usize>) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(min) = min_recall.filter(|min| score.total.recall < *min) {
        failures.push(format!("recall {:.3} is below --min-recall {min}", score.total.recall));
    }
    if let Some(max) = max_junk.filter(|max| score.junk.len() > *max) {
        failures.push(format!("{} junk tracks, over --max-junk {max}", score.junk.len()));
    }
    failures
}
