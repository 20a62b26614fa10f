//! Where events go. `local`: `events.jsonl` and annotated snapshots on disk (the embedded
//! default). The AWS sinks and the durable outbox come with the AWS issue.

pub mod local;

/// The sink layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("local sink: cannot write {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local sink: cannot encode the snapshot {}", path.display())]
    Encode {
        path: std::path::PathBuf,
        #[source]
        source: image::ImageError,
    },
}
