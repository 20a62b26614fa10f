//! One container instance's recovery state machine, as a pure function: (node, input, now) →
//! (next node, actions to take, outcome). The DynamoDB store makes every transition a
//! conditional write on the node's version, so of two events racing for one instance exactly
//! one transition wins; the loser re-reads the node and steps again from the new state.
//!
//! ```text
//! HEALTHY --GPU-suspect task--> DIAGNOSING (start diagnostic, drain)
//! DIAGNOSING --diagnostic exit 0--> HEALTHY (activate, restart the affected tasks)
//! DIAGNOSING --diagnostic failed--> REBOOTING (reboot) | QUARANTINED when attempts are used up
//! REBOOTING --agent reconnected--> DIAGNOSING (start diagnostic) | QUARANTINED when used up
//! QUARANTINED --operator sets ACTIVE--> HEALTHY (restart the affected tasks)
//! any --instance deregistered--> RETIRED
//! ```

use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::config::Limits;
use crate::event::{format_time, resource_id};

/// Prefix of the `startedBy` of every task this function starts (ECS allows 36 characters).
pub const STARTED_BY_PREFIX: &str = "gpu-recovery/";
const DIAG_PREFIX: &str = "gpu-recovery/d/";
const RESTART_PREFIX: &str = "gpu-recovery/r/";
/// History lines kept on a node (the SNS message carries them).
const HISTORY_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeState {
    Healthy,
    Diagnosing,
    Rebooting,
    Quarantined,
    Retired,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Healthy => "HEALTHY",
            NodeState::Diagnosing => "DIAGNOSING",
            NodeState::Rebooting => "REBOOTING",
            NodeState::Quarantined => "QUARANTINED",
            NodeState::Retired => "RETIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Healthy, Self::Diagnosing, Self::Rebooting, Self::Quarantined, Self::Retired]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// A side effect a transition asks for. Each is idempotent or guarded (see `fleet.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start the DCGM diagnostic on the instance, `startedBy` = token (found again, not
    /// started twice, when the step is repeated).
    StartDiagnosis { token: String },
    /// UpdateContainerInstancesState DRAINING.
    Drain,
    /// UpdateContainerInstancesState ACTIVE.
    Activate,
    /// EC2 RebootInstances.
    Reboot,
    /// Restart standalone tasks on the instance; service tasks are the scheduler's.
    RestartTasks { tasks: Vec<String> },
    /// One SNS message.
    Notify { subject: String, message: String },
}

/// A node-table item.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub container_instance_arn: String,
    pub ec2_instance_id: Option<String>,
    pub state: NodeState,
    /// Optimistic-concurrency version; 0 = not stored yet.
    pub version: u64,
    /// Start times of the diagnoses within the window (seconds since the epoch).
    pub attempts: Vec<i64>,
    /// Stopped tasks waiting for this instance's recovery.
    pub affected: Vec<String>,
    pub diag_token: Option<String>,
    pub gpu_fault_at: Option<i64>,
    pub reboot_at: Option<i64>,
    pub disconnected_since_reboot: bool,
    pub quarantined_at: Option<i64>,
    pub last_event_version: Option<i64>,
    /// Steps still to take, in order, and who is taking them until when.
    pub todo: Vec<Action>,
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
    pub history: Vec<String>,
    pub updated_at: i64,
}

/// What happened to the node.
#[derive(Debug, Clone)]
pub enum NodeInput {
    GpuSuspect { task_arn: String, reason: String },
    DiagnosisDone { token: String, healthy: bool, detail: String },
    InstanceChange { connected: bool, status: String, version: Option<i64>, time: i64, ec2_instance_id: Option<String> },
}

/// The result of one step: `next` is None when nothing changes.
#[derive(Debug)]
pub struct Step {
    pub next: Option<Node>,
    pub actions: Vec<Action>,
    pub outcome: Outcome,
}

impl Node {
    pub fn new(container_instance_arn: &str) -> Self {
        Self {
            container_instance_arn: container_instance_arn.to_string(),
            ec2_instance_id: None,
            state: NodeState::Healthy,
            version: 0,
            attempts: Vec::new(),
            affected: Vec::new(),
            diag_token: None,
            gpu_fault_at: None,
            reboot_at: None,
            disconnected_since_reboot: false,
            quarantined_at: None,
            last_event_version: None,
            todo: Vec::new(),
            owner: None,
            lease_until: None,
            history: Vec::new(),
            updated_at: 0,
        }
    }

    /// Diagnoses started within the window ending at `now`.
    pub fn attempts_in_window(&self, now: i64, limits: &Limits) -> usize {
        self.attempts.iter().filter(|t| now - **t < limits.window.as_secs() as i64).count()
    }

