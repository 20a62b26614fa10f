//! `fleet:` (optional): several tasks sharing the cameras through leases in DynamoDB, the way the
//! Kinesis Client Library shares shards. Without it every camera runs in the one task.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the tasks of a fleet share the cameras.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct FleetConfig {
    /// DynamoDB table of leases (partition key `camera`, a string).
    pub lease_table: String,
    /// A lease not renewed for this long (by the observer's clock) may be taken by another task.
    /// Owners renew every third of it and stop a camera they could not renew before it runs out.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// At most this many cameras per task (unset: no limit beyond the fair share).
    pub max_cameras_per_task: Option<usize>,
    /// This task's name in the lease table (unset: the ECS task ARN from the container metadata
    /// endpoint, else `{hostname}-{pid}`).
    pub task_id: Option<String>,
    /// CloudWatch namespace of the scaling signal (Embedded Metric Format on stdout).
    pub metrics_namespace: String,
    /// The `ServiceName` dimension of the scaling signal: the ECS service's name.
    pub service_name: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            lease_table: String::new(),
            lease_duration: Duration::from_secs(20),
            max_cameras_per_task: None,
            task_id: None,
            metrics_namespace: "KvsInfer".into(),
            service_name: "kvs-infer".into(),
        }
    }
}
