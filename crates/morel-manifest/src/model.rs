//! The manifest as written into every bundle (`manifest.json`) and served by `GET /manifest`.

use std::collections::BTreeMap;

use morel_core::Runtime;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ManifestError;
use crate::route::RoutePath;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_VERSION: &str = "1.0";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub generated_at: String,
    pub project_name: String,
    /// function name → resource name.
    pub function_registry: BTreeMap<String, String>,
    pub resources: BTreeMap<String, ResourceSpec>,
    /// resource name → {"METHOD /path": function name}. A path may have parameters
    /// (`/items/{item_id}`, see [`crate::RoutePath`]).
    #[serde(default)]
    pub routes: BTreeMap<String, BTreeMap<String, String>>,
    /// The functions were found through `metacall.json` (seed 000's projects): a call whose
    /// body is an object with keys that are not all parameter names binds the object's
    /// values in order, as MetaCall FaaS does. Elsewhere such a call is refused (400).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metacall: bool,
}

/// Seed 002's two resource kinds: plain function endpoints, and endpoints that also serve HTTP routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceType {
    ServerlessResource,
    LoadBalancerSlsResource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub resource_type: ResourceType,
    pub runtime: Runtime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_file: Option<String>,
    pub functions: Vec<FunctionSpec>,
    pub workers_min: u32,
    pub workers_max: u32,
    pub idle_timeout_s: u64,
    pub concurrency: u32,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    pub public: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<DependencySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// sha256 (first 16 hex) of everything above; reconciliation compares it.
    #[serde(default)]
    pub config_hash: String,
}

/// A function of a resource. `file` + `attr` are the resolved location the worker loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    /// Dotted module (Python) or file path (Node), for seed 002 compatibility.
    pub module: String,
    pub file: String,
    pub attr: String,
    #[serde(default)]
    pub params: Vec<String>,
    pub is_async: bool,
    pub is_class: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    Pip,
    Npm,
}

/// A dependency file and the hash that keys the install cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DependencySpec {
    pub kind: DependencyKind,
    /// Relative to the bundle root, e.g. `requirements.txt` or `package.json`.
    pub file: String,
    pub hash: String,
}

/// For `runtime = "http"` resources: how to start the program and check it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub command: Vec<String>,
    pub health: String,
    pub warmup_s: u64,
    /// How long an instance may take from start to a healthy answer before it counts as failed.
    #[serde(default = "default_start_timeout_s")]
    pub start_timeout_s: u64,
    /// How long a ready instance's endpoint stays routable without a successful heartbeat
    /// (the agent probes the health path every second); [`DEFAULT_HEARTBEAT_TTL_S`] by default.
    #[serde(default = "default_heartbeat_ttl_s")]
    pub heartbeat_ttl_s: u64,
}

/// The default lease of an http instance's endpoint, in seconds (`heartbeat_ttl_s`).
pub const DEFAULT_HEARTBEAT_TTL_S: u64 = 3;
/// The shortest lease `heartbeat_ttl_s` may set: it must outlast one heartbeat period plus
/// one probe timeout (1 s each), or a healthy instance would flap out of routing.
pub const MIN_HEARTBEAT_TTL_S: u64 = 2;

fn default_start_timeout_s() -> u64 {
    30
}

fn default_heartbeat_ttl_s() -> u64 {
    DEFAULT_HEARTBEAT_TTL_S
}

/// A Python function routed at `path` must take each of its parameters (or `**kwargs`):
/// otherwise every request to the route would fail.
fn check_route_params(path: &RoutePath, f: &FunctionSpec) -> Result<(), String> {
    if f.params.iter().any(|p| p.starts_with("**")) {
        return Ok(());
    }
    for name in path.params() {
        if !f.params.iter().any(|p| p == name) {
            return Err(format!(
                "route {path} binds {{{name}}}, but {}({}) has no parameter {name:?}",
                f.name,
                f.params.join(", ")
            ));
        }
    }
    Ok(())
}

impl ResourceSpec {
    /// Recomputes `config_hash` from the rest of the spec.
    pub fn compute_config_hash(&self) -> String {
        let mut copy = self.clone();
        copy.config_hash = String::new();
        // serde_json of BTreeMaps and Vecs is deterministic for the same value.
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        hex::encode(&digest[..8])
    }
}

