//! Helpers the integration tests of both kvs-infer crates use (dev-dependency only).
//!
//! | module | owns |
//! |---|---|
//! | [`moto`] | `moto_server` (the AWS emulator) on a free port, its SDK config, tables |
//! | [`http`] | a small HTTP/1.1 server for fakes a test serves (an SNS subscriber, the Lambda runtime API) |
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod http;
pub mod moto;

/// The workspace root: tests run in their own crate's folder, shared files live at the root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
