//! Handlers for HTTP services: budget, scale and instances (`morel budget|scale|ps`).
//! They only translate HTTP; the logic is in `crate::services`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{AppState, app_key};
use crate::ApiError;
use crate::extract::ApiJson;
use crate::services::{self, BudgetView, InstanceView};

/// The body of `PUT /api/apps/{app}/budget`: the whole budget. A limit left out (or `null`)
/// is removed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// At most this many instances for the whole app (at least 1).
    #[schema(minimum = 1)]
    pub max_instances: Option<u32>,
    /// CPU cores for the whole app (positive).
    pub cpu: Option<f64>,
    /// MiB of memory for the whole app (at least 1).
    #[schema(minimum = 1)]
    pub memory_mb: Option<u64>,
}

/// The body of `PUT /api/apps/{app}/scale`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    /// Instances each http service runs now (at least 1).
    #[schema(minimum = 1)]
    pub min: u32,
    /// Upper bound of the scale (at least 1, not below `min`).
    #[schema(minimum = 1)]
    pub max: u32,
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/budget",
    tag = "services",
    summary = "An app's budget and scale (`null` where not set)",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "the budget; every field `null` when none was set", body = BudgetView),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_budget(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<BudgetView>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(services::budget(&st.deployer, &app).await?))
}

#[utoipa::path(
    put,
    path = "/api/apps/{app}/budget",
    tag = "services",
    summary = "Set an app's budget; refused when what runs now would not fit it",
    params(("app" = String, Path, description = "App name")),
    request_body = BudgetBody,
    responses(
        (status = 200, description = "the budget now in force, with the scale", body = BudgetView),
        (status = 400, description = "bad input, a limit below its minimum, or the running instances would not fit (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the body does not fit the schema (a wrong type or an unknown field)", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn put_budget(
    State(st): State<AppState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<Json<BudgetView>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(
        services::set_budget(
            &st.deployer,
            &app,
            body.max_instances,
            body.cpu,
            body.memory_mb,
        )
        .await?,
    ))
}

#[utoipa::path(
    put,
    path = "/api/apps/{app}/scale",
    tag = "services",
    summary = "Set an app's scale and resize its running http services to `min`",
    params(("app" = String, Path, description = "App name")),
    request_body = ScaleBody,
    responses(
        (status = 200, description = "the scale now in force, with the budget", body = BudgetView),
        (status = 400, description = "bad input (min of 0, min above max) or the scale does not fit the budget (named in the body)", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = crate::openapi::ErrorBody),
        (status = 422, description = "the body does not fit the schema (a missing or unknown field, a wrong type)", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn put_scale(
    State(st): State<AppState>,
    Path(app): Path<String>,
    ApiJson(body): ApiJson<ScaleBody>,
) -> Result<Json<BudgetView>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(
        services::set_scale(&st.deployer, &app, body.min, body.max).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/apps/{app}/instances",
    tag = "services",
    summary = "An app's instances with their ports, uptimes and limits (`morel ps`)",
    params(("app" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "by resource, release and start time", body = Vec<InstanceView>),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the app does not exist", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn instances(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(services::instances(&st.deployer, &app).await?))
}
