//! The local sink: one JSON line per event in `{dir}/events.jsonl` (flushed per event), and for
//! `new` and `end` events the annotated snapshot (see [`super::snapshot`]) under
//! `{dir}/snapshots/{camera}/{event_id}.jpg`.

use std::io::Write;
use std::path::PathBuf;

use super::SinkError;
use crate::config::LocalSinkConfig;
use crate::pipeline::events::Event;
use crate::pipeline::events::EventWithFrame;

pub struct LocalSink {
    dir: PathBuf,
    snapshots: bool,
    quality: u8,
    log: std::fs::File,
}

impl LocalSink {
    pub fn open(cfg: &LocalSinkConfig) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| SinkError::Write { path: cfg.dir.clone(), source })?;
        let path = cfg.dir.join("events.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SinkError::Write { path: path.clone(), source })?;
        Ok(Self { dir: cfg.dir.clone(), snapshots: cfg.snapshots, quality: cfg.jpeg_quality, log })
    }

    /// Encodes and writes the snapshot (if any), then the event line; returns the event as written.
    pub fn write(&mut self, item: EventWithFrame) -> Result<Event, SinkError> {
        let EventWithFrame { mut event, frame } = item;
        let jpeg = match frame {
            Some(frame) if self.snapshots => Some(super::snapshot::encode(&frame, &event, self.quality)?),
            _ => None,
        };
        if let Some(path) = self.write_snapshot(&event, jpeg.as_deref())? {
            event.snapshot = Some(path.display().to_string());
        }
        self.write_event(&event)?;
        Ok(event)
    }

    /// Writes an already encoded snapshot to `snapshots/{camera}/{event_id}.jpg`; returns its path.
    pub fn write_snapshot(&self, event: &Event, jpeg: Option<&[u8]>) -> Result<Option<PathBuf>, SinkError> {
        let Some(jpeg) = jpeg.filter(|_| self.snapshots) else {
            return Ok(None);
        };
        let dir = self.dir.join("snapshots").join(&event.camera);
        std::fs::create_dir_all(&dir).map_err(|source| SinkError::Write { path: dir.clone(), source })?;
        let path = dir.join(format!("{}.jpg", super::file_safe(&event.event_id)));
        std::fs::write(&path, jpeg).map_err(|source| SinkError::Write { path: path.clone(), source })?;
        Ok(Some(path))
    }

    /// Appends the event as one JSON line and flushes it.
    pub fn write_event(&mut self, event: &Event) -> Result<(), SinkError> {
        let path = self.dir.join("events.jsonl");
        let line =
            serde_json::to_string(event).map_err(|e| SinkError::Write { path: path.clone(), source: e.into() })?;
        writeln!(self.log, "{line}").and_then(|()| self.log.flush()).map_err(|source| SinkError::Write { path, source })
    }
}

/// The local sink behind the outbox (`serve`): file writes run on a blocking thread.
pub struct LocalOutboxSink {
    inner: std::sync::Arc<std::sync::Mutex<LocalSink>>,
}

impl LocalOutboxSink {
    pub fn new(sink: LocalSink) -> Self {
        Self { inner: std::sync::Arc::new(std::sync::Mutex::new(sink)) }
    }
}

impl super::Sink for LocalOutboxSink {
    fn name(&self) -> &'static str {
        "local"
    }

    fn limits(&self) -> super::BatchLimits {
        super::BatchLimits { records: 64, bytes: 16 * 1024 * 1024 }
    }

    fn deliver<'a>(&'a self, batch: &'a mut [super::Pending]) -> super::BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let todo: Vec<(usize, super::outbox::OutboxRecord)> =
                batch.iter().enumerate().filter(|(_, p)| !p.done).map(|(i, p)| (i, p.record.clone())).collect();
            let inner = self.inner.clone();
            let written = tokio::task::spawn_blocking(move || {
                let mut sink = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut done = Vec::new();
                for (i, record) in todo {
                    let mut event = record.event;
                    let written = sink.write_snapshot(&event, record.snapshot.as_deref()).and_then(|path| {
                        if event.snapshot.is_none() {
                            event.snapshot = path.map(|p| p.display().to_string());
                        }
                        sink.write_event(&event)
                    });
                    if let Err(e) = written {
                        return (done, Some(e));
                    }
                    done.push(i);
                }
                (done, None)
            })
            .await;
            let (done, error) = written.unwrap_or_else(|e| {
                (Vec::new(), Some(SinkError::Write { path: "events.jsonl".into(), source: std::io::Error::other(e) }))
            });
            for i in done {
                batch[i].done = true;
            }
            error.map_or(Ok(()), Err)
        })
    }
}
