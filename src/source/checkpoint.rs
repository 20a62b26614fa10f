//! Per-stream checkpoints in DynamoDB: the last fragment whose frames were all analysed.
//!
//! Table layout (partition key `stream`, a string: the stream name or ARN as configured):
//! `fragment_number` (S), `fragment_order` (S, the number zero-padded to 64 digits so string
//! order is numeric order; fragment numbers are wider than DynamoDB's 38-digit numbers),
//! `server_timestamp` / `producer_timestamp` (S, epoch seconds with milliseconds),
//! `revision` (N: 0 for the state after the fragment's last frame, one more for each later change,
//! such as tracks ended on an idle stream), `updated_at` (N, epoch seconds), `camera` (S) and
//! `analysis` (S: the pipeline's `CameraCheckpoint` as JSON, versioned: tracks, motion gate,
//! pass; opaque to this layer). A write is conditional on the stored position (`fragment_order`,
//! then `revision`) being older, so a slower task (or a stale retry) never moves it backwards.
//!
//! The writer only ever stores a fragment whose events every sink has delivered (see
//! `media::progress`): a checkpoint never passes an event that only a lost disk held.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::SourceError;
use crate::config::CameraId;
use crate::media::kvs::KvsTimestamp;
use crate::media::progress::Processed;
use crate::media::{FragmentMeta, FragmentNumber};

/// Width of `fragment_order`: KVS fragment numbers are about 47 digits.
const ORDER_WIDTH: usize = 64;

/// The condition of every checkpoint write, plain or fenced: the stored fragment only moves
/// forward (`:o` is the new `fragment_order`).
const NEWER_ONLY: &str = "attribute_not_exists(#s) OR fragment_order < :o \
     OR (fragment_order = :o AND (attribute_not_exists(revision) OR revision < :r))";

/// Analysis states larger than this are not stored (DynamoDB items hold 400 KB): a restart then
/// starts its tracks afresh.
const MAX_ANALYSIS_BYTES: usize = 256 * 1024;

/// What a checkpoint write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Advanced,
    /// The table already holds this fragment or a newer one.
    Stale,
    /// This task no longer holds the camera's lease: the write was refused.
    Fenced,
}

impl Written {
    /// The label of `kvs_checkpoints_total{result}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Written::Advanced => "ok",
            Written::Stale => "stale",
            Written::Fenced => "fenced",
        }
    }
}

/// Fleet mode: a checkpoint write is one transaction with a check that `owner` still holds the
/// camera's item in the lease table, so a task that lost a camera can never move its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease_table: String,
    /// The camera's key in the lease table.
    pub camera: String,
    pub owner: String,
}

/// A stored checkpoint: resume after `fragment`, with the analysis state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub fragment: FragmentNumber,
    /// Changes of the analysis state after the fragment's last frame.
    pub revision: u32,
    pub server_timestamp: Option<KvsTimestamp>,
    pub producer_timestamp: Option<KvsTimestamp>,
    pub analysis: Option<String>,
}

impl Checkpoint {
    /// The fragment as the progress ledger knows fragments.
    pub fn meta(&self) -> FragmentMeta {
        FragmentMeta {
            fragment_number: Some(self.fragment.clone()),
            server_timestamp: self.server_timestamp,
            producer_timestamp: self.producer_timestamp,
            ..FragmentMeta::default()
        }
    }
}

pub struct Checkpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
    stream: String,
    camera: CameraId,
    fence: Option<Fence>,
}

impl Checkpoints {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, stream: String, camera: CameraId) -> Self {
        Self { client, table, stream, camera, fence: None }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes only while `fence` holds (fleet mode).
    pub fn fenced(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    fn error(&self, operation: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError::Checkpoint {
            table: self.table.clone(),
            stream: self.stream.clone(),
            operation,
            source: Box::new(source),
        }
    }

    /// The stored checkpoint, if any.
    pub async fn read(&self) -> Result<Option<Checkpoint>, SourceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("stream", AttributeValue::S(self.stream.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        let Some(item) = out.item() else { return Ok(None) };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
        let revision = item.get("revision").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
        Ok(text("fragment_number").and_then(|s| FragmentNumber::parse(s)).map(|fragment| Checkpoint {
            fragment,
            revision,
            server_timestamp: text("server_timestamp").and_then(|t| KvsTimestamp::parse(t)),
            producer_timestamp: text("producer_timestamp").and_then(|t| KvsTimestamp::parse(t)),
            analysis: text("analysis").cloned(),
        }))
    }

    /// Records a processed fragment unless the table already has it or a newer one.
    pub async fn write(&self, processed: &Processed) -> Result<Written, SourceError> {
        let meta = &processed.fragment;
        let Some(number) = &meta.fragment_number else {
            return Ok(Written::Stale);
        };
        let order = format!("{:0>ORDER_WIDTH$}", number.as_str());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut item = HashMap::from([
            ("stream".to_owned(), AttributeValue::S(self.stream.clone())),
            ("camera".to_owned(), AttributeValue::S(self.camera.0.clone())),
            ("fragment_number".to_owned(), AttributeValue::S(number.to_string())),
            ("fragment_order".to_owned(), AttributeValue::S(order.clone())),
            ("revision".to_owned(), AttributeValue::N(processed.revision.to_string())),
            ("updated_at".to_owned(), AttributeValue::N(now.to_string())),
        ]);
        if let Some(t) = meta.server_timestamp {
            item.insert("server_timestamp".to_owned(), AttributeValue::S(t.to_string()));
        }
        if let Some(t) = meta.producer_timestamp {
            item.insert("producer_timestamp".to_owned(), AttributeValue::S(t.to_string()));
        }
        if let Some(state) = processed.state.as_ref().filter(|s| s.len() <= MAX_ANALYSIS_BYTES) {
            item.insert("analysis".to_owned(), AttributeValue::S(state.to_string()));
        }
        if let Some(fence) = &self.fence {
            return self.write_fenced(item, order, processed.revision, fence).await;
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NEWER_ONLY)
            .expression_attribute_names("#s", "stream")
            .expression_attribute_values(":o", AttributeValue::S(order))
            .expression_attribute_values(":r", AttributeValue::N(processed.revision.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Advanced),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(Written::Stale)
            }
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    /// The checkpoint `Put` and a check that the fence's owner holds the lease, as one
    /// transaction: which condition failed says whether the write was stale or fenced.
    async fn write_fenced(
        &self,
        item: HashMap<String, AttributeValue>,
        order: String,
        revision: u32,
        fence: &Fence,
    ) -> Result<Written, SourceError> {
        use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
        let build = |e: aws_sdk_dynamodb::error::BuildError| self.error("TransactWriteItems", e);
        let check = ConditionCheck::builder()
            .table_name(&fence.lease_table)
            .key("camera", AttributeValue::S(fence.camera.clone()))
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(fence.owner.clone()))
            .build()
            .map_err(build)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NEWER_ONLY)
            .expression_attribute_names("#s", "stream")
            .expression_attribute_values(":o", AttributeValue::S(order))
            .expression_attribute_values(":r", AttributeValue::N(revision.to_string()))
            .build()
            .map_err(build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Advanced),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t)) => {
                    let failed = |i: usize| t.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                    if failed(0) { Ok(Written::Fenced) } else if failed(1) { Ok(Written::Stale) } else { Err(self.error("TransactWriteItems", e)) }
                }
                _ => Err(self.error("TransactWriteItems", e)),
            },
        }
    }
}
