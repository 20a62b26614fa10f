//! The GPU recovery function against moto_server (ECS, EC2, DynamoDB, SNS), driven by the
//! recorded event shapes in `tests/fixtures/`: application failures left alone, the
//! healthy and faulty diagnosis paths, the retry limits, duplicate and racing events, malformed
//! events, and the `kvs-infer-recovery` binary speaking the Lambda runtime API.

mod cluster;

use std::sync::Arc;

use aws_sdk_ecs::types::{ContainerOverride, TaskOverride};
use cluster::{BATCH_FAMILY, GpuCluster, JOB_TABLE, NODE_TABLE, SERVICE_FAMILY, T0, TASK_TABLE};
use kvs_infer_recovery::Outcome;
use serde_json::{Value, json};

fn action(o: &Outcome) -> String {
    serde_json::to_value(o).expect("json")["action"].as_str().expect("action").to_string()
}

fn batch_overrides() -> TaskOverride {
    TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name("reindex")
                .set_command(Some(vec!["reindex".into(), "--since".into(), "24h".into()]))
                .build(),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_failures_are_left_to_ecs() {
    let c = GpuCluster::start(1, &[]).await;
    let ci = c.instances[0].arn.clone();
    let r = c.recovery();

    let task = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let out = r.handle_at(&c.task_event("task-stopped-application-exit", &task, &ci, T0), T0).await.expect("handled");
    assert_eq!(action(&out), "application_failure", "{out:?}");
    // A failed health check with no GPU fault on record is the application's too.
    let task2 = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let out =
        r.handle_at(&c.task_event("task-stopped-health-check", &task2, &ci, T0 + 5), T0 + 5).await.expect("handled");
    assert_eq!(action(&out), "application_failure", "{out:?}");
    // Exit 86 from a task that asked for no GPU (no gpuIds, no GPU in its definition) is not a GPU fault.
    c.ecs
        .register_task_definition()
        .family("cpu-only")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder().name("kvs-infer").image("x").memory(256).build(),
        )
        .send()
        .await
        .expect("task definition");
    let task3 = c.stopped_task("cpu-only", &ci, None, None).await;
    let mut e = c.task_event("task-stopped-gpu-exit-86", &task3, &ci, T0 + 6);
    e["detail"]["taskDefinitionArn"] = json!(c.describe(&task3).await.task_definition_arn().expect("td"));
    e["detail"]["containers"][0].as_object_mut().expect("container").remove("gpuIds");
    let out = r.handle_at(&e, T0 + 6).await.expect("handled");
    assert_eq!(action(&out), "application_failure", "{out:?}");
    // A task still running is not a failure at all.
    let out = r.handle_at(&c.task_event("task-running", &task, &ci, T0 + 7), T0 + 7).await.expect("handled");
    assert_eq!(action(&out), "ignored", "{out:?}");

    assert!(c.diag_tasks(&ci).await.is_empty(), "no diagnosis for application failures");
    assert_eq!(c.instance_status(&ci).await, "ACTIVE");
    for table in [TASK_TABLE, JOB_TABLE, NODE_TABLE] {
        assert_eq!(c.scan_count(table).await, 0, "{table} written for an application failure");
    }
    assert!(
        c.calls("UpdateContainerInstancesState").is_empty() && c.calls("StartTask").len() == 3,
        "only the test's own StartTask calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_failure_is_diagnosed_on_its_instance_and_a_healthy_gpu_returns_to_service() {
    let c = GpuCluster::start(2, &[]).await;
    let (ci, other) = (c.instances[0].arn.clone(), c.instances[1].arn.clone());
    let r = c.recovery();

    // The inference service exits 86 on its GPU fault.
    let service_task = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let out =
        r.handle_at(&c.task_event("task-stopped-gpu-exit-86", &service_task, &ci, T0), T0).await.expect("handled");
    assert_eq!(action(&out), "diagnosis_started", "{out:?}");
    let diags = c.diag_tasks(&ci).await;
    assert_eq!(diags.len(), 1, "one diagnostic");
    assert_eq!(diags[0].container_instance_arn(), Some(ci.as_str()), "placed on the suspect instance");
    assert!(diags[0].task_definition_arn().is_some_and(|t| t.contains("task-definition/dcgm-diag:")));
    assert_eq!(c.instance_status(&ci).await, "DRAINING", "drained while the diagnostic runs");
    assert_eq!(c.instance_status(&other).await, "ACTIVE");
    assert!(c.diag_tasks(&other).await.is_empty());

    // A standalone batch job on the same instance fails to start: nvidia-container-cli / NVML.
    let batch_task = c.stopped_task(BATCH_FAMILY, &ci, None, Some(batch_overrides())).await;
    let mut e = c.task_event("task-stopped-nvidia-runtime", &batch_task, &ci, T0 + 10);
    e["detail"]["group"] = json!(c.describe(&batch_task).await.group().expect("group"));
    let out = r.handle_at(&e, T0 + 10).await.expect("handled");
    assert_eq!(action(&out), "attached", "joins the running recovery: {out:?}");
    // A failed health check after the recorded GPU fault is GPU-suspect too.
    let hc_task = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let out = r
        .handle_at(&c.task_event("task-stopped-health-check", &hc_task, &ci, T0 + 20), T0 + 20)
        .await
        .expect("handled");
    assert_eq!(action(&out), "attached", "{out:?}");
    assert_eq!(c.diag_tasks(&ci).await.len(), 1, "still one diagnostic");

    // DCGM passes: back to ACTIVE, the batch job restarted with its overrides, the service's
    // tasks left to the service scheduler.
    let diag_arn = diags[0].task_arn().expect("arn").to_string();
    let out = r.handle_at(&c.diag_stopped_event(&diag_arn, &ci, 0, T0 + 300).await, T0 + 300).await.expect("handled");
    assert_eq!(action(&out), "recovered", "{out:?}");
    assert_eq!(c.instance_status(&ci).await, "ACTIVE");
    let restarted = c.tasks_started_by(&ci, "gpu-recovery/r/").await;
    assert_eq!(restarted.len(), 1, "the batch job only: {restarted:?}");
    assert!(restarted[0].task_definition_arn().is_some_and(|t| t.contains(BATCH_FAMILY)));
    let command = restarted[0].overrides().and_then(|o| o.container_overrides().first()).map(|c| c.command().to_vec());
    assert_eq!(command, Some(vec!["reindex".to_string(), "--since".into(), "24h".into()]), "overrides kept");
    assert_eq!(c.task_state(&batch_task).await.as_deref(), Some("RESTARTED"));
    assert_eq!(c.task_state(&service_task).await.as_deref(), Some("LEFT_TO_SERVICE"));
    assert_eq!(c.task_state(&hc_task).await.as_deref(), Some("LEFT_TO_SERVICE"));
    assert_eq!(c.node_state(&ci).await.as_deref(), Some("HEALTHY"));
    assert!(c.calls("RebootInstances").is_empty(), "a healthy GPU is not rebooted");
    assert!(c.sns_messages().is_empty());

    // The same diagnostic result again (Lambda retry): nothing more happens.
    let again = r.handle_at(&c.diag_stopped_event(&diag_arn, &ci, 0, T0 + 300).await, T0 + 301).await.expect("handled");
    assert_eq!(action(&again), "duplicate", "{again:?}");
    assert_eq!(c.tasks_started_by(&ci, "gpu-recovery/r/").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_gpu_is_rebooted_rediagnosed_when_it_rejoins_and_its_tasks_restarted() {
    let c = GpuCluster::start(1, &[]).await;
    let inst = c.instances[0].clone();
    let ci = inst.arn.clone();
    let r = c.recovery();

    let batch_task = c.stopped_task(BATCH_FAMILY, &ci, None, Some(batch_overrides())).await;
    let mut e = c.task_event("task-stopped-gpu-exit-86", &batch_task, &ci, T0);
    e["detail"]["group"] = json!(format!("family:{BATCH_FAMILY}"));
    e["detail"]["startedBy"] = json!("nightly-reindex");
    assert_eq!(action(&r.handle_at(&e, T0).await.expect("handled")), "diagnosis_started");
    let first = c.diag_tasks(&ci).await[0].task_arn().expect("arn").to_string();

    // DCGM fails: reboot through EC2, instance kept drained.
    let out = r.handle_at(&c.diag_stopped_event(&first, &ci, 4, T0 + 200).await, T0 + 200).await.expect("handled");
    assert_eq!(action(&out), "rebooting", "{out:?}");
    let reboots = c.calls("RebootInstances");
    assert_eq!(reboots.len(), 1);
    assert!(reboots[0].contains(&format!("InstanceId.1={}", inst.ec2)), "the instance's own EC2 id: {}", reboots[0]);
    assert_eq!(c.instance_status(&ci).await, "DRAINING");
    assert!(c.tasks_started_by(&ci, "gpu-recovery/r/").await.is_empty(), "nothing restarted on a faulty GPU");

    // The agent drops during the reboot, then reconnects: the diagnosis runs again.
    let out = r.handle_at(&c.instance_event(&inst, "DRAINING", false, 20, T0 + 230), T0 + 230).await.expect("handled");
    assert_eq!(action(&out), "noted", "{out:?}");
    let out = r.handle_at(&c.instance_event(&inst, "DRAINING", true, 21, T0 + 290), T0 + 290).await.expect("handled");
    assert!(matches!(out, Outcome::DiagnosisStarted { attempt: 2, .. }), "{out:?}");
    let diags = c.diag_tasks(&ci).await;
    assert_eq!(diags.len(), 2, "a second diagnostic after the reboot");
    let second =
        diags.iter().map(|t| t.task_arn().expect("arn").to_string()).find(|a| *a != first).expect("new diagnostic");
    // A stale instance event (older version) changes nothing.
    let out = r.handle_at(&c.instance_event(&inst, "DRAINING", true, 19, T0 + 295), T0 + 295).await.expect("handled");
    assert_eq!(action(&out), "ignored", "{out:?}");

    // Now DCGM passes: ACTIVE again and the batch job restarted on it.
    let out = r.handle_at(&c.diag_stopped_event(&second, &ci, 0, T0 + 500).await, T0 + 500).await.expect("handled");
    assert_eq!(action(&out), "recovered", "{out:?}");
    assert_eq!(c.instance_status(&ci).await, "ACTIVE");
    let restarted = c.tasks_started_by(&ci, "gpu-recovery/r/").await;
    assert_eq!(restarted.len(), 1);
    assert_eq!(c.task_state(&batch_task).await.as_deref(), Some("RESTARTED"));
    assert_eq!(c.calls("RebootInstances").len(), 1, "one reboot in all");
    assert!(c.sns_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_retry_limit_the_instance_stays_drained_and_sns_hears_once() {
    let c = GpuCluster::start(1, &[]).await;
    let inst = c.instances[0].clone();
    let ci = inst.arn.clone();
    let r = c.recovery();

    let task = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    assert_eq!(
        action(&r.handle_at(&c.task_event("task-stopped-gpu-exit-86", &task, &ci, T0), T0).await.expect("handled")),
        "diagnosis_started"
    );
    let mut now = T0;
    let mut version = 100;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let diags = c.diag_tasks(&ci).await;
        let latest = diags.last().and_then(|t| t.task_arn()).expect("diagnostic").to_string();
        now += 300;
        let out = r.handle_at(&c.diag_stopped_event(&latest, &ci, 4, now).await, now).await.expect("handled");
        outcomes.push(action(&out));
        if !matches!(out, Outcome::Rebooting { .. }) {
            break;
        }
        now += 120;
        version += 2;
        r.handle_at(&c.instance_event(&inst, "DRAINING", false, version - 1, now - 60), now - 60)
            .await
            .expect("handled");
        let out = r.handle_at(&c.instance_event(&inst, "DRAINING", true, version, now), now).await.expect("handled");
        assert_eq!(action(&out), "diagnosis_started", "{out:?}");
    }
    assert_eq!(
        outcomes,
        ["rebooting", "rebooting", "quarantined"],
        "three diagnoses (default limit 3 in 24 h), then quarantine"
    );
    assert_eq!(c.diag_tasks(&ci).await.len(), 3);
    assert_eq!(c.calls("RebootInstances").len(), 2);
    assert_eq!(c.instance_status(&ci).await, "DRAINING", "kept out of service");
    assert_eq!(c.node_state(&ci).await.as_deref(), Some("QUARANTINED"));

    let messages = c.sns_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0]["Subject"].as_str().is_some_and(|s| s.contains("quarantined")), "{}", messages[0]);
    let body: Value = serde_json::from_str(messages[0]["Message"].as_str().expect("message")).expect("json message");
    assert_eq!(body["container_instance_arn"], json!(ci));
    assert_eq!(body["ec2_instance_id"], json!(inst.ec2));
    assert_eq!(body["diagnoses_in_window"].as_array().map(Vec::len), Some(3));
    let history = body["history"].to_string();
    for step in ["diagnosis 1 started", "rebooting the instance", "diagnosis 3 started", "quarantined"] {
        assert!(history.contains(step), "`{step}` missing from what was tried: {history}");
    }

    // More GPU failures on it: recorded, no new diagnosis, no second message.
    let task2 = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let out =
        r.handle_at(&c.task_event("task-stopped-gpu-exit-86", &task2, &ci, now + 60), now + 60).await.expect("handled");
    assert_eq!(action(&out), "attached", "{out:?}");
    assert_eq!(c.diag_tasks(&ci).await.len(), 3);
    assert_eq!(c.sns_messages().len(), 1);

    // An operator sets it ACTIVE: released, counting starts afresh.
    c.ecs
        .update_container_instances_state()
        .cluster(cluster::CLUSTER)
        .container_instances(&ci)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Active)
        .send()
        .await
        .expect("operator");
    let out = r
        .handle_at(&c.instance_event(&inst, "ACTIVE", true, version + 10, now + 120), now + 120)
        .await
        .expect("handled");
    assert_eq!(action(&out), "released", "{out:?}");
    assert_eq!(c.node_state(&ci).await.as_deref(), Some("HEALTHY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_limit_leaves_a_gpu_breaking_job_to_ecs() {
    let c = GpuCluster::start(3, &[("RECOVERY_MAX_ATTEMPTS_PER_JOB", "1")]).await;
    let r = c.recovery();
    let fail_on = async |i: usize, t: i64| {
        let inst = &c.instances[i].arn;
        let task = c.stopped_task(SERVICE_FAMILY, inst, Some("service:kvs-infer"), None).await;
        r.handle_at(&c.task_event("task-stopped-gpu-exit-86", &task, inst, t), t).await.expect("handled")
    };
    assert_eq!(action(&fail_on(0, T0).await), "diagnosis_started");
    // A second task of the job failing on the same instance is the same incident.
    assert_eq!(action(&fail_on(0, T0 + 5).await), "attached");
    let second = fail_on(1, T0 + 100).await;
    assert!(matches!(&second, Outcome::JobLimit { notified: true, incidents: 2, .. }), "{second:?}");
    let third = fail_on(2, T0 + 200).await;
    assert!(matches!(&third, Outcome::JobLimit { notified: false, incidents: 3, .. }), "{third:?}");
    assert_eq!(c.instance_status(&c.instances[1].arn).await, "ACTIVE", "not drained past the job limit");
    assert!(c.diag_tasks(&c.instances[2].arn).await.is_empty());
    let messages = c.sns_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0]["Subject"].as_str().is_some_and(|s| s.contains("service:kvs-infer")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_racing_events_act_exactly_once() {
    let c = Arc::new(GpuCluster::start(3, &[]).await);
    let r = Arc::new(c.recovery());

    // The same event twice, one after the other.
    let ci = c.instances[0].arn.clone();
    let task = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let e = c.task_event("task-stopped-gpu-exit-86", &task, &ci, T0);
    assert_eq!(action(&r.handle_at(&e, T0).await.expect("first")), "diagnosis_started");
    assert_eq!(action(&r.handle_at(&e, T0 + 1).await.expect("second")), "duplicate");
    assert_eq!(c.diag_tasks(&ci).await.len(), 1);

    // Two different GPU failures on one instance, handled at the same time by two function instances.
    let ci = c.instances[1].arn.clone();
    let t1 = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let t2 = c.stopped_task(BATCH_FAMILY, &ci, None, None).await;
    let (e1, e2) = (
        c.task_event("task-stopped-gpu-exit-86", &t1, &ci, T0),
        c.task_event("task-stopped-gpu-exit-86", &t2, &ci, T0),
    );
    let (r1, r2) = (Arc::new(c.recovery()), Arc::new(c.recovery()));
    let (a, b) = tokio::join!(
        tokio::spawn(async move { r1.handle_at(&e1, T0).await }),
        tokio::spawn(async move { r2.handle_at(&e2, T0).await })
    );
    let mut got = [action(&a.expect("join").expect("handled")), action(&b.expect("join").expect("handled"))];
    got.sort();
    assert_eq!(got, ["attached", "diagnosis_started"]);
    assert_eq!(c.diag_tasks(&ci).await.len(), 1, "exactly one diagnostic");

    // The same event delivered twice at the same time.
    let ci = c.instances[2].arn.clone();
    let t3 = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let e3 = c.task_event("task-stopped-gpu-exit-86", &t3, &ci, T0);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (r, e) = (Arc::new(c.recovery()), e3.clone());
            tokio::spawn(async move { r.handle_at(&e, T0).await })
        })
        .collect();
    let mut started = 0;
    for h in handles {
        let out = h.await.expect("join").expect("handled");
        started += usize::from(matches!(out, Outcome::DiagnosisStarted { .. }));
    }
    let diags = c.diag_tasks(&ci).await;
    assert_eq!(started, 1);
    assert_eq!(
        diags.len(),
        1,
        "exactly one diagnostic: {:?}",
        diags.iter().map(|t| t.started_by()).collect::<Vec<_>>()
    );

    // Drains: one per instance (of 3), no more.
    let drains = c.calls("UpdateContainerInstancesState");
    assert_eq!(drains.len(), 3, "{drains:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_events_are_logged_and_acknowledged() {
    let c = GpuCluster::start(1, &[]).await;
    let r = c.recovery();
    let ci = c.instances[0].arn.clone();
    let mut wrong_cluster =
        c.task_event("task-stopped-gpu-exit-86", "arn:aws:ecs:us-east-1:123456789012:task/other/1", &ci, T0);
    wrong_cluster["detail"]["clusterArn"] = json!("arn:aws:ecs:us-east-1:123456789012:cluster/other");
    let mut no_instance =
        c.task_event("task-stopped-gpu-exit-86", "arn:aws:ecs:us-east-1:123456789012:task/gpu/2", &ci, T0);
    no_instance["detail"].as_object_mut().expect("detail").remove("containerInstanceArn");
    let mut bad_exit =
        c.task_event("task-stopped-gpu-exit-86", "arn:aws:ecs:us-east-1:123456789012:task/gpu/3", &ci, T0);
    bad_exit["detail"]["containers"][0]["exitCode"] = json!("eighty-six");
    let mut unknown_node = c.instance_event(&c.instances[0], "ACTIVE", true, 1, T0);
    unknown_node["detail"]["containerInstanceArn"] =
        json!("arn:aws:ecs:us-east-1:123456789012:container-instance/gpu/unknown");
    let cases = [
        Value::Null,
        json!("ECS Task State Change"),
        json!(42),
        json!([{"detail-type": "ECS Task State Change"}]),
        json!({}),
        json!({"detail-type": "ECS Task State Change", "source": "aws.ecs"}),
        json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {"state": "stopped"}}),
        json!({"detail-type": "ECS Service Action", "source": "aws.ecs", "detail": {"eventName": "SERVICE_STEADY_STATE"}}),
        json!({"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": {"taskArn": ["not", "a", "string"]}}),
        json!({"detail-type": "ECS Container Instance State Change", "source": "aws.ecs", "detail": {"clusterArn": c.cluster_arn}}),
        json!({"detail-type": "ECS Task State Change", "source": "aws.ecs", "time": "yesterday", "detail": {"x": "y".repeat(100_000)}}),
        wrong_cluster,
        no_instance,
        bad_exit,
        unknown_node,
    ];
    for raw in &cases {
        let out = r.handle_at(raw, T0).await.unwrap_or_else(|e| panic!("{raw:.200} failed: {e}"));
        assert_eq!(action(&out), "ignored", "{raw:.200}: {out:?}");
    }
    for table in [TASK_TABLE, JOB_TABLE, NODE_TABLE] {
        assert_eq!(c.scan_count(table).await, 0, "{table} written for a malformed event");
    }
    assert!(c.diag_tasks(&ci).await.is_empty());
}

/// What a custom runtime sends back to the Lambda runtime API.
#[derive(Debug, Clone)]
struct Reply {
    request_id: String,
    kind: &'static str,
    body: Value,
}

/// The Lambda runtime API (the HTTP interface Lambda gives a custom runtime), serving `events`
/// one per `next` call and keeping the replies; after the last event `next` waits forever,
/// as Lambda does between invocations.
async fn runtime_api(events: Vec<Value>) -> (String, Arc<std::sync::Mutex<Vec<Reply>>>) {
    use kvs_infer_testkit::http::{Request, Response, serve};
    const PREFIX: &str = "/2018-06-01/runtime/";
    let queue = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(events)));
    let replies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keep = replies.clone();
    let addr = serve(move |req: Request| {
        let (queue, counter, replies) = (queue.clone(), counter.clone(), keep.clone());
        async move {
            let route = req.path.strip_prefix(PREFIX).unwrap_or_default().to_owned();
            if req.method == "GET" && route == "invocation/next" {
                let next = queue.lock().expect("lock").pop_front();
                let Some(event) = next else {
                    std::future::pending::<()>().await;
                    unreachable!()
                };
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let deadline =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
                        + 60_000;
                return Response::new(200, event.to_string())
                    .header("lambda-runtime-aws-request-id", format!("req-{n}"))
                    .header("lambda-runtime-deadline-ms", deadline.to_string())
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:kvs-infer-recovery",
                    )
                    .header("lambda-runtime-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793");
            }
            let reply = match route.split('/').collect::<Vec<_>>().as_slice() {
                ["invocation", id, "response"] => Some((id.to_string(), "response")),
                ["invocation", id, "error"] => Some((id.to_string(), "error")),
                ["init", "error"] => Some(("init".to_owned(), "init_error")),
                _ => None,
            };
            match reply {
                Some((request_id, kind)) if req.method == "POST" => {
                    let body = if kind == "init_error" {
                        Value::String(req.body)
                    } else {
                        serde_json::from_str(&req.body).unwrap_or(Value::String(req.body))
                    };
                    replies.lock().expect("lock").push(Reply { request_id, kind, body });
                    Response::new(202, "")
                }
                _ => Response::new(404, "not a runtime API route"),
            }
        }
    })
    .await;
    (addr.to_string(), replies)
}

