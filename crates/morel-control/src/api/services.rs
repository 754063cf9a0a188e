//! Handlers for HTTP services: budget, scale and instances (`morel budget|scale|ps`).
//! They only translate HTTP; the logic is in `crate::services`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{AppState, app_key};
use crate::ApiError;
use crate::extract::ApiJson;
use crate::services::{self, BudgetView, InstanceView};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub max_instances: Option<u32>,
    pub cpu: Option<f64>,
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    pub min: u32,
    pub max: u32,
}

pub async fn get_budget(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<BudgetView>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(services::budget(&st.deployer, &app).await?))
}

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

pub async fn instances(
    State(st): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    let app = app_key(&app)?;
    Ok(Json(services::instances(&st.deployer, &app).await?))
}
