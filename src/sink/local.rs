//! The local sink: one JSON line per event in `{dir}/events.jsonl` (flushed per event), and for
//! `new` and `end` events the annotated snapshot (see [`super::snapshot`]) under
//! `{dir}/snapshots/{camera}/{event_id}.jpg`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::outbox::OutboxRecord;
use super::registry::{BuildContext, SinkFactory};
use super::{BatchLimits, BoxFuture, Pending, Sink, SinkError};
use crate::config::LocalSinkConfig;
use crate::pipeline::events::Event;

const NAME: &str = "local";

impl SinkFactory for LocalSinkConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs_aws(&self) -> bool {
        false
    }

    fn snapshot_quality(&self) -> Option<u8> {
        self.snapshots.then_some(self.jpeg_quality)
    }

    fn build(&self, _: &BuildContext<'_>) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(LocalOutboxSink::new(LocalSink::open(self)?)))
    }
}

pub struct LocalSink {
    dir: PathBuf,
    snapshots: bool,
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
        Ok(Self { dir: cfg.dir.clone(), snapshots: cfg.snapshots, log })
    }

    /// Writes the record's snapshot (if any), then its event line; returns the event as
    /// written (with the snapshot's path, unless another sink already named its location).
    pub fn write(&mut self, record: &OutboxRecord) -> Result<Event, SinkError> {
        let mut event = record.event.clone();
        if let Some(path) = self.write_snapshot(&event, record.snapshot.as_deref())?
            && event.snapshot.is_none()
        {
            event.snapshot = Some(path.display().to_string());
        }
        self.write_event(&event)?;
        Ok(event)
    }

    /// Writes an already encoded snapshot to `snapshots/{camera}/{event_id}.jpg`; returns its path.
    fn write_snapshot(&self, event: &Event, jpeg: Option<&[u8]>) -> Result<Option<PathBuf>, SinkError> {
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
    fn write_event(&mut self, event: &Event) -> Result<(), SinkError> {
        let path = self.dir.join("events.jsonl");
        let line =
            serde_json::to_string(event).map_err(|e| SinkError::Write { path: path.clone(), source: e.into() })?;
        writeln!(self.log, "{line}").and_then(|()| self.log.flush()).map_err(|source| SinkError::Write { path, source })
    }
}

/// The local sink behind the outbox (`serve`): file writes run on a blocking thread.
pub struct LocalOutboxSink {
    inner: Arc<Mutex<LocalSink>>,
}

impl LocalOutboxSink {
    pub fn new(sink: LocalSink) -> Self {
        Self { inner: Arc::new(Mutex::new(sink)) }
    }
}

impl Sink for LocalOutboxSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits { records: 64, bytes: 16 * 1024 * 1024 }
    }

    fn deliver<'a>(&'a self, batch: &'a mut [Pending]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let todo: Vec<(usize, OutboxRecord)> =
                batch.iter().enumerate().filter(|(_, p)| !p.done).map(|(i, p)| (i, p.record.clone())).collect();
            let inner = self.inner.clone();
            let written = tokio::task::spawn_blocking(move || {
                let mut sink = inner.lock().unwrap_or_else(PoisonError::into_inner);
                let mut done = Vec::new();
                for (i, record) in todo {
                    if let Err(e) = sink.write(&record) {
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
