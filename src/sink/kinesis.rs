//! Kinesis Data Streams sink: `PutRecords` batches of event JSON, partition key = camera id (so
//! one camera's events stay on one shard, in order). Only the records a partial failure names are
//! retried; throttling (`ProvisionedThroughputExceededException`) backs off in the delivery loop.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use std::sync::Arc;

use super::registry::{self, BuildContext, SinkFactory};
use super::{BatchLimits, BoxFuture, Pending, Sink, SinkError, remote_error};
use crate::config::KinesisSinkConfig;

/// PutRecords accepts at most this many records per call.
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// ... and at most this many bytes (data + partition keys) per call.
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;
/// One record's data + partition key may not exceed this.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

const NAME: &str = "kinesis";

impl SinkFactory for KinesisSinkConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, SinkError> {
        let client = crate::aws::kinesis_client(registry::sdk(ctx, NAME)?);
        Ok(Arc::new(KinesisSink::new(client, self.stream_name.clone())))
    }
}

pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream: String) -> Self {
        Self { client, stream }
    }

    /// One PutRecords call for `batch[idx]`; marks what was accepted.
    async fn put(
        &self,
        batch: &mut [Pending],
        idx: &[usize],
        entries: Vec<PutRecordsRequestEntry>,
    ) -> Result<(), SinkError> {
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| remote_error(NAME, "PutRecords", e))?;
        let mut first_code = None;
        let mut failed = 0;
        for (&i, result) in idx.iter().zip(out.records()) {
            match result.error_code() {
                None => batch[i].done = true,
                Some(code) => {
                    failed += 1;
                    first_code.get_or_insert_with(|| code.to_owned());
                }
            }
        }
        // A response shorter than the request would leave records unmarked: they are retried.
        let failed = failed + idx.len().saturating_sub(out.records().len());
        match failed {
            0 => Ok(()),
            _ => Err(SinkError::Partial {
                sink: NAME,
                failed,
                total: idx.len(),
                code: first_code.unwrap_or_else(|| "MissingResult".to_owned()),
            }),
        }
    }
}

impl Sink for KinesisSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits { records: MAX_RECORDS_PER_PUT, bytes: MAX_BYTES_PER_PUT }
    }

    fn deliver<'a>(&'a self, batch: &'a mut [Pending]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut first_error = None;
            let mut idx = Vec::new();
            let mut entries = Vec::new();
            let mut bytes = 0;
            for i in 0..=batch.len() {
                let next = match batch.get(i) {
                    Some(p) if p.done => continue,
                    Some(p) => {
                        let data = serde_json::to_vec(&p.record.event).unwrap_or_default();
                        let key = p.record.event.camera.clone();
                        let size = data.len() + key.len();
                        if size > MAX_RECORD_BYTES {
                            // Cannot ever be accepted: say so loudly rather than block the stream.
                            tracing::error!(
                                event_id = p.record.event.event_id,
                                size,
                                "event larger than a Kinesis record; not sent to Kinesis"
                            );
                            crate::metrics::count_sink_error(NAME, "too_large");
                            batch[i].done = true;
                            continue;
                        }
                        Some((size, PutRecordsRequestEntry::builder().data(Blob::new(data)).partition_key(key).build()))
                    }
                    None => None,
                };
                let full = match &next {
                    Some((size, _)) => entries.len() == MAX_RECORDS_PER_PUT || bytes + size > MAX_BYTES_PER_PUT,
                    None => true,
                };
                if full && !entries.is_empty() {
                    let sent = std::mem::take(&mut entries);
                    if let Err(e) = self.put(batch, &idx, sent).await {
                        first_error.get_or_insert(e);
                    }
                    idx.clear();
                    bytes = 0;
                }
                if let Some((size, entry)) = next {
                    match entry {
                        Ok(entry) => {
                            idx.push(i);
                            entries.push(entry);
                            bytes += size;
                        }
                        Err(e) => {
                            first_error.get_or_insert(SinkError::Remote {
                                sink: NAME,
                                operation: "PutRecords",
                                reason: "request",
                                source: Box::new(e),
                            });
                        }
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}
