//! Per-stream checkpoints in DynamoDB: the last fragment whose frames were all analysed.
//!
//! Table layout (partition key `stream`, a string: the stream name or ARN as configured):
//! `fragment_number` (S), `fragment_order` (S, the number zero-padded to 64 digits so string
//! order is numeric order; fragment numbers are wider than DynamoDB's 38-digit numbers),
//! `server_timestamp` / `producer_timestamp` (S, epoch seconds with milliseconds),
//! `updated_at` (N, epoch seconds) and `camera` (S). A write is conditional on the stored
//! `fragment_order` being older, so a slower task (or a stale retry) never moves it backwards.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::SourceError;
use crate::config::CameraId;
use crate::media::{FragmentMeta, FragmentNumber};

/// Width of `fragment_order`: KVS fragment numbers are about 47 digits.
const ORDER_WIDTH: usize = 64;

/// What a checkpoint write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Advanced,
    /// The table already holds this fragment or a newer one.
    Stale,
}

pub struct Checkpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
    stream: String,
    camera: CameraId,
}

impl Checkpoints {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, stream: String, camera: CameraId) -> Self {
        Self { client, table, stream, camera }
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
    pub async fn read(&self) -> Result<Option<FragmentNumber>, SourceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("stream", AttributeValue::S(self.stream.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out
            .item()
            .and_then(|item| item.get("fragment_number"))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| FragmentNumber::parse(s)))
    }

    /// Records `meta` as processed unless the table already has it or a newer fragment.
    pub async fn write(&self, meta: &FragmentMeta) -> Result<Written, SourceError> {
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
            ("updated_at".to_owned(), AttributeValue::N(now.to_string())),
        ]);
        if let Some(t) = meta.server_timestamp {
            item.insert("server_timestamp".to_owned(), AttributeValue::S(t.to_string()));
        }
        if let Some(t) = meta.producer_timestamp {
            item.insert("producer_timestamp".to_owned(), AttributeValue::S(t.to_string()));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#s) OR fragment_order < :o")
            .expression_attribute_names("#s", "stream")
            .expression_attribute_values(":o", AttributeValue::S(order))
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
}