    /// Whether a GPU fault is on record within the window (decision rule 3).
    pub fn gpu_fault_recorded(&self, now: i64, limits: &Limits) -> bool {
        self.gpu_fault_at.is_some_and(|t| now - t < limits.window.as_secs() as i64)
    }

    fn note(&mut self, now: i64, line: impl AsRef<str>) {
        self.history.push(format!("{} {}", format_time(now), line.as_ref()));
        if self.history.len() > HISTORY_LINES {
            let excess = self.history.len() - HISTORY_LINES;
            self.history.drain(..excess);
        }
    }
}

/// A stable 64-bit FNV-1a hash (tokens must not change between builds, unlike `DefaultHasher`).
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The `startedBy` of the restart of `task_arn` (so a repeated restart step finds it).
pub fn restart_token(task_arn: &str) -> String {
    format!("{RESTART_PREFIX}{:016x}", fnv1a(task_arn))
}

pub fn is_diagnostic_token(started_by: &str) -> bool {
    started_by.starts_with(DIAG_PREFIX)
}

/// Steps the machine. Pure: the caller stores `next` conditionally and then runs `actions`.
pub fn step(node: &Node, input: &NodeInput, now: i64, limits: &Limits, cluster: &str) -> Step {
    let mut next = node.clone();
    next.updated_at = now;
    next.attempts.retain(|t| now - *t < limits.window.as_secs() as i64);
    let turn = Turn { node, next, ci: node.container_instance_arn.clone(), now, limits, cluster };
    match input {
        NodeInput::GpuSuspect { task_arn, reason } => turn.gpu_suspect(task_arn, reason),
        NodeInput::DiagnosisDone { token, healthy, detail } => turn.diagnosis_done(token, *healthy, detail),
        NodeInput::InstanceChange { connected, status, version, time, ec2_instance_id } => {
            turn.instance_change(InstanceEvent {
                connected: *connected,
                status,
                version: *version,
                time: *time,
                ec2_instance_id,
            })
        }
    }
}

/// One step's inputs: the node as stored, the node being built, and the rules.
struct Turn<'a> {
    node: &'a Node,
    next: Node,
    ci: String,
    now: i64,
    limits: &'a Limits,
    cluster: &'a str,
}

/// A container-instance state change, as the step reads it.
struct InstanceEvent<'a> {
    connected: bool,
    status: &'a str,
    version: Option<i64>,
    time: i64,
    ec2_instance_id: &'a Option<String>,
}

fn unchanged(outcome: Outcome) -> Step {
    Step { next: None, actions: Vec::new(), outcome }
}

