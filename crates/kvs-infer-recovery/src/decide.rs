//! GPU failure or application failure? The rules, as pure functions of a stopped task's event.
//!
//! A stopped task is GPU-suspect when it asked for a GPU and stopped abnormally because of:
//! 1. an exit code that means "GPU fault" (the inference service's 86, `RECOVERY_GPU_EXIT_CODES`);
//! 2. an essential container exiting non-zero, or the task failing to start, with a GPU-related
//!    stop reason (NVML, CUDA, Xid, ECC, nvidia-container-cli, ...);
//! 3. a failed container (or load balancer) health check on an instance where a GPU fault was
//!    recorded within the attempt window.
//!
//! Everything else (an application exit, an OOM kill, a deployment or scale-in, a Spot
//! interruption, a user's StopTask) is an application matter, left to ECS.

use crate::event::TaskDetail;

/// Words in a stop reason that point at the GPU, its driver or its runtime (lower case).
const GPU_WORDS: &[&str] = &["gpu", "cuda", "nvml", "nvidia", "xid", "ecc error", "uncorrectable", "cudnn", "cublas"];

/// Stop codes that say someone or something stopped the task on purpose.
const DELIBERATE_STOPS: &[&str] = &["UserInitiated", "SpotInterruption", "TerminationNotice"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A GPU failure candidate, subject to the task having asked for a GPU.
    GpuSuspect(String),
    /// Left to ECS.
    Application(String),
}

/// Whether ECS stopped the task for failing its container or load-balancer health check.
pub fn health_check_failure(detail: &TaskDetail) -> bool {
    detail.stopped_reason.as_deref().is_some_and(|r| r.to_lowercase().contains("health check"))
}

fn gpu_related(text: &str) -> bool {
    let lower = text.to_lowercase();
    GPU_WORDS.iter().any(|w| lower.contains(w))
}

/// Classifies a stopped task from its event. `gpu_fault_recorded`: whether the task's
/// instance has a GPU fault on record within the window (rule 3).
pub fn classify(detail: &TaskDetail, gpu_exit_codes: &[i32], gpu_fault_recorded: bool) -> Verdict {
    let stop_code = detail.stop_code.as_deref().unwrap_or("");
    if DELIBERATE_STOPS.contains(&stop_code) {
        return Verdict::Application(format!("stopped deliberately ({stop_code})"));
    }
    if let Some(c) = detail.containers.iter().find(|c| c.exit_code.is_some_and(|code| gpu_exit_codes.contains(&code))) {
        return Verdict::GpuSuspect(format!(
            "container `{}` exited with GPU-fault status {}",
            c.name,
            c.exit_code.unwrap_or_default()
        ));
    }
    let failed_exit = stop_code == "EssentialContainerExited"
        && detail.containers.iter().any(|c| c.exit_code.is_some_and(|code| code != 0));
    let failed_start = stop_code == "TaskFailedToStart" || stop_code == "ContainerRuntimeError";
    if failed_exit || failed_start {
        let reasons = std::iter::once(detail.stopped_reason.as_deref().unwrap_or(""))
            .chain(detail.containers.iter().map(|c| c.reason.as_deref().unwrap_or("")));
        for reason in reasons {
            if gpu_related(reason) {
                return Verdict::GpuSuspect(format!("{stop_code} with a GPU-related reason: {reason}"));
            }
        }
        return Verdict::Application(format!("{stop_code} without a GPU-related reason"));
    }
    if health_check_failure(detail) {
        return if gpu_fault_recorded {
            Verdict::GpuSuspect(format!(
                "failed health check after a recorded GPU fault: {}",
                detail.stopped_reason.as_deref().unwrap_or("")
            ))
        } else {
            Verdict::Application("failed health check with no GPU fault on record".to_string())
        };
    }
    Verdict::Application(format!(
        "not an abnormal stop (stopCode `{stop_code}`, reason `{}`)",
        detail.stopped_reason.as_deref().unwrap_or("")
    ))
}

