//! End-to-end tests: the real `morel` binary, real worker processes, real HTTP on loopback.

#![allow(clippy::unwrap_used)]

mod bench_smoke;
mod compat;
mod dashboard;
mod environments;
mod fast_lane;
mod flows;
mod hostile;
mod http_services;
mod isolation;
mod lifecycle;
mod manifest_apps;
mod metacall_client;
mod multinode;
mod observe;
mod postgres;
mod scaling;
mod wasm;

use std::path::PathBuf;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_morel"))
}
