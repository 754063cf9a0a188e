//! The in-memory route table. Written by the control plane (release activated, app deleted),
//! read by every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use morel_agent::Running;

/// How to reach one function: its running resource (worker pool or wasm modules) and its
/// parameter names (for binding a JSON object body to named arguments), and its metrics
/// handle, resolved once here so a call does no lookup to count itself.
#[derive(Clone)]
pub struct FnRoute {
    pub target: Running,
    pub params: Vec<String>,
    pub stats: Arc<morel_metrics::FnStats>,
}

/// Everything the gateway needs to serve one app's active release.
pub struct AppRoutes {
    pub release: i64,
    pub env: String,
    pub functions: HashMap<String, FnRoute>,
    /// HTTP routes of the manifest: `"METHOD /path"` → function name, served at `/{app}{path}`.
    pub http: HashMap<String, String>,
}

#[derive(Default)]
pub struct RouteTable {
    apps: RwLock<HashMap<(String, String), Arc<AppRoutes>>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `routes` the app's live routes; returns the routes it replaced.
    pub fn install(&self, namespace: &str, app: &str, routes: AppRoutes) -> Option<Arc<AppRoutes>> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.insert((namespace.to_owned(), app.to_owned()), Arc::new(routes))
    }

    pub fn remove(&self, namespace: &str, app: &str) -> Option<Arc<AppRoutes>> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.remove(&(namespace.to_owned(), app.to_owned()))
    }

    pub fn get(&self, namespace: &str, app: &str) -> Option<Arc<AppRoutes>> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(&(namespace.to_owned(), app.to_owned())).cloned()
    }
}