/// The diagnostic's verdict from its stopped task: exit code 0 of the diagnostic container is
/// healthy; a non-zero exit, or no exit at all (it could not even start), is faulty.
pub fn diagnosis_healthy(detail: &TaskDetail, container: Option<&str>) -> (bool, String) {
    let chosen = match container {
        Some(name) => detail.containers.iter().find(|c| c.name == name),
        None => detail.containers.iter().find(|c| c.exit_code.is_some()),
    };
    match chosen.and_then(|c| c.exit_code.map(|code| (c, code))) {
        Some((c, 0)) => (true, format!("diagnostic container `{}` exited 0", c.name)),
        Some((c, code)) => (false, format!("diagnostic container `{}` exited {code}", c.name)),
        None => (
            false,
            format!(
                "the diagnostic reported no exit code ({}: {})",
                detail.stop_code.as_deref().unwrap_or("no stop code"),
                detail.stopped_reason.as_deref().unwrap_or("no reason")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ContainerDetail;

    fn task(stop_code: &str, reason: &str, containers: &[(&str, Option<i32>, &str)]) -> TaskDetail {
        TaskDetail {
            cluster_arn: "c".into(),
            task_arn: "t".into(),
            task_definition_arn: "kvs-infer-gpu:1".into(),
            container_instance_arn: Some("ci".into()),
            last_status: "STOPPED".into(),
            desired_status: Some("STOPPED".into()),
            stop_code: Some(stop_code.into()),
            stopped_reason: Some(reason.into()),
            group: None,
            started_by: None,
            launch_type: Some("EC2".into()),
            containers: containers
                .iter()
                .map(|(name, code, reason)| ContainerDetail {
                    name: name.to_string(),
                    exit_code: *code,
                    reason: (!reason.is_empty()).then(|| reason.to_string()),
                    last_status: Some("STOPPED".into()),
                    gpu_ids: vec!["0".into()],
                })
                .collect(),
            overrides: None,
        }
    }

    fn suspect(v: &Verdict) -> bool {
        matches!(v, Verdict::GpuSuspect(_))
    }

    #[test]
    fn the_services_gpu_exit_code_is_suspect() {
        let t = task("EssentialContainerExited", "Essential container in task exited", &[("kvs-infer", Some(86), "")]);
        assert!(suspect(&classify(&t, &[86], false)));
    }

    #[test]
    fn an_application_exit_is_left_to_ecs() {
        for code in [1, 2, 137, 139] {
            let t = task(
                "EssentialContainerExited",
                "Essential container in task exited",
                &[("kvs-infer", Some(code), "")],
            );
            assert!(!suspect(&classify(&t, &[86], true)), "exit {code}");
        }
    }

    #[test]
    fn gpu_related_reasons_are_suspect_in_any_case() {
        let t = task(
            "TaskFailedToStart",
            "CannotStartContainerError: Error response from daemon: failed to create shim task: nvidia-container-cli: initialization error: nvml error: driver not loaded",
            &[("kvs-infer", None, "")],
        );
        assert!(suspect(&classify(&t, &[86], false)));
        let t = task(
            "EssentialContainerExited",
            "Essential container in task exited",
            &[("kvs-infer", Some(1), "CUDA error: an illegal memory access")],
        );
        assert!(suspect(&classify(&t, &[86], false)));
    }

    #[test]
    fn deliberate_stops_are_never_suspect() {
        let t = task("UserInitiated", "Task stopped by user: GPU maintenance", &[("kvs-infer", Some(86), "")]);
        assert!(!suspect(&classify(&t, &[86], true)));
        let t = task("SpotInterruption", "Spot interruption", &[("kvs-infer", Some(143), "")]);
        assert!(!suspect(&classify(&t, &[86], true)));
    }

    #[test]
    fn health_check_failures_need_a_recorded_gpu_fault() {
        let t =
            task("ServiceSchedulerInitiated", "Task failed container health checks", &[("kvs-infer", Some(137), "")]);
        assert!(!suspect(&classify(&t, &[86], false)));
        assert!(suspect(&classify(&t, &[86], true)));
        let scale_in = task(
            "ServiceSchedulerInitiated",
            "Scaling activity initiated by deployment",
            &[("kvs-infer", Some(0), "")],
        );
        assert!(!suspect(&classify(&scale_in, &[86], true)));
    }

    #[test]
    fn diagnosis_verdicts() {
        let pass = task("EssentialContainerExited", "Essential container in task exited", &[("dcgm", Some(0), "")]);
        assert!(diagnosis_healthy(&pass, None).0);
        let fail = task("EssentialContainerExited", "Essential container in task exited", &[("dcgm", Some(4), "")]);
        assert!(!diagnosis_healthy(&fail, None).0);
        let no_start = task("TaskFailedToStart", "CannotPullContainerError", &[("dcgm", None, "")]);
        let (healthy, why) = diagnosis_healthy(&no_start, None);
        assert!(!healthy && why.contains("CannotPullContainerError"), "{why}");
        let sidecar = task("EssentialContainerExited", "x", &[("log-router", Some(0), ""), ("dcgm", Some(2), "")]);
        assert!(!diagnosis_healthy(&sidecar, Some("dcgm")).0);
    }
}
