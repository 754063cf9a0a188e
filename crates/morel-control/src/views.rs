//! API views: what crosses the wire. Built from store rows; never stored.

use morel_core::InstanceState;
use morel_store::{
    AppRow, ExecutionRow, FunctionRow, InstanceRow, LogRow, ReleaseRow, ResourceRow,
};
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReleaseView {
    pub app: String,
    pub namespace: String,
    pub version: String,
    pub number: i64,
    pub env: String,
    pub digest: String,
    pub status: String,
    pub error: Option<String>,
    pub created_at: String,
    /// The names of the release's config variables (never their values).
    pub config_names: Vec<String>,
}

impl From<&ReleaseRow> for ReleaseView {
    fn from(r: &ReleaseRow) -> Self {
        ReleaseView {
            app: r.app.name.to_string(),
            namespace: r.app.namespace.to_string(),
            version: format!("v{}", r.number),
            number: r.number,
            env: r.env.clone(),
            digest: r.digest.to_string(),
            status: r.status.to_string(),
            error: r.error.clone(),
            created_at: morel_core::time::rfc3339(r.created_at),
            config_names: serde_json::from_str::<std::collections::BTreeMap<String, String>>(
                &r.config_json,
            )
            .map(|c| c.into_keys().collect())
            .unwrap_or_default(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AppSummary {
    pub name: String,
    pub namespace: String,
    pub active_release: Option<String>,
    pub status: String,
    /// Where the app answers: the call path's base for an app with functions, else its http
    /// service's edge URL. `None` until a release is active.
    pub url: Option<String>,
    /// Every address of the app, as of its newest release (empty until a release is active).
    pub urls: AppUrls,
    pub updated_at: String,
}

/// Where an app answers: each is a URL that works (a function's URL is `call` + its name).
#[derive(Default, Serialize, utoipa::ToSchema)]
pub struct AppUrls {
    /// The call path's base, `{url}/{namespace}/{app}/latest/call/`: only for an app with
    /// functions.
    pub call: Option<String>,
    /// Its HTTP routes, sorted by path then method.
    pub routes: Vec<RouteView>,
    /// Its http service at the edge, `{url}/{app}/`.
    pub service: Option<String>,
}

/// One HTTP route of an app.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RouteView {
    pub method: String,
    /// As declared, with its parameters: `/items/{item_id}`.
    pub path: String,
    pub function: String,
    /// `{url}/{app}{path}` (parameters left as `{name}`).
    pub url: String,
}

/// The parts of a stored manifest the URLs depend on.
#[derive(serde::Deserialize)]
struct ManifestShape {
    #[serde(default)]
    resources: std::collections::BTreeMap<String, ResourceShape>,
    #[serde(default)]
    routes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
struct ResourceShape {
    runtime: morel_core::Runtime,
}

impl AppUrls {
    /// The URLs of the release whose manifest is `manifest_json`.
    fn of(app: &morel_store::AppKey, manifest_json: &str, base_url: &str) -> AppUrls {
        let Ok(m) = serde_json::from_str::<ManifestShape>(manifest_json) else {
            return AppUrls::default();
        };
        let runs = |http: bool| {
            m.resources
                .values()
                .any(|r| (r.runtime == morel_core::Runtime::Http) == http)
        };
        let mut routes: Vec<RouteView> = m
            .routes
            .values()
            .flatten()
            .filter_map(|(key, function)| {
                let (method, path) = key.split_once(' ')?;
                Some(RouteView {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    function: function.clone(),
                    url: format!("{base_url}/{}{path}", app.name),
                })
            })
            .collect();
        routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        AppUrls {
            call: runs(false)
                .then(|| format!("{base_url}/{}/{}/latest/call/", app.namespace, app.name)),
            routes,
            service: runs(true).then(|| format!("{base_url}/{}/", app.name)),
        }
    }
}

impl AppSummary {
    /// `latest` is the app's newest release: its manifest says which URLs the app has (the
    /// active release's, unless a newer one is rolling out or failed).
    pub fn new(app: &AppRow, latest: Option<&ReleaseRow>, base_url: &str) -> Self {
        let status = match (app.active_release, latest) {
            (_, Some(l)) if !l.status.is_terminal() => l.status.to_string(),
            (Some(_), _) => "ready".into(),
            (None, Some(l)) => l.status.to_string(),
            (None, None) => "empty".into(),
        };
        let urls = match (app.active_release, latest) {
            (Some(_), Some(l)) => AppUrls::of(&app.key, &l.manifest_json, base_url),
            _ => AppUrls::default(),
        };
        AppSummary {
            name: app.key.name.to_string(),
            namespace: app.key.namespace.to_string(),
            active_release: app.active_release.map(|n| format!("v{n}")),
            status,
            url: app
                .active_release
                .and(urls.call.clone().or_else(|| urls.service.clone())),
            urls,
            updated_at: morel_core::time::rfc3339(app.updated_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FunctionView {
    pub name: String,
    pub resource: String,
    pub params: Vec<String>,
    pub is_async: bool,
    /// Its URL on the call path.
    pub url: String,
    /// Its HTTP route, `METHOD /path`, if it has one (its URL is in the app's `urls.routes`).
    pub route: Option<String>,
}

impl FunctionView {
    pub fn new(f: &FunctionRow, base: &str) -> Self {
        FunctionView {
            name: f.name.clone(),
            resource: f.resource.clone(),
            params: f.params.clone(),
            is_async: f.is_async,
            url: format!("{base}{}", f.name),
            route: match (&f.http_method, &f.http_path) {
                (Some(m), Some(p)) => Some(format!("{m} {p}")),
                _ => None,
            },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceView {
    pub name: String,
    pub runtime: String,
    pub config_hash: String,
    pub status: String,
    pub error: Option<String>,
    pub endpoint_url: String,
    pub release: String,
}

impl From<&ResourceRow> for ResourceView {
    fn from(r: &ResourceRow) -> Self {
        ResourceView {
            name: r.name.clone(),
            runtime: r.runtime.to_string(),
            config_hash: r.config_hash.clone(),
            status: r.status.to_string(),
            error: r.error.clone(),
            endpoint_url: endpoint_url(r),
            release: format!("v{}", r.release),
        }
    }
}

/// Where a resource answers: the call path's base for functions, the edge (`{url}/{app}/`)
/// for an http service. The stored row holds the call path's base for every resource.
pub fn endpoint_url(r: &ResourceRow) -> String {
    let call_suffix = format!("/{}/{}/latest/call", r.app.namespace, r.app.name);
    match (r.runtime, r.endpoint_url.strip_suffix(&call_suffix)) {
        (morel_core::Runtime::Http, Some(base)) => format!("{base}/{}/", r.app.name),
        _ => r.endpoint_url.clone(),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub resource: String,
    pub release: String,
    pub node: String,
    pub state: String,
    pub pid: Option<i64>,
    pub restarts: i64,
    pub last_error: Option<String>,
    pub digest: String,
    pub uptime_s: i64,
}

impl From<&InstanceRow> for InstanceView {
    fn from(r: &InstanceRow) -> Self {
        InstanceView {
            id: r.id.to_string(),
            resource: r.resource.clone(),
            release: format!("v{}", r.release),
            node: r.node.clone(),
            state: r.state.to_string(),
            pid: r.pid,
            restarts: r.restarts,
            last_error: r.last_error.clone(),
            digest: r.digest.short().to_owned(),
            // A stopped (scaled-down) or failed instance has no uptime.
            uptime_s: match r.state {
                InstanceState::Stopped | InstanceState::Failed | InstanceState::Idle => 0,
                _ => (morel_core::time::now_ms() - r.started_at) / 1000,
            },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AppDetail {
    #[serde(flatten)]
    pub summary: AppSummary,
    pub releases: Vec<ReleaseView>,
    pub resources: Vec<ResourceView>,
    pub functions: Vec<FunctionView>,
    pub instances: Vec<InstanceView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LogView {
    pub id: i64,
    pub ts: String,
    pub stream: &'static str,
    pub source: String,
    pub line: String,
}

impl From<&LogRow> for LogView {
    fn from(l: &LogRow) -> Self {
        LogView {
            id: l.id,
            ts: morel_core::time::rfc3339(l.ts),
            stream: l.stream.as_str(),
            source: l.source.clone(),
            line: l.line.clone(),
        }
    }
}

/// One recorded execution (seed 001's compiled functions and async jobs alike). `function_id`
/// is a compiled function's id, or `namespace/app/function` for an async job.
pub fn execution_view(e: &ExecutionRow) -> serde_json::Value {
    let parse = |s: &Option<String>| {
        s.as_deref().map(|t| {
            serde_json::from_str::<serde_json::Value>(t)
                .unwrap_or(serde_json::Value::String(t.to_owned()))
        })
    };
    serde_json::json!({
        "id": e.id,
        "function_id": e.function_id,
        "status": e.status.as_str(),
        "input": serde_json::from_str::<serde_json::Value>(&e.input).unwrap_or(serde_json::Value::Null),
        "output": parse(&e.output),
        "errorMessage": e.error,
        "started_at": morel_core::time::rfc3339(e.started_at),
        "completed_at": e.completed_at.map(morel_core::time::rfc3339),
        "duration_ms": e.completed_at.map(|c| c - e.started_at),
    })
}
