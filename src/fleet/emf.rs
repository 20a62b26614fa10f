//! The load signal ECS target tracking scales on, as CloudWatch Embedded Metric Format: one JSON
//! line on stdout per minute, which the awslogs driver ships and CloudWatch turns into metrics
//! (no PutMetricData calls, no extra SDK, no cost per call). `CamerasOwned` averaged over the
//! service's tasks, against a target of cameras per task, gives `tasks = cameras / target`.
//! The same record carries what the alarms of `ecs/cfn/infra.yaml` watch: `CameraLagMaxSeconds`
//! (the most-behind camera of the task), `OutboxRecords` (events not yet delivered) and
//! `CheckpointLagMaxSeconds` (the oldest video a replacement task would read again: a sink
//! outage holds checkpoints back, and past the stream's retention that video is gone).

use std::time::{SystemTime, UNIX_EPOCH};

/// Metric names, as the scaling policy and the alarms (`ecs/cfn/scaling.yaml`, `ecs/cfn/infra.yaml`) name them.
pub const CAMERAS_OWNED: &str = "CamerasOwned";
pub const LIVE_TASKS: &str = "FleetLiveTasks";
pub const CAMERA_LAG_MAX: &str = "CameraLagMaxSeconds";
pub const OUTBOX_RECORDS: &str = "OutboxRecords";
pub const CHECKPOINT_LAG_MAX: &str = "CheckpointLagMaxSeconds";

/// One EMF record: this task's cameras, the fleet's live tasks and the alarm signals, under
/// `namespace`, with the dimension `ServiceName`.
pub fn record(
    namespace: &str,
    service: &str,
    task: &str,
    (cameras_owned, live_tasks): (usize, usize),
    signals: crate::metrics::Signals,
) -> String {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["ServiceName"]],
                "Metrics": [
                    { "Name": CAMERAS_OWNED, "Unit": "Count" },
                    { "Name": LIVE_TASKS, "Unit": "Count" },
                    { "Name": CAMERA_LAG_MAX, "Unit": "Seconds" },
                    { "Name": OUTBOX_RECORDS, "Unit": "Count" },
                    { "Name": CHECKPOINT_LAG_MAX, "Unit": "Seconds" }
                ]
            }]
        },
        "ServiceName": service,
        "Task": task,
        CAMERAS_OWNED: cameras_owned,
        LIVE_TASKS: live_tasks,
        CAMERA_LAG_MAX: signals.camera_lag_max_seconds,
        OUTBOX_RECORDS: signals.outbox_records,
        CHECKPOINT_LAG_MAX: signals.checkpoint_lag_max_seconds,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_embedded_metric_format() {
        let signals = crate::metrics::Signals {
            camera_lag_max_seconds: 1.5,
            outbox_records: 7,
            checkpoint_lag_max_seconds: 30.0,
        };
        let line = record("KvsInfer", "kvs-infer", "arn:task/1", (3, 2), signals);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "KvsInfer");
        assert_eq!(directive["Dimensions"][0][0], "ServiceName");
        // Every metric and dimension the directive names is a top-level member.
        for m in directive["Metrics"].as_array().expect("metrics") {
            assert!(v[m["Name"].as_str().expect("name")].is_number(), "{m}");
        }
        assert_eq!((v["ServiceName"].as_str(), v["CamerasOwned"].as_u64()), (Some("kvs-infer"), Some(3)));
        assert_eq!((v["CameraLagMaxSeconds"].as_f64(), v["OutboxRecords"].as_u64()), (Some(1.5), Some(7)));
        assert_eq!(v["CheckpointLagMaxSeconds"].as_f64(), Some(30.0));
        assert!(v["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    }
}
