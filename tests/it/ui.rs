//! The live page (`server.ui: true`) in headless Chromium, on `serve` running the sample video:
//! the camera's picture loads and changes, the zone outline and a text reading show, an event
//! row with its snapshot shows, a screenshot is written under the test's output folder; a zone
//! drawn by clicks gives the expected YAML; with the page open for a minute the process's memory
//! stays flat and pictures are encoded at most twice a second. A page opened within a second of
//! ready, or of a camera stopping, shows a picture at once.

use std::time::{Duration, Instant};

use crate::common::browser::Browser;
use crate::common::service::{Service, get};

const CAMERA: &str = "[data-camera=\"local-0\"]";

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    config_with(dir, "")
}

/// The embedded default (its camera loops the sample in real time), with `cameras` appended.
fn config_with(dir: &std::path::Path, cameras: &str) -> std::path::PathBuf {
    let config = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("\nsinks:", &format!("{cameras}\nsinks:"))
        .replace("port: 8080", "port: 0")
        .replace("dir: out", &format!("dir: {}", dir.join("out").display()))
        // An outbox of its own: the page's tests run side by side.
        + &format!("outbox:\n  dir: {}\n", dir.join("outbox").display());
    assert!(config.contains("ui: true"), "config/local.yaml turns the live page on");
    let path = dir.join("local.yaml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Resident memory (kB) and CPU time (s) of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    (rss, ticks / 100.0)
}

/// A normalised coordinate as the editor writes it: 3 decimals.
fn yaml_number(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r.fract() == 0.0 { format!("{r:.1}") } else { format!("{r}") }
}

fn encoded(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ui_frames_encoded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_the_camera_its_tracks_and_events_and_draws_zones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(&config(dir.path()), &[]);
    let base = service.base_url();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&format!("{base}/healthz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = Browser::launch();
    let mut page = browser.open(&format!("{base}/ui")).await;
    let wait = Duration::from_secs(90);

    let picture = format!("document.querySelector('{CAMERA} img.frame')");
    let first = page.wait_for("the picture", &format!("{picture}?.naturalWidth > 0 && {picture}.src"), wait).await;
    page.wait_for(
        "a newer picture",
        &format!("{picture}.complete && {picture}.naturalWidth > 0 && {picture}.src !== {first}"),
        wait,
    )
    .await;
    page.wait_for(
        "the zone outline",
        &format!("document.querySelectorAll('{CAMERA} polygon.zone').length === 1"),
        wait,
    )
    .await;
    let reading = page
        .wait_for(
            "a text reading",
            &format!(
                "[...document.querySelectorAll('{CAMERA} td.text')].map(td => td.textContent).find(t => /KVS 2026|AB 123 CD/.test(t))"
            ),
            wait,
        )
        .await;
    assert!(reading.as_str().is_some_and(|t| t == "KVS 2026" || t == "AB 123 CD"), "{reading}");
    page.wait_for(
        "an event row with its snapshot",
        "[...document.querySelectorAll('#events tr.event img.snapshot')].some(i => i.complete && i.naturalWidth > 0)",
        wait,
    )
    .await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui");
    std::fs::create_dir_all(&shots).expect("output folder");
    let png = page.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots.join("live-page.png"), &png).expect("write screenshot");

    // The zone editor: four clicks on the picture, a name, finish.
    page.eval(&format!("document.querySelector('{CAMERA} button.draw').click()")).await;
    let rect =
        page.eval(&format!("(r => [r.left, r.top, r.width, r.height])({picture}.getBoundingClientRect())")).await;
    let [left, top, width, height] = [0, 1, 2, 3].map(|i| rect[i].as_f64().expect("rect"));
    let mut expected = Vec::new();
    for (fx, fy) in [(0.1, 0.6), (0.5, 0.6), (0.5, 0.9), (0.1, 0.9)] {
        let (x, y) = ((left + fx * width).round(), (top + fy * height).round());
        page.click(x, y).await;
        expected.push(format!("[{}, {}]", yaml_number((x - left) / width), yaml_number((y - top) / height)));
    }
    page.eval(&format!("document.querySelector('{CAMERA} input.zone-name').value = 'gate'")).await;
    page.eval(&format!("document.querySelector('{CAMERA} button.finish').click()")).await;
    let yaml = page
        .wait_for("the zone's YAML", &format!("document.querySelector('{CAMERA} pre.yaml').textContent"), wait)
        .await;
    let want = format!(
        "roi:\n  - name: lane\n    points: [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]\n  - name: gate\n    points: [{}]\n",
        expected.join(", ")
    );
    assert_eq!(yaml.as_str().expect("text"), want);
    let problems = page.eval(&format!("document.querySelectorAll('{CAMERA} ul.problems li').length")).await;
    assert_eq!(problems, 0, "the drawn zone is valid");
    assert_eq!(page.eval("document.querySelectorAll('polygon.drawn').length").await, 1);

    // A minute with the page open: memory stays flat, pictures are encoded at most twice a second.
    let pid = service.child.id();
    let (rss_before, cpu_before) = usage(pid);
    let encoded_before = encoded(&get(&format!("{base}/metrics")).await.1);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (rss_after, cpu_after) = usage(pid);
    let seconds = started.elapsed().as_secs_f64();
    let pictures = encoded(&get(&format!("{base}/metrics")).await.1) - encoded_before;
    eprintln!(
        "live page open {seconds:.0} s: RSS {} -> {} MiB, CPU {:.0} % of a core, {pictures} pictures encoded",
        rss_before / 1024,
        rss_after / 1024,
        (cpu_after - cpu_before) / seconds * 100.0
    );
    assert!(rss_after < rss_before + 64 * 1024, "RSS grew from {rss_before} kB to {rss_after} kB");
    assert!(pictures >= 10.0, "the page kept asking for pictures: {pictures}");
    assert!(pictures <= seconds / 0.5 + 2.0, "{pictures} pictures in {seconds:.0} s: over 2 a second");
    assert!(page.eval("document.getElementById('live').textContent").await == "live");
}

/// The picture of camera `id` on a page: loaded (`naturalWidth`), or `null`.
fn loaded_width(id: &str) -> String {
    format!(
        "(i => i && i.complete && i.naturalWidth > 0 ? i.naturalWidth : null)(document.querySelector('[data-camera=\"{id}\"] img.frame'))"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_at_ready_or_when_a_camera_stops_shows_a_picture_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Beside the looping camera, one that plays a 3 s clip once and stops.
    let short = "\n  - id: short\n    source: { kind: file, path: tests/fixtures/media/cabac_high_poc2.mkv, realtime: true }\n    \
                 target_fps: 2\n    ocr: { model: text }";
    let service = Service::start(&config_with(dir.path(), short), &[]);
    let base = service.base_url();
    let browser = Browser::launch();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&format!("{base}/healthz")).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = Instant::now();
    let mut page = browser.open(&format!("{base}/ui")).await;
    let opened = ready.elapsed();
    assert!(opened < Duration::from_secs(5), "the page opened {opened:?} after ready");
    // The first request answers with a picture: the camera's first frame, or a placeholder
    // before it (a generous ceiling: the page polls its state first).
    let width = page.wait_for("a picture after ready", &loaded_width("local-0"), Duration::from_secs(20)).await;
    eprintln!("page opened {opened:?} after ready; picture of {width} px after {:?}", ready.elapsed());
    assert!(width.as_u64().is_some_and(|w| w > 0), "{width}");

    // The short camera ends: a page opened right then shows its last frame, not a placeholder.
    let state = |body: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(body).expect("health")["cameras"]["short"]["state"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while state(&get(&format!("{base}/healthz")).await.1) != "stopped" {
        assert!(Instant::now() < deadline, "the short camera did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = Instant::now();
    let mut page = browser.open(&format!("{base}/ui")).await;
    let opened = stopped.elapsed();
    let ui_state: serde_json::Value = serde_json::from_str(&get(&format!("{base}/ui/state")).await.1).expect("state");
    let short = ui_state["cameras"].as_array().expect("cameras").iter().find(|c| c["id"] == "short").cloned();
    let frame_width =
        short.as_ref().and_then(|c| c["frame"]["width"].as_u64()).expect("the stopped camera keeps its frame");
    let width = page.wait_for("the stopped camera's picture", &loaded_width("short"), Duration::from_secs(20)).await;
    eprintln!("page opened {opened:?} after the camera stopped; picture of {width} px");
    assert!(opened < Duration::from_secs(5), "the page opened {opened:?} after the camera stopped");
    assert_eq!(width.as_u64(), Some(frame_width), "the camera's last frame, not a placeholder");
    // The state badge (the first in the camera's title) says so beside the picture.
    let badge = "document.querySelector('[data-camera=\"short\"] h2 .badge')?.textContent === 'stopped'";
    page.wait_for("the stopped state", badge, Duration::from_secs(20)).await;
}
