//! Known plates (`watchlists:`, `cameras[].watchlists`): events whose text is on a list carry
//! `watchlist: {name, entry, distance}`; a list that cannot be read stops the command, named.
//! Lists kept in SSM are tested with the remote config (`remote_config.rs`).

use std::process::Command;

use crate::common::cli::json_lines;

/// `config/local.yaml` (not paced, not looping) checking `lists` with the given `watchlists:`.
fn config(dir: &std::path::Path, lists: &str, watchlists: &str) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string("config/local.yaml")
        .expect("config")
        .replace("realtime: true", "realtime: false")
        .replace("loop: true ", "loop: false ")
        .replace("level: info", "level: warn")
        .replace("  - id: local-0\n", &format!("  - id: local-0\n    watchlists: {lists}\n"))
        .replace("dir: out", &format!("dir: {}", dir.join("out").display()))
        + watchlists;
    let path = dir.join("watch.yaml");
    std::fs::write(&path, yaml).expect("config");
    path
}

fn run_file(config: &std::path::Path) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("--config")
        .arg(config)
        .args(["run-file", "tests/fixtures/sample/plates.mkv"])
        .output()
        .expect("run-file");
    json_lines(out)
}

#[test]
fn events_on_a_watchlist_say_which_list_and_entry_they_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("stolen.txt");
    std::fs::write(&list, "# reported stolen\nKVS 2026\nXY34 ZZZ  # since May\n").expect("list");
    let lists = format!(
        "\nwatchlists:\n  stolen: {{ from: {} }}\n  vip: {{ entries: [\"AB 123 CE\"], max_distance: 1 }}\n",
        list.display()
    );
    let (code, events, stderr) = run_file(&config(dir.path(), "[stolen, vip]", &lists));
    assert_eq!(code, 0, "{stderr}");
    let on = |text: &str| -> Vec<serde_json::Value> {
        events.iter().filter(|e| e["text"] == text).map(|e| e["watchlist"].clone()).collect()
    };
    let kvs = on("KVS 2026");
    assert_eq!(kvs.len(), 2, "new and end: {events:#?}");
    assert!(
        kvs.iter().all(|w| *w == serde_json::json!({"name": "stolen", "entry": "KVS2026", "distance": 0})),
        "{kvs:?}"
    );
    let ab = on("AB 123 CD");
    assert!(ab.iter().all(|w| *w == serde_json::json!({"name": "vip", "entry": "AB123CE", "distance": 1})), "{ab:?}");

    // Not on the camera's lists: no field at all.
    let (code, events, stderr) = run_file(&config(dir.path(), "[]", &lists));
    assert_eq!(code, 0, "{stderr}");
    assert!(!events.is_empty() && events.iter().all(|e| e.get("watchlist").is_none()), "{events:#?}");
}

#[test]
fn a_list_that_cannot_be_read_or_is_not_configured_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.txt");
    let lists = format!("\nwatchlists:\n  stolen: {{ from: {} }}\n", missing.display());
    let (code, _, stderr) = run_file(&config(dir.path(), "[stolen]", &lists));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("watchlists.stolen.from: cannot read") && stderr.contains("missing.txt"), "{stderr}");
    let (code, _, stderr) = run_file(&config(dir.path(), "[nope]", &lists));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cameras[0].watchlists[0]: no list \"nope\" under `watchlists`"), "{stderr}");
    let bad = "\nwatchlists:\n  wide: { entries: [AB12CDE], max_distance: 9 }\n  none: {}\n";
    let (code, _, stderr) = run_file(&config(dir.path(), "[wide]", bad));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("watchlists.wide.max_distance: must be in 0..=3 edits, got 9"), "{stderr}");
    assert!(stderr.contains("watchlists.none: give `entries`, `from`"), "{stderr}");
}
