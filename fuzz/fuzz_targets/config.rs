//! Any bytes as a config file: the loader must never panic, and must answer (valid, or every
//! problem) without the time blowing up.
#![no_main]

use kvs_infer::config::{EnvOverrides, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = parse::check_text(input, "fuzz.yaml") else { return };
    let _ = kvs_infer::config::load_str(text, "fuzz.yaml", &EnvOverrides::default());
});
