//! Handlers for environments, git deploys, config, secrets and certificates (seed 003).
//! They translate HTTP to calls on [`crate::environments::Environments`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{AppState, app_key};
use crate::ApiError;
use crate::deploy::ConfigChange;
use crate::environments::{EnvironmentView, SecretView};
use crate::git_deploy::DeployRequest;
use crate::secrets::SecretValue;

/// The answer to `POST /api/deploys`: the queued request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeployAccepted {
    pub id: String,
    pub app: String,
    /// The branch that will be deployed (the app's main branch when none was asked for).
    pub branch: Option<String>,
    /// `queued`.
    pub status: &'static str,
    /// Where to follow it: `/api/deploys/{id}`.
    pub url: String,
}

/// One git deploy request and its progress.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeployView {
    pub id: String,
    pub app: String,
    /// The repository, with any credentials in it masked.
    pub repo_url: String,
    pub branch: Option<String>,
    /// The environment the branch deploys to, once resolved.
    pub env: Option<String>,
    /// The release it created (`v3`), once created.
    pub release: Option<String>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: &'static str,
    pub error: Option<String>,
    /// How many times a worker picked the request up (more than 1 after a crash).
    pub attempts: i64,
    /// The steps finished so far, in order.
    pub steps: Vec<DeployStepView>,
    /// The environment's addresses, once the deploy succeeded.
    pub urls: Vec<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// A finished step of a git deploy.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeployStepView {
    /// `resolve`, `build`, `environment`, `address`, `secrets`, `instances` or `url`.
    pub step: String,
    pub detail: String,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// The answer to removing an environment or a secret: the name removed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub removed: String,
    /// After removing a secret: the release (`v5`) that restarts the environment's instances
    /// without it, when the environment has one to restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// The answer to `POST .../config`: the release rolling out with the new config.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigAccepted {
    /// The new release (`v4`); follow it with `GET /api/apps/{app}/releases/{version}`.
    pub release: String,
    pub env: String,
}

/// The answer to `PUT .../certificate`: the host names it now serves over TLS.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateAdded {
    pub env: String,
    pub hosts: Vec<String>,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("expected {expected}: {e}")))
}

