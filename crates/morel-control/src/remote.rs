//! The gateway of `morel server` for instances that run on agents: forwards
//! `/{prefix}/{app}/{version}/call/{func}` to a ready endpoint of the function's resource,
//! round-robin, trying the next endpoint when one cannot be reached.
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
/// resource, and resource → deadline.
type ReleaseRoutes = (String, HashMap<String, String>, HashMap<String, Duration>);

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
                let e = Arc::new((release.env, functions, deadlines));
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

#[derive(Clone)]
struct Fwd {
    table: Arc<RemoteTable>,
    http: reqwest::Client,
}

/// The forwarding call path; serve it in front of the control API's router.
pub fn router(table: Arc<RemoteTable>) -> Router {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    Router::new()
        .route("/{prefix}/{app}/{version}/call/{func}", any(forward))
        .route("/{prefix}/{app}/{version}/await/{func}", any(forward))
        .with_state(Fwd { table, http })
}

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
    let Some(routes) = fwd.table.get(&prefix, &app) else {
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
    let endpoints = routes
        .endpoints
        .get(resource)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if endpoints.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            format!(
                "no ready instance of resource {resource:?} of {app} (instances are being placed)"
            ),
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body exceeds the limit of {MAX_BODY} bytes"),
        );
    };
    let deadline = routes
        .deadlines
        .get(resource)
        .copied()
        .unwrap_or(DEFAULT_DEADLINE);
    let start = fwd.table.next.fetch_add(1, Ordering::Relaxed);
    let mut last = String::new();
    for i in 0..endpoints.len() {
        let ep = &endpoints[(start + i) % endpoints.len()];
        let url = format!("{ep}/{prefix}/{app}/v{}/call/{func}", routes.release);
        let sent = fwd
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(bytes.clone())
            .timeout(deadline + FORWARD_GRACE)
            .send()
            .await;
        match sent {
            Ok(resp) => return relay(resp).await,
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

/// Passes an agent's answer through: status, content type and body.
async fn relay(resp: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    match resp.bytes().await {
        Ok(b) => {
            let mut out = Response::new(Body::from(b));
            *out.status_mut() = status;
            if let Some(c) = ctype {
                out.headers_mut().insert(header::CONTENT_TYPE, c);
            }
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
