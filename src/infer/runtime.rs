//! ONNX Runtime itself: finding the shared library, loading it once, and choosing the execution
//! provider every session uses.
//!
//! The library is never downloaded at run time. It is found, in order, at `runtime.library` from
//! the config, `ORT_DYLIB_PATH`, `runtime/` under the working directory (where `make setup`
//! puts it), then beside the executable (the container image). The startup log says which.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ArenaExtendStrategy as OrtArena, ExecutionProviderDispatch};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::InferError;
use crate::config::{ArenaExtendStrategy, ConvAlgoSearch, ExecutionProviderKind, GraphOptimization, RuntimeConfig};

/// File name of the ONNX Runtime release this service is built and tested against.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// The folder `make setup` extracts the library into, relative to the working directory.
pub const RUNTIME_DIR: &str = "runtime";

/// How the library was found, for the startup log and the health body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryOrigin {
    Config,
    EnvVar,
    RuntimeDir,
    BesideExecutable,
}

impl LibraryOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            LibraryOrigin::Config => "runtime.library in the config",
            LibraryOrigin::EnvVar => "ORT_DYLIB_PATH",
            LibraryOrigin::RuntimeDir => "the runtime/ folder",
            LibraryOrigin::BesideExecutable => "the executable's folder",
        }
    }
}

/// Finds the ONNX Runtime shared library; `env_var` is the value of `ORT_DYLIB_PATH`.
pub fn locate_library(
    configured: Option<&Path>,
    env_var: Option<&str>,
) -> Result<(PathBuf, LibraryOrigin), InferError> {
    if let Some(path) = configured {
        return existing(path.to_owned(), LibraryOrigin::Config);
    }
    if let Some(path) = env_var.filter(|v| !v.is_empty()) {
        return existing(PathBuf::from(path), LibraryOrigin::EnvVar);
    }
    let mut searched = Vec::new();
    let mut candidates = vec![(Path::new(RUNTIME_DIR).join(ORT_LIBRARY_FILE), LibraryOrigin::RuntimeDir)];
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push((dir.join(ORT_LIBRARY_FILE), LibraryOrigin::BesideExecutable));
        candidates.push((dir.join("libonnxruntime.so"), LibraryOrigin::BesideExecutable));
    }
    for (path, origin) in candidates {
        if path.is_file() {
            return Ok((path, origin));
        }
        searched.push(path);
    }
    Err(InferError::LibraryNotFound { searched })
}

fn existing(path: PathBuf, origin: LibraryOrigin) -> Result<(PathBuf, LibraryOrigin), InferError> {
    if path.is_file() { Ok((path, origin)) } else { Err(InferError::LibraryNotFound { searched: vec![path] }) }
}

/// The loaded library and environment. ONNX Runtime can be loaded once per process.
#[derive(Debug)]
pub struct OrtRuntime {
    pub library: PathBuf,
    pub origin: LibraryOrigin,
    pub environment: Environment,
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();

/// Loads ONNX Runtime from the located library, once. Later calls return the same runtime.
pub fn init(config: &RuntimeConfig) -> Result<&'static OrtRuntime, InferError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let env_var = std::env::var("ORT_DYLIB_PATH").ok();
    let (library, origin) = locate_library(config.library.as_deref(), env_var.as_deref())?;
    let builder = ort::init_from(&library)
        .map_err(|source| InferError::LoadLibrary { path: library.clone(), source: Box::new(source) })?;
    let environment = builder.with_name("kvs-infer").build().map_err(InferError::Environment)?;
    tracing::info!(library = %library.display(), found_by = origin.describe(), "ONNX Runtime loaded");
    // Two threads racing here both loaded the same library; keep the first.
    Ok(RUNTIME.get_or_init(|| OrtRuntime { library, origin, environment }))
}

/// The execution provider sessions actually run on, after `auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveProvider {
    Cpu,
    Cuda { device_id: u32 },
}

impl ActiveProvider {
    pub fn name(self) -> &'static str {
        match self {
            ActiveProvider::Cpu => "cpu",
            ActiveProvider::Cuda { .. } => "cuda",
        }
    }
}

fn cuda_provider(config: &RuntimeConfig) -> ExecutionProviderDispatch {
    let arena = match config.cuda.arena_extend_strategy {
        ArenaExtendStrategy::NextPowerOfTwo => OrtArena::NextPowerOfTwo,
        ArenaExtendStrategy::SameAsRequested => OrtArena::SameAsRequested,
    };
    let search = match config.cuda.cudnn_conv_algo_search {
        ConvAlgoSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
        ConvAlgoSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
        ConvAlgoSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
    };
    ep::CUDA::default()
        .with_device_id(i32::try_from(config.device_id).unwrap_or(i32::MAX))
        .with_arena_extend_strategy(arena)
        .with_conv_algorithm_search(search)
        .build()
        .error_on_failure()
}

fn optimization(level: GraphOptimization) -> GraphOptimizationLevel {
    match level {
        GraphOptimization::Disable => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::All => GraphOptimizationLevel::All,
    }
}

/// A session builder with the configured threads, optimisation level and provider.
///
/// `cuda` fails when the CUDA provider cannot register; `auto` falls back to the CPU and says so
/// through the returned [`ActiveProvider`].
pub fn session_builder(
    rt: &OrtRuntime,
    config: &RuntimeConfig,
) -> Result<(SessionBuilder, ActiveProvider), InferError> {
    let base = || -> Result<SessionBuilder, ort::Error> {
        let mut b = ort::session::Session::builder(&rt.environment)?
            .with_optimization_level(optimization(config.graph_optimization))?;
        if config.intra_op_threads > 0 {
            b = b.with_intra_threads(config.intra_op_threads)?;
        }
        Ok(b)
    };
    let cuda = ActiveProvider::Cuda { device_id: config.device_id };
    match config.execution_provider {
        ExecutionProviderKind::Cpu => Ok((base().map_err(InferError::SessionOptions)?, ActiveProvider::Cpu)),
        ExecutionProviderKind::Cuda => {
            let b = base().map_err(InferError::SessionOptions)?;
            let b = b
                .with_execution_providers([cuda_provider(config)])
                .map_err(|e| InferError::CudaUnavailable { source: e.into() })?;
            Ok((b, cuda))
        }
        ExecutionProviderKind::Auto => {
            let b = base().map_err(InferError::SessionOptions)?;
            match b.with_execution_providers([cuda_provider(config)]) {
                Ok(b) => Ok((b, cuda)),
                Err(e) => {
                    tracing::warn!(error = %e, "execution_provider auto: CUDA did not register, running on the CPU");
                    Ok((base().map_err(InferError::SessionOptions)?, ActiveProvider::Cpu))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_path_wins_and_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libonnxruntime.so");
        std::fs::write(&lib, b"x").expect("write");
        let (path, origin) = locate_library(Some(&lib), Some("/nonexistent")).expect("found");
        assert_eq!((path, origin), (lib.clone(), LibraryOrigin::Config));
        let (path, origin) = locate_library(None, lib.to_str()).expect("found");
        assert_eq!((path, origin), (lib, LibraryOrigin::EnvVar));
        let err = locate_library(Some(Path::new("/nonexistent/lib.so")), None).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/lib.so"), "{err}");
    }
}
