#![allow(dead_code)]
//! Helpers shared by the integration test modules (each uses some of them).

pub mod browser;
pub mod cli;
pub mod ecs;
pub mod events;
pub mod fault_proxy;
pub mod kvs_camera;
pub mod kvs_capture;
pub mod kvs_server;
pub mod mkv;
pub mod moto;
pub mod png;
pub mod service;
