//! Handlers for environments, git deploys, config, secrets and certificates (seed 003).
//! They translate HTTP to calls on [`crate::environments::Environments`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, app_key};
use crate::ApiError;
use crate::git_deploy::DeployRequest;
use crate::secrets::SecretValue;

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("expected {expected}: {e}")))
}

pub async fn create_deploy(
    State(st): State<AppState>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: DeployRequest = body(
        &bytes,
        r#"{"repo_url": URL, "branch"?: B, "app"?: NAME, "main_branch"?: B}"#,
    )?;
    let d = st.envs.request_deploy(req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": d.id,
            "app": d.app.name.as_str(),
            "branch": d.branch,
            "status": d.status.as_str(),
            "url": format!("/api/deploys/{}", d.id),
        })),
    )
        .into_response())
}

pub async fn get_deploy(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = &st.deployer.store;
    let d = store
        .get_deploy(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("deploy {id} not found")))?;
    let steps: Vec<Value> = store
        .list_deploy_steps(&id)
        .await?
        .into_iter()
        .map(|s| json!({"step": s.step, "detail": s.detail, "at": s.at}))
        .collect();
    let urls = match &d.env {
        Some(e) if d.status == morel_store::DeployStatus::Succeeded => st.envs.urls(&d.app, e),
        _ => Vec::new(),
    };
    Ok(Json(json!({
        "id": d.id,
        "app": d.app.name.as_str(),
        "repo_url": crate::git_deploy::redact_url(&d.repo_url),
        "branch": d.branch,
        "env": d.env,
        "release": d.release.map(|n| format!("v{n}")),
        "status": d.status.as_str(),
        "error": d.error,
        "attempts": d.attempts,
        "steps": steps,
        "urls": urls,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    })))
}

pub async fn list_environments(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    Ok(Json(json!(st.envs.list(&key).await?)))
}

pub async fn remove_environment(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    st.envs.remove(&key, &env).await?;
    Ok(Json(json!({"removed": env})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    set: BTreeMap<String, String>,
}

pub async fn set_config(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = app_key(&app)?;
    let req: SetConfig = body(&bytes, r#"{"set": {"KEY": "VALUE"}}"#)?;
    let r = st.envs.set_config(&key, &env, &req.set).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"release": format!("v{}", r.number), "env": env})),
    )
        .into_response())
}

pub async fn list_secrets(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    Ok(Json(json!(st.envs.list_secrets(&key, &env).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSecret {
    value: SecretValue,
}

pub async fn set_secret(
    State(st): State<AppState>,
    Path((app, env, name)): Path<(String, String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    let req: SetSecret = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request(r#"expected {"value": "..."}"#))?;
    Ok(Json(json!(
        st.envs.set_secret(&key, &env, &name, &req.value).await?
    )))
}

pub async fn remove_secret(
    State(st): State<AppState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    st.envs.remove_secret(&key, &env, &name).await?;
    Ok(Json(json!({"removed": name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCertificate {
    cert_pem: String,
    key_pem: SecretValue,
}

pub async fn put_certificate(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = app_key(&app)?;
    let req: AddCertificate = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request(r#"expected {"cert_pem": PEM, "key_pem": PEM}"#))?;
    let hosts = st
        .envs
        .add_certificate(&key, &env, &req.cert_pem, &req.key_pem)
        .await?;
    Ok(Json(json!({"env": env, "hosts": hosts})))
}
