//! Inference: ONNX Runtime loading, execution providers, model sessions and warm-up.
//!
//! ONNX Runtime never runs on the async runtime: callers use `spawn_blocking` or (from the
//! inference issue on) the worker thread that owns the sessions.

pub mod runtime;
pub mod session;

use std::path::PathBuf;

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
}
