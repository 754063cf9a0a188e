//! Seed 002's manifest views: `GET /api/apps/{app}/manifest` and the bare `GET /manifest`.
//!
//! Both serve the active release's manifest with each resource's persisted reconcile state
//! (`endpoint_url`, `status`, `error`). The bare route names the app with `?app=NAME`; without
//! it, the server's only app is meant, and anything else is a JSON error naming the choices.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{AppState, app_key};
use crate::ApiError;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ManifestQuery {
    /// The app; may be left out when the server runs exactly one.
    pub app: Option<String>,
}

/// `GET /manifest[?app=NAME]`.
#[utoipa::path(
    get,
    path = "/manifest",
    tag = "apps",
    summary = "The active manifest of the named app, or of the server's only app, with each resource's status and endpoint",
    params(ManifestQuery),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input: an unknown query parameter, an invalid app name, or no ?app=NAME while several apps run (the body names them)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "no app is deployed, the app does not exist, or it has no active release", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn bare_manifest(
    State(st): State<AppState>,
    query: Result<Query<ManifestQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "invalid query: {} (GET /manifest accepts only ?app=NAME)",
            e.body_text()
        ))
    })?;
    let name = match q.app.filter(|a| !a.is_empty()) {
        Some(a) => a,
        None => {
            let apps = st.deployer.store.list_apps().await?;
            let names: Vec<String> = apps.iter().map(|a| a.key.name.to_string()).collect();
            match names.as_slice() {
                [only] => only.clone(),
                [] => return Err(ApiError::not_found("no app is deployed")),
                many => {
                    return Err(ApiError::bad_request(format!(
                        "this server runs {} apps; choose one with ?app=NAME (apps: {})",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
    };
    manifest_of(&st, &name).await.map(Json)
}

/// The authoritative manifest of `app`'s active release, with each resource's reconcile state.
pub async fn manifest_of(st: &AppState, app: &str) -> Result<serde_json::Value, ApiError> {
    let key = app_key(app)?;
    let store = &st.deployer.store;
    let row = store
        .get_app(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {app} not found")))?;
    let n = row
        .active_release
        .ok_or_else(|| ApiError::not_found(format!("app {app} has no active release")))?;
    let release = store
        .get_release(&key, n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release v{n} not found")))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&release.manifest_json)
        .map_err(|e| ApiError::internal("reading a stored manifest", &e))?;
    for r in store.list_resources(&key).await? {
        if let Some(res) = manifest
            .get_mut("resources")
            .and_then(|m| m.get_mut(&r.name))
            .and_then(|v| v.as_object_mut())
        {
            res.insert("endpoint_url".into(), crate::views::endpoint_url(&r).into());
            res.insert("status".into(), r.status.as_str().into());
            if let Some(e) = r.error {
                res.insert("error".into(), e.into());
            }
        }
    }
    Ok(manifest)
}
