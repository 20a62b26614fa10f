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
    /// The recognition's confidence (for a reused reading, the one it was read with).
    pub score: f32,
    /// Corners clockwise from top-left.
    pub quad: [[f32; 2]; 4],
    /// The text detector's confidence in the box.
    pub box_score: f32,
    /// The reading was not recognised on this frame: a [`KnownLine`] stood in for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

/// A line read on an earlier frame, whose reading is settled: a box found where it was, of the
/// size it was read at and as clearly, takes its reading instead of running recognition again.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownLine {
    /// Where the line was last seen (`[x1, y1, x2, y2]`, pixels of the image being read).
    pub bbox: BBox,
    /// Width and height of the box when it was last recognised.
    pub read_size: [f32; 2],
    /// The detector's confidence in the box when it was last recognised.
    pub box_score: f32,
    pub text: String,
    pub score: f32,
}

/// Settled readings a text reader may reuse, and how much a box may change and still match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownLines {
    pub lines: Vec<KnownLine>,
    /// Largest relative change of width or height of a box that still takes the reading.
    pub max_resize: f32,
}

/// What a text reader may use beyond the image: settled readings of earlier frames, and the
/// picture the image was narrowed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadHints {
    pub known: KnownLines,
    /// `[width, height]` of the picture this image was cut from for this frame only (a crop
    /// narrowed to motion): text detection runs at the scale it would run at on that picture,
    /// so a narrowed crop costs in proportion to its area and text is read at the same
    /// resolution as on frames that are not narrowed.
    pub scale_of: Option<[u32; 2]>,
}

/// A box matches a known line when it overlaps it this much (IoU).
const KNOWN_IOU: f32 = 0.5;
/// A box whose detector confidence fell by more than this since the reading is read again.
const KNOWN_SCORE_DROP: f32 = 0.1;

impl KnownLines {
    /// The known line a detected box `bbox` (detector confidence `box_score`) is, if its
    /// reading still stands.
    pub fn matching(&self, bbox: &BBox, box_score: f32) -> Option<&KnownLine> {
        let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
        let resized = |now: f32, then: f32| then <= 0.0 || (now / then - 1.0).abs() > self.max_resize;
        self.lines.iter().find(|k| {
            crate::geometry::iou(&k.bbox, bbox) >= KNOWN_IOU
                && !resized(w, k.read_size[0])
                && !resized(h, k.read_size[1])
                && box_score >= k.box_score - KNOWN_SCORE_DROP
        })
    }

    /// The same lines for an image cut out of this one at `(x, y)`.
    pub fn moved(&self, x: f32, y: f32) -> KnownLines {
        let lines = self
            .lines
            .iter()
            .map(|k| KnownLine { bbox: [k.bbox[0] - x, k.bbox[1] - y, k.bbox[2] - x, k.bbox[3] - y], ..k.clone() })
            .collect();
        KnownLines { lines, max_resize: self.max_resize }
    }
}

/// A model that finds labelled boxes. Blocking: runs on a blocking thread, its model runs
/// through `runner` (the inference worker).
pub trait Detector: Send + Sync {
    fn detect(&self, runner: &dyn Runner, img: &RgbImage) -> Result<Vec<Detection>, InferError>;
}

/// A model that reads lines of text. Blocking, like [`Detector`].
pub trait TextReader: Send + Sync {
    /// Every line in `img`; lines matching one of `hints.known` take its reading unrecognised.
    fn read(&self, runner: &dyn Runner, img: &RgbImage, hints: &ReadHints) -> Result<Vec<TextLine>, InferError>;
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

/// The fixed size of a session's first input in dimension `dim` (NCHW: 2 height, 3 width);
/// `None` when dynamic or unknown.
pub fn fixed_input_dim(session: &Session, dim: usize) -> Option<usize> {
    let input = session.inputs().first()?;
    let ort::value::ValueType::Tensor { shape, .. } = input.dtype() else { return None };
    let dims: &[i64] = shape;
    dims.get(dim).and_then(|d| usize::try_from(*d).ok()).filter(|d| *d > 0)
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

#[cfg(test)]
mod known_tests {
    use super::*;

    #[test]
    fn a_box_takes_a_known_reading_only_where_it_was_at_its_size_and_as_clear() {
        let line = KnownLine {
            bbox: [100.0, 50.0, 200.0, 80.0],
            read_size: [100.0, 30.0],
            box_score: 0.8,
            text: "AB 123".into(),
            score: 0.97,
        };
        let known = KnownLines { lines: vec![line], max_resize: 0.15 };
        let at = |bbox: BBox, score| known.matching(&bbox, score).map(|k| k.text.as_str());
        assert_eq!(at([110.0, 50.0, 210.0, 80.0], 0.8), Some("AB 123"), "moved a little");
        assert_eq!(at([160.0, 50.0, 260.0, 80.0], 0.8), None, "moved off (IoU < 0.5)");
        assert_eq!(at([100.0, 50.0, 220.0, 80.0], 0.8), None, "20 % wider");
        assert_eq!(at([100.0, 50.0, 210.0, 80.0], 0.8), Some("AB 123"), "10 % wider");
        assert_eq!(at([100.0, 50.0, 200.0, 80.0], 0.65), None, "the detector is less sure");
        assert_eq!(KnownLines::default().matching(&[0.0, 0.0, 1.0, 1.0], 1.0), None);
        let moved = known.moved(100.0, 50.0);
        assert_eq!(moved.lines[0].bbox, [0.0, 0.0, 100.0, 30.0]);
        assert_eq!(moved.max_resize, 0.15);
    }
}