impl Turn<'_> {
    fn moved(self, actions: Vec<Action>, outcome: Outcome) -> Step {
        Step { next: Some(self.next), actions, outcome }
    }

    fn out_of_attempts(&self) -> bool {
        self.next.attempts.len() >= self.limits.max_attempts_per_instance as usize
    }

    fn gpu_suspect(mut self, task_arn: &str, reason: &str) -> Step {
        let (node, now) = (self.node, self.now);
        if node.affected.iter().any(|t| t == task_arn) {
            return unchanged(Outcome::Duplicate {
                reason: format!("task {task_arn} is already part of this instance's recovery"),
            });
        }
        match node.state {
            NodeState::Retired => {
                unchanged(Outcome::Ignored { reason: format!("instance {} is deregistered", self.ci) })
            }
            NodeState::Healthy => {
                self.next.affected.push(task_arn.to_owned());
                self.next.gpu_fault_at = Some(now);
                self.next.note(now, format!("GPU-suspect stop of {task_arn}: {reason}"));
                if self.out_of_attempts() {
                    return quarantine(
                        self.next,
                        now,
                        self.cluster,
                        "GPU fault again after the attempts allowed in the window",
                    );
                }
                diagnose(self.next, now)
            }
            NodeState::Diagnosing | NodeState::Rebooting | NodeState::Quarantined => {
                self.next.affected.push(task_arn.to_owned());
                self.next.gpu_fault_at = Some(now);
                self.next.note(now, format!("GPU-suspect stop of {task_arn} while {}: {reason}", node.state.as_str()));
                let outcome =
                    Outcome::Attached { container_instance: self.ci.clone(), state: node.state.as_str().to_string() };
                self.moved(Vec::new(), outcome)
            }
        }
    }

    fn diagnosis_done(mut self, token: &str, healthy: bool, detail: &str) -> Step {
        let now = self.now;
        if self.node.state != NodeState::Diagnosing || self.node.diag_token.as_deref() != Some(token) {
            return unchanged(Outcome::Duplicate {
                reason: format!("diagnostic {token} is not the one instance {} waits for", self.ci),
            });
        }
        self.next.diag_token = None;
        if healthy {
            self.next.state = NodeState::Healthy;
            self.next.gpu_fault_at = None;
            let tasks = std::mem::take(&mut self.next.affected);
            self.next
                .note(now, format!("diagnosis passed ({detail}): back to ACTIVE, restarting {} task(s)", tasks.len()));
            let outcome = Outcome::Recovered { container_instance: self.ci.clone(), tasks: tasks.clone() };
            return self.moved(vec![Action::Activate, Action::RestartTasks { tasks }], outcome);
        }
        self.next.note(now, format!("diagnosis failed ({detail})"));
        if self.out_of_attempts() {
            return quarantine(
                self.next,
                now,
                self.cluster,
                "the GPU diagnosis failed on every attempt allowed in the window",
            );
        }
        self.next.state = NodeState::Rebooting;
        self.next.reboot_at = Some(now);
        self.next.disconnected_since_reboot = false;
        self.next.note(now, "rebooting the instance");
        let outcome = Outcome::Rebooting { container_instance: self.ci.clone() };
        self.moved(vec![Action::Reboot], outcome)
    }

    fn instance_change(mut self, e: InstanceEvent<'_>) -> Step {
        let node = self.node;
        if let (Some(v), Some(last)) = (e.version, node.last_event_version)
            && v <= last
        {
            return unchanged(Outcome::Ignored { reason: format!("stale instance event (version {v} <= {last})") });
        }
        if node.version == 0 {
            return unchanged(Outcome::Ignored { reason: format!("no recovery in progress on {}", self.ci) });
        }
        self.next.last_event_version = e.version.or(node.last_event_version);
        if e.ec2_instance_id.is_some() {
            self.next.ec2_instance_id = e.ec2_instance_id.clone();
        }
        if matches!(e.status, "INACTIVE" | "DEREGISTERING") && node.state != NodeState::Retired {
            self.next.state = NodeState::Retired;
            self.next.note(self.now, format!("instance {}: recovery ends here", e.status));
            let outcome = Outcome::Retired { container_instance: self.ci.clone() };
            return self.moved(Vec::new(), outcome);
        }
        match node.state {
            NodeState::Rebooting if !e.connected => {
                self.next.disconnected_since_reboot = true;
                self.moved(Vec::new(), Outcome::Noted { reason: "agent disconnected (rebooting)".into() })
            }
            NodeState::Rebooting => self.rejoined(e.time),
            NodeState::Quarantined
                if e.connected && e.status == "ACTIVE" && e.time > node.quarantined_at.unwrap_or(0) =>
            {
                self.released()
            }
            _ => unchanged(Outcome::Ignored { reason: format!("instance event while {}", node.state.as_str()) }),
        }
    }

    /// The agent connected while the instance reboots: diagnose again once the reboot showed.
    fn rejoined(mut self, time: i64) -> Step {
        let rebooted_at = self.node.reboot_at.unwrap_or(0);
        let grace = self.limits.rejoin_grace.as_secs() as i64;
        if !self.node.disconnected_since_reboot && time < rebooted_at + grace {
            let reason = "agent connected, but the reboot has not shown yet".into();
            return self.moved(Vec::new(), Outcome::Noted { reason });
        }
        self.next.note(self.now, "instance rejoined after the reboot");
        if self.out_of_attempts() {
            return quarantine(
                self.next,
                self.now,
                self.cluster,
                "still faulty after the reboots allowed in the window",
            );
        }
        diagnose(self.next, self.now)
    }

    /// An operator set a quarantined instance ACTIVE.
    fn released(mut self) -> Step {
        self.next.state = NodeState::Healthy;
        self.next.attempts.clear();
        self.next.gpu_fault_at = None;
        self.next.quarantined_at = None;
        let tasks = std::mem::take(&mut self.next.affected);
        self.next.note(self.now, "an operator set the instance ACTIVE: released from quarantine");
        let outcome = Outcome::Released { container_instance: self.ci.clone(), tasks: tasks.clone() };
        self.moved(vec![Action::RestartTasks { tasks }], outcome)
    }
}

