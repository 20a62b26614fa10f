//! S3 sink: the annotated snapshot JPEG of each event that has one, at
//! `{prefix}/{camera}/{yyyy}/{mm}/{dd}/{event_id}.jpg` (the date, UTC, is the producer timestamp
//! of the event's fragment, so an event published again names the same object; `emitted_at` for
//! sources without one), with `x-amz-server-side-encryption: AES256`, `Content-Type: image/jpeg` and the event's
//! id, camera, type, track, label and text as object metadata. The dispatcher puts the key into
//! the event (`snapshot: s3://bucket/key`) before the event is queued, so KDS and DynamoDB carry
//! it too.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use std::sync::Arc;

use super::registry::{self, BuildContext, SinkFactory, SnapshotLocator};
use super::{BatchLimits, BoxFuture, Pending, Sink, SinkError, file_safe, remote_error};
use crate::config::S3SinkConfig;
use crate::pipeline::events::Event;

const NAME: &str = "s3";

impl SinkFactory for S3SinkConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn snapshot_quality(&self) -> Option<u8> {
        Some(self.jpeg_quality)
    }

    fn snapshot_locator(&self) -> Option<SnapshotLocator> {
        let (bucket, prefix) = (self.bucket.clone(), self.prefix.clone());
        Some(Arc::new(move |event: &Event, emitted_at: f64| {
            format!("s3://{bucket}/{}", snapshot_key(&prefix, event, emitted_at))
        }))
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, SinkError> {
        let client = crate::aws::s3_client(registry::sdk(ctx, NAME)?, ctx.aws);
        Ok(Arc::new(S3Sink::new(client, self.bucket.clone())))
    }
}

pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Sink {
    pub fn new(client: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, bucket }
    }
}

/// The object key of an event's snapshot.
pub fn snapshot_key(prefix: &str, event: &Event, emitted_at_unix: f64) -> String {
    let produced = event.producer_timestamp.as_deref().and_then(crate::media::KvsTimestamp::parse);
    let day = match produced {
        Some(t) => t.millis.div_euclid(86_400_000),
        None => emitted_at_unix.div_euclid(86_400.0) as i64,
    };
    let (y, m, d) = civil_date(day);
    let prefix = prefix.trim_matches('/');
    let name = format!("{}/{y:04}/{m:02}/{d:02}/{}.jpg", file_safe(&event.camera), file_safe(&event.event_id));
    if prefix.is_empty() { name } else { format!("{prefix}/{name}") }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// S3 user metadata travels in HTTP headers: keep ASCII, percent-encode the rest.
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Sink for S3Sink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits { records: 16, bytes: 64 * 1024 * 1024 }
    }

    fn deliver<'a>(&'a self, batch: &'a mut [Pending]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let uri_prefix = format!("s3://{}/", self.bucket);
            for p in batch.iter_mut().filter(|p| !p.done) {
                let event = &p.record.event;
                let key = event.snapshot.as_deref().and_then(|s| s.strip_prefix(&uri_prefix));
                let (Some(key), Some(jpeg)) = (key, p.record.snapshot.as_ref()) else {
                    p.done = true;
                    continue;
                };
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(jpeg.clone()))
                    .content_type("image/jpeg")
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .metadata("event-id", header_safe(&event.event_id))
                    .metadata("camera", header_safe(&event.camera))
                    .metadata("type", event.kind.as_str())
                    .metadata("track-id", event.track_id.to_string())
                    .metadata("label", header_safe(&event.label))
                    .metadata("text", header_safe(event.text.as_deref().unwrap_or("")))
                    .send()
                    .await
                    .map_err(|e| remote_error(NAME, "PutObject", e))?;
                p.done = true;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_415), (2025, 11, 23));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn metadata_is_ascii() {
        assert_eq!(header_safe("AB 12"), "AB 12");
        assert_eq!(header_safe("京A%"), "%E4%BA%AC%41%25".replace("%41", "A"));
    }
}
