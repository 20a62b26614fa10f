//! kvs-infer: an inference service for Kinesis Video Streams.
//!
//! It pulls camera video (KVS GetMedia or a local MKV file), runs ONNX detection and OCR through
//! ONNX Runtime, and publishes what it saw. ECS and the ALB judge it by a staged `/healthz`.
//!
//! Module map (see `ARCHITECTURE.md` for the data flow):
//!
//! | module | owns |
//! |---|---|
//! | [`geometry`] | boxes, IoU, polygons: pure functions every layer uses |
//! | [`config`] | YAML schema, env overrides, `validate()` into a typed [`config::Config`] |
//! | [`health`] | the staged startup state machine, liveness and degraded reasons, fed by `watch` |
//! | [`metrics`] | every metric name, its help text and the Prometheus recorder |
//! | [`media`] | streaming MKV/KVS demuxer, KVS fragment metadata, H.264 decoding, `inspect` |
//! | [`infer`] | ONNX Runtime loading, execution providers, model sessions and warm-up |
//! | [`pipeline`] | sampling, zones, tracking and temporal smoothing, events |
//! | [`source`] | where video comes from: a local file or Kinesis Video Streams (GetMedia, resume, checkpoints) |
//! | [`sink`] | where events go: the durable outbox, then local, Kinesis, S3 and DynamoDB |
//! | [`aws`] | the shared AWS SDK configuration (default credentials chain, endpoints, timeouts) |
//! | [`server`] | the axum router: `/healthz`, `/livez`, `/readyz`, `/metrics`, `/` |
//! | [`startup`] | the order `serve` brings the service up in, and graceful shutdown |
//! | [`healthcheck`] | the container health-check client behind `kvs-infer healthcheck` |
#![warn(clippy::unwrap_used)]

pub mod aws;
pub mod cli;
pub mod config;
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
