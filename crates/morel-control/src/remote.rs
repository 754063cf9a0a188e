//! The gateway of `morel server` for instances that run on agents: forwards
//! `/{prefix}/{app}/{version}/call/{func}` to a ready endpoint of the function's resource,
//! round-robin, trying the next endpoint when one cannot be reached; and an app's HTTP routes
//! (`METHOD /{app}{path}`, apps of the default namespace, as on `morel up`) to an agent running
//! the routed function's resource, which binds the route as `morel up` does.
//!
//! The table is in memory and refreshed from the store by polling ([`run_refresh`]): only
//! placements reported `ready` on nodes that are `ready` with a heartbeat younger than the TTL
//! are routed to, so a lost node's endpoints leave routing within one refresh. The call path
//! itself does no database access.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use morel_core::{NodeState, PlacementState};
use morel_manifest::Manifest;
use morel_store::{Store, StoreError};

/// Largest request body forwarded (413 beyond), as on the local call path.
const MAX_BODY: usize = 6 << 20;

/// One app's active release as the remote gateway sees it.
#[derive(Debug, Default)]
pub struct RemoteApp {
    pub release: i64,
    pub env: String,
    /// Function name → its resource.
    pub functions: HashMap<String, String>,
    /// Resource → its calls' deadline (the manifest's `timeout_ms`).
    pub deadlines: HashMap<String, Duration>,
    /// Resource → base URLs of agents serving a ready instance of it.
    pub endpoints: HashMap<String, Vec<String>>,
    /// The release's HTTP routes.
    pub http: Arc<morel_gateway::HttpRoutes>,
}

/// `(namespace, app)` → what to forward to.
#[derive(Default)]
pub struct RemoteTable {
    apps: RwLock<HashMap<(String, String), Arc<RemoteApp>>>,
    next: AtomicUsize,
}

impl RemoteTable {
    pub fn get(&self, namespace: &str, app: &str) -> Option<Arc<RemoteApp>> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.get(&(namespace.to_owned(), app.to_owned())).cloned()
    }

    fn replace(&self, apps: HashMap<(String, String), Arc<RemoteApp>>) {
        *self.apps.write().unwrap_or_else(|e| e.into_inner()) = apps;
    }
}

/// What a forward needs of an active release's manifest: its environment, function →
/// resource, resource → deadline, and its HTTP routes.
type ReleaseRoutes = (
    String,
    HashMap<String, String>,
    HashMap<String, Duration>,
    Arc<morel_gateway::HttpRoutes>,
);

/// Manifests of active releases, parsed once: `(namespace, app, release)` → their routes.
type ManifestCache = HashMap<(String, String, i64), Arc<ReleaseRoutes>>;

/// A forwarded call may take its deadline plus this (the agent answers 504 itself at the
/// deadline; past this the agent is taken to be hung).
const FORWARD_GRACE: Duration = Duration::from_secs(1);
/// The deadline of a call whose resource is not known here.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Rebuilds the table from the store.
pub async fn refresh(
    store: &dyn Store,
    table: &RemoteTable,
    ttl: Duration,
    cache: &mut ManifestCache,
) -> Result<(), StoreError> {
    let cutoff = morel_core::time::now_ms() - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let fresh: HashMap<morel_core::NodeId, ()> = store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.state == NodeState::Ready && n.heartbeat_at >= cutoff)
        .map(|n| (n.id, ()))
        .collect();
    let placements = store.list_placements(None).await?;
    let mut apps = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for app in store.list_apps().await? {
        let Some(n) = app.active_release else {
            continue;
        };
        let ns = app.key.namespace.as_str().to_owned();
        let name = app.key.name.as_str().to_owned();
        let ck = (ns.clone(), name.clone(), n);
        let entry = match cache.get(&ck) {
            Some(e) => e.clone(),
            None => {
                let Some(release) = store.get_release(&app.key, n).await? else {
                    continue;
                };
                let Ok(manifest) = serde_json::from_str::<Manifest>(&release.manifest_json) else {
                    continue;
                };
                let functions = manifest
                    .resources
                    .iter()
                    .flat_map(|(r, spec)| {
                        spec.functions
                            .iter()
                            .map(move |f| (f.name.clone(), r.clone()))
                    })
                    .collect();
                let deadlines = manifest
                    .resources
                    .iter()
                    .map(|(r, spec)| (r.clone(), Duration::from_millis(spec.timeout_ms)))
                    .collect();
                let http = manifest
                    .routes
                    .values()
                    .flat_map(|t| t.iter().map(|(k, f)| (k.clone(), f.clone())))
                    .collect();
                let e = Arc::new((release.env, functions, deadlines, Arc::new(http)));
                cache.insert(ck.clone(), e.clone());
                e
            }
        };
        seen.insert(ck);
        let mut endpoints: HashMap<String, Vec<String>> = HashMap::new();
        for p in placements.iter().filter(|p| {
            p.app == app.key
                && p.release == n
                && p.state == PlacementState::Ready
                && fresh.contains_key(&p.node)
        }) {
            if let Some(ep) = &p.endpoint {
                endpoints
                    .entry(p.resource.clone())
                    .or_default()
                    .push(ep.clone());
            }
        }
        apps.insert(
            (ns, name),
            Arc::new(RemoteApp {
                release: n,
                env: entry.0.clone(),
                functions: entry.1.clone(),
                deadlines: entry.2.clone(),
                endpoints,
                http: entry.3.clone(),
            }),
        );
    }
    cache.retain(|k, _| seen.contains(k));
    table.replace(apps);
    Ok(())
}

