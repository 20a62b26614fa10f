//! A fleet of tasks sharing the cameras through leases in DynamoDB (`fleet:` in the config), the
//! way the Kinesis Client Library shares shards.
//!
//! | module | owns |
//! |---|---|
//! | [`lease`] | the lease table: conditional take / renew / release, task heartbeats |
//! | [`balance`] | expiry by this task's clock, the fair share, which leases to take |
//! | [`manager`] | the lease loop: heartbeat, renew, take, start and stop cameras, release at drain |
//! | [`emf`] | the scaling signal: cameras owned per task, as CloudWatch Embedded Metric Format |
//! | [`task_id`] | this task's name: configured, the ECS task ARN, or host and pid |
//!
//! Checkpoints are fenced by the lease (`source::checkpoint::Fence`): a task that lost a camera
//! cannot move its checkpoint.

pub mod balance;
pub mod emf;
pub mod lease;
pub mod manager;
pub mod task_id;

/// The fleet layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("lease table {table}: {operation} failed")]
    Table {
        table: String,
        operation: &'static str,
        #[source]
        source: kvs_infer_common::BoxError,
    },
    #[error("lease table {table}: {operation} did not answer within {after:?}")]
    Timeout { table: String, operation: &'static str, after: std::time::Duration },
}
