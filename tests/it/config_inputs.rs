//! Config inputs past the schema: paths that are not regular files (a FIFO would hang the
//! read), log filters that name no level, and documented ranges that must all be reachable.

use std::time::Duration;

use kvs_infer::config::{self, EnvOverrides};

use crate::config::{BASE, expect_problems, problems};

#[test]
fn non_regular_config_paths_are_refused_at_once_naming_what_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("config.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let started = std::time::Instant::now();
    let err = config::load_file(&fifo, &EnvOverrides::default()).map(|_| ()).expect_err("a FIFO");
    assert!(started.elapsed() < Duration::from_secs(5), "no wait for a writer");
    assert!(err.to_string().contains("a FIFO, not a regular file"), "{err}");
    let err = config::load_file(dir.path(), &EnvOverrides::default()).map(|_| ()).expect_err("a directory");
    assert!(err.to_string().contains("a directory"), "{err}");
}

#[test]
fn log_levels_must_name_levels_and_documented_ranges_are_reachable() {
    for level in ["garbage", "warnning", "info,verbose"] {
        expect_problems(vec![(level, format!("{BASE}logging: {{ level: \"{level}\" }}\n"), "logging.level")]);
    }
    assert!(problems(&format!("{BASE}logging: {{ level: \"kvs_infer=debug,warn\" }}\n")).is_empty());
    let env = EnvOverrides { log_level: Some("warnning".into()), ..EnvOverrides::default() };
    assert!(config::load_str(BASE, "test.yaml", &env).is_err(), "LOG_LEVEL is checked too");
    // tracking.max_age is documented up to 1000: the motion gate's default settling fits.
    let oldest = BASE.replace("ocr: { model: text }", "ocr: { model: text }\n    tracking: { max_age: 1000 }");
    assert_eq!(problems(&oldest), Vec::<String>::new());
}
