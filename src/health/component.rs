//! Who a health entry is about, and the states cameras and sinks report: the keys and words of
//! the `/healthz` body, typed where they are set.

use std::fmt;

use crate::config::CameraId;

/// What a liveness failure or a degraded reason is about. Its [`key`](Component::key) names it
/// in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// The GPU itself (NVML: device lost, a reset-class XID).
    Gpu,
    /// A CUDA error in an inference run.
    Cuda,
    /// The inference worker (a stall).
    Inference,
    /// The durable outbox (full, or a storage error).
    Outbox,
    /// One sink's delivery.
    Sink(&'static str),
    /// One camera's source.
    Camera(CameraId),
    /// The fleet's lease table (unreachable: this task's cameras stop).
    Fleet,
}

impl Component {
    /// The key in the body: `gpu`, `cuda`, `inference`, `outbox`, `sink.{name}`, `camera.{id}`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Whether a liveness failure under `key` means the GPU (not the application) failed.
    pub fn is_gpu_fault(key: &str) -> bool {
        [Component::Gpu, Component::Cuda].iter().any(|c| c.key() == key)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Gpu => f.write_str("gpu"),
            Component::Cuda => f.write_str("cuda"),
            Component::Inference => f.write_str("inference"),
            Component::Outbox => f.write_str("outbox"),
            Component::Sink(name) => write!(f, "sink.{name}"),
            Component::Camera(id) => write!(f, "camera.{id}"),
            Component::Fleet => f.write_str("fleet"),
        }
    }
}

/// A camera's state in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraState {
    /// A file camera reading.
    Running,
    /// A KVS camera before its first GetMedia session.
    Connecting,
    /// A GetMedia session is delivering.
    Streaming,
    /// Between GetMedia sessions.
    Reconnecting,
    /// The camera failed and waits for its restart.
    Restarting,
    /// The camera ended (its file did, or shutdown).
    Stopped,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Running => "running",
            CameraState::Connecting => "connecting",
            CameraState::Streaming => "streaming",
            CameraState::Reconnecting => "reconnecting",
            CameraState::Restarting => "restarting",
            CameraState::Stopped => "stopped",
        }
    }
}

/// A sink's state in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    /// Delivering (its backlog in the detail).
    Ok,
    /// Its last delivery failed; the outbox holds its backlog.
    Failing,
}

impl SinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkState::Ok => "ok",
            SinkState::Failing => "failing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_component() {
        assert_eq!(Component::Sink("kinesis").key(), "sink.kinesis");
        assert_eq!(Component::Camera(CameraId("gate-1".into())).key(), "camera.gate-1");
        assert!(Component::is_gpu_fault("cuda") && Component::is_gpu_fault("gpu"));
        assert!(!Component::is_gpu_fault("inference"));
    }
}
