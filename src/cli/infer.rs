//! `kvs-infer infer IMAGE...`: the first camera's models on still images, one JSON line each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;

use super::CameraCommand;
use crate::config::CameraSpec;
use crate::infer::engine::Engine;
use crate::media::image::RgbImage;

/// Exit 1 when any image could not be processed (each failure on stderr).
pub fn run(
    config_path: &crate::config::ConfigLocation,
    images: &[PathBuf],
    concurrency: usize,
    timing: bool,
) -> anyhow::Result<ExitCode> {
    let CameraCommand { config, camera, runtime, engine, worker: _worker } =
        CameraCommand::start(config_path).context("infer")?;
    let max_pixels = config.server.max_image_pixels;
    runtime.block_on(async move {
        // With --timing, images are decoded before the clock starts (images/s then measures
        // the models and their processing, as the reference benchmarks do).
        let decoded = Arc::new(if timing { decode_all(images.to_vec(), max_pixels).await } else { HashMap::new() });
        let job = Job { engine, camera, decoded, max_pixels };
        let mut failed = false;
        let mut report = |result: anyhow::Result<serde_json::Value>| match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("infer: {e:#}");
                failed = true;
            }
        };
        // The first image warms up allocations; timing starts after it.
        let Some((first, rest)) = images.split_first() else { return Ok(ExitCode::SUCCESS) };
        report(job.analyze(first.clone()).await);
        let started = std::time::Instant::now();
        let mut in_flight = JoinSet::new();
        for path in rest {
            if in_flight.len() >= concurrency
                && let Some(done) = in_flight.join_next().await
            {
                report(done.context("the image task failed").and_then(|r| r));
            }
            let job = job.clone();
            let path = path.clone();
            in_flight.spawn(async move { job.analyze(path).await });
        }
        while let Some(done) = in_flight.join_next().await {
            report(done.context("the image task failed").and_then(|r| r));
        }
        if timing && !rest.is_empty() {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "timing: {} image(s) in {secs:.3} s = {:.2} images/s (concurrency {concurrency}, after 1 warm-up image)",
                rest.len(),
                rest.len() as f64 / secs
            );
        }
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
}

/// One image's analysis, on a blocking thread.
#[derive(Clone)]
struct Job {
    engine: Engine,
    camera: CameraSpec,
    decoded: Arc<HashMap<PathBuf, RgbImage>>,
    /// `server.max_image_pixels`: a larger image is refused from its header.
    max_pixels: u64,
}

impl Job {
    async fn analyze(&self, path: PathBuf) -> anyhow::Result<serde_json::Value> {
        let job = self.clone();
        tokio::task::spawn_blocking(move || {
            let img = match job.decoded.get(&path) {
                Some(img) => img.clone(),
                None => {
                    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    RgbImage::decode_within(&bytes, job.max_pixels).with_context(|| path.display().to_string())?
                }
            };
            let a = job.engine.analyze(&job.camera, &img).with_context(|| path.display().to_string())?;
            Ok(serde_json::json!({ "image": path.display().to_string(), "detections": a.detections, "texts": a.texts }))
        })
        .await
        .context("the image task failed")?
    }
}

/// Every readable, decodable image (the others fail later, with their reason).
async fn decode_all(paths: Vec<PathBuf>, max_pixels: u64) -> HashMap<PathBuf, RgbImage> {
    tokio::task::spawn_blocking(move || {
        let decode = |p: &PathBuf| RgbImage::decode_within(&std::fs::read(p).ok()?, max_pixels).ok();
        paths.iter().filter_map(|p| Some((p.clone(), decode(p)?))).collect()
    })
    .await
    .unwrap_or_default()
}
