#![allow(dead_code)]
//! Helpers shared by the integration test modules (each uses some of them).

pub mod ecs;
pub mod fault_proxy;
pub mod kvs_server;
pub mod mkv;
pub mod moto;
pub mod service;
