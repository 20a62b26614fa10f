//! The recovery function's configuration: environment variables only (what a Lambda function
//! definition sets), validated as a whole before the first event is handled.

use std::time::Duration;

/// The configuration's environment variables and their defaults, documented in `docs/recovery.md`.
pub const ENV_CLUSTER: &str = "RECOVERY_CLUSTER";
pub const ENV_DIAG_TASK_DEFINITION: &str = "RECOVERY_DIAG_TASK_DEFINITION";
pub const ENV_DIAG_CONTAINER: &str = "RECOVERY_DIAG_CONTAINER";
pub const ENV_TASK_TABLE: &str = "RECOVERY_TASK_TABLE";
pub const ENV_JOB_TABLE: &str = "RECOVERY_JOB_TABLE";
pub const ENV_NODE_TABLE: &str = "RECOVERY_NODE_TABLE";
pub const ENV_SNS_TOPIC_ARN: &str = "RECOVERY_SNS_TOPIC_ARN";
pub const ENV_MAX_ATTEMPTS_PER_INSTANCE: &str = "RECOVERY_MAX_ATTEMPTS_PER_INSTANCE";
pub const ENV_MAX_ATTEMPTS_PER_JOB: &str = "RECOVERY_MAX_ATTEMPTS_PER_JOB";
pub const ENV_ATTEMPT_WINDOW: &str = "RECOVERY_ATTEMPT_WINDOW";
pub const ENV_GPU_EXIT_CODES: &str = "RECOVERY_GPU_EXIT_CODES";
pub const ENV_REJOIN_GRACE: &str = "RECOVERY_REJOIN_GRACE";
pub const ENV_LEASE: &str = "RECOVERY_LEASE";

/// The inference service's exit status for a GPU fault (`kvs_infer_common::exit::GPU_FAULT`).
pub const DEFAULT_GPU_EXIT_CODES: &[i32] = &[kvs_infer_common::exit::GPU_FAULT as i32];
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_ATTEMPT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A connected-agent event this long after the reboot counts as the instance having rejoined,
/// even when the disconnect event was never seen (EventBridge does not promise delivery order).
/// Long enough that ECS has noticed the agent going away: container instance events come with
/// every task change, and one still saying "connected" a minute into a reboot is stale news.
pub const DEFAULT_REJOIN_GRACE: Duration = Duration::from_secs(300);
/// How long one invocation owns a node's pending steps before another may take them over: above
/// the function's timeout (60 s in `crates/kvs-infer-recovery/template.yaml`), below Lambda's first retry delay.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryConfig {
    /// Cluster name or ARN; events from other clusters are ignored.
    pub cluster: String,
    /// Task definition (family, family:revision or ARN) of the DCGM diagnostic.
    pub diag_task_definition: String,
    /// The diagnostic task's container whose exit code is the verdict (default: the first
    /// container that reports one).
    pub diag_container: Option<String>,
    pub task_table: String,
    pub job_table: String,
    pub node_table: String,
    pub sns_topic_arn: String,
    pub limits: Limits,
    /// Exit codes that mean "the GPU failed" (default: the inference service's 86).
    pub gpu_exit_codes: Vec<i32>,
}

/// Loop breakers and timings of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Diagnoses of one instance within `window` before it is quarantined.
    pub max_attempts_per_instance: u32,
    /// Instances one job (task group) may have GPU failures on within `window` before its
    /// further failures are left to ECS (an application that breaks GPUs must not drain the fleet).
    pub max_attempts_per_job: u32,
    pub window: Duration,
    pub rejoin_grace: Duration,
    pub lease: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_attempts_per_instance: DEFAULT_MAX_ATTEMPTS,
            max_attempts_per_job: DEFAULT_MAX_ATTEMPTS,
            window: DEFAULT_ATTEMPT_WINDOW,
            rejoin_grace: DEFAULT_REJOIN_GRACE,
            lease: DEFAULT_LEASE,
        }
    }
}

