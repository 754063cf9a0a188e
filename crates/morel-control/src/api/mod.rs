//! HTTP handlers. `apps` holds Morel's own API (what the CLI uses); `compat` holds seed
//! 000's routes so that existing clients of that system work unchanged.

pub mod apps;
pub mod compat;
pub mod environments;
pub mod functions;
pub mod manifest;
pub mod nodes;
pub mod observe;
pub mod placements;
pub mod services;

use std::sync::Arc;

use crate::auth::Token;
use crate::deploy::Deployer;

#[derive(Clone)]
pub struct AppState {
    pub deployer: Arc<Deployer>,
    pub functions: Arc<crate::functions::Functions>,
    pub envs: Arc<crate::environments::Environments>,
    pub token: Token,
}

impl AppState {
    pub(crate) fn functions(&self) -> Result<&crate::functions::Functions, crate::ApiError> {
        Ok(&self.functions)
    }
}

/// Parses an app name from a path or body field into a key in the default namespace.
pub(crate) fn app_key(name: &str) -> Result<morel_store::AppKey, crate::ApiError> {
    let name = name
        .parse::<morel_core::AppName>()
        .map_err(|e| crate::ApiError::bad_request(e.to_string()))?;
    Ok(morel_store::AppKey::in_default(name))
}
