//! The three DynamoDB tables and their conditional writes.
//!
//! | table | key | holds |
//! |---|---|---|
//! | node | `container_instance_arn` | the instance's state machine ([`Node`]), versioned |
//! | task | `task_arn` | each GPU-suspect stopped task: why, its job, whether it was restarted |
//! | job | `job_id` | a job's (task group's) GPU incidents in the window and its notification |
//!
//! Every write that decides something is conditional: a node on its `version`, a task record on
//! not existing yet, a job on its `version`; a lost condition is [`StoreError::Conflict`] and the
//! caller re-reads and decides again.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::node::{Action, Node, NodeState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{table}: the item changed under us")]
    Conflict { table: String },
    #[error("{table}: {op} failed")]
    Aws {
        table: String,
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{table}: item {key} is malformed: {what}")]
    Malformed { table: String, key: String, what: String },
}

type Item = HashMap<String, AttributeValue>;

/// Where a GPU-suspect stopped task stands (task table `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Recorded; the steps after it have not all been taken (a retry goes on from here).
    Received,
    /// Part of its instance's recovery.
    Attached,
    /// Its job is over the per-job limit: left to ECS.
    JobLimit,
    Restarted,
    LeftToService,
    /// ECS refused the restart (definition gone, no room): not retried.
    RestartFailed,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Received,
        TaskState::Attached,
        TaskState::JobLimit,
        TaskState::Restarted,
        TaskState::LeftToService,
        TaskState::RestartFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Received => "RECEIVED",
            TaskState::Attached => "ATTACHED",
            TaskState::JobLimit => "JOB_LIMIT",
            TaskState::Restarted => "RESTARTED",
            TaskState::LeftToService => "LEFT_TO_SERVICE",
            TaskState::RestartFailed => "RESTART_FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the task's restart has been dealt with, one way or another.
    pub fn restart_settled(self) -> bool {
        matches!(self, TaskState::Restarted | TaskState::LeftToService | TaskState::RestartFailed)
    }
}

/// One GPU-suspect stopped task (task table).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub task_arn: String,
    pub container_instance_arn: String,
    pub job_id: String,
    pub task_definition_arn: String,
    pub group: Option<String>,
    pub service_task: bool,
    pub reason: String,
    pub received_at: i64,
    /// RECEIVED → ATTACHED | JOB_LIMIT; ATTACHED → RESTARTED | LEFT_TO_SERVICE | RESTART_FAILED.
    pub state: TaskState,
    pub restarted_as: Option<String>,
}

/// A job's GPU incidents (job table).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobRecord {
    pub job_id: String,
    pub version: u64,
    /// Container instance id → time of the job's last GPU failure there.
    pub incidents: HashMap<String, i64>,
    pub notified_at: Option<i64>,
}

#[derive(Clone)]
pub struct Store {
    ddb: Client,
    task_table: String,
    job_table: String,
    node_table: String,
}

fn aws_err<E, R>(table: &str, op: &'static str) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let table = table.to_string();
    move |e| StoreError::Aws { table, op, source: Box::new(e) }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn get_strings(item: &Item, k: &str) -> Vec<String> {
    item.get(k)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

fn get_numbers(item: &Item, k: &str) -> Vec<i64> {
    item.get(k)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_n().ok().and_then(|n| n.parse().ok())).collect())
        .unwrap_or_default()
}

fn put_opt(item: &mut Item, k: &str, v: Option<AttributeValue>) {
    if let Some(v) = v {
        item.insert(k.to_string(), v);
    }
}

impl Store {
    pub fn new(ddb: Client, task_table: &str, job_table: &str, node_table: &str) -> Self {
        Self { ddb, task_table: task_table.into(), job_table: job_table.into(), node_table: node_table.into() }
    }

