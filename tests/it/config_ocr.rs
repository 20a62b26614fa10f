//! `cameras[].motion`, `cameras[].ocr.read_once`, `cameras[].ocr.text_rules` and the tracker's
//! motion keys: each rule reports its path.

use super::config::{expect_problems, problems, with_cameras};

#[test]
fn motion_and_read_once_rules_report_their_paths() {
    let cam = |body: &str| with_cameras(&format!("  - id: cam-1\n{body}"));
    let file = "    source: { kind: file, path: v.mkv }\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "settle frames within max_age",
            cam(&format!("{file}    ocr: {{ model: text }}\n    motion: {{ settle_frames: 2 }}")),
            "cameras[0].motion.settle_frames: must be in 4..=1002",
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

#[test]
fn text_rules_and_tracking_rules_report_their_paths() {
    let cam = |body: &str| with_cameras(&format!("  - id: cam-1\n    source: {{ kind: file, path: v.mkv }}\n{body}"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown format",
            cam("    ocr: { model: text, text_rules: { formats: [gb, zz] } }"),
            "cameras[0].ocr.text_rules.formats[1]: unknown format \"zz\"; known: gb, de, fr",
        ),
        (
            "bad pattern",
            cam("    ocr: { model: text, text_rules: { patterns: [\"[A-Z\"] } }"),
            "cameras[0].ocr.text_rules.patterns[0]: regex parse error",
        ),
        (
            "nothing to match",
            cam("    ocr: { model: text, text_rules: { repair: false } }"),
            "cameras[0].ocr.text_rules.formats: name at least one format or pattern",
        ),
        (
            "distance",
            cam("    ocr: { model: text }\n    tracking: { max_distance: 0 }"),
            "cameras[0].tracking.max_distance: must be in (0, 10] box diagonals, got 0",
        ),
        (
            "lost for too long",
            cam("    ocr: { model: text }\n    tracking: { max_lost: 5m }"),
            "cameras[0].tracking.max_lost: must be at most 1m, got 5m",
        ),
        (
            "similarity",
            cam("    ocr: { model: text }\n    tracking: { text_similarity: 1.5 }"),
            "cameras[0].tracking.text_similarity: must be in [0, 1]",
        ),
    ];
    expect_problems(cases);
    let good = cam(
        "    ocr: { model: text, text_rules: { formats: [GB, in], patterns: [\"[A-Z]{3}[0-9]{3}\"], repair: false } }\n    \
         tracking: { max_distance: 2.5, max_lost: 0s, text_similarity: 0.8 }",
    );
    assert!(problems(&good).is_empty(), "{:?}", problems(&good));
}
