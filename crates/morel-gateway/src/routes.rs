//! The in-memory route table. Written by the control plane (release activated, app deleted),
//! read by every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use morel_agent::Running;
use morel_runtime_wasm::WasmModule;

/// How to reach one function: its running resource (worker pool or wasm modules) and its
/// parameter names (for binding a JSON object body to named arguments), its metrics handle and,
/// for a wasm function, its module. All are resolved once, when the route is installed, so a call
/// does no lookup past the one that finds its route.
pub struct FnRoute {
    /// The function's name.
    pub name: String,
    pub target: Running,
    pub params: Vec<String>,
    pub stats: Arc<morel_metrics::FnStats>,
    /// The module of a wasm function (`None` for other targets).
    pub module: Option<WasmModule>,
}

impl FnRoute {
    /// A function's route, with its metrics and its wasm module resolved here rather than on
    /// every call.
    pub fn new(
        namespace: &str,
        app: &str,
        name: &str,
        target: Running,
        params: Vec<String>,
    ) -> Arc<Self> {
        let module = match &target {
            Running::Wasm(w) => w.module(name).cloned(),
            Running::Process(_) | Running::Http(_) => None,
        };
        Arc::new(FnRoute {
            name: name.to_owned(),
            target,
            params,
            stats: morel_metrics::global().function(namespace, app, name),
            module,
        })
    }
}

/// Whether the call path's `version` segment names the active release: `latest`, the
/// environment's name, or `v{release}`. `Err` is the message for the 404.
pub fn check_version(version: &str, app: &str, release: i64, env: &str) -> Result<(), String> {
    let ok = version == "latest"
        || version == env
        || version
            .strip_prefix('v')
            .and_then(|n| n.parse::<i64>().ok())
            == Some(release);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version {version:?} of {app} is not active (active: v{release}, also reachable as \"latest\" and {env:?})"
        ))
    }
}

/// Everything the gateway needs to serve one app's active release.
pub struct AppRoutes {
    pub release: i64,
    pub env: String,
    pub functions: HashMap<String, Arc<FnRoute>>,
    /// HTTP routes of the manifest: `"METHOD /path"` → function name, served at `/{app}{path}`.
    pub http: HashMap<String, String>,
}

#[derive(Default)]
pub struct RouteTable {
    /// namespace → app → routes: nested so that a lookup by `&str` builds no key.
    apps: RwLock<HashMap<String, HashMap<String, Arc<AppRoutes>>>>,
    /// Apps' http services, reached through the edge.
    edge: crate::EdgeTable,
    /// Host names (`{env}--{app}.{domain}`) → (namespace, host app) of the environment they
    /// serve. Written by the control plane when an environment gets or loses its address.
    hosts: RwLock<HashMap<String, (String, String)>>,
    /// Apps whose active release is being brought back after a restart, as `namespace/app`:
    /// a call to one is answered 503 with Retry-After, not 404.
    restoring: RwLock<std::collections::HashSet<String>>,
}

/// The app key under which a preview environment's releases, instances and routes live:
/// `{app}--{env}`; production lives under the app itself.
pub fn environment_host(app: &str, env: &str) -> String {
    if env == PRODUCTION {
        app.to_owned()
    } else {
        format!("{app}--{env}")
    }
}

/// The name of every app's main environment.
pub const PRODUCTION: &str = "production";

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks an app as being restored (`true`) or done (`false`).
    pub fn set_restoring(&self, namespace: &str, app: &str, restoring: bool) {
        let mut r = self.restoring.write().unwrap_or_else(|e| e.into_inner());
        let key = format!("{namespace}/{app}");
        if restoring {
            r.insert(key);
        } else {
            r.remove(&key);
        }
    }

    /// Whether the app's active release is still being restored after a restart.
    pub fn is_restoring(&self, namespace: &str, app: &str) -> bool {
        let r = self.restoring.read().unwrap_or_else(|e| e.into_inner());
        !r.is_empty() && r.contains(&format!("{namespace}/{app}"))
    }

    /// How many apps are still being restored.
    pub fn restoring(&self) -> usize {
        self.restoring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The edge's table of http services (same lifetime as the route table).
    pub fn edge(&self) -> &crate::EdgeTable {
        &self.edge
    }

    /// Makes `routes` the app's live routes; returns the routes it replaced. An app being
    /// restored is restored from this moment.
    pub fn install(&self, namespace: &str, app: &str, routes: AppRoutes) -> Option<Arc<AppRoutes>> {
        let old = {
            let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
            apps.entry(namespace.to_owned())
                .or_default()
                .insert(app.to_owned(), Arc::new(routes))
        };
        if self.restoring() > 0 {
            self.set_restoring(namespace, app, false);
        }
        old
    }

    pub fn remove(&self, namespace: &str, app: &str) -> Option<Arc<AppRoutes>> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let in_namespace = apps.get_mut(namespace)?;
        let removed = in_namespace.remove(app);
        if in_namespace.is_empty() {
            apps.remove(namespace);
        }
        removed
    }

    pub fn get(&self, namespace: &str, app: &str) -> Option<Arc<AppRoutes>> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(namespace)?.get(app).cloned()
    }

    /// The routes of `app`'s environment `env` (a preview lives under its host app).
    pub fn get_env(&self, namespace: &str, app: &str, env: &str) -> Option<Arc<AppRoutes>> {
        self.get(namespace, &environment_host(app, env))
            .filter(|r| r.env == env)
    }

    pub fn set_host(&self, host: &str, namespace: &str, host_app: &str) {
        let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
        hosts.insert(
            host.to_ascii_lowercase(),
            (namespace.to_owned(), host_app.to_owned()),
        );
    }

    pub fn remove_host(&self, host: &str) {
        let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
        hosts.remove(&host.to_ascii_lowercase());
    }

    /// The routes served on a `Host` header's name (port ignored).
    pub fn by_host(&self, host: &str) -> Option<Arc<AppRoutes>> {
        let key = {
            let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
            if hosts.is_empty() {
                return None;
            }
            let name = host
                .rsplit_once(':')
                .map_or(host, |(h, _)| h)
                .to_ascii_lowercase();
            hosts.get(&name).cloned()
        }?;
        self.get(&key.0, &key.1)
    }
}
