//! A camera's models, composed by configuration: YOLO detection on the whole frame, text read
//! on the whole frame, or text read inside chosen detections (a plate detector, then OCR).
//!
//! Blocking: call from a blocking thread. Model runs go through the [`Runner`] (the worker).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::ocr::{self, OcrModel, TextLine};
use super::preprocess::{Normalization, letterbox};
use super::session::{LoadedModels, ModelPart, SessionRunner, YoloModel};
use super::worker::{self, InferHandle, WorkerConfig};
use super::yolo::{self, Detection, YoloParams};
use super::{InferError, Runner, Tensor};
use crate::config::{CameraSpec, ModelId, RuntimeConfig};
use crate::media::image::RgbImage;
use crate::metrics;

/// Margin around a detection when reading text inside it, as a fraction of its size.
const WITHIN_MARGIN: f32 = 0.1;

/// What a frame's models found, in frame pixels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub detections: Vec<Detection>,
    pub texts: Vec<TextLine>,
}

/// Hands the loaded sessions to a new worker thread and returns the engine that uses it.
/// Must be called within a tokio runtime (the batcher is a task).
pub fn start_worker(config: &RuntimeConfig, models: LoadedModels) -> Result<(Engine, InferHandle), InferError> {
    let LoadedModels { sessions, yolo, ocr, .. } = models;
    let cfg = WorkerConfig {
        max_batch: config.max_batch,
        max_delay: config.max_delay,
        queue_capacity: config.queue_capacity,
    };
    let handle = worker::spawn(cfg, SessionRunner::new(sessions))?;
    let engine = Engine { runner: Arc::new(handle.clone()), yolo: Arc::new(yolo), ocr: Arc::new(ocr) };
    Ok((engine, handle))
}

/// Models plus the runner that executes them.
#[derive(Clone)]
pub struct Engine {
    runner: Arc<dyn Runner + Send + Sync>,
    yolo: Arc<BTreeMap<ModelId, YoloModel>>,
    ocr: Arc<BTreeMap<ModelId, OcrModel>>,
}

impl Engine {
    pub fn yolo_model(&self, id: &ModelId) -> Option<&YoloModel> {
        self.yolo.get(id)
    }

    /// YOLO detections in `img` (thresholds and class filter from the model's config).
    pub fn detect(&self, id: &ModelId, img: &RgbImage) -> Result<Vec<Detection>, InferError> {
        let model = self.yolo.get(id).ok_or_else(|| InferError::UnknownModel(id.0.clone()))?;
        let part = ModelPart::Yolo.as_str();
        let started = Instant::now();
        let size = model.input_size;
        let (data, geometry) = letterbox(img, size, &Normalization::YOLO)?;
        let input = Tensor { shape: vec![1, 3, size as usize, size as usize], data };
        metrics::record_infer_step(&id.0, part, "preprocess", started.elapsed());
        let started = Instant::now();
        let out = self.runner.run(id, ModelPart::Yolo, input)?;
        metrics::record_infer_step(&id.0, part, "inference", started.elapsed());
        let started = Instant::now();
        let anchors = match out.shape.as_slice() {
            [1, attrs, n] if *attrs == 4 + model.meta.names.len() => *n,
            other => {
                return Err(InferError::BadOutput {
                    model: id.0.clone(),
                    part,
                    reason: format!("shape {other:?} for {} classes", model.meta.names.len()),
                });
            }
        };
        let keep_class = if model.spec.classes.is_empty() {
            Vec::new()
        } else {
            model.meta.names.iter().map(|n| model.spec.classes.contains(n)).collect()
        };
        let params = YoloParams { confidence: model.spec.confidence, iou: model.spec.iou, keep_class };
        let detections = yolo::decode(&out.data, anchors, &model.meta, &params, &geometry);
        metrics::record_infer_step(&id.0, part, "postprocess", started.elapsed());
        Ok(detections)
    }

    /// Every line of text in `img`.
    pub fn read_text(&self, id: &ModelId, img: &RgbImage) -> Result<Vec<TextLine>, InferError> {
        let model = self.ocr.get(id).ok_or_else(|| InferError::UnknownModel(id.0.clone()))?;
        ocr::read_text(self.runner.as_ref(), model, img)
    }

    /// Everything the camera is configured to look for.
    pub fn analyze(&self, camera: &CameraSpec, img: &RgbImage) -> Result<Analysis, InferError> {
        let mut analysis = Analysis::default();
        for id in &camera.detect {
            analysis.detections.extend(self.detect(id, img)?);
        }
        if let Some(ocr) = &camera.ocr {
            let id = ModelId(ocr.model.clone());
            if ocr.within.is_empty() {
                analysis.texts = self.read_text(&id, img)?;
            } else {
                for d in analysis.detections.iter().filter(|d| ocr.within.contains(&d.label)) {
                    analysis.texts.extend(self.read_inside(&id, img, d)?);
                }
            }
        }
        Ok(analysis)
    }

    /// Text inside one detection (with a small margin), mapped back to frame pixels.
    fn read_inside(&self, id: &ModelId, img: &RgbImage, d: &Detection) -> Result<Vec<TextLine>, InferError> {
        let [x1, y1, x2, y2] = d.bbox;
        let (mx, my) = ((x2 - x1) * WITHIN_MARGIN, (y2 - y1) * WITHIN_MARGIN);
        let left = (x1 - mx).max(0.0) as u32;
        let top = (y1 - my).max(0.0) as u32;
        let right = ((x2 + mx).min(img.width as f32) as u32).max(left + 1);
        let bottom = ((y2 + my).min(img.height as f32) as u32).max(top + 1);
        let region = img.crop(left, top, right - left, bottom - top)?;
        let mut lines = self.read_text(id, &region)?;
        for line in &mut lines {
            for p in &mut line.quad {
                p[0] += left as f32;
                p[1] += top as f32;
            }
        }
        Ok(lines)
    }
}
