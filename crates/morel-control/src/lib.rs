//! The control plane: Morel's HTTP API (its own `/api/apps…` routes and seed 000's
//! `/api/package|deploy|repository|inspect` routes), authentication, and the deploy service
//! that turns an uploaded bundle into a running, routed release.
//!
//! Handlers only translate HTTP to calls on [`deploy::Deployer`] and views; the store does
//! persistence and the agent runs processes. The binary wires this together in `morel up`.

pub mod api;
pub mod auth;
mod body_close;
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod environments;
mod error;
mod extract;
pub mod functions;
mod git;
pub mod git_deploy;
pub mod jobs;
pub mod listen;
pub mod openapi;
mod recover;
pub mod remote;
pub mod scheduler;
pub mod secrets;
mod server;
pub mod services;
pub mod tls;
mod views;

pub use auth::Token;
pub use config::ServerConfig;
pub use error::ApiError;
pub use server::{Server, serve};
