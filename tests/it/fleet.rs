//! Several `serve` processes sharing six KVS cameras through the lease table (moto, the GetMedia
//! test server): balanced 2/2/2, a SIGTERM'd task's cameras taken over from released leases, a
//! SIGKILL'd task's from expired ones, and no camera ever running in two processes at once (from
//! every process's log).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::events::deduplicated;
use crate::common::kvs_capture::{Stamps, capture};
use crate::common::kvs_server::KvsServer;
use crate::common::moto::{self, Moto};
use crate::common::service::{self, Service};

const CAMERAS: usize = 6;
const LEASE: Duration = Duration::from_secs(3);

/// `config/local.yaml`'s models with six KVS cameras (1 sampled frame/s, to spare the CPU) in a
/// fleet on `leases`, named `task`.
fn config(dir: &Path, task: &str) -> PathBuf {
    let camera = "target_fps: 1, ocr: { model: text }";
    fleet_config(dir, task, &Fleet { cameras: CAMERAS, camera, sinks: "", tables: "" })
}

/// What a fleet test's config holds besides the models.
struct Fleet<'a> {
    cameras: usize,
    /// Each camera's settings after its source.
    camera: &'a str,
    /// Sinks besides the local one (YAML lines under `sinks:`).
    sinks: &'a str,
    /// Suffix of the lease and checkpoint tables' names.
    tables: &'a str,
}

fn fleet_config(dir: &Path, task: &str, f: &Fleet<'_>) -> PathBuf {
    let local = std::fs::read_to_string("config/local.yaml").expect("config");
    let head = local.split("cameras:").next().expect("cameras").replace("port: 8080", "port: 0");
    let (tables, camera) = (f.tables, f.camera);
    let cameras: String = (0..f.cameras)
        .map(|i| {
            format!(
                "  - {{ id: cam-{i}, source: {{ kind: kvs, stream_name: cam-{i}, start: earliest, checkpoint_table: checkpoints{tables} }}, {camera} }}\n"
            )
        })
        .collect();
    let out = dir.join(task);
    let yaml = format!(
        "{head}cameras:\n{cameras}sinks:\n  local: {{ dir: {} }}\n{}outbox:\n  dir: {}\nfleet:\n  lease_table: leases{tables}\n  lease_duration: 3s\n  task_id: {task}\n",
        out.join("out").display(),
        f.sinks,
        out.join("outbox").display()
    );
    let path = dir.join(format!("{task}.yaml"));
    std::fs::write(&path, yaml).expect("config");
    path
}

struct Task {
    svc: Service,
    url: String,
}

fn start(dir: &Path, name: &'static str, env: &[(&str, String)]) -> Task {
    start_config(&config(dir, name), env)
}

fn start_config(config: &Path, env: &[(&str, String)]) -> Task {
    let svc = Service::start(config, env);
    let url = svc.base_url();
    svc.wait_for_log("ready");
    Task { svc, url }
}

async fn owned(task: &Task) -> Option<f64> {
    let (_, metrics) = service::get(&format!("{}/metrics", task.url)).await;
    service::metric(&metrics, "fleet_cameras_owned")
}