impl Manifest {
    /// Parses and validates a manifest read from a bundle.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("manifest.json: {e}")))?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the invariants every consumer relies on: names are valid, each function lives in
    /// exactly one resource, routes are unique and only on HTTP-capable resources.
    pub fn validate(&self) -> Result<(), ManifestError> {
        const FILE: &str = "manifest.json";
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::field(
                FILE,
                "version",
                format!(
                    "unsupported version {:?} (expected {MANIFEST_VERSION:?})",
                    self.version
                ),
            ));
        }
        self.project_name
            .parse::<morel_core::AppName>()
            .map_err(|e| ManifestError::field(FILE, "project_name", e.to_string()))?;
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (rname, res) in &self.resources {
            rname.parse::<morel_core::ResourceName>().map_err(|e| {
                ManifestError::field(FILE, format!("resources.{rname}"), e.to_string())
            })?;
            if res.workers_min > res.workers_max {
                return Err(ManifestError::field(
                    FILE,
                    format!("resources.{rname}.workers_min"),
                    format!(
                        "{} is greater than workers_max {}",
                        res.workers_min, res.workers_max
                    ),
                ));
            }
            if res.workers_max == 0 {
                return Err(ManifestError::field(
                    FILE,
                    format!("resources.{rname}.workers_max"),
                    "must be at least 1",
                ));
            }
            if res.concurrency == 0 {
                return Err(ManifestError::field(
                    FILE,
                    format!("resources.{rname}.concurrency"),
                    "must be at least 1",
                ));
            }
            if res.runtime == morel_core::Runtime::Http {
                if res.http.is_none() {
                    return Err(ManifestError::field(
                        FILE,
                        format!("resources.{rname}.command"),
                        "an http resource needs a command",
                    ));
                }
            } else if res.functions.is_empty() {
                return Err(ManifestError::field(
                    FILE,
                    format!("resources.{rname}.functions"),
                    "a resource needs at least one function",
                ));
            }
            let mut routes = BTreeMap::new();
            for f in &res.functions {
                f.name.parse::<morel_core::FunctionName>().map_err(|e| {
                    ManifestError::field(
                        FILE,
                        format!("resources.{rname}.functions"),
                        e.to_string(),
                    )
                })?;
                if let Some(other) = seen.insert(&f.name, rname) {
                    return Err(ManifestError::field(
                        FILE,
                        format!("resources.{rname}.functions"),
                        format!(
                            "duplicate function name {:?} (also in resource {other:?})",
                            f.name
                        ),
                    ));
                }
                match (&f.http_method, &f.http_path) {
                    (Some(m), Some(p)) => {
                        let field = || format!("resources.{rname}.functions.{}.http_path", f.name);
                        if res.resource_type != ResourceType::LoadBalancerSlsResource {
                            return Err(ManifestError::field(
                                FILE,
                                field(),
                                "a route needs a LoadBalancerSlsResource (HTTP) resource",
                            ));
                        }
                        let path = p
                            .parse::<RoutePath>()
                            .map_err(|e| ManifestError::field(FILE, field(), e.to_string()))?;
                        if res.runtime == morel_core::Runtime::Python {
                            check_route_params(&path, f)
                                .map_err(|e| ManifestError::field(FILE, field(), e))?;
                        }
                        // Two routes of one method with the same shape would take the same
                        // requests: `{m} {shape}` is the key that must be unique.
                        let key = format!("{m} {}", path.shape());
                        if let Some(prev) = routes.insert(key.clone(), f.name.clone()) {
                            return Err(ManifestError::field(
                                FILE,
                                format!("resources.{rname}.functions.{}.http_path", f.name),
                                format!("duplicate route \"{m} {p}\" (also {prev:?})"),
                            ));
                        }
                    }
                    (None, None) => {}
                    _ => {
                        return Err(ManifestError::field(
                            FILE,
                            format!("resources.{rname}.functions.{}", f.name),
                            "http_method and http_path must be given together",
                        ));
                    }
                }
            }
        }
        for (f, r) in &self.function_registry {
            if seen.get(f.as_str()) != Some(&r.as_str()) {
                return Err(ManifestError::field(
                    FILE,
                    format!("function_registry.{f}"),
                    format!("names resource {r:?}, which does not define it"),
                ));
            }
        }
        // Routes are unique app-wide: they share the `/{app}{path}` space.
        let mut all_routes = BTreeMap::new();
        for (rname, table) in &self.routes {
            for route in table.keys() {
                let (method, path) = crate::route::parse_route_key(route).map_err(|e| {
                    ManifestError::field(FILE, format!("routes.{rname}"), e.to_string())
                })?;
                let shape = format!("{method} {}", path.shape());
                if let Some(prev) = all_routes.insert(shape, rname.clone()) {
                    return Err(ManifestError::field(
                        FILE,
                        format!("routes.{rname}"),
                        format!("duplicate route {route:?} (also on resource {prev:?})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The resource that owns `function`, if any.
    pub fn resource_of(&self, function: &str) -> Option<(&str, &ResourceSpec)> {
        let r = self.function_registry.get(function)?;
        self.resources
            .get_key_value(r)
            .map(|(k, v)| (k.as_str(), v))
    }
}
