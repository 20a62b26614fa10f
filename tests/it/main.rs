//! kvs-infer's integration tests, as one test binary (one link, one process to start): each
//! module is one area; `common` holds the helpers they share (the service as a child process,
//! the GetMedia test server, the fault proxy, MKV builders, the AWS emulator).

mod aws_e2e;
mod aws_sinks;
mod catch_up;
mod common;
mod config;
mod config_inputs;
mod config_ocr;
mod drain;
mod ecs_health;
mod evaluate;
mod fleet;
mod fleet_leases;
mod fuzz_bounded;
mod healthcheck;
mod hostile;
mod hostile_http;
mod infer_api;
mod infer_cli;
mod inspect_cli;
mod kvs_restart;
mod kvs_source;
mod kvs_stall;
mod layout;
mod media;
mod media_decode;
mod media_limits;
mod motion;
mod onnx_smoke;
mod outbox;
mod outbox_disk;
mod parity;
mod pipeline_e2e;
mod privacy;
mod provisioning;
mod remote_config;
mod serve;
mod server;
mod startup_stages;
mod ui;
mod watchlist;
