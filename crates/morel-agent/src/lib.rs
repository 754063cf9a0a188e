//! The agent: runs instances on one node. It verifies and extracts bundles, installs their
//! dependencies, starts worker processes, supervises them (respawn with backoff, crash-loop
//! detection) and hands ready [`ResourcePool`]s to the gateway.
//!
//! The agent does not decide what should run: the control plane tells it which release of
//! which app to prepare and start. It never parses HTTP; the gateway calls pools directly
//! when they are local.

mod agent;
mod blobs;
mod error;
mod http_service;
mod lease;
mod limits;
mod logs;
mod pool;
mod scale;
mod wasm;

pub use agent::{Agent, AgentConfig, HttpPlacement, PreparedRelease, Running};
pub use blobs::BlobDir;
pub use error::AgentError;
pub use http_service::{
    Endpoint, HEARTBEAT_EVERY, HEARTBEAT_TIMEOUT, HttpService, HttpServiceParams, InFlight,
    InstanceStatus,
};
pub use limits::{LimitBackend, Limits, protections};
pub use logs::LogHub;
pub use pool::{CallError, PoolStatus, ResourcePool, ScaleLimits};
pub use wasm::WasmResource;
