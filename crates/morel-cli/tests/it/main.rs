//! End-to-end tests: the real `morel` binary, real worker processes, real HTTP on loopback.

#![allow(clippy::unwrap_used)]

mod bench_smoke;
mod compat;
mod dashboard;
mod flows;
mod lifecycle;
mod manifest_apps;
mod metacall_client;
mod multinode;
mod postgres;
mod wasm;

use std::path::PathBuf;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_morel"))
}
