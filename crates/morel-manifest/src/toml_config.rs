//! `morel.toml`: the optional project file that names the app and configures resources.
//!
//! ```toml
//! [app]
//! name = "web"
//! [resources.web]
//! runtime = "http"
//! command = ["./server"]
//! health = "/health"
//! workers = [1, 3]
//! [resources.api]            # any runtime: Node projects use this instead of the Python SDK
//! functions = ["checkout"]   # which discovered functions run on this resource
//! workers = [0, 3]
//! concurrency = 8
//! idle_timeout_s = 60
//! routes = { "POST /checkout" = "checkout" }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

pub const CONFIG_FILE: &str = "morel.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub app: AppSection,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub name: Option<String>,
    /// Git branch that deploys to `production` (used by git deploys).
    #[allow(dead_code)]
    pub main_branch: Option<String>,
}

/// Settings of one resource. Unset fields keep the defaults (or what the SDK declared).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    pub runtime: Option<String>,
    /// Function names (Node) or file names that belong to this resource.
    #[serde(default)]
    pub functions: Vec<String>,
    pub workers: Option<[u32; 2]>,
    pub concurrency: Option<u32>,
    pub timeout_s: Option<f64>,
    pub idle_timeout_s: Option<u64>,
    pub memory_mb: Option<u64>,
    pub cpu: Option<f64>,
    pub public: Option<bool>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `"METHOD /path"` → function name: HTTP routes served at `/{app}{path}`.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub health: Option<String>,
    pub warmup_s: Option<u64>,
    pub start_timeout_s: Option<u64>,
    pub heartbeat_ttl_s: Option<u64>,
}

pub fn parse(text: &str) -> Result<ProjectConfig, crate::ManifestError> {
    toml::from_str(text).map_err(|e| {
        let field = e.span().map(|s| {
            let line = text[..s.start.min(text.len())].lines().count().max(1);
            format!("line {line}")
        });
        crate::ManifestError::field(
            CONFIG_FILE,
            field.unwrap_or_else(|| "-".into()),
            e.message().to_owned(),
        )
    })
}
