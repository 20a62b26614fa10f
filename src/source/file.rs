//! A local MKV file as a camera (the embedded default, and `run-file`).

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kvs_infer_common::BoxError;

use super::{RunningSource, SourceContext, SourceError, SourceOptions, SourceTasks};
use crate::config::CameraId;
use crate::media::stream::{ByteSource, Chunk};

const READ_CHUNK: usize = 64 * 1024;

/// Opens `path` for a camera: with `realtime`, frames are paced at their timestamps and handed
/// off like a live camera's; without, every sampled frame is analysed as fast as possible.
pub fn open(ctx: &SourceContext, path: &Path, realtime: bool) -> Result<RunningSource, SourceError> {
    let source = FileSource::open(&ctx.camera, path.to_owned())?;
    Ok(RunningSource {
        input: Box::new(source),
        options: SourceOptions { live: realtime, pace: realtime, hands_over: false },
        progress: None,
        resume: None,
        tasks: SourceTasks::default(),
    })
}

pub struct FileSource {
    camera: CameraId,
    path: PathBuf,
    file: std::fs::File,
}

impl FileSource {
    pub fn open(camera: &CameraId, path: PathBuf) -> Result<Self, SourceError> {
        let file = std::fs::File::open(&path).map_err(|source| SourceError::File {
            camera: camera.clone(),
            path: path.clone(),
            source,
        })?;
        Ok(Self { camera: camera.clone(), path, file })
    }
}

impl ByteSource for FileSource {
    fn next_chunk(&mut self) -> Option<Result<Chunk, BoxError>> {
        let mut buf = vec![0u8; READ_CHUNK];
        match self.file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(Chunk::Data(Bytes::from(buf))))
            }
            Err(source) => {
                Some(Err(Box::new(SourceError::File { camera: self.camera.clone(), path: self.path.clone(), source })))
            }
        }
    }
}
