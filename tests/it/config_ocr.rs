//! `cameras[].motion` and `cameras[].ocr.read_once`: each rule reports its path.

use super::config::{expect_problems, problems, with_cameras};

#[test]
fn motion_and_read_once_rules_report_their_paths() {
    let cam = |body: &str| with_cameras(&format!("  - id: cam-1\n{body}"));
    let file = "    source: { kind: file, path: v.mkv }\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "settle frames within max_age",
            cam(&format!("{file}    ocr: {{ model: text }}\n    motion: {{ settle_frames: 2 }}")),
            "cameras[0].motion.settle_frames: must be in 4..=1000",
        ),
        (
            "read_once readings zero",
            cam(&format!("{file}    ocr: {{ model: text, read_once: {{ readings: 0 }} }}")),
            "cameras[0].ocr.read_once.readings: must be in 1..=50, got 0",
        ),
        (
            "read_once resize",
            cam(&format!("{file}    ocr: {{ model: text, read_once: {{ max_resize: 2 }} }}")),
            "cameras[0].ocr.read_once.max_resize: must be in [0, 1]",
        ),
        (
            "read_once score",
            cam(&format!("{file}    ocr: {{ model: text, read_once: {{ min_score: -1 }} }}")),
            "cameras[0].ocr.read_once.min_score: must be in [0, 1]",
        ),
        (
            "read_once reuse",
            cam(&format!("{file}    ocr: {{ model: text, read_once: {{ max_reuse: 0 }} }}")),
            "cameras[0].ocr.read_once.max_reuse: must be in 1..=10000",
        ),
    ];
    expect_problems(cases);
    assert!(
        problems(&cam(&format!("{file}    ocr: {{ model: text, read_once: {{ enabled: false, readings: 5 }} }}")))
            .is_empty()
    );
}
