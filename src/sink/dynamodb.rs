//! DynamoDB sink: one item per event in `events_table` (key `event_id`, expiring through the TTL
//! attribute `expires_at`), and one item per camera in `state_table` (key `camera`) holding its
//! latest event. The state write is conditional on `event_time_ms`, so a redelivered or
//! out-of-order older event never overwrites a newer state (an equal time rewrites the same
//! content: redelivery stays idempotent).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use std::sync::Arc;

use super::registry::{self, BuildContext, SinkFactory};
use super::{BatchLimits, BoxFuture, Pending, Sink, SinkError, remote_error};
use crate::config::DynamoDbSinkConfig;
use crate::media::KvsTimestamp;
use crate::pipeline::events::Event;

const NAME: &str = "dynamodb";

/// The TTL attribute of `events_table` (epoch seconds). Enable TTL on it in the table's settings.
pub const TTL_ATTRIBUTE: &str = "expires_at";

impl SinkFactory for DynamoDbSinkConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, SinkError> {
        let client = crate::aws::dynamodb_client(registry::sdk(ctx, NAME)?);
        Ok(Arc::new(DynamoDbSink::new(client, self.clone())))
    }
}

pub struct DynamoDbSink {
    client: aws_sdk_dynamodb::Client,
    cfg: DynamoDbSinkConfig,
}

impl DynamoDbSink {
    pub fn new(client: aws_sdk_dynamodb::Client, cfg: DynamoDbSinkConfig) -> Self {
        Self { client, cfg }
    }

    async fn put(&self, event: &Event) -> Result<(), SinkError> {
        let json = serde_json::to_string(event).unwrap_or_default();
        let time_ms = event_time_ms(event);
        let mut item = attributes(event, &json, time_ms);
        let emitted = event.emitted_at.unwrap_or(0.0) as i64;
        let expires = emitted + i64::from(self.cfg.ttl_days) * 86_400;
        item.insert(TTL_ATTRIBUTE.to_owned(), AttributeValue::N(expires.to_string()));
        self.client
            .put_item()
            .table_name(&self.cfg.events_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| remote_error(NAME, "PutItem(events)", e))?;

        let state = attributes(event, &json, time_ms);
        let written = self
            .client
            .put_item()
            .table_name(&self.cfg.state_table)
            .set_item(Some(state))
            .condition_expression("attribute_not_exists(camera) OR event_time_ms <= :t")
            .expression_attribute_values(":t", AttributeValue::N(time_ms.to_string()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                tracing::debug!(event_id = event.event_id, "state is newer than this event; not overwritten");
                Ok(())
            }
            Err(e) => Err(remote_error(NAME, "PutItem(state)", e)),
        }
    }
}

/// The event's position in time: its fragment's producer timestamp when it has one (absolute
/// camera time), else when it was emitted.
pub fn event_time_ms(event: &Event) -> i64 {
    event
        .producer_timestamp
        .as_deref()
        .and_then(KvsTimestamp::parse)
        .map(|t| t.millis)
        .unwrap_or_else(|| (event.emitted_at.unwrap_or(0.0) * 1000.0) as i64)
}

fn attributes(event: &Event, json: &str, time_ms: i64) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: String| AttributeValue::N(v);
    let mut item = HashMap::from([
        ("camera".to_owned(), s(&event.camera)),
        ("event_id".to_owned(), s(&event.event_id)),
        ("type".to_owned(), s(event.kind.as_str())),
        ("track_id".to_owned(), n(event.track_id.to_string())),
        ("label".to_owned(), s(&event.label)),
        ("score".to_owned(), n(format!("{}", event.score))),
        ("zone".to_owned(), s(&event.zone)),
        ("event_time_ms".to_owned(), n(time_ms.to_string())),
        ("event".to_owned(), s(json)),
    ]);
    let optional = [
        ("text", event.text.as_deref()),
        ("snapshot", event.snapshot.as_deref()),
        ("fragment_number", event.fragment_number.as_deref()),
    ];
    for (k, v) in optional {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            item.insert(k.to_owned(), s(v));
        }
    }
    if let Some(t) = event.emitted_at {
        item.insert("emitted_at".to_owned(), n(format!("{t:.3}")));
    }
    item
}

impl Sink for DynamoDbSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits { records: 25, bytes: 16 * 1024 * 1024 }
    }

    fn deliver<'a>(&'a self, batch: &'a mut [Pending]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for p in batch.iter_mut().filter(|p| !p.done) {
                self.put(&p.record.event).await?;
                p.done = true;
            }
            Ok(())
        })
    }
}
