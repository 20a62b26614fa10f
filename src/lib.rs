//! kvs-infer: an inference service for Kinesis Video Streams.
//!
//! It pulls camera video (KVS GetMedia or a local MKV file), runs ONNX detection and OCR through
//! ONNX Runtime, and publishes what it saw. ECS and the ALB judge it by a staged `/healthz`.
//!
//! Module map, top layer first (imports point down; `ARCHITECTURE.md` has the data flow and
//! where to add a sink, a model type, a source or a command):
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | one file per command, each returning `anyhow::Result<ExitCode>` |
//! | [`service`] | `serve`: HTTP first, outbox, startup stages, pipelines, drain |
//! | [`startup`] | the health stages `serve` runs before it is ready |
//! | [`server`] | the axum router: `/healthz`, `/livez`, `/readyz`, `/metrics`, `/v1/infer`, `/` |
//! | [`sink`] | where events go: the registry, dispatcher, durable outbox, delivery; local, Kinesis, S3, DynamoDB |
//! | [`fleet`] | cameras shared by several tasks through DynamoDB leases (in progress: not wired into `serve` yet) |
//! | [`pipeline`] | a camera: sample, infer, observe (zones, filters), track, emit events; the supervisor |
//! | [`infer`] | model types and their registry, ONNX Runtime, sessions, the worker, the engine |
//! | [`source`] | where bytes come from: a local file or Kinesis Video Streams (GetMedia, resume, checkpoints) |
//! | [`media`] | MKV/KVS demuxer, fragment metadata, H.264 decoding, the frame stream, pictures, `inspect` |
//! | [`shutdown`] | one shutdown: intake, HTTP stop, the task tracker, the drain |
//! | [`health`] | the staged startup state machine, liveness and degraded reasons, fed by `watch` |
//! | [`metrics`] | every metric name, its help text and the Prometheus recorder |
//! | [`aws`] | the service's AWS clients on the shared SDK configuration |
//! | [`config`] | YAML schema, env overrides, `validate()` into a typed [`config::Config`] |
//! | [`geometry`] | boxes, IoU, polygons: pure functions every layer uses |
#![warn(clippy::unwrap_used)]

pub mod aws;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod geometry;
pub mod health;
pub mod infer;
pub mod media;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod startup;
