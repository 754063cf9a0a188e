//! The in-memory route table. Written by the control plane (release activated, app deleted),
//! read by every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use morel_agent::Running;
use morel_manifest::RoutePath;
use morel_runtime_wasm::WasmModule;

use crate::Binding;

/// How to reach one function: its running resource (worker pool or wasm modules) and its
/// parameter names (for binding a JSON object body to named arguments), its metrics handle and,
/// for a wasm function, its module. All are resolved once, when the route is installed, so a call
/// does no lookup past the one that finds its route.
pub struct FnRoute {
    /// The function's name.
    pub name: String,
    pub target: Running,
    pub params: Vec<String>,
    /// What a call's arguments are checked against (the runner's `MetaData`).
    pub binding: Binding,
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
        let signature = target.function(name).and_then(|f| f.signature);
        let metacall = matches!(&target, Running::Process(p) if p.metacall_binding());
        Arc::new(FnRoute {
            name: name.to_owned(),
            binding: Binding::new(name, params.clone(), signature, metacall),
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
    /// HTTP routes of the manifest, served at `/{app}{path}`.
    pub http: HttpRoutes,
}

/// An app's HTTP routes: `"METHOD /path"` → function name, collected from the manifest's
/// `routes` tables. A literal path is found with one map read; paths with parameters
/// (`/items/{item_id}`) are tried after it, most specific first, one segment comparison at a
/// time. Neither allocates unless a route matches.
#[derive(Default)]
pub struct HttpRoutes {
    /// Path → (method, function) of the routes without parameters.
    literal: HashMap<String, Vec<(String, String)>>,
    /// Routes with parameters, most specific first ([`RoutePath::specificity`]).
    templates: Vec<Template>,
}

struct Template {
    method: String,
    path: RoutePath,
    function: String,
}

/// What an app's routes make of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'r, 'p> {
    /// A route of this method: its function, its path as declared, and the raw text of each
    /// path parameter, by name.
    Found {
        function: &'r str,
        route: &'r str,
        params: Vec<(&'r str, &'p str)>,
    },
    /// The path is routed, but only for these methods (sorted).
    OtherMethods(Vec<&'r str>),
    NotFound,
}

impl FromIterator<(String, String)> for HttpRoutes {
    /// From `("METHOD /path", function)` pairs. The manifest validated every path; one that
    /// does not parse all the same is matched literally, as it is written.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut routes = HttpRoutes::default();
        for (key, function) in iter {
            let Some((method, path)) = key.split_once(' ') else {
                tracing::warn!(route = %key, "a route without a method is ignored");
                continue;
            };
            match path.parse::<RoutePath>() {
                Ok(p) if !p.is_literal() => routes.templates.push(Template {
                    method: method.to_owned(),
                    path: p,
                    function,
                }),
                parsed => {
                    if let Err(e) = parsed {
                        tracing::warn!(route = %key, error = %e, "route matched literally");
                    }
                    routes
                        .literal
                        .entry(path.to_owned())
                        .or_default()
                        .push((method.to_owned(), function));
                }
            }
        }
        routes.templates.sort_by(|a, b| a.path.specificity(&b.path));
        routes
    }
}

impl std::fmt::Debug for HttpRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.list()).finish()
    }
}

impl HttpRoutes {
    pub fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.templates.is_empty()
    }

    /// The route `method path` takes, if any: a literal route first, then the routes with
    /// parameters, most specific first.
    pub fn find<'r, 'p>(&'r self, method: &str, path: &'p str) -> RouteMatch<'r, 'p> {
        let mut others: Vec<&'r str> = Vec::new();
        if let Some((route, methods)) = self.literal.get_key_value(path) {
            for (m, function) in methods {
                if m == method {
                    return RouteMatch::Found {
                        function,
                        route,
                        params: Vec::new(),
                    };
                }
                others.push(m);
            }
        }
        if !self.templates.is_empty() {
            let mut values = Vec::new();
            for t in &self.templates {
                if !t.path.match_path(path, &mut values) {
                    continue;
                }
                if t.method == method {
                    return RouteMatch::Found {
                        function: &t.function,
                        route: t.path.as_str(),
                        params: t.path.params().zip(values).collect(),
                    };
                }
                others.push(&t.method);
            }
        }
        if others.is_empty() {
            return RouteMatch::NotFound;
        }
        others.sort_unstable();
        others.dedup();
        RouteMatch::OtherMethods(others)
    }

    /// Every route as `("METHOD /path", function)`, sorted by path then method.
    pub fn list(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .literal
            .iter()
            .flat_map(|(p, ms)| {
                ms.iter()
                    .map(move |(m, f)| (format!("{m} {p}"), f.as_str()))
            })
            .chain(
                self.templates
                    .iter()
                    .map(|t| (format!("{} {}", t.method, t.path), t.function.as_str())),
            )
            .collect();
        out.sort_by(|a, b| {
            let split = |k: &str| k.split_once(' ').map(|(m, p)| (p.to_owned(), m.to_owned()));
            split(&a.0).cmp(&split(&b.0))
        });
        out
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn routes(list: &[(&str, &str)]) -> HttpRoutes {
        list.iter()
            .map(|(k, f)| ((*k).to_owned(), (*f).to_owned()))
            .collect()
    }

    fn found<'r, 'p>(m: RouteMatch<'r, 'p>) -> (&'r str, Vec<(&'r str, &'p str)>) {
        match m {
            RouteMatch::Found {
                function, params, ..
            } => (function, params),
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn literal_routes_then_parameters_most_specific_first() {
        let r = routes(&[
            ("GET /items/{item_id}", "get_item"),
            ("GET /items/new", "new_item"),
            ("PUT /items/{item_id}", "put_item"),
            ("GET /a/{x}/{y}", "xy"),
            ("GET /a/{x}/c", "xc"),
            ("POST /checkout", "checkout"),
        ]);
        assert_eq!(
            found(r.find("GET", "/items/42")),
            ("get_item", vec![("item_id", "42")])
        );
        assert_eq!(found(r.find("GET", "/items/new")), ("new_item", vec![]));
        assert_eq!(found(r.find("PUT", "/items/new")).0, "put_item");
        assert_eq!(found(r.find("GET", "/a/1/c")), ("xc", vec![("x", "1")]));
        assert_eq!(
            found(r.find("GET", "/a/1/d")),
            ("xy", vec![("x", "1"), ("y", "d")])
        );
        assert_eq!(found(r.find("POST", "/checkout")), ("checkout", vec![]));
        assert_eq!(
            r.find("DELETE", "/items/42"),
            RouteMatch::OtherMethods(vec!["GET", "PUT"])
        );
        assert_eq!(
            r.find("GET", "/checkout"),
            RouteMatch::OtherMethods(vec!["POST"])
        );
        for path in ["/items/", "/items", "/items/42/more", "/nope", ""] {
            assert_eq!(r.find("GET", path), RouteMatch::NotFound, "{path}");
        }
        assert!(!r.is_empty());
        assert!(HttpRoutes::default().is_empty());
    }

    /// A path the manifest would refuse is matched as it is written, as before parameters
    /// existed; a key without a method is dropped.
    #[test]
    fn unparsable_paths_match_literally() {
        let r = routes(&[("GET /files/{name}.txt", "f"), ("nomethod", "g")]);
        assert_eq!(found(r.find("GET", "/files/{name}.txt")).0, "f");
        assert_eq!(r.find("GET", "/files/a.txt"), RouteMatch::NotFound);
        assert_eq!(r.list(), vec![("GET /files/{name}.txt".to_owned(), "f")]);
    }
}
