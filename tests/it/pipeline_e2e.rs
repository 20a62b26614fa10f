//! End to end on the sample video (`tests/reference/make_sample_video.sh`): `run-file` reports
//! exactly the plates that drove through the ROI, each once as `new` and once as `end`; none
//! for the plate outside the ROI or the one shown too briefly; snapshots decode as JPEG.

use std::process::Command;

#[test]
fn run_file_reports_exactly_the_plates_in_the_lane() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("realtime: true", "realtime: false")
        .replace("level: info", "level: warn")
        .replace("dir: out", &format!("dir: {}", out_dir.path().display()));
    let config_path = out_dir.path().join("local.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("--config")
        .arg(&config_path)
        .args(["run-file", "tests/fixtures/sample/plates.mkv"])
        .output()
        .expect("run-file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();

    let of = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> =
            events.iter().filter(|e| e["type"] == kind).filter_map(|e| e["text"].as_str().map(str::to_owned)).collect();
        v.sort();
        v
    };
    assert_eq!(of("new"), ["AB 123 CD", "KVS 2026"], "{events:#?}");
    assert_eq!(of("end"), ["AB 123 CD", "KVS 2026"]);
    assert!(events.iter().all(|e| e["zone"] == "lane" && e["camera"] == "local-0" && e["schema"] == 1));
    for e in &events {
        for key in ["event_id", "track_id", "label", "score", "box", "first_seen", "last_seen", "models"] {
            assert!(!e[key].is_null(), "{key} missing in {e}");
        }
        let snapshot = e["snapshot"].as_str().expect("new and end events have snapshots");
        let img = image::open(snapshot).unwrap_or_else(|err| panic!("{snapshot}: {err}"));
        assert_eq!((img.width(), img.height()), (640, 360));
    }
    // The same events are in events.jsonl.
    let log = std::fs::read_to_string(out_dir.path().join("events.jsonl")).expect("events.jsonl");
    assert_eq!(log.lines().count(), events.len());
}
