//! A GPU ECS cluster in moto for the recovery tests: EC2 instances registered as container
//! instances, the service, batch and DCGM task definitions, the three tables, an SNS topic whose
//! HTTP subscription delivers to a listener here, and moto recording every request it serves so
//! tests count the calls that reached "AWS".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecs::types::{ContainerDefinition, ResourceRequirement, ResourceType, TaskOverride};
use kvs_infer_recovery::config::RecoveryConfig;
use kvs_infer_recovery::event::resource_id;
use kvs_infer_recovery::fleet::AwsFleet;
use kvs_infer_recovery::{self as recovery, Recovery};
use serde_json::{Value, json};

use kvs_infer_testkit::moto::{Moto, create_table, sdk_for};

pub const CLUSTER: &str = "gpu";
pub const SERVICE_FAMILY: &str = "kvs-infer-gpu";
pub const BATCH_FAMILY: &str = "gpu-batch";
pub const DIAG_FAMILY: &str = "dcgm-diag";
pub const TASK_TABLE: &str = "recovery-task";
pub const JOB_TABLE: &str = "recovery-job";
pub const NODE_TABLE: &str = "recovery-node";
/// Event times in the tests (2026-11-18T...): every test drives its own clock.
pub const T0: i64 = 1_795_000_000;

#[derive(Debug, Clone)]
pub struct Instance {
    pub arn: String,
    pub ec2: String,
}