    /// A strongly consistent read of one item.
    async fn get(&self, table: &str, key: &str, value: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(table)
            .key(key, s(value))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws_err(table, "GetItem"))?;
        Ok(out.item)
    }

    /// Writes `item` if the stored one still has version `expected` (0: it must not exist yet).
    async fn put_versioned(&self, table: &str, key: &str, item: Item, expected: u64) -> Result<(), StoreError> {
        let mut req = self.ddb.put_item().table_name(table).set_item(Some(item));
        req = if expected == 0 {
            req.condition_expression(format!("attribute_not_exists({key})"))
        } else {
            req.condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", n(expected))
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Conflict { table: table.to_string() }),
            Err(e) => Err(aws_err(table, "PutItem")(e)),
        }
    }

    // ---- node table ----

    pub async fn load_node(&self, container_instance_arn: &str) -> Result<Node, StoreError> {
        match self.get(&self.node_table, "container_instance_arn", container_instance_arn).await? {
            None => Ok(Node::new(container_instance_arn)),
            Some(item) => self.node_from(&item, container_instance_arn),
        }
    }

    fn node_from(&self, item: &Item, key: &str) -> Result<Node, StoreError> {
        let malformed =
            |what: String| StoreError::Malformed { table: self.node_table.clone(), key: key.to_string(), what };
        let state = get_s(item, "state")
            .and_then(|s| NodeState::parse(&s))
            .ok_or_else(|| malformed("no valid `state`".into()))?;
        let todo: Vec<Action> = match get_s(item, "todo") {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| malformed(format!("`todo`: {e}")))?,
        };
        Ok(Node {
            container_instance_arn: key.to_string(),
            ec2_instance_id: get_s(item, "ec2_instance_id"),
            state,
            version: get_n(item, "version").unwrap_or(0).max(0) as u64,
            attempts: get_numbers(item, "attempts"),
            affected: get_strings(item, "affected"),
            diag_token: get_s(item, "diag_token"),
            gpu_fault_at: get_n(item, "gpu_fault_at"),
            reboot_at: get_n(item, "reboot_at"),
            disconnected_since_reboot: item
                .get("disconnected_since_reboot")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            quarantined_at: get_n(item, "quarantined_at"),
            last_event_version: get_n(item, "last_event_version"),
            todo,
            owner: get_s(item, "owner"),
            lease_until: get_n(item, "lease_until"),
            history: get_strings(item, "history"),
            updated_at: get_n(item, "updated_at").unwrap_or(0),
        })
    }

    fn node_item(node: &Node) -> Item {
        let mut item = Item::new();
        item.insert("container_instance_arn".into(), s(&node.container_instance_arn));
        item.insert("state".into(), s(node.state.as_str()));
        item.insert("version".into(), n(node.version));
        item.insert("attempts".into(), AttributeValue::L(node.attempts.iter().map(n).collect()));
        item.insert("affected".into(), AttributeValue::L(node.affected.iter().map(s).collect()));
        item.insert("history".into(), AttributeValue::L(node.history.iter().map(s).collect()));
        item.insert("disconnected_since_reboot".into(), AttributeValue::Bool(node.disconnected_since_reboot));
        item.insert("updated_at".into(), n(node.updated_at));
        // Serialising a Vec of plain enums cannot fail; an empty list is the safe fallback.
        item.insert("todo".into(), s(serde_json::to_string(&node.todo).unwrap_or_else(|_| "[]".into())));
        put_opt(&mut item, "ec2_instance_id", node.ec2_instance_id.as_ref().map(s));
        put_opt(&mut item, "diag_token", node.diag_token.as_ref().map(s));
        put_opt(&mut item, "gpu_fault_at", node.gpu_fault_at.map(n));
        put_opt(&mut item, "reboot_at", node.reboot_at.map(n));
        put_opt(&mut item, "quarantined_at", node.quarantined_at.map(n));
        put_opt(&mut item, "last_event_version", node.last_event_version.map(n));
        put_opt(&mut item, "owner", node.owner.as_ref().map(s));
        put_opt(&mut item, "lease_until", node.lease_until.map(n));
        item
    }

    /// Writes `node` if the stored one still has version `expected` (0: does not exist yet).
    pub async fn save_node(&self, node: &Node, expected: u64) -> Result<(), StoreError> {
        self.put_versioned(&self.node_table, "container_instance_arn", Self::node_item(node), expected).await
    }

    // ---- task table ----

    /// Records a task once. `Ok(None)`: recorded now; `Ok(Some(existing))`: seen before.
    pub async fn claim_task(&self, rec: &TaskRecord) -> Result<Option<TaskRecord>, StoreError> {
        let mut item = Item::new();
        item.insert("task_arn".into(), s(&rec.task_arn));
        item.insert("container_instance_arn".into(), s(&rec.container_instance_arn));
        item.insert("job_id".into(), s(&rec.job_id));
        item.insert("task_definition_arn".into(), s(&rec.task_definition_arn));
        item.insert("service_task".into(), AttributeValue::Bool(rec.service_task));
        item.insert("reason".into(), s(&rec.reason));
        item.insert("received_at".into(), n(rec.received_at));
        item.insert("state".into(), s(rec.state.as_str()));
        put_opt(&mut item, "group", rec.group.as_ref().map(s));
        let result = self
            .ddb
            .put_item()
            .table_name(&self.task_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(task_arn)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if is_condition_failure(&e) => self.load_task(&rec.task_arn).await,
            Err(e) => Err(aws_err(&self.task_table, "PutItem")(e)),
        }
    }

    pub async fn load_task(&self, task_arn: &str) -> Result<Option<TaskRecord>, StoreError> {
        let Some(item) = self.get(&self.task_table, "task_arn", task_arn).await? else {
            return Ok(None);
        };
        let state =
            get_s(&item, "state").and_then(|st| TaskState::parse(&st)).ok_or_else(|| StoreError::Malformed {
                table: self.task_table.clone(),
                key: task_arn.to_string(),
                what: "no valid `state`".into(),
            })?;
        Ok(Some(TaskRecord {
            task_arn: task_arn.to_string(),
            container_instance_arn: get_s(&item, "container_instance_arn").unwrap_or_default(),
            job_id: get_s(&item, "job_id").unwrap_or_default(),
            task_definition_arn: get_s(&item, "task_definition_arn").unwrap_or_default(),
            group: get_s(&item, "group"),
            service_task: item.get("service_task").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
            reason: get_s(&item, "reason").unwrap_or_default(),
            received_at: get_n(&item, "received_at").unwrap_or(0),
            state,
            restarted_as: get_s(&item, "restarted_as"),
        }))
    }

    /// Moves a task record to `state` (with the restarted task's ARN when there is one); with
    /// `from`, only if it is still there (`Ok(false)` when it is not).
    pub async fn set_task_state(
        &self,
        task_arn: &str,
        state: TaskState,
        restarted_as: Option<&str>,
        from: Option<TaskState>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.task_table)
            .key("task_arn", s(task_arn))
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", s(state.as_str()));
        req = match restarted_as {
            Some(arn) => {
                req.update_expression("SET #s = :s, restarted_as = :r").expression_attribute_values(":r", s(arn))
            }
            None => req.update_expression("SET #s = :s"),
        };
        if let Some(from) = from {
            req = req.condition_expression("#s = :from").expression_attribute_values(":from", s(from.as_str()));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if from.is_some() && is_condition_failure(&e) => Ok(false),
            Err(e) => Err(aws_err(&self.task_table, "UpdateItem")(e)),
        }
    }

    // ---- job table ----

    pub async fn load_job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let Some(item) = self.get(&self.job_table, "job_id", job_id).await? else {
            return Ok(JobRecord { job_id: job_id.to_string(), ..JobRecord::default() });
        };
        let incidents = item
            .get("incidents")
            .and_then(|v| v.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?))).collect())
            .unwrap_or_default();
        Ok(JobRecord {
            job_id: job_id.to_string(),
            version: get_n(&item, "version").unwrap_or(0).max(0) as u64,
            incidents,
            notified_at: get_n(&item, "notified_at"),
        })
    }

    /// Writes `job` if the stored one still has version `expected` (0: does not exist yet).
    pub async fn save_job(&self, job: &JobRecord, expected: u64) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert("job_id".into(), s(&job.job_id));
        item.insert("version".into(), n(job.version));
        item.insert(
            "incidents".into(),
            AttributeValue::M(job.incidents.iter().map(|(k, v)| (k.clone(), n(v))).collect()),
        );
        put_opt(&mut item, "notified_at", job.notified_at.map(n));
        self.put_versioned(&self.job_table, "job_id", item, expected).await
    }
}