/// → DIAGNOSING: a new attempt with a fresh diagnostic token; the diagnostic is placed before
/// the drain (a draining instance takes no new placements; standalone tasks keep running).
fn diagnose(mut next: Node, now: i64) -> Step {
    next.attempts.push(now);
    let attempt = next.attempts.len();
    let token = format!("{DIAG_PREFIX}{:016x}", fnv1a(&format!("{}:{now}:{attempt}", next.container_instance_arn)));
    next.state = NodeState::Diagnosing;
    next.diag_token = Some(token.clone());
    next.note(now, format!("diagnosis {attempt} started ({token}); instance draining"));
    let outcome = Outcome::DiagnosisStarted {
        container_instance: next.container_instance_arn.clone(),
        attempt,
        token: token.clone(),
    };
    Step { next: Some(next), actions: vec![Action::StartDiagnosis { token }, Action::Drain], outcome }
}

/// → QUARANTINED: stays drained; one SNS message says what was tried. Only the transition into
/// the state notifies, and transitions are conditional writes, so the message goes out once.
fn quarantine(mut next: Node, now: i64, cluster: &str, why: &str) -> Step {
    next.state = NodeState::Quarantined;
    next.quarantined_at = Some(now);
    next.diag_token = None;
    next.note(now, format!("quarantined: {why}"));
    let subject = format!("GPU instance {} quarantined", resource_id(&next.container_instance_arn));
    let message = serde_json::json!({
        "summary": format!("kvs-infer-recovery gave up on container instance {} and left it DRAINING: {why}. \
                            Investigate or replace it; set it ACTIVE to release it.", next.container_instance_arn),
        "cluster": cluster,
        "container_instance_arn": next.container_instance_arn,
        "ec2_instance_id": next.ec2_instance_id,
        "diagnoses_in_window": next.attempts.iter().map(|t| format_time(*t)).collect::<Vec<_>>(),
        "affected_tasks": next.affected,
        "history": next.history,
    });
    let outcome = Outcome::Quarantined { container_instance: next.container_instance_arn.clone() };
    Step {
        next: Some(next),
        actions: vec![Action::Drain, Action::Notify { subject: truncate(&subject, 100), message: message.to_string() }],
        outcome,
    }
}