pub struct GpuCluster {
    pub moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub cluster_arn: String,
    pub instances: Vec<Instance>,
    pub env: Vec<(String, String)>,
    sns: Arc<Mutex<Vec<Value>>>,
    recording: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(name: &str) -> Value {
    let path = format!("tests/fixtures/{name}.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture json")
}

pub fn rfc3339(secs: i64) -> String {
    kvs_infer_recovery::event::format_time(secs)
}

/// An HTTP listener that keeps what SNS's HTTP subscription delivers.
async fn sns_listener() -> (String, Arc<Mutex<Vec<Value>>>) {
    use kvs_infer_testkit::http::{Request, Response, serve};
    let messages = Arc::new(Mutex::new(Vec::new()));
    let keep = messages.clone();
    let addr = serve(move |req: Request| {
        let keep = keep.clone();
        async move {
            if req.method != "POST" || req.path != "/sns" {
                return Response::new(404, "");
            }
            keep.lock()
                .expect("lock")
                .push(serde_json::from_str::<Value>(&req.body).unwrap_or(Value::String(req.body)));
            Response::new(200, "ok")
        }
    })
    .await;
    (format!("http://{addr}/sns"), messages)
}

fn gpu_container(name: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image(format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:1"))
        .memory(512)
        .essential(true)
        .resource_requirements(
            ResourceRequirement::builder().r#type(ResourceType::Gpu).value("1").build().expect("gpu"),
        )
        .build()
}

impl GpuCluster {
    /// `instances` GPU instances; `env` adds to (or replaces) the recovery configuration.
    pub async fn start(instances: usize, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let recording = dir.path().join("moto-recording.jsonl");
        let moto = Moto::start_serial_recording(&recording);
        let sdk = sdk_for(&moto.url()).await;
        let ecs = aws_sdk_ecs::Client::new(&sdk);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);

        let cluster_arn = ecs
            .create_cluster()
            .cluster_name(CLUSTER)
            .send()
            .await
            .expect("create cluster")
            .cluster()
            .and_then(|c| c.cluster_arn())
            .expect("cluster arn")
            .to_string();
        let images = ec2.describe_images().send().await.expect("images");
        let image = images.images().first().and_then(|i| i.image_id()).expect("a moto AMI").to_string();
        let mut registered = Vec::new();
        for _ in 0..instances {
            let run = ec2
                .run_instances()
                .image_id(&image)
                .instance_type(aws_sdk_ec2::types::InstanceType::G4dn2xlarge)
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .expect("run instance");
            let ec2_id = run.instances().first().and_then(|i| i.instance_id()).expect("instance id").to_string();
            let doc = json!({"instanceId": ec2_id, "region": "us-east-1", "instanceType": "g4dn.2xlarge", "accountId": "123456789012"});
            let ci = ecs
                .register_container_instance()
                .cluster(CLUSTER)
                .instance_identity_document(doc.to_string())
                .send()
                .await
                .expect("register container instance");
            let arn = ci.container_instance().and_then(|c| c.container_instance_arn()).expect("ci arn").to_string();
            registered.push(Instance { arn, ec2: ec2_id });
        }
        for (family, container) in [(SERVICE_FAMILY, "kvs-infer"), (BATCH_FAMILY, "reindex"), (DIAG_FAMILY, "dcgm")] {
            ecs.register_task_definition()
                .family(family)
                .container_definitions(gpu_container(container))
                .send()
                .await
                .expect("task definition");
        }
        for (table, key) in [(TASK_TABLE, "task_arn"), (JOB_TABLE, "job_id"), (NODE_TABLE, "container_instance_arn")] {
            create_table(&ddb, table, key).await;
        }
        let topic =
            sns.create_topic().name("gpu-recovery").send().await.expect("topic").topic_arn().expect("arn").to_string();
        let (url, messages) = sns_listener().await;
        sns.subscribe().topic_arn(&topic).protocol("http").endpoint(url).send().await.expect("subscribe");

        let mut config: Vec<(String, String)> = [
            ("RECOVERY_CLUSTER", CLUSTER),
            ("RECOVERY_DIAG_TASK_DEFINITION", DIAG_FAMILY),
            ("RECOVERY_DIAG_CONTAINER", "dcgm"),
            ("RECOVERY_TASK_TABLE", TASK_TABLE),
            ("RECOVERY_JOB_TABLE", JOB_TABLE),
            ("RECOVERY_NODE_TABLE", NODE_TABLE),
            ("RECOVERY_SNS_TOPIC_ARN", topic.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in env {
            config.retain(|(key, _)| key != k);
            config.push((k.to_string(), v.to_string()));
        }
        Self {
            moto,
            sdk,
            ecs,
            ddb,
            cluster_arn,
            instances: registered,
            env: config,
            sns: messages,
            recording,
            _dir: dir,
        }
    }

    pub fn config(&self) -> RecoveryConfig {
        let env = self.env.clone();
        RecoveryConfig::from_lookup(move |k| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
            .expect("valid recovery config")
    }

    /// A fresh function instance (as a new Lambda execution environment would be).
    pub fn recovery(&self) -> Recovery<AwsFleet> {
        recovery::from_sdk(self.config(), &self.sdk)
    }

    /// Starts a task of `family` on `ci` and stops it; its ARN.
    pub async fn stopped_task(
        &self,
        family: &str,
        ci: &str,
        group: Option<&str>,
        overrides: Option<TaskOverride>,
    ) -> String {
        let out = self
            .ecs
            .start_task()
            .cluster(CLUSTER)
            .task_definition(family)
            .container_instances(ci)
            .set_group(group.map(str::to_string))
            .set_overrides(overrides)
            .started_by("test")
            .send()
            .await
            .expect("start task");
        let arn = out.tasks().first().and_then(|t| t.task_arn()).expect("task arn").to_string();
        self.ecs.stop_task().cluster(CLUSTER).task(&arn).reason("test").send().await.expect("stop task");
        arn
    }

    /// A recorded event shape with this cluster's, task's and instance's identities.
    pub fn task_event(&self, name: &str, task_arn: &str, ci: &str, time: i64) -> Value {
        let mut e = fixture(name);
        e["id"] = json!(format!("{}-{}", e["id"].as_str().unwrap_or("event"), resource_id(task_arn)));
        e["time"] = json!(rfc3339(time));
        e["resources"] = json!([task_arn]);
        let d = &mut e["detail"];
        d["clusterArn"] = json!(self.cluster_arn);
        d["taskArn"] = json!(task_arn);
        d["containerInstanceArn"] = json!(ci);
        for c in d["containers"].as_array_mut().expect("containers") {
            c["taskArn"] = json!(task_arn);
        }
        e
    }

    /// The stop event of a diagnostic task this function started, with the DCGM exit code.
    pub async fn diag_stopped_event(&self, diag_arn: &str, ci: &str, exit_code: i32, time: i64) -> Value {
        let started_by = self.describe(diag_arn).await.started_by().expect("startedBy").to_string();
        let mut e = self.task_event("task-stopped-dcgm-diagnostic", diag_arn, ci, time);
        e["detail"]["startedBy"] = json!(started_by);
        e["detail"]["containers"][0]["exitCode"] = json!(exit_code);
        e
    }

    pub fn instance_event(&self, instance: &Instance, status: &str, connected: bool, version: i64, time: i64) -> Value {
        let mut e = fixture("container-instance-state-change");
        e["id"] = json!(format!("ci-{}-{version}", resource_id(&instance.arn)));
        e["time"] = json!(rfc3339(time));
        e["resources"] = json!([instance.arn]);
        let d = &mut e["detail"];
        d["clusterArn"] = json!(self.cluster_arn);
        d["containerInstanceArn"] = json!(instance.arn);
        d["ec2InstanceId"] = json!(instance.ec2);
        d["status"] = json!(status);
        d["agentConnected"] = json!(connected);
        d["version"] = json!(version);
        e
    }

    pub async fn describe(&self, task_arn: &str) -> aws_sdk_ecs::types::Task {
        let out = self.ecs.describe_tasks().cluster(CLUSTER).tasks(task_arn).send().await.expect("describe tasks");
        out.tasks().first().cloned().expect("task")
    }

    /// Tasks on `ci` whose `startedBy` starts with `prefix`, running or stopped, oldest first.
    pub async fn tasks_started_by(&self, ci: &str, prefix: &str) -> Vec<aws_sdk_ecs::types::Task> {
        let mut arns = Vec::new();
        for status in [aws_sdk_ecs::types::DesiredStatus::Running, aws_sdk_ecs::types::DesiredStatus::Stopped] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(CLUSTER)
                .container_instance(ci)
                .desired_status(status)
                .send()
                .await
                .expect("list tasks");
            arns.extend(out.task_arns().iter().cloned());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let out =
            self.ecs.describe_tasks().cluster(CLUSTER).set_tasks(Some(arns)).send().await.expect("describe tasks");
        let mut tasks: Vec<_> =
            out.tasks().iter().filter(|t| t.started_by().is_some_and(|s| s.starts_with(prefix))).cloned().collect();
        tasks.sort_by_key(|t| t.created_at().map(|c| c.as_nanos()).unwrap_or_default());
        tasks
    }

    pub async fn diag_tasks(&self, ci: &str) -> Vec<aws_sdk_ecs::types::Task> {
        self.tasks_started_by(ci, "gpu-recovery/d/").await
    }

    pub async fn instance_status(&self, ci: &str) -> String {
        let out = self
            .ecs
            .describe_container_instances()
            .cluster(CLUSTER)
            .container_instances(ci)
            .send()
            .await
            .expect("describe ci");
        out.container_instances().first().and_then(|c| c.status()).expect("status").to_string()
    }

    pub async fn item(
        &self,
        table: &str,
        key: &str,
        value: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        let out = self
            .ddb
            .get_item()
            .table_name(table)
            .key(key, AttributeValue::S(value.into()))
            .send()
            .await
            .expect("get item");
        out.item
    }

    pub async fn node_state(&self, ci: &str) -> Option<String> {
        self.item(NODE_TABLE, "container_instance_arn", ci)
            .await
            .and_then(|i| i.get("state").and_then(|s| s.as_s().ok()).cloned())
    }

    pub async fn task_state(&self, task_arn: &str) -> Option<String> {
        self.item(TASK_TABLE, "task_arn", task_arn)
            .await
            .and_then(|i| i.get("state").and_then(|s| s.as_s().ok()).cloned())
    }

    pub async fn scan_count(&self, table: &str) -> usize {
        self.ddb.scan().table_name(table).send().await.expect("scan").items().len()
    }

    /// SNS notifications delivered to the HTTP subscription.
    pub fn sns_messages(&self) -> Vec<Value> {
        self.sns.lock().expect("lock").iter().filter(|m| m["Type"] == "Notification").cloned().collect()
    }

    /// Requests moto served for `op` (an ECS target such as `StartTask`, or a query `Action`),
    /// with their bodies.
    pub fn calls(&self, op: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        let mut found = Vec::new();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
            let body = entry["body"].as_str().unwrap_or("");
            let body = if entry["body_encoded"].as_bool().unwrap_or(false) {
                String::from_utf8_lossy(&aws_smithy_types::base64::decode(body).unwrap_or_default()).into_owned()
            } else {
                body.to_string()
            };
            let target = entry["headers"]
                .as_object()
                .and_then(|h| {
                    h.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target")).and_then(|(_, v)| v.as_str())
                })
                .unwrap_or("");
            if target.rsplit('.').next() == Some(op) || body.split('&').any(|p| p == format!("Action={op}")) {
                found.push(body);
            }
        }
        found
    }
}