/// Waits (90 s at most: three processes share two cores) until each task owns `want` cameras.
async fn until_owned(tasks: &[&Task], want: &[f64]) -> Duration {
    let started = Instant::now();
    loop {
        let mut now = Vec::new();
        for t in tasks {
            now.push(owned(t).await.unwrap_or(-1.0));
        }
        if now == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(90), "cameras owned {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A camera starting or stopping in a process, at a time.
#[derive(Debug, Clone)]
struct Change {
    at: SystemTime,
    task: &'static str,
    camera: String,
    running: bool,
    reason: Option<String>,
}

fn changes(task: &'static str, logs: &[serde_json::Value]) -> Vec<Change> {
    logs.iter()
        .filter_map(|l| {
            let running = match l["message"].as_str()? {
                "fleet: lease taken; starting the camera" => true,
                "camera: analysis stopped" => false,
                _ => return None,
            };
            let at = humantime::parse_rfc3339_weak(l["timestamp"].as_str()?).ok()?;
            let reason = l["reason"].as_str().map(str::to_owned);
            Some(Change { at, task, camera: l["camera"].as_str()?.to_owned(), running, reason })
        })
        .collect()
}

/// The plate video as a minute-old KVS backlog, and moto with the lease and checkpoint tables.
async fn world() -> (KvsServer, Moto) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let fragments =
        capture("tests/fixtures/sample/plates.mkv", &Stamps { producer_start_ms: now - 60_000, behind_ms: |_| 500 });
    let server = KvsServer::start(fragments, vec![]).await;
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk().await);
    moto::create_table(&ddb, "leases", "camera").await;
    moto::create_table(&ddb, "checkpoints", "stream").await;
    (server, moto)
}

