//! Morel's own control API under `/api`: bundles, apps, releases, logs, keys.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use morel_bundle::Signature;
use morel_core::Digest;
use morel_store::KeyRow;
use serde::Deserialize;

use super::{AppState, app_key};
use crate::ApiError;
use crate::extract::ApiJson;
use crate::views::*;

/// The header carrying a bundle's detached signature: `key_id:base64sig`.
pub const SIGNATURE_HEADER: &str = "x-morel-signature";

fn digest_param(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[utoipa::path(
    get,
    path = "/api/bundles/{digest}",
    tag = "bundles",
    summary = "Whether the server has a bundle (also HEAD)",
    params(("digest" = String, Path, description = "sha256 digest of the bundle")),
    responses(
        (status = 200, description = "the bundle is stored"),
        (status = 404, description = "the bundle is not stored"),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn bundle_exists(
    State(st): State<AppState>,
    Path(digest): Path<String>,
) -> Result<StatusCode, ApiError> {
    let digest = digest_param(&digest)?;
    let known = st.deployer.ensure_bundle(&digest).await?;
    Ok(if known {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

#[utoipa::path(
    put,
    path = "/api/bundles/{digest}",
    tag = "bundles",
    summary = "Upload a signed bundle",
    params(("digest" = String, Path, description = "sha256 digest of the bundle"), ("x-morel-signature" = String, Header, description = "key_id:base64 detached ed25519 signature")),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses(
        (status = 201, description = "stored", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 413, description = "too large", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn put_bundle(
    State(st): State<AppState>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let digest = digest_param(&digest)?;
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "missing {SIGNATURE_HEADER} header: bundles must be signed (morel keys generate)"
            ))
        })?;
    let sig = Signature::from_header(sig).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stored = st.deployer.store_bundle(&digest, &body, &sig).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "digest": stored, "size": body.len() })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateRelease {
    pub digest: String,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[utoipa::path(
    post,
    path = "/api/apps/{app}/releases",
    tag = "releases",
    summary = "Create a release from an uploaded bundle and roll it out",
    params(("app" = String, Path, description = "App name")),
    request_body = CreateRelease,
    responses(
        (status = 202, description = "rolling out", body = ReleaseView),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the body does not fit the schema (a missing field or a wrong type)", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn create_release(
    State(st): State<AppState>,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<CreateRelease>,
) -> Result<Response, ApiError> {
    let key = app_key(&app)?;
    let digest = digest_param(&req.digest)?;
    let env = req.env.unwrap_or_else(|| "production".into());
    env.parse::<morel_core::ResourceName>()
        .map_err(|_| ApiError::bad_request(format!("environment name {env:?} is not valid")))?;
    // Another environment than production is a preview, with its own host app.
    let key = st.envs.ensure_preview(&key, &env).await?;
    let release = st
        .deployer
        .create_release(
            &key,
            Some(&digest),
            &env,
            crate::deploy::ConfigChange::Merge(req.config),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ReleaseView::from(&release))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/releases",
    tag = "releases",
    summary = "List the releases of an app",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "oldest first", body = Vec<ReleaseView>),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_releases(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    let key = app_key(&app)?;
    let rows = st.deployer.store.list_releases(&key).await?;
    Ok(Json(rows.iter().map(ReleaseView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/releases/{version}",
    tag = "releases",
    summary = "One release",
    params(("app" = String, Path, description = "App name"), ("version" = String, Path, description = "v3 or 3")),
    responses(
        (status = 200, description = "ok", body = ReleaseView),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_release(
    State(st): State<AppState>,
    Path((app, version)): Path<(String, String)>,
) -> Result<Json<ReleaseView>, ApiError> {
    let key = app_key(&app)?;
    let n: i64 = version.trim_start_matches('v').parse().map_err(|_| {
        ApiError::bad_request(format!("release {version:?} is not a number like v3"))
    })?;
    let row = st
        .deployer
        .store
        .get_release(&key, n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app} has no release v{n}")))?;
    Ok(Json(ReleaseView::from(&row)))
}

#[utoipa::path(
    get,
    path = "/api/apps",
    tag = "apps",
    summary = "List apps",
    responses(
        (status = 200, description = "ok", body = Vec<AppSummary>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_apps(State(st): State<AppState>) -> Result<Json<Vec<AppSummary>>, ApiError> {
    let store = &st.deployer.store;
    // A preview environment's host app (`{app}--{env}`) is listed under its app's environments.
    let hosts = st.envs.preview_hosts().await?;
    let mut out = Vec::new();
    for app in store.list_apps().await? {
        if hosts.contains(&app.key) {
            continue;
        }
        let releases = store.list_releases(&app.key).await?;
        out.push(AppSummary::new(
            &app,
            releases.last(),
            &st.deployer.cfg.public_url,
        ));
    }
    Ok(Json(out))
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}",
    tag = "apps",
    summary = "An app with its releases, resources, functions and instances",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "ok", body = AppDetail),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_app(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<AppDetail>, ApiError> {
    let key = app_key(&app)?;
    let store = &st.deployer.store;
    let row = store
        .get_app(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app} not found")))?;
    let releases = store.list_releases(&key).await?;
    let summary = AppSummary::new(&row, releases.last(), &st.deployer.cfg.public_url);
    let base = format!(
        "{}/{}/{}/latest/call/",
        st.deployer.cfg.public_url, key.namespace, key.name
    );
    Ok(Json(AppDetail {
        summary,
        releases: releases.iter().map(ReleaseView::from).collect(),
        resources: store
            .list_resources(&key)
            .await?
            .iter()
            .map(ResourceView::from)
            .collect(),
        functions: store
            .list_functions(&key)
            .await?
            .iter()
            .map(|f| FunctionView::new(f, &base))
            .collect(),
        instances: store
            .list_instances(Some(&key))
            .await?
            .iter()
            .map(InstanceView::from)
            .collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/apps/{app}",
    tag = "apps",
    summary = "Stop and delete an app",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn delete_app(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = app_key(&app)?;
    // Its previews, secrets and certificates go with it.
    let had_envs = st.envs.remove_all(&key).await?;
    if !st.deployer.delete_app(&key).await? && !had_envs {
        return Err(ApiError::not_found(format!("app {app} not found")));
    }
    Ok(Json(serde_json::json!({ "deleted": app })))
}

/// The authoritative manifest of the active release, with each resource's reconcile state.
#[utoipa::path(
    get,
    path = "/api/apps/{app}/manifest",
    tag = "apps",
    summary = "The active release's manifest with each resource's status and endpoint",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_manifest(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    super::manifest::manifest_of(&st, &app).await.map(Json)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines after this id (for resuming).
    #[serde(default)]
    pub after: Option<i64>,
    /// `10m`, `2h`, or milliseconds since the epoch.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub follow: Option<bool>,
    #[serde(default)]
    pub limit: Option<i64>,
    /// `stdout`, `stderr` or `event`.
    #[serde(default)]
    pub stream: Option<String>,
}

fn since_ms(s: &Option<String>) -> Result<i64, ApiError> {
    let Some(s) = s.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let d = humantime_parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "since={s:?}: expected a duration like 10m or 2h, or epoch milliseconds"
        ))
    })?;
    Ok(morel_core::time::now_ms() - d.as_millis() as i64)
}

fn humantime_parse(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/logs",
    tag = "logs",
    summary = "Logs of an app; with follow=true a Server-Sent Events stream",
    params(("app" = String, Path, description = "App name"), LogQuery),
    responses(
        (status = 200, description = "a JSON list, or with follow=true `text/event-stream` of the same objects", body = Vec<LogView>),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn logs(
    State(st): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let key = app_key(&app)?;
    let store = st.deployer.store.clone();
    if store.get_app(&key).await?.is_none() {
        return Err(ApiError::not_found(format!("app {app} not found")));
    }
    let since = since_ms(&q.since)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let stream_filter = q.stream.clone();
    let keep = move |l: &morel_store::LogRow| {
        stream_filter
            .as_deref()
            .is_none_or(|s| s == l.stream.as_str())
    };
    let mut after = q.after.unwrap_or(0);
    if !q.follow.unwrap_or(false) {
        let rows = store.read_logs(&key, after, since, limit).await?;
        return Ok(Json(
            rows.iter()
                .filter(|l| keep(l))
                .map(LogView::from)
                .collect::<Vec<_>>(),
        )
        .into_response());
    }
    // Follow: poll the store, so this works the same whichever process wrote the lines.
    let stream = async_stream(
        move |tx: tokio::sync::mpsc::Sender<Result<Event, Infallible>>| async move {
            loop {
                let rows = match store.read_logs(&key, after, since, 500).await {
                    Ok(r) => r,
                    Err(_) => break,
                };
                for l in &rows {
                    after = l.id;
                    if !keep(l) {
                        continue;
                    }
                    let data = serde_json::to_string(&LogView::from(l)).unwrap_or_default();
                    if tx
                        .send(Ok(Event::default().id(l.id.to_string()).data(data)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if rows.len() < 500 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if tx.is_closed() {
                    return;
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A stream fed by a task through a channel; the task stops when the client goes away.
fn async_stream<F, Fut>(f: F) -> tokio_stream::wrappers::ReceiverStream<Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    pub digest: String,
}

/// What deploying an uploaded bundle would do: new / changed / removed / unchanged resources.
#[utoipa::path(
    get,
    path = "/api/apps/{app}/plan",
    tag = "releases",
    summary = "What deploying a bundle would change",
    params(("app" = String, Path, description = "App name"), PlanQuery),
    responses(
        (status = 200, description = "ok", body = crate::deploy::Plan),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn plan(
    State(st): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<crate::deploy::Plan>, ApiError> {
    let key = app_key(&app)?;
    let digest = digest_param(&q.digest)?;
    Ok(Json(st.deployer.plan_for_bundle(&key, &digest).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Rollback {
    /// Release number to re-activate; default: the previous one.
    #[serde(default)]
    pub release: Option<i64>,
    /// The environment to roll back (default: production).
    #[serde(default)]
    pub env: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/apps/{app}/rollback",
    tag = "releases",
    summary = "Make an earlier release active again (default: the previous one)",
    params(("app" = String, Path, description = "App name")),
    request_body(content = Option<Rollback>, description = "empty for production's previous release"),
    responses(
        (status = 202, description = "rolling back", body = ReleaseView),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn rollback(
    State(st): State<AppState>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = app_key(&app)?;
    let req: Rollback = if body.is_empty() {
        Rollback {
            release: None,
            env: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("expected {{\"release\"?: N, \"env\"?: ENV}}: {e}"))
        })?
    };
    let key = match &req.env {
        Some(env) => st.envs.host_for(&key, env).await?,
        None => key,
    };
    let release = st.deployer.rollback(&key, req.release).await?;
    Ok((StatusCode::ACCEPTED, Json(ReleaseView::from(&release))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TrustKey {
    pub public_key: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "keys",
    summary = "Trusted signing keys",
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_keys(
    State(st): State<AppState>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let keys = st.deployer.store.list_keys().await?;
    Ok(Json(keys.iter().map(|k| serde_json::json!({ "key_id": k.key_id, "name": k.name, "public_key": k.public_key, "created_at": morel_core::time::rfc3339(k.created_at) })).collect()))
}

#[utoipa::path(
    post,
    path = "/api/keys",
    tag = "keys",
    summary = "Trust a signing key",
    request_body = TrustKey,
    responses(
        (status = 201, description = "trusted", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the body does not fit the schema (a missing field or a wrong type)", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn trust_key(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TrustKey>,
) -> Result<Response, ApiError> {
    let key = morel_bundle::PublicKey::from_text(&req.public_key)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let row = KeyRow {
        key_id: key.key_id(),
        public_key: key.to_text(),
        name: req.name.unwrap_or_else(|| "unnamed".into()),
        created_at: morel_core::time::now_ms(),
    };
    st.deployer.store.trust_key(&row).await?;
    st.deployer.trusted_keys().await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "key_id": row.key_id, "name": row.name })),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/api/keys/{key_id}",
    tag = "keys",
    summary = "Stop trusting a key",
    params(("key_id" = String, Path, description = "key id")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn remove_key(
    State(st): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !st.deployer.store.remove_key(&key_id).await? {
        return Err(ApiError::not_found(format!("key {key_id} is not trusted")));
    }
    st.deployer.trusted_keys().await?;
    Ok(Json(serde_json::json!({ "removed": key_id })))
}
