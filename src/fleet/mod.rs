//! A fleet of tasks sharing the cameras through leases in DynamoDB (`fleet:` in the config), the
//! way the Kinesis Client Library shares shards.
//!
//! | module | owns |
//! |---|---|
//! | [`lease`] | the lease table: conditional take / renew / release, task heartbeats |
//! | [`balance`] | expiry by this task's clock, the fair share, which leases to take |
//! | [`task_id`] | this task's name: configured, the ECS task ARN, or host and pid |
//!
//! Status (issue 16, in progress): the table operations, the observer and the balancing plan
//! are built and tested; the lease loop that starts and stops cameras, checkpoints fenced by the
//! lease, `/healthz` and metrics, and the scaling signal are not wired into `serve` yet.

pub mod balance;
pub mod lease;
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
}
