//! Loading every configured model into ONNX Runtime sessions, reading what their metadata says
//! (YOLO class names and input size, the OCR dictionary), warming them up, and running batches
//! on them for the worker.
//!
//! A `yolo` model is one session; an `ocr` model is up to three (det, cls, rec). Each session
//! knows the input shape it is warmed up at: the model's static dimensions, with dynamic ones
//! filled from the config (YOLO `input_size` or the model's `imgsz` metadata, OCR heights).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ort::session::Session;
use ort::value::ValueType;

use super::ocr::OcrModel;
use super::ocr::rec::Dictionary;
use super::runtime::{ActiveProvider, OrtRuntime, session_builder};
use super::worker::{BatchRunner, PartKey};
use super::yolo::YoloMeta;
use super::{InferError, Tensor};
use crate::config::{ModelId, ModelSpec, RuntimeConfig, YoloSpec};
use crate::metrics;

/// Which network of a model a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A YOLO model ready to use: its config and what its metadata says.
#[derive(Debug, Clone)]
pub struct YoloModel {
    pub id: ModelId,
    pub spec: YoloSpec,
    pub meta: YoloMeta,
    /// Square input side actually used.
    pub input_size: u32,
}

/// Every configured model, loaded.
#[derive(Debug)]
pub struct LoadedModels {
    pub sessions: Vec<LoadedSession>,
    pub provider: ActiveProvider,
    pub yolo: BTreeMap<ModelId, YoloModel>,
    pub ocr: BTreeMap<ModelId, OcrModel>,
}

/// Creates one session per model part. Fails on the first model that cannot load, naming it.
pub fn load_models(
    rt: &OrtRuntime,
    config: &RuntimeConfig,
    models: &BTreeMap<ModelId, ModelSpec>,
) -> Result<LoadedModels, InferError> {
    let mut sessions = Vec::new();
    let mut provider = ActiveProvider::Cpu;
    let mut yolo = BTreeMap::new();
    let mut ocr = BTreeMap::new();
    for (id, spec) in models {
        let parts: Vec<(ModelPart, &Path, [Option<usize>; 2])> = match spec {
            ModelSpec::Yolo(y) => {
                let side = y.input_size.map(|s| s as usize);
                vec![(ModelPart::Yolo, &y.path, [side, side])]
            }
            ModelSpec::Ocr(o) => {
                let det_side = (o.det.limit_side_len as usize).min(OCR_DET_WARMUP_MAX);
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
            let bad = |reason: String| InferError::BadModel { model: id.0.clone(), part: part.as_str(), reason };
            let hw = match (part, spec) {
                (ModelPart::Yolo, ModelSpec::Yolo(y)) => {
                    let meta = yolo_meta(&session).ok_or_else(|| bad("no Ultralytics `names` metadata".into()))?;
                    let side = y.input_size.unwrap_or(meta.imgsz.0.max(meta.imgsz.1));
                    yolo.insert(id.clone(), YoloModel { id: id.clone(), spec: y.clone(), meta, input_size: side });
                    [Some(side as usize); 2]
                }
                (ModelPart::OcrRec, ModelSpec::Ocr(o)) => {
                    let character = session
                        .metadata()
                        .ok()
                        .and_then(|m| m.custom("character"))
                        .ok_or_else(|| bad("no `character` dictionary in the metadata".into()))?;
                    let dictionary = Arc::new(Dictionary::from_metadata(&character));
                    ocr.insert(id.clone(), OcrModel { id: id.clone(), spec: o.clone(), dictionary });
                    hw
                }
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
    Ok(LoadedModels { sessions, provider, yolo, ocr })
}

/// Ultralytics metadata: `names`, `imgsz`, `stride`.
pub fn yolo_meta(session: &Session) -> Option<YoloMeta> {
    let meta = session.metadata().ok()?;
    let names = meta.custom("names")?;
    YoloMeta::parse(&names, meta.custom("imgsz").as_deref(), meta.custom("stride").as_deref())
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
            let input =
                ort::value::Tensor::from_array(([n, c, h, w], vec![0.5_f32; n * c * h * w])).map_err(run_err)?;
            loaded.session.run(ort::inputs![input]).map_err(run_err)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        metrics::record_model_warmup(&loaded.model.0, loaded.part.as_str(), seconds);
        tracing::info!(model = %loaded.model, part = loaded.part.as_str(), runs, seconds, "warm-up done");
    }
    Ok(())
}

/// Runs batches on the loaded sessions: the worker thread's [`BatchRunner`].
pub struct SessionRunner {
    sessions: HashMap<PartKey, Session>,
}

impl SessionRunner {
    pub fn new(loaded: Vec<LoadedSession>) -> Self {
        Self { sessions: loaded.into_iter().map(|s| (PartKey { model: s.model, part: s.part }, s.session)).collect() }
    }
}

impl BatchRunner for SessionRunner {
    fn run(&mut self, key: &PartKey, input: Tensor) -> Result<Tensor, InferError> {
        let (model, part) = (key.model.0.clone(), key.part.as_str());
        let session =
            self.sessions.get_mut(key).ok_or_else(|| InferError::UnknownModel(format!("{model} ({part})")))?;
        let run_err = |source| InferError::Run { model: model.clone(), part, source };
        let value = ort::value::Tensor::from_array((input.shape.clone(), input.data)).map_err(run_err)?;
        let outputs = session.run(ort::inputs![value]).map_err(run_err)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(run_err)?;
        let shape = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        Ok(Tensor { shape, data: data.to_vec() })
    }
}
