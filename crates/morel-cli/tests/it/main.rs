//! End-to-end tests: the real `morel` binary, real worker processes, real HTTP on loopback.

#![allow(clippy::unwrap_used)]

mod bench_smoke;
mod chaos;
mod cli_conventions;
mod compat;
mod config;
mod dashboard;
mod differential;
mod environments;
mod fast_lane;
mod flows;
mod hostile;
mod http_services;
mod init;
mod install;
mod isolation;
mod lifecycle;
mod limits;
mod manifest_apps;
mod metacall_client;
mod multinode;
mod node_sdk;
mod observe;
mod postgres;
mod scaling;
mod user_flow;
mod wasm;

use std::path::PathBuf;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_morel"))
}

/// A call's answer when its function raised, with the error id checked and taken out: the id
/// differs every time, the rest of the body is compared.
pub fn raised(answer: (u16, serde_json::Value)) -> (u16, serde_json::Value) {
    let (status, mut body) = answer;
    let id = body.as_object_mut().and_then(|o| o.remove("id"));
    assert!(
        id.as_ref().is_some_and(|v| v.is_string()),
        "no error id in {body}"
    );
    (status, body)
}