/// Runs the `kvs-infer-recovery` binary against a runtime API serving `events`; its replies.
async fn run_function(c: &GpuCluster, events: Vec<Value>, env: &[(&str, &str)]) -> Vec<Reply> {
    let expected = events.len();
    let (api, replies) = runtime_api(events).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kvs-infer-recovery"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "kvs-infer-recovery")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .envs(kvs_infer_testkit::moto::env_for(&c.moto.url()))
        .envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start kvs-infer-recovery");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while replies.lock().expect("lock").len() < expected {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr).expect("read");
            panic!(
                "kvs-infer-recovery exited ({status}) after {} replies:\n{stderr}",
                replies.lock().expect("lock").len()
            );
        }
        assert!(std::time::Instant::now() < deadline, "no replies within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    replies.lock().expect("lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_acknowledges_bad_events_and_acts_on_gpu_failures() {
    let c = GpuCluster::start(1, &[]).await;
    let ci = c.instances[0].arn.clone();
    let app = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let gpu = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let now = kvs_infer_recovery::event::now();
    let events = vec![
        Value::Null,
        json!({"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": {"taskArn": 7}}),
        c.task_event("task-stopped-application-exit", &app, &ci, now),
        c.task_event("task-stopped-gpu-exit-86", &gpu, &ci, now),
    ];
    let replies = run_function(&c, events, &[]).await;
    let kinds: Vec<_> =
        replies.iter().map(|r| (r.request_id.as_str(), r.kind, r.body["action"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        kinds,
        [
            ("req-0", "response", "ignored"),
            ("req-1", "response", "ignored"),
            ("req-2", "response", "application_failure"),
            ("req-3", "response", "diagnosis_started"),
        ]
    );
    assert_eq!(c.diag_tasks(&ci).await.len(), 1);
    assert_eq!(c.instance_status(&ci).await, "DRAINING");

    // A failing AWS call (here: a node table that does not exist) is an error reply, so Lambda
    // retries the event; the process stays up for the next one.
    let other = c.stopped_task(SERVICE_FAMILY, &ci, Some("service:kvs-infer"), None).await;
    let replies = run_function(
        &c,
        vec![c.task_event("task-stopped-gpu-exit-86", &other, &ci, now), Value::Null],
        &[("RECOVERY_NODE_TABLE", "no-such-table")],
    )
    .await;
    assert_eq!(replies[0].kind, "error", "{:?}", replies[0]);
    assert!(replies[0].body.to_string().contains("no-such-table"), "{}", replies[0].body);
    assert_eq!((replies[1].kind, replies[1].body["action"].as_str()), ("response", Some("ignored")));
}

#[test]
fn the_lambda_binary_refuses_an_invalid_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvs-infer-recovery"))
        .env_clear()
        .env("RECOVERY_MAX_ATTEMPTS_PER_INSTANCE", "three")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "RECOVERY_CLUSTER: required",
        "RECOVERY_SNS_TOPIC_ARN: required",
        "RECOVERY_MAX_ATTEMPTS_PER_INSTANCE: `three`",
    ] {
        assert!(stderr.contains(needle), "{needle} missing:\n{stderr}");
    }
}

#[test]
fn the_template_configures_every_variable_the_function_reads() {
    use kvs_infer_recovery::config::*;
    let template = std::fs::read_to_string("template.yaml").expect("template.yaml");
    let known = [
        ENV_CLUSTER,
        ENV_DIAG_TASK_DEFINITION,
        ENV_DIAG_CONTAINER,
        ENV_TASK_TABLE,
        ENV_JOB_TABLE,
        ENV_NODE_TABLE,
        ENV_SNS_TOPIC_ARN,
        ENV_MAX_ATTEMPTS_PER_INSTANCE,
        ENV_MAX_ATTEMPTS_PER_JOB,
        ENV_ATTEMPT_WINDOW,
        ENV_GPU_EXIT_CODES,
        ENV_REJOIN_GRACE,
        ENV_LEASE,
    ];
    let required =
        [ENV_CLUSTER, ENV_DIAG_TASK_DEFINITION, ENV_TASK_TABLE, ENV_JOB_TABLE, ENV_NODE_TABLE, ENV_SNS_TOPIC_ARN];
    for var in required {
        assert!(
            template.contains(&format!("          {var}: ")),
            "the function's environment in the template lacks {var}"
        );
    }
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some((name, _)) = trimmed.split_once(':')
            && name.starts_with("RECOVERY_")
        {
            assert!(known.contains(&name), "the template sets {name}, which the function does not read");
        }
    }
    let docs = std::fs::read_to_string("../../docs/recovery.md").expect("docs/recovery.md");
    for var in known {
        assert!(docs.contains(&format!("`{var}`")), "docs/recovery.md does not document {var}");
    }
}
