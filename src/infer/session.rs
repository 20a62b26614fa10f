//! Loading every configured model's parts (as its [`ModelType`](super::model::ModelType) lists
//! them) into ONNX Runtime sessions, finishing each model from them, warming them up, and
//! running batches on them for the worker.
//!
//! Each session knows the input shape it is warmed up at: the model's static dimensions, with
//! dynamic ones filled from the config or the model's metadata (YOLO `imgsz`, OCR heights).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use ort::session::Session;
use ort::value::ValueType;

use super::model::{Model, Part, PartKey, PartSpec, model_type};
use super::runtime::{ActiveProvider, OrtRuntime, session_builder};
use super::worker::BatchRunner;
use super::{InferError, Tensor};
use crate::config::{ModelId, ModelSpec, RuntimeConfig};
use crate::metrics;

/// Warm-up side for a square dynamic input with no configured size (a typical detection input).
const DEFAULT_SQUARE: usize = 640;

/// One loaded session.
#[derive(Debug)]
pub struct LoadedSession {
    pub model: ModelId,
    pub part: Part,
    pub path: PathBuf,
    pub session: Session,
    /// NCHW shape used for warm-up.
    pub warmup_shape: [usize; 4],
}

/// Every configured model, loaded.
pub struct LoadedModels {
    pub sessions: Vec<LoadedSession>,
    pub provider: ActiveProvider,
    pub models: BTreeMap<ModelId, Model>,
}

/// Creates one session per model part. Fails on the first model that cannot load, naming it.
pub fn load_models(
    rt: &OrtRuntime,
    config: &RuntimeConfig,
    models: &BTreeMap<ModelId, ModelSpec>,
) -> Result<LoadedModels, InferError> {
    let mut loaded = LoadedModels { sessions: Vec::new(), provider: ActiveProvider::Cpu, models: BTreeMap::new() };
    for (id, spec) in models {
        let kind = model_type(spec);
        let mut parts = Vec::new();
        for part in kind.parts() {
            let started = Instant::now();
            let (session, provider) = load_session(rt, config, id, &part)?;
            loaded.provider = provider;
            parts.push((part, session, started));
        }
        let views: Vec<(Part, &Session)> = parts.iter().map(|(p, s, _)| (p.part, s)).collect();
        let prepared = kind.prepare(id, &views)?;
        for (part, session, started) in parts {
            let hw = prepared.warmup_hw.iter().find(|(p, _)| *p == part.part).map_or(part.warmup_hw, |(_, hw)| *hw);
            let warmup_shape = input_shape(&session, hw).map_err(|reason| InferError::BadModel {
                model: id.0.clone(),
                part: part.part.as_str(),
                reason,
            })?;
            let seconds = started.elapsed().as_secs_f64();
            metrics::record_model_load(&id.0, part.part.as_str(), seconds);
            tracing::info!(model = %id, part = %part.part, path = %part.path.display(), ?warmup_shape, seconds, "model loaded");
            loaded.sessions.push(LoadedSession {
                model: id.clone(),
                part: part.part,
                path: part.path,
                session,
                warmup_shape,
            });
        }
        loaded.models.insert(id.clone(), prepared.model);
    }
    Ok(loaded)
}

fn load_session(
    rt: &OrtRuntime,
    config: &RuntimeConfig,
    id: &ModelId,
    part: &PartSpec,
) -> Result<(Session, ActiveProvider), InferError> {
    let (mut builder, provider) = session_builder(rt, config)?;
    let session = builder.commit_from_file(&part.path).map_err(|source| InferError::LoadModel {
        model: id.0.clone(),
        part: part.part.as_str(),
        path: part.path.clone(),
        source,
    })?;
    Ok((session, provider))
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
