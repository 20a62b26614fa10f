//! Issue 28 (d): the outbox on a tiny filesystem. `serve` runs in a user and mount namespace of
//! its own (`unshare -rm`) with its outbox folder on a 4 MiB tmpfs, which a ballast file fills
//! right after the outbox opens. Appends fail with ENOSPC: the camera waits (an offline file, so
//! it drops nothing), `/healthz` says `degraded: outbox` with the OS's reason and
//! `outbox_io_errors_total` counts. Once the ballast goes, the outbox reopens itself and every
//! event reaches the local sink: the same events as a run with room.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::service::{self, Service};

/// `config/local.yaml` reading its file once, offline (every sampled frame analysed, none
/// dropped), with its local sink under `dir/out` and its outbox in `outbox`.
fn config(dir: &Path, outbox: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("port: 8080", "port: 0")
        .replace("realtime: true ", "realtime: false ")
        .replace("loop: true ", "loop: false ")
        .replace(
            "sinks:\n  local:\n    dir: out",
            &format!("sinks:\n  local:\n    dir: {}\noutbox:\n  dir: {}", dir.join("out").display(), outbox.display()),
        );
    assert!(yaml.contains("loop: false") && yaml.contains("realtime: false"), "{yaml}");
    let path = dir.join("disk.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

fn local_events(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join("out/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["event_id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// Waits until the camera has stopped and the local sink holds as many events as it produced.
fn until_delivered(svc: &Service, dir: &Path) -> BTreeSet<String> {
    let stopped = svc.wait_for_log_within("camera stopped", Duration::from_secs(300));
    let produced = stopped["events"].as_u64().expect("events") as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = local_events(dir);
        if events.len() >= produced {
            return events;
        }
        assert!(Instant::now() < deadline, "{} of {produced} events reached the sink", events.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The namespace's script: mount the tmpfs, fill it once the outbox exists, free it when the
/// test says so, and run the service.
const WRAPPER: &str = r#"
set -e
mount -t tmpfs -o size=4m tmpfs "$OUTBOX"
(
  until [ -e "$OUTBOX/outbox.redb" ]; do sleep 0.05; done
  sleep 0.3
  cat /dev/zero > "$OUTBOX/ballast" 2>/dev/null || true
  touch "$FULL"
  until [ -e "$FREE" ]; do sleep 0.1; done
  rm -f "$OUTBOX/ballast"
) &
exec "$@"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_whose_disk_fills_up_waits_says_so_and_drains_without_loss() {
    let probe = std::process::Command::new("unshare").args(["-rm", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test mounts a tmpfs in a user namespace: `unshare -rm` must work (util-linux, user namespaces enabled)"
    );
    // With room: the events the file gives.
    let roomy = tempfile::tempdir().expect("tempdir");
    let mut svc = Service::start(&config(roomy.path(), &roomy.path().join("outbox")), &[]);
    let expected = until_delivered(&svc, roomy.path());
    svc.signal("-TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(expected.len() >= 4, "{expected:?}");

    let tiny = tempfile::tempdir().expect("tempdir");
    let outbox = tiny.path().join("outbox");
    std::fs::create_dir_all(&outbox).expect("mount point");
    let (full, free) = (tiny.path().join("full"), tiny.path().join("free"));
    let cfg = config(tiny.path(), &outbox);
    let env = [
        ("OUTBOX", outbox.display().to_string()),
        ("FULL", full.display().to_string()),
        ("FREE", free.display().to_string()),
    ];
    let mut svc = Service::start_wrapped(&["unshare", "-rm", "sh", "-c", WRAPPER, "sh"], &cfg, &env);
    let url = svc.base_url();
    // Full: the camera waits, health says why, the counter counts.
    let deadline = Instant::now() + Duration::from_secs(180);
    let reason = loop {
        let (_, body) = service::get(&format!("{url}/healthz")).await;
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(reason) = health["degraded"]["outbox"].as_str() {
            break reason.to_owned();
        }
        assert!(Instant::now() < deadline, "the full disk never showed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(full.exists());
    assert!(reason.contains("No space left on device"), "the OS's reason: {reason}");
    let (_, metrics) = service::get(&format!("{url}/metrics")).await;
    assert!(service::metric(&metrics, "outbox_io_errors_total").is_some_and(|n| n >= 1.0), "{metrics}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, body) = service::get(&format!("{url}/healthz")).await;
    assert!(body.contains("\"outbox\""), "still full, still degraded: {body}");

    // Space returns: it recovers by itself and nothing was lost.
    std::fs::write(&free, b"").expect("free");
    let delivered = until_delivered(&svc, tiny.path());
    let (_, body) = service::get(&format!("{url}/healthz")).await;
    assert!(!body.contains("\"outbox\""), "recovered: {body}");
    svc.signal("-TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(delivered, expected, "every event (at least once)");
}
