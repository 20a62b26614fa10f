//! What a model is to the rest of the service, and the one registry of model types.
//!
//! A model is one or more ONNX sessions (its [`Part`]s) plus the pre- and post-processing that
//! turn a picture into findings. It plays one of two roles: a [`Detector`] (boxes with labels)
//! or a [`TextReader`] (lines of text). A model type is a configuration that knows its parts and
//! how to finish itself once they are loaded ([`ModelType`]); [`model_type`] maps each
//! configured kind to its type.
//!
//! Adding a model type: a `config::ModelSpec` variant with its spec, one file here implementing
//! [`ModelType`] for that spec and [`Detector`] or [`TextReader`] for the model, one line in
//! [`model_type`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ort::session::Session;
use serde::Serialize;

use super::{InferError, Tensor};
use crate::config::{ModelId, ModelSpec};
use crate::geometry::BBox;
use crate::media::image::RgbImage;
use crate::metrics;

/// One network of a model (one ONNX session): `yolo`, `ocr_det`, `ocr_cls`, `ocr_rec`, ... A
/// bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Part(&'static str);

impl Part {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Which session a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    pub model: ModelId,
    pub part: Part,
}

/// A part to load: its file, and the height and width to warm it up at where the model's
/// input is dynamic (`None`: the default).
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub part: Part,
    pub path: PathBuf,
    pub warmup_hw: [Option<usize>; 2],
}

/// Runs a model part on a batch. The service uses the worker's handle; this seam lets the
/// pre/post-processing be driven the same way everywhere.
pub trait Runner {
    fn run(&self, model: &ModelId, part: Part, input: Tensor) -> Result<Tensor, InferError>;
}

/// One detection in source-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub label: String,
    #[serde(skip)]
    pub class_id: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]`.
    #[serde(rename = "box")]
    pub bbox: BBox,
}

/// One line of text read, in source-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextLine {
    pub text: String,
    pub score: f32,
    /// Corners clockwise from top-left.
    pub quad: [[f32; 2]; 4],
}

/// A model that finds labelled boxes. Blocking: runs on a blocking thread, its model runs
/// through `runner` (the inference worker).
pub trait Detector: Send + Sync {
    fn detect(&self, runner: &dyn Runner, img: &RgbImage) -> Result<Vec<Detection>, InferError>;
}

/// A model that reads lines of text. Blocking, like [`Detector`].
pub trait TextReader: Send + Sync {
    fn read(&self, runner: &dyn Runner, img: &RgbImage) -> Result<Vec<TextLine>, InferError>;
}

/// A loaded model, by role.
#[derive(Clone)]
pub enum Model {
    Detector(Arc<dyn Detector>),
    Reader(Arc<dyn TextReader>),
}

/// A model that is ready once its parts are loaded, and what warm-up sizes the loaded sessions
/// call for (read from their metadata).
pub struct Prepared {
    pub model: Model,
    /// Warm-up sizes that replace the [`PartSpec`]'s.
    pub warmup_hw: Vec<(Part, [Option<usize>; 2])>,
}

/// A model kind's configuration: the sessions it needs, and how it finishes from them.
pub trait ModelType {
    fn parts(&self) -> Vec<PartSpec>;
    /// Reads what the model needs from its loaded sessions (metadata: class names, input size,
    /// dictionary) and returns it ready to use.
    fn prepare(&self, id: &ModelId, sessions: &[(Part, &Session)]) -> Result<Prepared, InferError>;
}

/// The registry: each configured kind's [`ModelType`].
pub fn model_type(spec: &ModelSpec) -> &dyn ModelType {
    match spec {
        ModelSpec::Yolo(y) => y,
        ModelSpec::Ocr(o) => o,
    }
}

/// The session of `part` among a model's loaded sessions, or why the model is unusable.
pub fn session_of<'a>(id: &ModelId, sessions: &[(Part, &'a Session)], part: Part) -> Result<&'a Session, InferError> {
    sessions.iter().find(|(p, _)| *p == part).map(|(_, s)| *s).ok_or_else(|| InferError::BadModel {
        model: id.0.clone(),
        part: part.as_str(),
        reason: "the part was not loaded".into(),
    })
}

/// A custom metadata value of a session.
pub fn metadata(session: &Session, key: &str) -> Option<String> {
    session.metadata().ok()?.custom(key)
}

/// Times one model part's steps (`preprocess`, `inference`, `postprocess`) into
/// `infer_step_seconds`: each [`StepClock::lap`] records the time since the previous one.
pub struct StepClock<'a> {
    model: &'a ModelId,
    part: Part,
    since: Instant,
}

impl<'a> StepClock<'a> {
    pub fn start(model: &'a ModelId, part: Part) -> Self {
        Self { model, part, since: Instant::now() }
    }

    pub fn lap(&mut self, step: &'static str) {
        metrics::record_infer_step(&self.model.0, self.part.as_str(), step, self.since.elapsed());
        self.since = Instant::now();
    }
}
