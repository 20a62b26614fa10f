//! Loading every configured model into ONNX Runtime sessions, and warming them up.
//!
//! A `yolo` model is one session; an `ocr` model is up to three (det, cls, rec). Each session
//! knows the input shape it is warmed up at: the model's static dimensions, with dynamic ones
//! filled from the config (YOLO `input_size` or the model's `imgsz` metadata, OCR heights).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::session::Session;
use ort::value::{Tensor, ValueType};

use super::InferError;
use super::runtime::{ActiveProvider, OrtRuntime, session_builder};
use crate::config::{ModelId, ModelSpec, RuntimeConfig};
use crate::metrics;

/// Which network of a model a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPart {
    Yolo,
    OcrDet,
    OcrCls,
    OcrRec,
}

impl ModelPart {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelPart::Yolo => "yolo",
            ModelPart::OcrDet => "ocr_det",
            ModelPart::OcrCls => "ocr_cls",
            ModelPart::OcrRec => "ocr_rec",
        }
    }
}

/// Warm-up sizes for dynamic dimensions: a typical 640-pixel detection input, the text-line
/// widths PP-OCR's own tools use (rec 320, cls 192).
const DEFAULT_SQUARE: usize = 640;
const OCR_DET_WARMUP_MAX: usize = 640;
const OCR_REC_WIDTH: usize = 320;
const OCR_CLS_SHAPE: [usize; 2] = [48, 192];

/// One loaded session.
#[derive(Debug)]
pub struct LoadedSession {
    pub model: ModelId,
    pub part: ModelPart,
    pub path: PathBuf,
    pub session: Session,
    /// NCHW shape used for warm-up.
    pub warmup_shape: [usize; 4],
}

/// Every configured model, loaded.
#[derive(Debug)]
pub struct LoadedModels {
    pub sessions: Vec<LoadedSession>,
    pub provider: ActiveProvider,
}

/// Creates one session per model part. Fails on the first model that cannot load, naming it.
pub fn load_models(
    rt: &OrtRuntime,
    config: &RuntimeConfig,
    models: &BTreeMap<ModelId, ModelSpec>,
) -> Result<LoadedModels, InferError> {
    let mut sessions = Vec::new();
    let mut provider = ActiveProvider::Cpu;
    for (id, spec) in models {
        let parts: Vec<(ModelPart, &Path, [Option<usize>; 2])> = match spec {
            ModelSpec::Yolo(y) => {
                let side = y.input_size.map(|s| s as usize);
                vec![(ModelPart::Yolo, &y.path, [side, side])]
            }
            ModelSpec::Ocr(o) => {
                let det_side = (o.det.max_side as usize).min(OCR_DET_WARMUP_MAX);
                let mut parts = vec![
                    (ModelPart::OcrDet, o.det.path.as_path(), [Some(det_side), Some(det_side)]),
                    (ModelPart::OcrRec, o.rec.path.as_path(), [Some(o.rec.height as usize), Some(OCR_REC_WIDTH)]),
                ];
                if let Some(cls) = &o.cls {
                    parts.push((ModelPart::OcrCls, cls.path.as_path(), OCR_CLS_SHAPE.map(Some)));
                }
                parts
            }
        };
        for (part, path, hw) in parts {
            let started = Instant::now();
            let (mut builder, active) = session_builder(rt, config)?;
            provider = active;
            let session = builder.commit_from_file(path).map_err(|source| InferError::LoadModel {
                model: id.0.clone(),
                part: part.as_str(),
                path: path.to_owned(),
                source,
            })?;
            let hw = match (part, hw) {
                (ModelPart::Yolo, [None, None]) => imgsz(&session).map(|(h, w)| [Some(h), Some(w)]).unwrap_or(hw),
                _ => hw,
            };
            let warmup_shape = input_shape(&session, hw).map_err(|reason| InferError::BadModel {
                model: id.0.clone(),
                part: part.as_str(),
                reason,
            })?;
            let seconds = started.elapsed().as_secs_f64();
            metrics::record_model_load(&id.0, part.as_str(), seconds);
            tracing::info!(model = %id, part = part.as_str(), path = %path.display(), ?warmup_shape, seconds, "model loaded");
            sessions.push(LoadedSession { model: id.clone(), part, path: path.to_owned(), session, warmup_shape });
        }
    }
    Ok(LoadedModels { sessions, provider })
}

/// Ultralytics exports record `imgsz: [h, w]` in their metadata.
pub fn imgsz(session: &Session) -> Option<(usize, usize)> {
    let raw = session.metadata().ok()?.custom("imgsz")?;
    let nums: Vec<usize> =
        raw.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
    match nums.as_slice() {
        [h, w] => Some((*h, *w)),
        [s] => Some((*s, *s)),
        _ => None,
    }
}

/// The first input's NCHW shape with dynamic dimensions filled in (batch 1, 3 channels, `hw`).
fn input_shape(session: &Session, hw: [Option<usize>; 2]) -> Result<[usize; 4], String> {
    let input = session.inputs().first().ok_or("the model has no inputs")?;
    let ValueType::Tensor { shape, .. } = input.dtype() else {
        return Err(format!("input {:?} is not a tensor", input.name()));
    };
    let dims: &[i64] = shape;
    if dims.len() != 4 {
        return Err(format!("input {:?} has shape {dims:?}; expected NCHW", input.name()));
    }
    let fill = |i: usize, default: Option<usize>| -> Result<usize, String> {
        match usize::try_from(dims[i]) {
            Ok(d) if d > 0 => Ok(d),
            _ => default.ok_or_else(|| format!("input dimension {i} is dynamic and has no configured size")),
        }
    };
    Ok([
        fill(0, Some(1))?,
        fill(1, Some(3))?,
        fill(2, hw[0].or(Some(DEFAULT_SQUARE)))?,
        fill(3, hw[1].or(Some(DEFAULT_SQUARE)))?,
    ])
}

/// Runs every session `runs` times on a mid-grey input of its warm-up shape.
pub fn warm_up(models: &mut LoadedModels, runs: u32) -> Result<(), InferError> {
    for loaded in &mut models.sessions {
        let started = Instant::now();
        let run_err = |source| InferError::Run { model: loaded.model.0.clone(), part: loaded.part.as_str(), source };
        let [n, c, h, w] = loaded.warmup_shape;
        for _ in 0..runs {
            let input = Tensor::from_array(([n, c, h, w], vec![0.5_f32; n * c * h * w])).map_err(run_err)?;
            loaded.session.run(ort::inputs![input]).map_err(run_err)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        metrics::record_model_warmup(&loaded.model.0, loaded.part.as_str(), seconds);
        tracing::info!(model = %loaded.model, part = loaded.part.as_str(), runs, seconds, "warm-up done");
    }
    Ok(())
}
