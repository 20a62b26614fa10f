//! The lease table: one item per camera (partition key `camera`) saying which task analyses it,
//! and one heartbeat item per task (`camera` = `#task:{id}`), so a task without cameras still
//! counts in the fair share.
//!
//! Item: `owner` (S, empty when free), `counter` (N, bumped by every write), `heartbeat` (N, the
//! writer's Unix ms, for people: expiry never compares clocks), `claim` (S, a task below its fair
//! share asking for the camera). Every write is conditional on the counter the writer last saw
//! (and on owning it, to renew or release), so of two tasks racing for one camera exactly one
//! wins. A live lease is never taken from under its owner: a thief only claims it, the owner
//! sees the claim at its next renewal, stops the camera and releases the lease, and the claimant
//! takes it free. So no camera runs in two tasks at once, even while the fleet rebalances. Expiry is judged by each observer on its own clock: a counter that has not moved for a
//! lease duration belongs to a task that stopped renewing (see [`super::observe`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::FleetError;

/// Key prefix of the tasks' heartbeat items.
pub const TASK_PREFIX: &str = "#task:";

/// One item of the table, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The camera id, or `#task:{id}` for a task's heartbeat.
    pub key: String,
    /// The owning task; `None` when free.
    pub owner: Option<String>,
    pub counter: u64,
    /// A task asking for this camera.
    pub claim: Option<String>,
}

impl Lease {
    /// The task a heartbeat item stands for.
    pub fn task(&self) -> Option<&str> {
        self.key.strip_prefix(TASK_PREFIX)
    }
}

/// The lease table, as one task uses it.
pub struct LeaseTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    me: String,
    /// Every call gives up after this: a table that does not answer must not stall the loop
    /// that stops cameras before their leases run out.
    call_timeout: Duration,
}

/// The default call timeout (the lease loop sets its renew period).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn now_ms() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()).to_string()
}

impl LeaseTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, me: String) -> Self {
        Self { client, table, me, call_timeout: CALL_TIMEOUT }
    }

    /// Calls give up after `timeout`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// `call`, or a timeout error naming `operation`.
    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, FleetError> {
        tokio::time::timeout(self.call_timeout, call).await.map_err(|_| FleetError::Timeout {
            table: self.table.clone(),
            operation,
            after: self.call_timeout,
        })
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, operation: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> FleetError {
        FleetError::Table { table: self.table.clone(), operation, source: Box::new(e) }
    }

    /// Every item (a small table: one per camera and per task), consistently read.
    pub async fn scan(&self) -> Result<Vec<Lease>, FleetError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let request =
                self.client.scan().table_name(&self.table).consistent_read(true).set_exclusive_start_key(start.take());
            let page = self.timed("Scan", request.send()).await?.map_err(|e| self.error("Scan", e))?;
            out.extend(page.items().iter().filter_map(parse));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// Takes `key` for this task: a key never written (`seen` = `None`), or the item as last seen
    /// (free, expired, or another task's, to steal). `None` when another writer got there first.
    pub async fn take(&self, key: &str, seen: Option<&Lease>) -> Result<Option<Lease>, FleetError> {
        let counter = seen.map_or(0, |l| l.counter) + 1;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("camera", AttributeValue::S(key.to_owned()))
            .item("owner", AttributeValue::S(self.me.clone()))
            .item("counter", AttributeValue::N(counter.to_string()))
            .item("heartbeat", AttributeValue::N(now_ms()));
        let request = match seen {
            None => request.condition_expression("attribute_not_exists(camera)"),
            Some(l) => request
                .condition_expression("#c = :seen")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":seen", AttributeValue::N(l.counter.to_string())),
        };
        match self.timed("PutItem", request.send()).await? {
            Ok(_) => Ok(Some(Lease { key: key.to_owned(), owner: Some(self.me.clone()), counter, claim: None })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    /// Renews a lease this task holds; `None` when it was taken meanwhile (the camera is lost).
    /// The renewed lease carries any claim another task made on it.
    pub async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, FleetError> {
        Ok(self
            .bump(lease, "SET #c = #c + :one, heartbeat = :now", "UpdateItem (renew)")
            .await?
            .and_then(|item| parse(&item)))
    }

    /// Gives a lease up (drain, a claim, over the limit); `false` when it was no longer ours.
    pub async fn release(&self, lease: &Lease) -> Result<bool, FleetError> {
        Ok(self
            .bump(lease, "SET #c = #c + :one, heartbeat = :now, #o = :free", "UpdateItem (release)")
            .await?
            .is_some())
    }

    /// Asks the owner of `seen` to hand the camera over (it does at its next renewal); `false`
    /// when the lease moved meanwhile. The counter is left alone: the owner's renewal still
    /// succeeds and reads the claim.
    pub async fn claim(&self, seen: &Lease) -> Result<bool, FleetError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("camera", AttributeValue::S(seen.key.clone()))
            .update_expression("SET #cl = :me")
            .condition_expression("#c = :seen AND #o <> :me")
            .expression_attribute_names("#cl", "claim")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.me.clone()))
            .expression_attribute_values(":seen", AttributeValue::N(seen.counter.to_string()))
            .send();
        match self.timed("UpdateItem (claim)", result).await? {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.error("UpdateItem (claim)", e)),
        }
    }

    /// A conditional update of a lease this task holds at `lease.counter`; the item after it,
    /// or `None` when the lease was no longer ours.
    async fn bump(
        &self,
        lease: &Lease,
        update: &str,
        operation: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, FleetError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("camera", AttributeValue::S(lease.key.clone()))
            .update_expression(update)
            .condition_expression("#o = :me AND #c = :seen")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":me", AttributeValue::S(self.me.clone()))
            .expression_attribute_values(":seen", AttributeValue::N(lease.counter.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if update.contains(":free") {
            request = request.expression_attribute_values(":free", AttributeValue::S(String::new()));
        }
        match self.timed(operation, request.send()).await? {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(self.error(operation, e)),
        }
    }

    /// Bumps this task's heartbeat item (only this task writes it).
    pub async fn heartbeat(&self) -> Result<(), FleetError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("camera", AttributeValue::S(format!("{TASK_PREFIX}{}", self.me)))
            .update_expression("SET #o = :me, heartbeat = :now ADD #c :one")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":me", AttributeValue::S(self.me.clone()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms()))
            .send();
        self.timed("UpdateItem (heartbeat)", request).await?.map_err(|e| self.error("UpdateItem (heartbeat)", e))?;
        Ok(())
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let key = item.get("camera")?.as_s().ok()?.clone();
    let owner = item.get("owner").and_then(|v| v.as_s().ok()).filter(|o| !o.is_empty()).cloned();
    let counter = item.get("counter").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
    let claim = item.get("claim").and_then(|v| v.as_s().ok()).filter(|c| !c.is_empty()).cloned();
    Some(Lease { key, owner, counter, claim })
}
