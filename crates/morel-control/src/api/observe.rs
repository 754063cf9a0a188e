//! Observability routes: `GET /metrics` (Prometheus) and the recent calls of an app function.
//!
//! Counters and histograms are kept by `morel-metrics` as things happen; the gauges that
//! mirror stored state (instances by state, queue depths and ages) are read from the store
//! here, at scrape time, so nothing on the call path or in the supervisors has to keep them.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, app_key};
use crate::ApiError;

/// The durable queues whose depth and age are exported.
const QUEUES: [&str; 3] = [
    crate::functions::JOBS_QUEUE,
    crate::functions::RESULTS_QUEUE,
    crate::jobs::JOBS_QUEUE,
];

/// `GET /metrics`: every metric in OpenMetrics text, which Prometheus scrapes natively.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 500, description = "internal error", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let m = morel_metrics::global();
    let store = &st.deployer.store;
    let instances = store.list_instances(None).await?;
    let mut queues = Vec::with_capacity(QUEUES.len());
    for q in QUEUES {
        queues.push((q, store.queue_depth(q).await?));
    }
    // Read the store first, then set and encode under the scrape lock (no await while held).
    let text = {
        let _scrape = m.scrape_lock();
        m.set_instances(instances.iter().map(|i| morel_metrics::InstanceCount {
            namespace: i.app.namespace.as_str(),
            app: i.app.name.as_str(),
            resource: &i.resource,
            state: i.state.as_str(),
        }));
        for (q, (depth, oldest_ms)) in queues {
            m.set_queue(
                q,
                depth,
                Duration::from_millis(u64::try_from(oldest_ms).unwrap_or(0)),
            );
        }
        m.set_log_lines_dropped(st.deployer.logs.dropped());
        m.encode()
    };
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(morel_metrics::CONTENT_TYPE),
    );
    Ok(resp)
}

/// One recent call of an app function, as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallView {
    /// When it finished (RFC 3339).
    pub at: String,
    pub duration_ms: f64,
    /// The HTTP status it ended with.
    pub status: u16,
    pub ok: bool,
    /// What went wrong, for a failed call.
    pub error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FunctionCalls {
    pub app: String,
    pub function: String,
    /// How many calls each function remembers; older ones are dropped.
    pub kept: usize,
    /// Newest first. Kept in memory only: empty after a restart.
    pub calls: Vec<CallView>,
}

/// `GET /api/apps/{app}/functions/{function}/executions`: the function's most recent calls.
#[utoipa::path(
    get,
    path = "/api/apps/{app}/functions/{function}/executions",
    operation_id = "list_recent_calls",
    tag = "apps",
    summary = "The most recent calls of an app function (kept in memory)",
    params(("app" = String, Path, description = "App name"), ("function" = String, Path, description = "function name")),
    responses(
        (status = 200, description = "newest first", body = FunctionCalls),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn function_executions(
    State(st): State<AppState>,
    Path((app, function)): Path<(String, String)>,
) -> Result<Json<FunctionCalls>, ApiError> {
    let key = app_key(&app)?;
    let store = &st.deployer.store;
    if store.get_app(&key).await?.is_none() {
        return Err(ApiError::not_found(format!("app {app} not found")));
    }
    let known = store
        .list_functions(&key)
        .await?
        .iter()
        .any(|f| f.name == function);
    if !known {
        return Err(ApiError::not_found(format!(
            "app {app} has no function {function:?}"
        )));
    }
    let calls = morel_metrics::global()
        .existing_function(key.namespace.as_str(), key.name.as_str(), &function)
        .map(|s| s.recent())
        .unwrap_or_default()
        .into_iter()
        .map(|c| CallView {
            at: morel_core::time::rfc3339(c.at),
            duration_ms: c.duration_us as f64 / 1000.0,
            status: c.status,
            ok: c.status < 400,
            error: c.error,
        })
        .collect();
    Ok(Json(FunctionCalls {
        app: key.name.to_string(),
        function,
        kept: morel_metrics::RECENT_CALLS,
        calls,
    }))
}

/// `GET /api/system`: what this server can enforce on the workloads it runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SystemView {
    /// Morel's version.
    pub version: String,
    /// Each containment layer, whether it is in force here, and how (or what its absence
    /// means), including how memory and cpu are limited (`memory and cpu limits`: cgroup v2,
    /// cgroup v1, or rlimit with cpu not enforced). The same list as `morel doctor` and the
    /// startup log.
    pub containment: Vec<ProtectionView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProtectionView {
    pub layer: String,
    pub enabled: bool,
    pub detail: String,
}

#[utoipa::path(
    get,
    path = "/api/system",
    tag = "observability",
    summary = "Which containment layers are in force on this server's machine",
    responses(
        (status = 200, description = "the containment layers", body = SystemView),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn system() -> Json<SystemView> {
    let containment = morel_agent::protections()
        .into_iter()
        .map(|p| ProtectionView {
            layer: p.layer.to_owned(),
            enabled: p.enabled,
            detail: p.detail,
        })
        .collect();
    Json(SystemView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        containment,
    })
}