/// No camera starts in one process while it is still being analysed in another.
fn assert_never_twice(all: &mut [Change]) {
    all.sort_by_key(|c| c.at);
    let mut runners: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for ch in all.iter() {
        let r = runners.entry(ch.camera.clone()).or_default();
        if ch.running {
            assert!(r.is_empty(), "{} started in {} while running in {r:?}: {all:#?}", ch.camera, ch.task);
            r.push(ch.task);
        } else {
            r.retain(|t| *t != ch.task);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tasks_share_six_cameras_hand_them_over_and_never_run_one_twice() {
    let (server, moto) = world().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));

    let a = start(dir.path(), "a", &env);
    let b = start(dir.path(), "b", &env);
    let c = start(dir.path(), "c", &env);
    let balanced = until_owned(&[&a, &b, &c], &[2.0, 2.0, 2.0]).await;
    eprintln!("balanced 2/2/2 {balanced:?} after the third task was ready");

    // SIGTERM: c drains, releases, and a and b take its cameras free.
    let mut c = c;
    c.svc.signal("-TERM");
    let c_logs = c.svc.remaining_logs();
    assert_eq!(c.svc.wait_exit(Duration::from_secs(30)), Some(0));
    let taken_over = until_owned(&[&a, &b], &[3.0, 3.0]).await;
    eprintln!("SIGTERM: taken over {taken_over:?} after the exit");

    // SIGKILL: b's leases expire (by a's clock) and a takes all six.
    let mut b = b;
    b.svc.signal("-KILL");
    let killed_at = SystemTime::now();
    b.svc.wait_exit(Duration::from_secs(10));
    let b_logs = b.svc.remaining_logs();
    let failover = until_owned(&[&a], &[6.0]).await;
    eprintln!("SIGKILL: taken over {failover:?} after the kill");
    assert!(failover >= LEASE, "not before the leases could expire: {failover:?}");

    let mut a = a;
    a.svc.signal("-TERM");
    let a_logs = a.svc.remaining_logs();
    assert_eq!(a.svc.wait_exit(Duration::from_secs(30)), Some(0));

    let mut all: Vec<Change> = changes("a", &a_logs);
    all.extend(changes("b", &b_logs));
    all.extend(changes("c", &c_logs));
    // b's cameras stopped when it was killed.
    let b_running: Vec<String> = {
        let mut state = BTreeMap::new();
        for ch in all.iter().filter(|c| c.task == "b") {
            state.insert(ch.camera.clone(), ch.running);
        }
        state.into_iter().filter(|(_, r)| *r).map(|(c, _)| c).collect()
    };
    assert_eq!(b_running.len(), 3, "b ran 3 cameras when it was killed");
    for camera in b_running {
        all.push(Change { at: killed_at, task: "b", camera, running: false, reason: None });
    }
    assert_never_twice(&mut all);
    // Each camera c drained and released was next started from a free lease, not an expired one.
    let c_stops: Vec<&Change> = all.iter().filter(|ch| ch.task == "c" && !ch.running).collect();
    assert!(!c_stops.is_empty(), "c released its cameras: {all:#?}");
    for stop in &c_stops {
        let next = all.iter().find(|ch| ch.camera == stop.camera && ch.running && ch.at >= stop.at && ch.task != "c");
        assert!(next.is_some_and(|n| n.reason.as_deref() != Some("expired")), "{} after c: {next:?}", stop.camera);
    }
    let takes = |task: &str, reason: &str| {
        all.iter().filter(|c| c.task == task && c.running && c.reason.as_deref() == Some(reason)).count()
    };
    assert!(takes("a", "expired") >= 3, "b's three cameras were taken as expired: {all:#?}");
    assert!(takes("a", "stolen") + takes("b", "stolen") + takes("c", "stolen") > 0, "balancing stole: {all:#?}");
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cut_off_from_dynamodb_stops_its_cameras_before_its_leases_expire_and_comes_back() {
    use crate::common::fault_proxy::FaultProxy;
    let (server, moto) = world().await;
    let proxy = FaultProxy::start(&moto.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = |aws: &str| {
        let mut env = moto::env_for(aws);
        env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
        env
    };
    let a = start(dir.path(), "a", &env(&proxy.url));
    let b = start(dir.path(), "b", &env(&moto.url()));
    until_owned(&[&a, &b], &[3.0, 3.0]).await;

    proxy.cut_dynamodb(true);
    let failover = until_owned(&[&b], &[6.0]).await;
    eprintln!("cut off: the peer runs all six {failover:?} later");
    let (live, _) = service::get(&format!("{}/livez", a.url)).await;
    assert_eq!(live, 200, "a task without its lease table stays live");
    let (_, health) = service::get(&format!("{}/healthz", a.url)).await;
    assert!(health.contains("lease table unreachable"), "and says why: {health}");

    proxy.cut_dynamodb(false);
    let back = until_owned(&[&a, &b], &[3.0, 3.0]).await;
    eprintln!("back: rebalanced {back:?} later");

    let mut all = Vec::new();
    for (name, mut task) in [("a", a), ("b", b)] {
        task.svc.signal("-TERM");
        let logs = task.svc.remaining_logs();
        assert_eq!(task.svc.wait_exit(Duration::from_secs(60)), Some(0));
        all.extend(changes(name, &logs));
    }
    assert_never_twice(&mut all);
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lease_table_fails_startup_naming_it() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "a");
    let mut svc = Service::start(&config, &moto::env_for(&moto.url()));
    let logs = {
        let exit = svc.wait_exit(Duration::from_secs(60));
        assert!(exit.is_some_and(|c| c != 0), "startup must fail: {exit:?}");
        svc.remaining_logs()
    };
    let said = logs.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n");
    assert!(said.contains("cannot read the lease table leases"), "{said}");
    assert!(said.contains("dynamodb:Scan"), "names what the role needs: {said}");
    drop(moto);
}

/// Every camera's checkpoint is on `last` and Kinesis holds as many `end` events as `new` ones.
async fn finished(moto: &Moto, tables: &str, stream: &str, cameras: usize, last: &str) -> bool {
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk().await);
    for i in 0..cameras {
        let item = ddb
            .get_item()
            .table_name(format!("checkpoints{tables}"))
            .key("stream", aws_sdk_dynamodb::types::AttributeValue::S(format!("cam-{i}")))
            .send()
            .await
            .expect("get")
            .item;
        if item.and_then(|i| i.get("fragment_number").and_then(|v| v.as_s().ok()).cloned()).as_deref() != Some(last) {
            return false;
        }
    }
    let events = deduplicated(moto::read_stream(&moto.sdk().await, stream).await);
    let count = |kind: &str| events.values().filter(|e| e["type"] == kind).count();
    count("new") > 0 && count("new") == count("end")
}

async fn until_finished(moto: &Moto, tables: &str, stream: &str, cameras: usize, last: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !finished(moto, tables, stream, cameras, last).await {
        assert!(Instant::now() < deadline, "the cameras did not finish the backlog into {stream}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_in_a_fleet_kinesis_holds_the_events_of_a_run_without_the_kill_once_deduplicated() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let fragments =
        capture("tests/fixtures/sample/plates.mkv", &Stamps { producer_start_ms: now - 60_000, behind_ms: |_| 500 });
    let last = fragments.last().expect("fragments").number.clone();
    let sixth = fragments[5].number.clone();
    let server = KvsServer::start(fragments, vec![]).await;
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for run in ["-solo", "-fleet"] {
        moto::create_table(&ddb, &format!("leases{run}"), "camera").await;
        moto::create_table(&ddb, &format!("checkpoints{run}"), "stream").await;
        let stream = format!("events{run}");
        aws_sdk_kinesis::Client::new(&sdk)
            .create_stream()
            .stream_name(&stream)
            .shard_count(1)
            .send()
            .await
            .expect("stream");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = moto::env_for(&moto.url());
    env.push(("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url.clone()));
    // `config/local.yaml`'s camera (the lane zone, its tracking) on two KVS streams.
    let camera = "target_fps: 5, ocr: { model: text }, roi: [{ name: lane, points: [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]] }], tracking: { iou: 0.1, min_hits: 3, window: 5, max_age: 3, idle_end: 2s }";
    let setup = |run: &'static str, sinks: &'static str| Fleet { cameras: 2, camera, sinks, tables: run };

    // Without a kill: one task runs both cameras to the end.
    let solo = fleet_config(dir.path(), "solo", &setup("-solo", "  kinesis: { stream_name: events-solo }\n"));
    let mut task = start_config(&solo, &env);
    until_finished(&moto, "-solo", "events-solo", 2, &last).await;
    task.svc.signal("-TERM");
    assert_eq!(task.svc.wait_exit(Duration::from_secs(30)), Some(0));
    let expected = deduplicated(moto::read_stream(&sdk, "events-solo").await);

    // Two tasks, one camera each; a is killed once its camera's checkpoint passed fragment 6, b
    // takes the camera over from its checkpoint; a comes back on its outbox (the volume on ECS)
    // and delivers what it had stored.
    let fleet = |t| fleet_config(dir.path(), t, &setup("-fleet", "  kinesis: { stream_name: events-fleet }\n"));
    let mut a = start_config(&fleet("a"), &env);
    let b = start_config(&fleet("b"), &env);
    until_owned(&[&a, &b], &[1.0, 1.0]).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let items = kvs_infer::fleet::lease::LeaseTable::new(ddb.clone(), "leases-fleet".into(), "test".into())
            .scan()
            .await
            .expect("scan");
        let mine = items.iter().find(|l| l.owner.as_deref() == Some("a") && l.task().is_none()).map(|l| l.key.clone());
        if let Some(camera) = mine {
            let item = ddb
                .get_item()
                .table_name("checkpoints-fleet")
                .key("stream", aws_sdk_dynamodb::types::AttributeValue::S(camera))
                .send()
                .await
                .expect("get")
                .item;
            let at = item.and_then(|i| i.get("fragment_number").and_then(|v| v.as_s().ok()).cloned());
            if at >= Some(sixth.clone()) && at.as_deref() != Some(last.as_str()) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a's camera never reached fragment 6");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.svc.signal("-KILL");
    a.svc.wait_exit(Duration::from_secs(10));
    until_owned(&[&b], &[2.0]).await;
    let a = start_config(&fleet("a"), &env);
    until_finished(&moto, "-fleet", "events-fleet", 2, &last).await;
    for mut t in [a, b] {
        t.svc.signal("-TERM");
        assert_eq!(t.svc.wait_exit(Duration::from_secs(30)), Some(0));
    }
    let records = moto::read_stream(&sdk, "events-fleet").await;
    let seen = deduplicated(records);
    assert_eq!(seen, expected, "deduplicated by event_id: the events of the run without the kill");
    drop(moto);
}
