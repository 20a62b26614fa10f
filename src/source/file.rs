//! A local MKV file as a camera (the embedded default, and `run-file`).

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;

use super::{Chunk, MediaSource, SourceError};

const READ_CHUNK: usize = 64 * 1024;

pub struct FileSource {
    camera: String,
    path: PathBuf,
    file: std::fs::File,
}

impl FileSource {
    pub fn open(camera: &str, path: PathBuf) -> Result<Self, SourceError> {
        let file = std::fs::File::open(&path).map_err(|source| SourceError::File {
            camera: camera.to_owned(),
            path: path.clone(),
            source,
        })?;
        Ok(Self { camera: camera.to_owned(), path, file })
    }
}

impl MediaSource for FileSource {
    fn next_chunk(&mut self) -> Option<Result<Chunk, SourceError>> {
        let mut buf = vec![0u8; READ_CHUNK];
        match self.file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(Chunk::Data(Bytes::from(buf))))
            }
            Err(source) => {
                Some(Err(SourceError::File { camera: self.camera.clone(), path: self.path.clone(), source }))
            }
        }
    }
}
