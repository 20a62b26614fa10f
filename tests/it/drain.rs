//! SIGTERM during a busy run: not ready at once, then the cameras stop, in-flight frames finish,
//! open tracks end, the dispatcher commits everything to the outbox and the sinks flush what
//! they can; the process exits 0 within `drain_timeout`, and every event it produced is in the
//! local sink or the outbox (here Kinesis never answers, so the outbox keeps them all).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::service::{self, Service};
use kvs_infer::sink::outbox::Outbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_exits_0_in_time_with_every_event_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace("realtime: true ", "realtime: false ")
        .replace(
            "sinks:\n  local:\n    dir: out",
            &format!(
                "health:\n  drain_timeout: 15s\nsinks:\n  local:\n    dir: {}\n  kinesis:\n    stream_name: events\noutbox:\n  dir: {}",
                dir.path().join("out").display(),
                dir.path().join("outbox").display()
            ),
        );
    let config = dir.path().join("drain.yaml");
    std::fs::write(&config, yaml).expect("config");
    let env = crate::common::moto::env_for(&format!("http://{}", black_hole.local_addr().expect("addr")));
    let mut svc = Service::start(&config, &env);
    let base = svc.base_url();
    svc.wait_for_log("ready");
    // Busy: a few events out and the camera mid-file.
    let mut produced = BTreeSet::new();
    while produced.len() < 3 {
        let e = svc.wait_for_log_within("event", Duration::from_secs(120));
        produced.insert(e["event_id"].as_str().expect("event_id").to_owned());
    }

    svc.signal("-TERM");
    let signalled = Instant::now();
    // Not ready as soon as the signal is handled (well within one load-balancer interval).
    loop {
        let (status, body) = service::get(&format!("{base}/readyz")).await;
        if status == 503 {
            assert!(body.contains("\"draining\":true"), "{body}");
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(1), "still ready 1 s after SIGTERM: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let code = svc.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "a clean drain exits 0");
    assert!(took < Duration::from_secs(15), "drained within drain_timeout: {took:?}");
    eprintln!("drained in {:.1} s", took.as_secs_f64());
    for line in svc.remaining_logs() {
        if line["message"] == "event" {
            produced.insert(line["event_id"].as_str().expect("event_id").to_owned());
        }
    }
    drop(black_hole);

    let local: BTreeSet<String> = std::fs::read_to_string(dir.path().join("out/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["event_id"].as_str().expect("id").to_owned()
        })
        .collect();
    let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 30, &["local", "kinesis"]).expect("outbox");
    let kept: BTreeSet<String> = outbox
        .pending("kinesis", usize::MAX, usize::MAX)
        .expect("pending")
        .into_iter()
        .map(|(_, r)| r.event.event_id)
        .collect();
    let lost: Vec<_> = produced.iter().filter(|id| !local.contains(*id) && !kept.contains(*id)).collect();
    assert!(lost.is_empty(), "events produced but neither in the local sink nor the outbox: {lost:?}");
    assert_eq!(kept, produced, "Kinesis never answered: the outbox holds every event for it");
    assert!(produced.iter().any(|id| id.contains(":end:")), "open tracks were ended by the drain: {produced:?}");
}
