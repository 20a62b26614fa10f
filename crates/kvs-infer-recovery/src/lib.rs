//! GPU recovery for the ECS cluster: the logic behind the `kvs-infer-recovery` Lambda function.
//!
//! EventBridge delivers ECS task and container-instance state changes; this module tells a GPU
//! failure from an application failure, diagnoses the instance with a DCGM task while it is
//! drained, and returns it to service, reboots it, or quarantines it with one SNS message.
//! `docs/recovery.md` has the state machine and the tables.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | environment variables, validated as a whole |
//! | [`event`] | EventBridge's ECS event shapes, parsed; malformed ones become errors, not panics |
//! | [`decide`] | GPU-suspect or application failure; the diagnostic's verdict |
//! | [`node`] | one instance's state machine, as a pure function |
//! | [`store`] | the task, job and node tables, with conditional writes |
//! | [`fleet`] | ECS, EC2 and SNS calls behind a trait |

pub mod config;
pub mod decide;
pub mod event;
pub mod fleet;
pub mod node;
pub mod store;

use serde::Serialize;
use tracing::{info, warn};

use crate::config::RecoveryConfig;
use crate::decide::Verdict;
use crate::event::{Input, InstanceChange, TaskChange, resource_id};
use crate::fleet::{Fleet, FleetError, StartSpec};
use crate::node::{Action, Node, NodeInput};
use crate::store::{Store, StoreError, TaskRecord, TaskState};
use kvs_infer_common::error_chain;

/// Re-reads after a lost conditional write before giving up (and letting Lambda retry).
const CONFLICT_RETRIES: usize = 8;

/// What one event led to: the function's response, and one log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Outcome {
    /// Not for us, or not parseable: logged and acknowledged.
    Ignored {
        reason: String,
    },
    /// Seen before: nothing done twice.
    Duplicate {
        reason: String,
    },
    /// A stopped task that is not a GPU failure: ECS handles it.
    ApplicationFailure {
        task_arn: String,
        reason: String,
    },
    DiagnosisStarted {
        container_instance: String,
        attempt: usize,
        token: String,
    },
    /// A GPU failure on an instance whose recovery is already under way.
    Attached {
        container_instance: String,
        state: String,
    },
    Recovered {
        container_instance: String,
        tasks: Vec<String>,
    },
    Rebooting {
        container_instance: String,
    },
    Quarantined {
        container_instance: String,
    },
    Released {
        container_instance: String,
        tasks: Vec<String>,
    },
    Retired {
        container_instance: String,
    },
    /// The job had GPU failures on more instances in the window than allowed: left to ECS (and
    /// notified once).
    JobLimit {
        job_id: String,
        incidents: usize,
        notified: bool,
    },
    /// Bookkeeping only.
    Noted {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{step} for {container_instance}")]
    Fleet {
        step: String,
        container_instance: String,
        #[source]
        source: FleetError,
    },
    #[error("{what}: still changing after {CONFLICT_RETRIES} conditional writes")]
    Contention { what: String },
}

/// The function's state: configuration, tables, cluster edge.
pub struct Recovery<F: Fleet> {
    cfg: RecoveryConfig,
    store: Store,
    fleet: F,
}

impl<F: Fleet> Recovery<F> {
    pub fn new(cfg: RecoveryConfig, store: Store, fleet: F) -> Self {
        Self { cfg, store, fleet }
    }

    /// Handles one invocation payload now. Malformed or foreign events are `Ok(Ignored)`; an
    /// `Err` is a failed AWS call or lasting contention, and Lambda's retry resumes idempotently.
    pub async fn handle(&self, raw: &serde_json::Value) -> Result<Outcome, RecoveryError> {
        self.handle_at(raw, event::now()).await
    }

