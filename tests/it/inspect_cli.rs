//! `kvs-infer inspect FILE|-`: one JSON line per fragment, a summary, and exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::cli::{CliOutput, json_lines};

fn inspect(args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvs-infer"))
        .arg("inspect")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(data).expect("write");
    }
    json_lines(child.wait_with_output().expect("wait"))
}

#[test]
fn prints_a_line_per_fragment_and_a_summary() {
    let (code, lines, _) = inspect(&["--decode", "tests/fixtures/kvs/output_get_media.mkv"], None);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 6);
    let first = &lines[0];
    assert_eq!(first["fragment_number"], "91343852333181432392682062607743920146159169392");
    assert_eq!(first["server_timestamp"], "1511852109.126");
    assert_eq!(first["producer_timestamp"], "1511852108.513");
    assert_eq!(first["millis_behind_now"], 15858);
    assert_eq!(first["continuation_token"], "91343852333181432392682062607743920146159169392");
    assert_eq!(first["error_code"], serde_json::Value::Null);
    assert_eq!(
        (first["frames"].as_u64(), first["keyframes"].as_u64(), first["decoded"].as_u64()),
        (Some(60), Some(1), Some(60))
    );
    assert_eq!((first["width"].as_u64(), first["height"].as_u64()), (Some(640), Some(360)));
    assert_eq!(first["codec"], "V_MPEG4/ISO/AVC");
    let summary = &lines[5]["summary"];
    assert_eq!(summary["fragments"], 5);
    assert_eq!(summary["frames"], 300);
    assert_eq!(summary["decoded"], 300);
    assert_eq!(summary["errors"], 0);
}

#[test]
fn reads_stdin_and_exits_0_on_damage() {
    let capture = std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture");
    // Garbage between fragments 0 and 1 (which starts at 547925), and a cut inside the last frame.
    let mut data = capture[..547_925].to_vec();
    data.extend(std::iter::repeat_n(0xFFu8, 64));
    data.extend_from_slice(&capture[547_925..capture.len() - 1000]);
    let (code, lines, stderr) = inspect(&["-"], Some(&data));
    assert_eq!(code, 0, "damage is counted, not fatal: {stderr}");
    let summary = &lines.last().expect("summary")["summary"];
    assert!(summary["errors"].as_u64().expect("errors") >= 2, "{summary}");
    assert_eq!(summary["fragments"], 5, "every fragment still reported");
    assert!(stderr.contains("offset"), "{stderr}");
    assert!(lines[..5].iter().all(|l| l.get("decoded").is_none()), "no --decode, no decoded field");
}

#[test]
fn unreadable_input_exits_1() {
    let (code, lines, stderr) = inspect(&["/nonexistent/capture.mkv"], None);
    assert_eq!(code, 1);
    assert!(lines.is_empty());
    assert!(stderr.contains("/nonexistent/capture.mkv"), "{stderr}");
}