/// SNS subjects are at most 100 characters.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CI: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/gpu/0123";

    fn limits() -> Limits {
        Limits { max_attempts_per_instance: 3, window: Duration::from_secs(86_400), ..Limits::default() }
    }

    fn apply(node: &Node, input: NodeInput, now: i64) -> (Node, Step) {
        let s = step(node, &input, now, &limits(), "gpu");
        let mut next = s.next.clone().unwrap_or_else(|| node.clone());
        if s.next.is_some() {
            next.version = node.version + 1;
        }
        (next, s)
    }

    fn suspect(task: &str) -> NodeInput {
        NodeInput::GpuSuspect { task_arn: task.into(), reason: "exit 86".into() }
    }

    fn diag(node: &Node, healthy: bool) -> NodeInput {
        NodeInput::DiagnosisDone {
            token: node.diag_token.clone().expect("diagnosing"),
            healthy,
            detail: "dcgmi diag -r 2".into(),
        }
    }

    fn rejoin(time: i64, version: i64) -> NodeInput {
        NodeInput::InstanceChange {
            connected: true,
            status: "DRAINING".into(),
            version: Some(version),
            time,
            ec2_instance_id: Some("i-1".into()),
        }
    }

    #[test]
    fn healthy_path_drains_diagnoses_and_restarts() {
        let (n, s) = apply(&Node::new(CI), suspect("t1"), 1000);
        assert_eq!(n.state, NodeState::Diagnosing);
        assert!(matches!(&s.actions[..], [Action::StartDiagnosis { .. }, Action::Drain]));
        let (n2, s) = apply(&n, diag(&n, true), 1100);
        assert_eq!(n2.state, NodeState::Healthy);
        assert_eq!(s.actions, vec![Action::Activate, Action::RestartTasks { tasks: vec!["t1".into()] }]);
        assert!(n2.affected.is_empty());
    }

    #[test]
    fn faulty_path_reboots_then_diagnoses_again_on_rejoin() {
        let (n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        let (n, s) = apply(&n, diag(&n, false), 1100);
        assert_eq!((n.state, s.actions.clone()), (NodeState::Rebooting, vec![Action::Reboot]));
        // A connected event soon after the reboot request is not the rejoin.
        let (n, s) = apply(&n, rejoin(1110, 5), 1110);
        assert!(matches!(s.outcome, Outcome::Noted { .. }) && n.state == NodeState::Rebooting);
        let (n, _) = apply(
            &n,
            NodeInput::InstanceChange {
                connected: false,
                status: "DRAINING".into(),
                version: Some(6),
                time: 1120,
                ec2_instance_id: None,
            },
            1120,
        );
        let (n, s) = apply(&n, rejoin(1150, 7), 1150);
        assert_eq!(n.state, NodeState::Diagnosing);
        assert!(matches!(s.outcome, Outcome::DiagnosisStarted { attempt: 2, .. }));
        assert!(matches!(&s.actions[..], [Action::StartDiagnosis { .. }, Action::Drain]));
    }

    #[test]
    fn without_a_disconnect_event_the_grace_period_decides_the_rejoin() {
        let (n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        let (n, _) = apply(&n, diag(&n, false), 1100);
        let grace = limits().rejoin_grace.as_secs() as i64;
        let (n, s) = apply(&n, rejoin(1100 + grace - 1, 5), 1100 + grace - 1);
        assert!(matches!(s.outcome, Outcome::Noted { .. }) && n.state == NodeState::Rebooting);
        let (n, s) = apply(&n, rejoin(1100 + grace, 6), 1100 + grace);
        assert!(matches!(s.outcome, Outcome::DiagnosisStarted { attempt: 2, .. }), "{:?}", s.outcome);
        assert_eq!(n.state, NodeState::Diagnosing);
    }

    #[test]
    fn the_attempt_limit_quarantines_and_notifies_once() {
        let (mut n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        let mut notifications = 0;
        for round in 0..5 {
            if n.state != NodeState::Diagnosing {
                break;
            }
            let (m, s) = apply(&n, diag(&n, false), 2000 + round * 300);
            notifications += s.actions.iter().filter(|a| matches!(a, Action::Notify { .. })).count();
            n = m;
            if n.state == NodeState::Rebooting {
                let t = 2100 + round * 300;
                let down = NodeInput::InstanceChange {
                    connected: false,
                    status: "DRAINING".into(),
                    version: Some(20 + 2 * round),
                    time: t,
                    ec2_instance_id: None,
                };
                let (m, _) = apply(&n, down, t);
                let (m, _) = apply(&m, rejoin(t + 100, 21 + 2 * round), t + 100);
                n = m;
            }
        }
        assert_eq!(n.state, NodeState::Quarantined);
        assert_eq!(n.attempts.len(), 3, "three diagnoses, then quarantine");
        assert_eq!(notifications, 1);
        // More GPU failures on the quarantined instance: recorded, no new action.
        let (_, s) = apply(&n, suspect("t2"), 5000);
        assert!(s.actions.is_empty());
    }

    #[test]
    fn old_attempts_fall_out_of_the_window() {
        let mut n = Node::new(CI);
        n.version = 1;
        n.attempts = vec![0, 10, 20];
        let (n, s) = apply(&n, suspect("t9"), 100_000);
        assert!(matches!(s.outcome, Outcome::DiagnosisStarted { attempt: 1, .. }), "{:?}", s.outcome);
        assert_eq!(n.attempts, vec![100_000]);
    }

    #[test]
    fn repeats_and_stale_results_change_nothing() {
        let (n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        assert!(step(&n, &suspect("t1"), 1001, &limits(), "gpu").next.is_none());
        let stale =
            NodeInput::DiagnosisDone { token: "gpu-recovery/d/old".into(), healthy: true, detail: String::new() };
        assert!(step(&n, &stale, 1002, &limits(), "gpu").next.is_none());
        let (n2, _) = apply(&n, diag(&n, true), 1100);
        assert!(step(&n2, &diag(&n, true), 1101, &limits(), "gpu").next.is_none(), "the same result twice");
    }

    #[test]
    fn a_second_task_joins_the_running_recovery() {
        let (n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        let (n, s) = apply(&n, suspect("t2"), 1001);
        assert!(s.actions.is_empty());
        assert_eq!(n.affected, vec!["t1".to_string(), "t2".to_string()]);
    }

    #[test]
    fn an_operator_releases_a_quarantined_instance() {
        let mut n = Node::new(CI);
        n.version = 3;
        n.state = NodeState::Quarantined;
        n.quarantined_at = Some(1000);
        n.affected = vec!["t1".into()];
        let active = NodeInput::InstanceChange {
            connected: true,
            status: "ACTIVE".into(),
            version: None,
            time: 2000,
            ec2_instance_id: None,
        };
        let (n, s) = apply(&n, active, 2000);
        assert_eq!(n.state, NodeState::Healthy);
        assert_eq!(s.actions, vec![Action::RestartTasks { tasks: vec!["t1".into()] }]);
    }

    #[test]
    fn tokens_fit_ecs_started_by() {
        assert!(restart_token("arn:aws:ecs:us-east-1:1:task/c/abc").len() <= 36);
        let (n, _) = apply(&Node::new(CI), suspect("t1"), 1000);
        assert!(n.diag_token.expect("token").len() <= 36);
    }
}
