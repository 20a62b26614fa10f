//! EventBridge events from ECS, as types: "ECS Task State Change" and "ECS Container Instance
//! State Change" (the shapes AWS documents in the ECS developer guide, "Amazon ECS events").
//! Anything else, or a shape that does not parse, is an [`EventError`] that the function logs and
//! acknowledges: a poison event must never be retried forever.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not an EventBridge event: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("event {id}: source `{source_name}` is not aws.ecs")]
    Source { id: String, source_name: String },
    #[error("event {id}: detail-type `{detail_type}` is not handled")]
    DetailType { id: String, detail_type: String },
    #[error("event {id}: `{detail_type}` detail does not parse: {error}")]
    Detail {
        id: String,
        detail_type: String,
        #[source]
        error: serde_json::Error,
    },
    #[error("event {id}: `{field}` is missing")]
    Missing { id: String, field: &'static str },
}

/// The EventBridge envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    #[serde(default)]
    time: Option<String>,
    detail: serde_json::Value,
}

/// One event the function acts on.
#[derive(Debug, Clone)]
pub enum Input {
    Task(TaskChange),
    Instance(InstanceChange),
}

#[derive(Debug, Clone)]
pub struct Meta {
    /// EventBridge's event id (the same for a redelivered event).
    pub id: String,
    /// Event time, seconds since the epoch (the receive time when the envelope has none).
    pub time: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub cluster_arn: String,
    pub task_arn: String,
    #[serde(default)]
    pub task_definition_arn: String,
    #[serde(default)]
    pub container_instance_arn: Option<String>,
    pub last_status: String,
    #[serde(default)]
    pub desired_status: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub launch_type: Option<String>,
    #[serde(default)]
    pub containers: Vec<ContainerDetail>,
    #[serde(default)]
    pub overrides: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDetail {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub last_status: Option<String>,
    /// GPUs the agent assigned to the container: present when the task asked for GPUs.
    #[serde(default)]
    pub gpu_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    pub cluster_arn: String,
    pub container_instance_arn: String,
    #[serde(default)]
    pub ec2_instance_id: Option<String>,
    pub status: String,
    pub agent_connected: bool,
    /// Increases with every change of this container instance: orders redelivered events.
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TaskChange {
    pub meta: Meta,
    pub detail: TaskDetail,
}

#[derive(Debug, Clone)]
pub struct InstanceChange {
    pub meta: Meta,
    pub detail: InstanceDetail,
}

impl Input {
    pub fn meta(&self) -> &Meta {
        match self {
            Input::Task(t) => &t.meta,
            Input::Instance(i) => &i.meta,
        }
    }

    pub fn cluster_arn(&self) -> &str {
        match self {
            Input::Task(t) => &t.detail.cluster_arn,
            Input::Instance(i) => &i.detail.cluster_arn,
        }
    }
}

impl TaskDetail {
    /// Whether the event itself shows a GPU request: GPU ids on a container, or a GPU
    /// resource requirement in the overrides. (Without either, the task definition decides.)
    pub fn shows_gpu_request(&self) -> bool {
        self.containers.iter().any(|c| !c.gpu_ids.is_empty())
            || self.overrides.as_ref().is_some_and(|o| {
                o.get("containerOverrides").and_then(|c| c.as_array()).is_some_and(|containers| {
                    containers.iter().any(|c| {
                        c.get("resourceRequirements").and_then(|r| r.as_array()).is_some_and(|reqs| {
                            reqs.iter().any(|r| r.get("type").and_then(|t| t.as_str()) == Some("GPU"))
                        })
                    })
                })
            })
    }

    /// The job a task belongs to: its task group (`service:NAME`, or `family:NAME` by default).
    pub fn job_id(&self) -> String {
        match &self.group {
            Some(g) if !g.is_empty() => g.clone(),
            _ => format!("family:{}", family_of(&self.task_definition_arn)),
        }
    }

    /// Whether ECS's service scheduler owns the task (it replaces it by itself).
    pub fn is_service_task(&self) -> bool {
        self.group.as_deref().is_some_and(|g| g.starts_with("service:"))
            || self.started_by.as_deref().is_some_and(|s| s.starts_with("ecs-svc/"))
    }
}

/// The last part of an ARN's resource (`.../cluster/gpu` → `gpu`); a bare name as it is.
pub fn resource_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// `family` from a task definition ARN, `family:revision` or a bare family.
pub fn family_of(task_definition: &str) -> &str {
    let tail = resource_id(task_definition);
    tail.split(':').next().unwrap_or(tail)
}

/// Parses an invocation payload. `received` is used when the envelope has no `time`.
pub fn parse(raw: &serde_json::Value, received: i64) -> Result<Input, EventError> {
    let envelope = Envelope::deserialize(raw).map_err(EventError::Envelope)?;
    let id = envelope.id.clone();
    if envelope.source != "aws.ecs" {
        return Err(EventError::Source { id, source_name: envelope.source });
    }
    let time = envelope.time.as_deref().and_then(parse_time).unwrap_or(received);
    let meta = Meta { id: id.clone(), time };
    let detail_err = |error| EventError::Detail { id: id.clone(), detail_type: envelope.detail_type.clone(), error };
    match envelope.detail_type.as_str() {
        TASK_STATE_CHANGE => {
            let detail: TaskDetail = serde_json::from_value(envelope.detail).map_err(detail_err)?;
            if detail.task_arn.is_empty() {
                return Err(EventError::Missing { id, field: "detail.taskArn" });
            }
            Ok(Input::Task(TaskChange { meta, detail }))
        }
        INSTANCE_STATE_CHANGE => {
            let detail: InstanceDetail = serde_json::from_value(envelope.detail).map_err(detail_err)?;
            if detail.container_instance_arn.is_empty() {
                return Err(EventError::Missing { id, field: "detail.containerInstanceArn" });
            }
            Ok(Input::Instance(InstanceChange { meta, detail }))
        }
        _ => Err(EventError::DetailType { id, detail_type: envelope.detail_type }),
    }
}

/// RFC 3339 → seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Seconds since the epoch → RFC 3339 (UTC, whole seconds).
pub fn format_time(secs: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_events_are_errors_not_panics() {
        let cases = [
            json!(null),
            json!("ECS Task State Change"),
            json!([1, 2]),
            json!({}),
            json!({"detail-type": TASK_STATE_CHANGE, "source": "aws.ec2", "detail": {}}),
            json!({"detail-type": "Something Else", "source": "aws.ecs", "detail": {}}),
            json!({"detail-type": TASK_STATE_CHANGE, "source": "aws.ecs", "detail": {"taskArn": 5}}),
            json!({"detail-type": TASK_STATE_CHANGE, "source": "aws.ecs", "detail": {"clusterArn": "c", "taskArn": "", "lastStatus": "STOPPED"}}),
            json!({"detail-type": INSTANCE_STATE_CHANGE, "source": "aws.ecs", "detail": {"clusterArn": "c"}}),
        ];
        for raw in cases {
            assert!(parse(&raw, 0).is_err(), "{raw} parsed");
        }
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-11-23T18:00:00Z").expect("time");
        assert_eq!(format_time(t), "2026-11-23T18:00:00Z");
        assert_eq!(parse_time("2026-11-23T18:00:00.123Z"), Some(t));
    }

    #[test]
    fn families_and_jobs() {
        assert_eq!(family_of("arn:aws:ecs:us-east-1:1:task-definition/kvs-infer-gpu:7"), "kvs-infer-gpu");
        assert_eq!(family_of("dcgm-diag:2"), "dcgm-diag");
        assert_eq!(family_of("dcgm-diag"), "dcgm-diag");
    }
}