/// Every problem with the environment, one per line, each naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid recovery configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl RecoveryConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads through `lookup` (tests pass a map); collects every problem before failing.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader { lookup: &lookup, problems: Vec::new() };
        let cluster = env.required(ENV_CLUSTER);
        let diag_task_definition = env.required(ENV_DIAG_TASK_DEFINITION);
        let task_table = env.required(ENV_TASK_TABLE);
        let job_table = env.required(ENV_JOB_TABLE);
        let node_table = env.required(ENV_NODE_TABLE);
        let sns_topic_arn = env.required(ENV_SNS_TOPIC_ARN);
        if !sns_topic_arn.is_empty() && !sns_topic_arn.starts_with("arn:") {
            env.problems.push(format!("{ENV_SNS_TOPIC_ARN}: `{sns_topic_arn}` is not an SNS topic ARN"));
        }
        let tables = [&task_table, &job_table, &node_table];
        if tables.iter().all(|t| !t.is_empty())
            && (task_table == job_table || job_table == node_table || task_table == node_table)
        {
            env.problems.push(format!(
                "{ENV_TASK_TABLE}, {ENV_JOB_TABLE}, {ENV_NODE_TABLE}: three different tables are needed"
            ));
        }
        let limits = Limits {
            max_attempts_per_instance: env.count(ENV_MAX_ATTEMPTS_PER_INSTANCE, DEFAULT_MAX_ATTEMPTS),
            max_attempts_per_job: env.count(ENV_MAX_ATTEMPTS_PER_JOB, DEFAULT_MAX_ATTEMPTS),
            window: env.duration(ENV_ATTEMPT_WINDOW, DEFAULT_ATTEMPT_WINDOW),
            rejoin_grace: env.duration(ENV_REJOIN_GRACE, DEFAULT_REJOIN_GRACE),
            lease: env.duration(ENV_LEASE, DEFAULT_LEASE),
        };
        let gpu_exit_codes = env.exit_codes(ENV_GPU_EXIT_CODES);
        let diag_container = env.get(ENV_DIAG_CONTAINER);
        if !env.problems.is_empty() {
            return Err(ConfigError { problems: env.problems });
        }
        Ok(Self {
            cluster,
            diag_task_definition,
            diag_container,
            task_table,
            job_table,
            node_table,
            sns_topic_arn,
            limits,
            gpu_exit_codes,
        })
    }

    /// Whether a cluster ARN from an event names the configured cluster (name or ARN).
    pub fn is_our_cluster(&self, cluster_arn: &str) -> bool {
        cluster_arn == self.cluster || crate::event::resource_id(cluster_arn) == self.cluster
    }
}

/// Environment variables read one by one, every problem kept for the one report.
struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl EnvReader<'_> {
    /// A set, non-blank value.
    fn get(&self, k: &str) -> Option<String> {
        (self.lookup)(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required(&mut self, k: &str) -> String {
        self.get(k).unwrap_or_else(|| {
            self.problems.push(format!("{k}: required"));
            String::new()
        })
    }

    fn count(&mut self, k: &str, default: u32) -> u32 {
        match self.get(k) {
            None => default,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.problems.push(format!("{k}: `{v}` is not a whole number >= 1"));
                    default
                }
            },
        }
    }

    fn duration(&mut self, k: &str, default: Duration) -> Duration {
        match self.get(k) {
            None => default,
            Some(v) => match humantime::parse_duration(&v) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.problems.push(format!("{k}: `{v}` is not a duration such as `24h` or `90s`"));
                    default
                }
            },
        }
    }

    fn exit_codes(&mut self, k: &str) -> Vec<i32> {
        let Some(v) = self.get(k) else { return DEFAULT_GPU_EXIT_CODES.to_vec() };
        let parsed: Result<Vec<i32>, _> = v.split(',').map(|c| c.trim().parse::<i32>()).collect();
        match parsed {
            Ok(codes) if codes.iter().all(|c| *c != 0) => codes,
            _ => {
                self.problems.push(format!("{k}: `{v}` is not a comma-separated list of non-zero exit codes"));
                DEFAULT_GPU_EXIT_CODES.to_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const MINIMAL: &[(&str, &str)] = &[
        (ENV_CLUSTER, "gpu"),
        (ENV_DIAG_TASK_DEFINITION, "dcgm-diag:3"),
        (ENV_TASK_TABLE, "t"),
        (ENV_JOB_TABLE, "j"),
        (ENV_NODE_TABLE, "n"),
        (ENV_SNS_TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:gpu-recovery"),
    ];

    #[test]
    fn defaults_follow_the_issue() {
        let cfg = RecoveryConfig::from_lookup(env(MINIMAL)).expect("valid");
        assert_eq!(cfg.limits.max_attempts_per_instance, 3);
        assert_eq!(cfg.limits.max_attempts_per_job, 3);
        assert_eq!(cfg.limits.window, Duration::from_secs(86_400));
        assert_eq!(cfg.gpu_exit_codes, vec![86]);
        assert!(cfg.is_our_cluster("arn:aws:ecs:us-east-1:123456789012:cluster/gpu"));
        assert!(!cfg.is_our_cluster("arn:aws:ecs:us-east-1:123456789012:cluster/gpu-staging"));
    }

    #[test]
    fn every_problem_is_reported_with_its_variable() {
        let err = RecoveryConfig::from_lookup(env(&[
            (ENV_SNS_TOPIC_ARN, "gpu-recovery"),
            (ENV_MAX_ATTEMPTS_PER_JOB, "0"),
            (ENV_ATTEMPT_WINDOW, "a day"),
            (ENV_GPU_EXIT_CODES, "86,x"),
        ]))
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "RECOVERY_CLUSTER: required",
            "RECOVERY_DIAG_TASK_DEFINITION: required",
            "RECOVERY_NODE_TABLE: required",
            "RECOVERY_SNS_TOPIC_ARN: `gpu-recovery` is not an SNS topic ARN",
            "RECOVERY_MAX_ATTEMPTS_PER_JOB: `0`",
            "RECOVERY_ATTEMPT_WINDOW: `a day`",
            "RECOVERY_GPU_EXIT_CODES: `86,x`",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn tables_must_differ() {
        let mut pairs = MINIMAL.to_vec();
        pairs.retain(|(k, _)| *k != ENV_JOB_TABLE);
        pairs.push((ENV_JOB_TABLE, "t"));
        assert!(RecoveryConfig::from_lookup(env(&pairs)).is_err());
    }
}