#[utoipa::path(
    post,
    path = "/api/deploys",
    tag = "environments",
    summary = "Deploy a branch of a git repository to its environment (queued; answers at once)",
    request_body = DeployRequest,
    responses(
        (status = 202, description = "queued; follow it at `url`", body = DeployAccepted),
        (status = 400, description = "bad input: the body, the URL's scheme, a branch or app name, a repository that cannot be read or lacks the branch (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
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
        Json(DeployAccepted {
            url: format!("/api/deploys/{}", d.id),
            id: d.id.to_string(),
            app: d.app.name.to_string(),
            branch: d.branch,
            status: d.status.as_str(),
        }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/deploys/{id}",
    tag = "environments",
    summary = "A git deploy's status, steps and, once it succeeded, its addresses",
    params(("id" = String, Path, description = "Deploy id, as answered by `POST /api/deploys`")),
    responses(
        (status = 200, description = "ok", body = DeployView),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "no deploy has this id", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_deploy(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeployView>, ApiError> {
    let store = &st.deployer.store;
    let not_found = || ApiError::not_found(format!("deploy {id} not found"));
    let deploy_id: morel_core::DeployId = id.parse().map_err(|_| not_found())?;
    let d = store.get_deploy(deploy_id).await?.ok_or_else(not_found)?;
    let steps = store
        .list_deploy_steps(deploy_id)
        .await?
        .into_iter()
        .map(|s| DeployStepView {
            step: s.step,
            detail: s.detail,
            at: s.at,
        })
        .collect();
    let urls = match &d.env {
        Some(e) if d.status == morel_store::DeployStatus::Succeeded => st.envs.urls(&d.app, e),
        _ => Vec::new(),
    };
    Ok(Json(DeployView {
        app: d.app.name.to_string(),
        repo_url: crate::git_deploy::redact_url(&d.repo_url),
        release: d.release.map(|n| format!("v{n}")),
        status: d.status.as_str(),
        id: d.id.to_string(),
        branch: d.branch,
        env: d.env,
        error: d.error,
        attempts: d.attempts,
        steps,
        urls,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }))
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/environments",
    tag = "environments",
    summary = "An app's environments (production first) with their releases, addresses and secret names",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "ok", body = Vec<EnvironmentView>),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app does not exist", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_environments(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let key = app_key(&app)?;
    Ok(Json(st.envs.list(&key).await?))
}

#[utoipa::path(
    delete,
    path = "/api/apps/{app}/environments/{env}",
    tag = "environments",
    summary = "Remove a preview environment: stop its instances, delete its releases, secrets and certificate",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name (not `production`)"),
    ),
    responses(
        (status = 200, description = "removed", body = Removed),
        (status = 400, description = "bad input, or `production` (delete the app instead); named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn remove_environment(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let key = app_key(&app)?;
    st.envs.remove(&key, &env).await?;
    Ok(Json(Removed {
        removed: env,
        release: None,
    }))
}

/// The body of `POST .../config`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Config values to add or change (names: letters, digits and `_`, not starting with a
    /// digit or `MOREL_`); the others are kept.
    #[serde(default)]
    set: BTreeMap<String, String>,
    /// Config values to remove (each must be set).
    #[serde(default)]
    unset: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/apps/{app}/environments/{env}/config",
    tag = "environments",
    summary = "Set or unset config values: a new release of the environment's bundle with the changed config (the others kept)",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name"),
    ),
    request_body = SetConfig,
    responses(
        (status = 202, description = "the new release is rolling out", body = ConfigAccepted),
        (status = 400, description = "bad input: the body, a variable name, or an environment with no active release (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn set_config(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = app_key(&app)?;
    let req: SetConfig = body(&bytes, r#"{"set": {"KEY": "VALUE"}} or {"unset": ["KEY"]}"#)?;
    let change = match (req.set.is_empty(), req.unset.is_empty()) {
        (false, true) => ConfigChange::Merge(req.set),
        (true, false) => ConfigChange::Unset(req.unset),
        _ => {
            return Err(ApiError::bad_request(
                r#"expected one of {"set": {"KEY": "VALUE"}} or {"unset": ["KEY"]}, not empty"#,
            ));
        }
    };
    let r = st.envs.change_config(&key, &env, change).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ConfigAccepted {
            release: format!("v{}", r.number),
            env,
        }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/environments/{env}/secrets",
    tag = "environments",
    summary = "The names of an environment's secrets (never their values)",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name"),
    ),
    responses(
        (status = 200, description = "ok", body = Vec<SecretView>),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list_secrets(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let key = app_key(&app)?;
    Ok(Json(st.envs.list_secrets(&key, &env).await?))
}

/// The body of `PUT .../secrets/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// Stored sealed; never shown again or logged.
    #[schema(value_type = String)]
    value: SecretValue,
}

#[utoipa::path(
    put,
    path = "/api/apps/{app}/environments/{env}/secrets/{name}",
    tag = "environments",
    summary = "Set a secret; the environment's running release restarts with it",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name"),
        ("name" = String, Path, description = "Variable name: letters, digits and `_`, not starting with a digit or `MOREL_`"),
    ),
    request_body = SetSecret,
    responses(
        (status = 200, description = "stored", body = SecretView),
        (status = 400, description = "bad input: the body or the name (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn set_secret(
    State(st): State<AppState>,
    Path((app, env, name)): Path<(String, String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<SecretView>, ApiError> {
    let key = app_key(&app)?;
    let req: SetSecret = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request(r#"expected {"value": "..."}"#))?;
    Ok(Json(
        st.envs.set_secret(&key, &env, &name, &req.value).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/apps/{app}/environments/{env}/secrets/{name}",
    tag = "environments",
    summary = "Remove a secret; the environment's running release restarts without it",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name"),
        ("name" = String, Path, description = "Secret name"),
    ),
    responses(
        (status = 200, description = "removed", body = Removed),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment, or it has no such secret", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn remove_secret(
    State(st): State<AppState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let key = app_key(&app)?;
    let release = st.envs.remove_secret(&key, &env, &name).await?;
    Ok(Json(Removed {
        removed: name,
        release,
    }))
}

/// The body of `PUT .../certificate`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCertificate {
    /// The certificate chain, PEM; it must be valid for the environment's host names.
    cert_pem: String,
    /// Its private key, PEM; stored sealed, never shown again or logged.
    #[schema(value_type = String)]
    key_pem: SecretValue,
}

#[utoipa::path(
    put,
    path = "/api/apps/{app}/environments/{env}/certificate",
    tag = "environments",
    summary = "Set an environment's TLS certificate, served by SNI for its host names",
    params(
        ("app" = String, Path, description = "App name"),
        ("env" = String, Path, description = "Environment name"),
    ),
    request_body = AddCertificate,
    responses(
        (status = 200, description = "stored and loaded", body = CertificateAdded),
        (status = 400, description = "bad input: the body, a PEM that does not parse, a key that does not match, or a certificate not valid for the environment's host names (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app has no such environment", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn put_certificate(
    State(st): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Json<CertificateAdded>, ApiError> {
    let key = app_key(&app)?;
    let req: AddCertificate = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request(r#"expected {"cert_pem": PEM, "key_pem": PEM}"#))?;
    let hosts = st
        .envs
        .add_certificate(&key, &env, &req.cert_pem, &req.key_pem)
        .await?;
    Ok(Json(CertificateAdded { env, hosts }))
}