/// Refreshes the table every `interval` until `stop` turns true.
pub async fn run_refresh(
    store: Arc<dyn Store>,
    table: Arc<RemoteTable>,
    ttl: Duration,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut cache = ManifestCache::new();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = refresh(&*store, &table, ttl, &mut cache).await {
            tracing::warn!(error = %e, "refreshing the remote route table");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The forwarding side of a server, for callers other than its HTTP routes (the job worker).
#[derive(Clone)]
pub struct Remote {
    pub table: Arc<RemoteTable>,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(table: Arc<RemoteTable>) -> Self {
        Remote {
            table,
            http: client(),
        }
    }

    /// Calls `func` of an agent-run app with `body` (its arguments, JSON), as the call path
    /// would: the answer's bytes, or the failure with its status and type.
    pub async fn call(
        &self,
        namespace: &str,
        app: &str,
        func: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, morel_gateway::CallFailure> {
        let fail = |status, kind: &str, message: String| morel_gateway::CallFailure {
            status,
            kind: kind.into(),
            message,
            id: None,
        };
        let Some(routes) = self.table.get(namespace, app) else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{app}/{func} is no longer deployed"),
            ));
        };
        let Some(resource) = routes.functions.get(func) else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{app} has no function {func:?}"),
            ));
        };
        let bytes = axum::body::Bytes::copy_from_slice(body);
        let resp = send_to(
            self,
            &routes,
            resource,
            func,
            |http, ep| {
                http.post(format!("{ep}/{namespace}/{app}/latest/call/{func}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone())
            },
            false,
        )
        .await;
        let status = resp.status();
        let out = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .map_err(|e| fail(StatusCode::BAD_GATEWAY, "AgentError", e.to_string()))?;
        if status.is_success() {
            return Ok(out.to_vec());
        }
        let err: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        let mut f = fail(
            status,
            err["type"].as_str().unwrap_or("Error"),
            err["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&out).into_owned()),
        );
        f.id = err["id"].as_str().map(str::to_owned);
        Err(f)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

#[derive(Clone)]
struct Fwd {
    remote: Remote,
    next: axum::routing::RouterIntoService<Body>,
}

/// The forwarding call path and app routes; what is neither goes to `next` (the control
/// API's router on a server; on a gateway, a JSON 404).
pub fn router(table: Arc<RemoteTable>, next: Option<Router>) -> Router {
    let next = next.unwrap_or_else(|| {
        Router::new().fallback(|req: axum::extract::Request| async move {
            error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route for {} {}", req.method(), req.uri().path()),
            )
        })
    });
    Router::new()
        .route("/{prefix}/{app}/{version}/call/{func}", any(forward))
        .route("/{prefix}/{app}/{version}/await/{func}", any(forward))
        .fallback(app_route)
        .with_state(Fwd {
            remote: Remote::new(table),
            next: next.into_service(),
        })
}

/// First path segments the server answers itself: an app of the same name cannot take them
/// (on `morel up` the API wins the same way).
const SERVER_PATHS: &[&str] = &[
    "",
    "api",
    "dashboard",
    "manifest",
    "metrics",
    "functions",
    "executions",
    "validate",
];

/// `METHOD /{app}{path}` of an app with agent-run instances: sent as it is to an agent running
/// the resource of the function the route names; the agent binds and calls it.
async fn app_route(State(fwd): State<Fwd>, req: axum::extract::Request) -> Response {
    let path = req.uri().path().to_owned();
    let (segment, rest) = match path.trim_start_matches('/').split_once('/') {
        Some((a, r)) => (a.to_owned(), format!("/{r}")),
        None => (path.trim_start_matches('/').to_owned(), "/".to_owned()),
    };
    let routes = (!SERVER_PATHS.contains(&segment.as_str()))
        .then(|| fwd.remote.table.get("default", &segment))
        .flatten()
        .filter(|r| !r.http.is_empty());
    let Some(routes) = routes else {
        // A router is always ready: no need to poll it first.
        let mut next = fwd.next.clone();
        return match tower_service::Service::call(&mut next, req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
    };
    let function = match routes.http.find(req.method().as_str(), &rest) {
        morel_gateway::RouteMatch::Found { function, .. } => function.to_owned(),
        morel_gateway::RouteMatch::OtherMethods(allowed) => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{rest} of {segment} accepts {}", allowed.join(", ")),
            );
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("app {segment} has no route {} {rest}", req.method()),
            );
        }
    };
    let Some(resource) = routes.functions.get(&function) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("app {segment} has no function {function:?}"),
        );
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body exceeds the limit of {MAX_BODY} bytes"),
        );
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or(path);
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in parts.headers.iter() {
        if !HOP_HEADERS.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    send_to(
        &fwd.remote,
        &routes,
        resource,
        &function,
        |http, ep| {
            http.request(parts.method.clone(), format!("{ep}{pq}"))
                .headers(headers.clone())
                .body(bytes.clone())
        },
        true,
    )
    .await
}

