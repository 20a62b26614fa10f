//! Inference: ONNX Runtime, the worker that owns the sessions, and the models' own
//! pre- and post-processing (YOLO detection, PP-OCR).
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | what a model is (parts, roles), the registry of model types |
//! | [`runtime`] | finding and loading `libonnxruntime`, execution providers |
//! | [`session`] | loading configured models into sessions, their metadata, warm-up |
//! | [`worker`] | the session-owning thread, cross-camera batching, the handle |
//! | [`preprocess`] | normalisation, CHW tensor packing, letterbox |
//! | [`yolo`] | Ultralytics detect outputs, class-aware NMS |
//! | [`ocr`] | PP-OCR detection, classification, recognition |
//! | [`watchdog`] | liveness from the worker: a stall, a CUDA error |
//! | [`engine`] | a camera's models composed: detect, read text, or detect then read inside |
//!
//! ONNX Runtime never runs on the async runtime: pre- and post-processing run on blocking
//! threads, model runs on the worker thread.

pub mod engine;
pub mod model;
pub mod ocr;
pub mod preprocess;
pub mod runtime;
pub mod session;
pub mod watchdog;
pub mod worker;
pub mod yolo;

use std::path::PathBuf;
use std::sync::Arc;

/// A dense f32 tensor: shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Stacks tensors along their first dimension (all other dimensions must agree).
    pub fn concat(mut parts: Vec<Tensor>) -> Result<Tensor, InferError> {
        if parts.len() == 1 {
            return parts.pop().ok_or(InferError::EmptyBatch);
        }
        let first = parts.first().ok_or(InferError::EmptyBatch)?;
        let tail = first.shape.get(1..).unwrap_or_default().to_vec();
        let mut n = 0;
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            if p.shape.get(1..).unwrap_or_default() != tail.as_slice() {
                return Err(InferError::ShapeMismatch { expected: tail, got: p.shape });
            }
            n += p.shape.first().copied().unwrap_or(1);
            data.extend_from_slice(&p.data);
        }
        let mut shape = vec![n];
        shape.extend(tail);
        Ok(Tensor { shape, data })
    }

    /// Splits along the first dimension into pieces of `sizes` items.
    pub fn split(self, sizes: &[usize]) -> Result<Vec<Tensor>, InferError> {
        let n = self.shape.first().copied().unwrap_or(0);
        if sizes.iter().sum::<usize>() != n || n == 0 {
            return Err(InferError::ShapeMismatch { expected: vec![sizes.iter().sum()], got: self.shape });
        }
        let per_item = self.data.len() / n;
        let mut out = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &k in sizes {
            let mut shape = self.shape.clone();
            shape[0] = k;
            out.push(Tensor { shape, data: self.data[at * per_item..(at + k) * per_item].to_vec() });
            at += k;
        }
        Ok(out)
    }
}

/// The inference layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(
        "ONNX Runtime library not found (looked at: {}); run `make setup`, or set ORT_DYLIB_PATH or runtime.library",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    LibraryNotFound { searched: Vec<PathBuf> },
    #[error("cannot load ONNX Runtime from {}", path.display())]
    LoadLibrary {
        path: PathBuf,
        #[source]
        source: Box<ort::LoadDynamicError>,
    },
    #[error("cannot create the ONNX Runtime environment")]
    Environment(#[source] ort::Error),
    #[error("cannot set session options")]
    SessionOptions(#[source] ort::Error),
    #[error(
        "execution_provider is cuda but the CUDA execution provider did not register \
         (is this the onnxruntime-gpu library, with CUDA 13 / cuDNN 9 and a GPU present?)"
    )]
    CudaUnavailable {
        #[source]
        source: ort::Error,
    },
    #[error("model {model} ({part}): cannot load {}", path.display())]
    LoadModel {
        model: String,
        part: &'static str,
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("model {model} ({part}): {reason}")]
    BadModel { model: String, part: &'static str, reason: String },
    #[error("model {model} ({part}): run failed")]
    Run {
        model: String,
        part: &'static str,
        #[source]
        source: ort::Error,
    },
    #[error("model {model} ({part}): the run panicked")]
    RunPanicked { model: String, part: &'static str },
    #[error("model {model} ({part}): unexpected output: {reason}")]
    BadOutput { model: String, part: &'static str, reason: String },
    #[error("model {model} ({part}): the batch failed")]
    BatchFailed {
        model: String,
        part: &'static str,
        #[source]
        source: Arc<InferError>,
    },
    #[error("inference queue is full ({capacity} requests waiting); the frame is dropped")]
    QueueFull { capacity: usize },
    #[error("the inference worker has stopped")]
    WorkerStopped,
    #[error("cannot start the inference worker thread")]
    WorkerStart(#[source] std::io::Error),
    #[error("the model loading task failed")]
    LoadTask(#[source] tokio::task::JoinError),
    #[error("no model {0:?} of the right kind is loaded")]
    UnknownModel(String),
    #[error("bad image: {reason}")]
    BadImage { reason: String },
    #[error(transparent)]
    Image(#[from] crate::media::image::ImageError),
    #[error("tensor shapes differ: expected [_, {expected:?}], got {got:?}")]
    ShapeMismatch { expected: Vec<usize>, got: Vec<usize> },
    #[error("empty batch")]
    EmptyBatch,
}