    /// [`Self::handle`] at a given time (seconds since the epoch): tests drive windows and leases.
    pub async fn handle_at(&self, raw: &serde_json::Value, now: i64) -> Result<Outcome, RecoveryError> {
        let input = match event::parse(raw, now) {
            Ok(input) => input,
            Err(e) => {
                let reason = error_chain(&e);
                warn!(error = %reason, "event ignored");
                return Ok(Outcome::Ignored { reason });
            }
        };
        if !self.cfg.is_our_cluster(input.cluster_arn()) {
            return Ok(Outcome::Ignored {
                reason: format!("cluster {} is not {}", input.cluster_arn(), self.cfg.cluster),
            });
        }
        // Unique per invocation, even for a redelivered event: the owner of a node's steps.
        let owner = format!("{}#{:08x}", input.meta().id, fastrand::u32(..));
        let outcome = match input {
            Input::Task(t) => self.on_task(t, now, &owner).await?,
            Input::Instance(i) => self.on_instance(i, now, &owner).await?,
        };
        info!(outcome = %serde_json::to_string(&outcome).unwrap_or_default(), "event handled");
        Ok(outcome)
    }

    async fn on_task(&self, t: TaskChange, now: i64, owner: &str) -> Result<Outcome, RecoveryError> {
        let d = &t.detail;
        if d.last_status != "STOPPED" {
            return Ok(Outcome::Ignored {
                reason: format!("task {} is {}, not STOPPED", resource_id(&d.task_arn), d.last_status),
            });
        }
        let Some(ci) = d.container_instance_arn.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Outcome::Ignored {
                reason: format!("task {} ran on no container instance (Fargate?)", resource_id(&d.task_arn)),
            });
        };
        if let Some(token) = d.started_by.as_deref().filter(|s| node::is_diagnostic_token(s)) {
            let (healthy, detail) = decide::diagnosis_healthy(d, self.cfg.diag_container.as_deref());
            let input = NodeInput::DiagnosisDone { token: token.to_string(), healthy, detail };
            return self.apply(ci, &input, now, owner).await;
        }

        let codes = &self.cfg.gpu_exit_codes;
        let mut verdict = decide::classify(d, codes, false);
        if matches!(verdict, Verdict::Application(_)) && decide::health_check_failure(d) {
            let node = self.store.load_node(ci).await?;
            verdict = decide::classify(d, codes, node.gpu_fault_recorded(now, &self.cfg.limits));
        }
        let reason = match verdict {
            Verdict::Application(reason) => {
                return Ok(Outcome::ApplicationFailure { task_arn: d.task_arn.clone(), reason });
            }
            Verdict::GpuSuspect(reason) => reason,
        };
        if !d.shows_gpu_request() {
            let td = &d.task_definition_arn;
            let asked = self.fleet.task_definition_requests_gpu(td).await.map_err(|source| RecoveryError::Fleet {
                step: format!("reading task definition {td}"),
                container_instance: ci.to_string(),
                source,
            })?;
            if !asked {
                return Ok(Outcome::ApplicationFailure {
                    task_arn: d.task_arn.clone(),
                    reason: format!("{reason}, but the task asked for no GPU"),
                });
            }
        }

        let record = TaskRecord {
            task_arn: d.task_arn.clone(),
            container_instance_arn: ci.to_string(),
            job_id: d.job_id(),
            task_definition_arn: d.task_definition_arn.clone(),
            group: d.group.clone(),
            service_task: d.is_service_task(),
            reason: reason.clone(),
            received_at: now,
            state: TaskState::Received,
            restarted_as: None,
        };
        // An earlier delivery that stopped half-way left RECEIVED: go on, every later step is
        // idempotent. Anything further along has been handled.
        if let Some(existing) = self.store.claim_task(&record).await?
            && existing.state != TaskState::Received
        {
            return Ok(Outcome::Duplicate {
                reason: format!("task {} already handled ({})", resource_id(&d.task_arn), existing.state.as_str()),
            });
        }
        if let Some(limited) = self.job_limit(&record, now).await? {
            self.store.set_task_state(&record.task_arn, TaskState::JobLimit, None, Some(TaskState::Received)).await?;
            return Ok(limited);
        }
        let outcome =
            self.apply(ci, &NodeInput::GpuSuspect { task_arn: d.task_arn.clone(), reason }, now, owner).await?;
        // Conditional: the instance's recovery may have restarted the task already.
        self.store.set_task_state(&record.task_arn, TaskState::Attached, None, Some(TaskState::Received)).await?;
        Ok(outcome)
    }

    async fn on_instance(&self, i: InstanceChange, now: i64, owner: &str) -> Result<Outcome, RecoveryError> {
        let d = &i.detail;
        let input = NodeInput::InstanceChange {
            connected: d.agent_connected,
            status: d.status.clone(),
            version: d.version,
            time: i.meta.time,
            ec2_instance_id: d.ec2_instance_id.clone(),
        };
        self.apply(&d.container_instance_arn, &input, now, owner).await
    }

    /// Counts the incident against its job: one per instance the job had a GPU failure on
    /// within the window (several tasks failing together on one instance are one incident; the
    /// same instance failing again is the per-instance limit's business). Past the limit returns
    /// the outcome that leaves the task to ECS (and notifies once per window).
    async fn job_limit(&self, rec: &TaskRecord, now: i64) -> Result<Option<Outcome>, RecoveryError> {
        let limits = &self.cfg.limits;
        let window = limits.window.as_secs() as i64;
        for _ in 0..CONFLICT_RETRIES {
            let mut job = self.store.load_job(&rec.job_id).await?;
            let expected = job.version;
            job.incidents.retain(|_, t| now - *t < window);
            let instance_id = resource_id(&rec.container_instance_arn).to_string();
            let new_incident = !job.incidents.contains_key(&instance_id);
            job.incidents.insert(instance_id, now);
            let count = job.incidents.len();
            let over = count > limits.max_attempts_per_job as usize;
            let notify = over && new_incident && job.notified_at.is_none_or(|t| now - t >= window);
            if !new_incident {
                return Ok(over.then(|| Outcome::JobLimit {
                    job_id: rec.job_id.clone(),
                    incidents: count,
                    notified: false,
                }));
            }
            if notify {
                job.notified_at = Some(now);
            }
            job.version = expected + 1;
            match self.store.save_job(&job, expected).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            if notify {
                let subject = node::truncate(&format!("GPU recovery stopped for job {}", rec.job_id), 100);
                let message = serde_json::json!({
                    "summary": format!("GPU-suspect failures of job {} on {} instances within {}: further failures are left to ECS \
                                        (the job itself may be breaking GPUs).", rec.job_id, count, humantime::format_duration(limits.window)),
                    "cluster": self.cfg.cluster,
                    "job_id": rec.job_id,
                    "last_task": rec.task_arn,
                    "last_reason": rec.reason,
                    "instances": job.incidents,
                });
                self.fleet.notify(&subject, &message.to_string()).await.map_err(|source| RecoveryError::Fleet {
                    step: "notifying SNS of the job limit".into(),
                    container_instance: rec.container_instance_arn.clone(),
                    source,
                })?;
            }
            if over {
                warn!(job = %rec.job_id, incidents = count, "job over its GPU incident limit: left to ECS");
            }
            return Ok(over.then(|| Outcome::JobLimit {
                job_id: rec.job_id.clone(),
                incidents: count,
                notified: notify,
            }));
        }
        Err(RecoveryError::Contention { what: format!("job {}", rec.job_id) })
    }

    /// Steps the instance's machine with a conditional write, then takes the steps it asks for.
    async fn apply(&self, ci: &str, input: &NodeInput, now: i64, owner: &str) -> Result<Outcome, RecoveryError> {
        let lease = self.cfg.limits.lease.as_secs() as i64;
        for _ in 0..CONFLICT_RETRIES {
            let node = self.store.load_node(ci).await?;
            let step = node::step(&node, input, now, &self.cfg.limits, &self.cfg.cluster);
            let Some(mut next) = step.next else {
                // Nothing new; finish what an earlier invocation left once its lease ran out.
                if !node.todo.is_empty() && node.lease_until.is_none_or(|t| t <= now) {
                    self.take_over(node, now, owner).await?;
                }
                return Ok(step.outcome);
            };
            // New steps go after the pending ones. While another invocation holds a valid lease
            // it runs them all (two executors of one step could both start a diagnostic);
            // otherwise this invocation takes the steps.
            next.todo = node.todo.iter().cloned().chain(step.actions).collect();
            next.version = node.version + 1;
            let held = node.owner.is_some() && !node.todo.is_empty() && node.lease_until.is_some_and(|t| t > now);
            let mine = !next.todo.is_empty() && !held;
            if next.todo.is_empty() {
                (next.owner, next.lease_until) = (None, None);
            } else if mine {
                (next.owner, next.lease_until) = (Some(owner.to_string()), Some(now + lease));
            }
            match self.store.save_node(&next, node.version).await {
                Ok(()) => {
                    if next.state != node.state {
                        info!(
                            container_instance = ci,
                            from = node.state.as_str(),
                            to = next.state.as_str(),
                            "instance state changed"
                        );
                    }
                    if mine {
                        self.run_todo(next, owner).await?;
                    }
                    return Ok(step.outcome);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecoveryError::Contention { what: format!("node {ci}") })
    }

    async fn take_over(&self, node: Node, now: i64, owner: &str) -> Result<(), RecoveryError> {
        let mut mine = node.clone();
        mine.owner = Some(owner.to_string());
        mine.lease_until = Some(now + self.cfg.limits.lease.as_secs() as i64);
        mine.version = node.version + 1;
        match self.store.save_node(&mine, node.version).await {
            Ok(()) => {
                warn!(container_instance = %node.container_instance_arn, steps = mine.todo.len(), "resuming steps an earlier invocation left");
                self.run_todo(mine, owner).await
            }
            Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the pending steps in order, removing each with a conditional write once done.
    async fn run_todo(&self, mut node: Node, owner: &str) -> Result<(), RecoveryError> {
        while let Some(action) = node.todo.first().cloned() {
            if let Err(e) = self.execute(&node, &action).await {
                // Give the lease back so Lambda's retry resumes at once.
                let mut released = node.clone();
                released.owner = None;
                released.lease_until = None;
                released.version = node.version + 1;
                let _ = self.store.save_node(&released, node.version).await;
                return Err(e);
            }
            match self.pop_done(node, &action, owner).await? {
                Some(next) => node = next,
                None => return Ok(()), // another invocation took the steps over
            }
        }
        Ok(())
    }

    /// Removes the step just taken (the head of `todo`). Transitions only append steps, and
    /// only an expired lease changes the owner, so while this invocation owns the steps the
    /// head is still the one it took, even after a conflicting write.
    async fn pop_done(&self, mut node: Node, done: &Action, owner: &str) -> Result<Option<Node>, RecoveryError> {
        for _ in 0..CONFLICT_RETRIES {
            if node.owner.as_deref() != Some(owner) || node.todo.first() != Some(done) {
                return Ok(None);
            }
            let mut next = node.clone();
            next.todo.remove(0);
            next.version = node.version + 1;
            if next.todo.is_empty() {
                next.owner = None;
                next.lease_until = None;
            }
            match self.store.save_node(&next, node.version).await {
                Ok(()) => return Ok(Some(next)),
                Err(StoreError::Conflict { .. }) => node = self.store.load_node(&node.container_instance_arn).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecoveryError::Contention { what: format!("node {}", node.container_instance_arn) })
    }

    async fn execute(&self, node: &Node, action: &Action) -> Result<(), RecoveryError> {
        let ci = node.container_instance_arn.as_str();
        let fleet_err = |step: &str| {
            let step = step.to_string();
            move |source| RecoveryError::Fleet { step, container_instance: ci.to_string(), source }
        };
        match action {
            Action::StartDiagnosis { token } => {
                if let Some(arn) = self.fleet.find_task(ci, token).await.map_err(fleet_err("finding the diagnostic"))? {
                    info!(container_instance = ci, task = %arn, "diagnostic already started");
                    return Ok(());
                }
                let spec = StartSpec {
                    task_definition: self.cfg.diag_task_definition.clone(),
                    container_instance: ci.to_string(),
                    started_by: token.clone(),
                    group: None,
                    overrides: None,
                };
                let arn = self.fleet.start_task(spec).await.map_err(fleet_err("starting the diagnostic"))?;
                info!(container_instance = ci, task = %arn, "diagnostic started");
            }
            Action::Drain => self.fleet.set_instance_status(ci, true).await.map_err(fleet_err("draining"))?,
            Action::Activate => self.fleet.set_instance_status(ci, false).await.map_err(fleet_err("activating"))?,
            Action::Reboot => {
                let id = match &node.ec2_instance_id {
                    Some(id) => id.clone(),
                    None => self.fleet.ec2_instance_of(ci).await.map_err(fleet_err("finding the EC2 instance"))?,
                };
                self.fleet.reboot(&id).await.map_err(fleet_err("rebooting"))?;
                info!(container_instance = ci, ec2_instance = %id, "reboot requested");
            }
            Action::RestartTasks { tasks } => {
                for task in tasks {
                    self.restart(ci, task).await?;
                }
            }
            Action::Notify { subject, message } => {
                self.fleet.notify(subject, message).await.map_err(fleet_err("notifying SNS"))?
            }
        }
        Ok(())
    }

    /// Restarts one affected task on the recovered instance, once: service tasks are the
    /// service scheduler's; a standalone task is started again with its definition, group and
    /// overrides (read back from ECS while it still describes the stopped task).
    async fn restart(&self, ci: &str, task_arn: &str) -> Result<(), RecoveryError> {
        let Some(rec) = self.store.load_task(task_arn).await? else {
            warn!(task = task_arn, "no task record: not restarted");
            return Ok(());
        };
        if rec.state.restart_settled() {
            return Ok(());
        }
        if rec.service_task {
            self.store.set_task_state(task_arn, TaskState::LeftToService, None, None).await?;
            return Ok(());
        }
        let fleet_err = |step: &'static str| {
            move |source| RecoveryError::Fleet { step: step.into(), container_instance: ci.to_string(), source }
        };
        let token = node::restart_token(task_arn);
        if let Some(arn) = self.fleet.find_task(ci, &token).await.map_err(fleet_err("finding a restarted task"))? {
            self.store.set_task_state(task_arn, TaskState::Restarted, Some(&arn), None).await?;
            return Ok(());
        }
        let described = self.fleet.describe_task(task_arn).await.map_err(fleet_err("describing the stopped task"))?;
        let spec = StartSpec {
            task_definition: described
                .as_ref()
                .map(|d| d.task_definition_arn.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or(rec.task_definition_arn.clone()),
            container_instance: ci.to_string(),
            started_by: token,
            group: described.as_ref().and_then(|d| d.group.clone()).or(rec.group.clone()),
            overrides: described.and_then(|d| d.overrides),
        };
        match self.fleet.start_task(spec).await {
            Ok(arn) => {
                info!(task = task_arn, restarted_as = %arn, "task restarted");
                self.store.set_task_state(task_arn, TaskState::Restarted, Some(&arn), None).await?;
            }
            // ECS said no (the definition is gone, no room): retrying will not help.
            Err(e @ FleetError::Rejected { .. }) => {
                warn!(task = task_arn, error = %error_chain(&e), "task not restarted");
                self.store.set_task_state(task_arn, TaskState::RestartFailed, None, None).await?;
            }
            Err(source) => {
                return Err(RecoveryError::Fleet {
                    step: "restarting a task".into(),
                    container_instance: ci.to_string(),
                    source,
                });
            }
        }
        Ok(())
    }
}

/// A [`Recovery`] on the real AWS clients.
pub fn from_sdk(cfg: RecoveryConfig, sdk: &aws_config::SdkConfig) -> Recovery<fleet::AwsFleet> {
    let store = Store::new(aws_sdk_dynamodb::Client::new(sdk), &cfg.task_table, &cfg.job_table, &cfg.node_table);
    let fleet = fleet::AwsFleet::new(sdk, &cfg.cluster, &cfg.sns_topic_arn);
    Recovery::new(cfg, store, fleet)
}
