//! The engine: every loaded model behind the inference worker, and a camera's models composed by
//! configuration: detection on the whole frame, text read on the whole frame, or text read inside
//! chosen detections (a plate detector, then OCR).
//!
//! [`Engine::load`] is the one way to bring it up (ONNX Runtime, sessions, warm-up, worker); the
//! service runs the same steps one health stage at a time ([`load_models`], [`warm_up`],
//! [`start`]). [`Engine`] methods block: call them from a blocking thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::InferError;
use super::model::Runner;
use super::model::{Detection, Model, ReadHints, TextLine};
use super::runtime::{self, ActiveProvider};
use super::session::{self, LoadedModels, SessionRunner};
use super::worker::{self, Worker, WorkerConfig};
use crate::config::{CameraSpec, ModelId, ModelSpec, RuntimeConfig};
use crate::media::image::RgbImage;

/// Margin around a detection when reading text inside it, as a fraction of its size.
const WITHIN_MARGIN: f32 = 0.1;

/// What a frame's models found, in frame pixels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub detections: Vec<Detection>,
    pub texts: Vec<TextLine>,
}

/// Sessions loaded and not yet behind a worker, with what loading found out.
pub struct Loaded {
    pub models: LoadedModels,
    /// Where `libonnxruntime` was loaded from.
    pub library: std::path::PathBuf,
}

impl Loaded {
    pub fn provider(&self) -> ActiveProvider {
        self.models.provider
    }

    pub fn session_count(&self) -> usize {
        self.models.sessions.len()
    }
}

/// Stage `models_loaded`: ONNX Runtime and one session per model part. Blocking.
pub fn load_models(config: &RuntimeConfig, models: &BTreeMap<ModelId, ModelSpec>) -> Result<Loaded, InferError> {
    let rt = runtime::init(config)?;
    let models = session::load_models(rt, config, models)?;
    Ok(Loaded { models, library: rt.library.clone() })
}

/// Stage `warmed_up`: `runs` forward passes per session. Blocking.
pub fn warm_up(loaded: &mut Loaded, runs: u32) -> Result<(), InferError> {
    session::warm_up(&mut loaded.models, runs)
}

/// Hands the sessions to a new worker thread and returns the engine that uses it. Must be called
/// within a tokio runtime (the batcher is a task).
pub fn start(config: &RuntimeConfig, loaded: Loaded) -> Result<(Engine, Worker), InferError> {
    let LoadedModels { sessions, models, .. } = loaded.models;
    let cfg = WorkerConfig {
        max_batch: config.max_batch,
        max_delay: config.max_delay,
        queue_capacity: config.queue_capacity,
    };
    let worker = worker::spawn(cfg, SessionRunner::new(sessions))?;
    let engine = Engine { runner: Arc::new(worker.handle().clone()), models: Arc::new(models) };
    Ok((engine, worker))
}

/// Models plus the runner that executes them.
#[derive(Clone)]
pub struct Engine {
    runner: Arc<dyn Runner + Send + Sync>,
    models: Arc<BTreeMap<ModelId, Model>>,
}

impl Engine {
    /// Every step at once (the CLI, tests, benches): load, warm up, start the worker. The
    /// loading runs on a blocking thread; call from within a tokio runtime.
    pub async fn load(
        runtime: &RuntimeConfig,
        models: &BTreeMap<ModelId, ModelSpec>,
    ) -> Result<(Engine, Worker), InferError> {
        let (cfg, specs) = (runtime.clone(), models.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let mut loaded = load_models(&cfg, &specs)?;
            warm_up(&mut loaded, cfg.warmup_runs)?;
            Ok::<_, InferError>(loaded)
        })
        .await
        .map_err(InferError::LoadTask)??;
        start(runtime, loaded)
    }

    fn model(&self, id: &ModelId) -> Option<&Model> {
        self.models.get(id)
    }

    /// Detections of detector `id` in `img`.
    pub fn detect(&self, id: &ModelId, img: &RgbImage) -> Result<Vec<Detection>, InferError> {
        match self.model(id) {
            Some(Model::Detector(d)) => d.detect(self.runner.as_ref(), img),
            _ => Err(InferError::UnknownModel(id.0.clone())),
        }
    }

    /// Every line of text reader `id` finds in `img`.
    pub fn read_text(&self, id: &ModelId, img: &RgbImage) -> Result<Vec<TextLine>, InferError> {
        self.read_hinted(id, img, &ReadHints::default())
    }

    /// Every line of text reader `id` finds in `img`, with `hints`.
    fn read_hinted(&self, id: &ModelId, img: &RgbImage, hints: &ReadHints) -> Result<Vec<TextLine>, InferError> {
        match self.model(id) {
            Some(Model::Reader(r)) => r.read(self.runner.as_ref(), img, hints),
            _ => Err(InferError::UnknownModel(id.0.clone())),
        }
    }

    /// Everything the camera is configured to look for.
    pub fn analyze(&self, camera: &CameraSpec, img: &RgbImage) -> Result<Analysis, InferError> {
        self.analyze_hinted(camera, img, &ReadHints::default())
    }

    /// [`Engine::analyze`] with hints for reading text: lines matching `hints.known` (settled
    /// readings of earlier frames, in `img`'s pixels) take their reading instead of being
    /// recognised again; `hints.scale_of` sets the scale of whole-image text detection.
    pub fn analyze_hinted(
        &self,
        camera: &CameraSpec,
        img: &RgbImage,
        hints: &ReadHints,
    ) -> Result<Analysis, InferError> {
        let mut analysis = Analysis::default();
        for id in &camera.detect {
            analysis.detections.extend(self.detect(id, img)?);
        }
        if let Some(ocr) = &camera.ocr {
            let id = ModelId(ocr.model.clone());
            if ocr.within.is_empty() {
                analysis.texts = self.read_hinted(&id, img, hints)?;
            } else {
                for d in analysis.detections.iter().filter(|d| ocr.within.contains(&d.label)) {
                    analysis.texts.extend(self.read_inside(&id, img, d, &hints.known)?);
                }
            }
        }
        Ok(analysis)
    }

    /// Text inside one detection (with a small margin), mapped back to frame pixels.
    fn read_inside(
        &self,
        id: &ModelId,
        img: &RgbImage,
        d: &Detection,
        known: &super::model::KnownLines,
    ) -> Result<Vec<TextLine>, InferError> {
        let [x1, y1, x2, y2] = d.bbox;
        let (mx, my) = ((x2 - x1) * WITHIN_MARGIN, (y2 - y1) * WITHIN_MARGIN);
        let left = (x1 - mx).max(0.0) as u32;
        let top = (y1 - my).max(0.0) as u32;
        let right = ((x2 + mx).min(img.width as f32) as u32).max(left + 1);
        let bottom = ((y2 + my).min(img.height as f32) as u32).max(top + 1);
        let region = img.crop(left, top, right - left, bottom - top)?;
        // A detection's inside is read at its own scale (small plates are scaled up).
        let hints = ReadHints { known: known.moved(left as f32, top as f32), scale_of: None };
        let mut lines = self.read_hinted(id, &region, &hints)?;
        for line in &mut lines {
            for p in &mut line.quad {
                p[0] += left as f32;
                p[1] += top as f32;
            }
        }
        Ok(lines)
    }
}