/// Headers of one connection, not passed on.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "type": kind });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert("x-morel-edge", HeaderValue::from_static("1"));
    resp
}

async fn forward(
    State(fwd): State<Fwd>,
    Path((prefix, app, version, func)): Path<(String, String, String, String)>,
    body: Body,
) -> Response {
    let Some(routes) = fwd.remote.table.get(&prefix, &app) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("app {prefix}/{app} is not deployed"),
        );
    };
    if let Err(message) = morel_gateway::check_version(&version, &app, routes.release, &routes.env)
    {
        return error(StatusCode::NOT_FOUND, "NotFound", message);
    }
    let Some(resource) = routes.functions.get(&func) else {
        let mut names: Vec<&str> = routes.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "app {app} has no function {func:?} (functions: {})",
                names.join(", ")
            ),
        );
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body exceeds the limit of {MAX_BODY} bytes"),
        );
    };
    // The version was checked here against the active release; the agent serves its newest
    // (`latest`): during a redeploy an agent may already run the next release, which this
    // server's table (refreshed every 500 ms) learns of a moment later.
    send_to(
        &fwd.remote,
        &routes,
        resource,
        &func,
        |http, ep| {
            http.post(format!("{ep}/{prefix}/{app}/latest/call/{func}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        },
        false,
    )
    .await
}

/// Sends a request (built by `request` for an endpoint) to a ready instance of `resource`,
/// round-robin, trying the next when one cannot be reached. The call's deadline (plus a
/// grace) bounds the wait: past it the agent is taken to be hung and the call is not sent
/// elsewhere (it may have run).
async fn send_to(
    remote: &Remote,
    routes: &RemoteApp,
    resource: &str,
    func: &str,
    request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    all_headers: bool,
) -> Response {
    let endpoints = routes
        .endpoints
        .get(resource)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if endpoints.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            format!("no ready instance of resource {resource:?} (instances are being placed)"),
        );
    }
    let deadline = routes
        .deadlines
        .get(resource)
        .copied()
        .unwrap_or(DEFAULT_DEADLINE);
    let start = remote.table.next.fetch_add(1, Ordering::Relaxed);
    let mut last = String::new();
    for i in 0..endpoints.len() {
        let ep = &endpoints[(start + i) % endpoints.len()];
        let sent = request(&remote.http, ep)
            .timeout(deadline + FORWARD_GRACE)
            .send()
            .await;
        match sent {
            Ok(resp) => return relay(resp, all_headers).await,
            // Sent, but no answer within the call's deadline: the agent is hung (it would
            // have answered 504 itself). The call may have run: it is not sent elsewhere.
            Err(e) if e.is_timeout() => {
                tracing::warn!(endpoint = %ep, "agent did not answer within the call's deadline");
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!(
                        "the agent running {func} did not answer within the call's deadline of {deadline:?}"
                    ),
                );
            }
            // Not reached (the agent is gone): try the next endpoint.
            Err(e) if e.is_connect() => {
                tracing::warn!(endpoint = %ep, error = %e, "agent unreachable; trying the next");
                last = e.to_string();
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "AgentError",
                    format!("the agent running {func} failed during the call: {e}"),
                );
            }
        }
    }
    error(
        StatusCode::BAD_GATEWAY,
        "AgentUnreachable",
        format!("no agent running {func} could be reached ({last})"),
    )
}

/// Passes an agent's answer through: status, content type (every header but the
/// connection's with `all_headers`: a route's response sets its own) and body.
async fn relay(resp: reqwest::Response, all_headers: bool) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut kept = axum::http::HeaderMap::new();
    for (name, value) in resp.headers() {
        let wanted = if all_headers {
            !HOP_HEADERS.contains(&name.as_str())
        } else {
            name == header::CONTENT_TYPE
        };
        if wanted {
            kept.append(name.clone(), value.clone());
        }
    }
    match resp.bytes().await {
        Ok(b) => {
            let mut out = Response::new(Body::from(b));
            *out.status_mut() = status;
            *out.headers_mut() = kept;
            out.headers_mut()
                .insert("x-morel-edge", HeaderValue::from_static("1"));
            out
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            "AgentError",
            format!("reading the agent's answer: {e}"),
        ),
    }
}
