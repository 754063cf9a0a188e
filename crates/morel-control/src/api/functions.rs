//! Seed 001's API: `/functions` and `/executions`. Wherever a path names a function, its id
//! or its name will do (names are unique).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use morel_store::WasmFunctionRow;

use crate::views::execution_view;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::ApiError;
use crate::functions::FunctionError;

impl From<FunctionError> for ApiError {
    fn from(e: FunctionError) -> Self {
        let message = e.to_string();
        match e {
            FunctionError::InvalidName { .. }
            | FunctionError::UnknownLanguage(_)
            | FunctionError::NotReady { .. } => ApiError::bad_request(message),
            FunctionError::SourceTooLarge { .. } => ApiError::too_large(message),
            FunctionError::NotFound(_) | FunctionError::ExecutionNotFound(_) => {
                ApiError::not_found(message)
            }
            FunctionError::NameTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            }
            FunctionError::Encode(e) => ApiError::internal("encoding a compile job", &e),
            FunctionError::Store(e) => ApiError::from(e),
        }
    }
}

fn function_view(f: &WasmFunctionRow) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "language": f.language,
        "status": f.status.as_str(),
        "compile_error": f.compile_error,
        "wasm_size": f.wasm_size,
        "created_at": morel_core::time::rfc3339(f.created_at),
        "updated_at": morel_core::time::rfc3339(f.updated_at),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateFunction {
    name: String,
    language: String,
    source: String,
}

#[utoipa::path(
    post,
    path = "/functions",
    operation_id = "create_function",
    tag = "functions",
    summary = "Seed 001: create a compiled function (queued for compilation); re-submitting the name of a FAILED one recompiles it",
    request_body = CreateFunction,
    responses(
        (status = 201, description = "created", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 409, description = "a function of that name exists and is not FAILED (a FAILED one is replaced, and `replaced` holds its id)", body = crate::openapi::ErrorBody),
        (status = 413, description = "too large", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn create(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if body.len() > crate::functions::MAX_SOURCE_BYTES + 64 * 1024 {
        return Err(ApiError::too_large(format!(
            "request of {} bytes is over the source limit of {} bytes",
            body.len(),
            crate::functions::MAX_SOURCE_BYTES
        )));
    }
    let req: CreateFunction = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{name, language, source}}: {e}")))?;
    let created = st
        .functions()?
        .create(&req.name, &req.language, &req.source)
        .await?;
    let mut view = function_view(&created.function);
    if let Some(old) = created.replaced {
        view["replaced"] = json!(old);
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/functions",
    operation_id = "list_functions",
    tag = "functions",
    summary = "Seed 001: list compiled functions",
    responses(
        (status = 200, description = "ok", body = Vec<serde_json::Value>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(
        st.functions()?
            .list()
            .await?
            .iter()
            .map(function_view)
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/functions/{id}",
    operation_id = "get_function",
    tag = "functions",
    summary = "Seed 001: one compiled function",
    params(("id" = String, Path, description = "function id or name")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(function_view(&st.functions()?.resolve(&id).await?)))
}

#[utoipa::path(
    delete,
    path = "/functions/{id}",
    operation_id = "delete_function",
    tag = "functions",
    summary = "Delete a compiled function and its executions",
    params(("id" = String, Path, description = "function id or name")),
    responses(
        (status = 200, description = "deleted: `{deleted: id, name}`", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let f = st.functions()?.delete(&id).await?;
    Ok(Json(json!({ "deleted": f.id, "name": f.name })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ExecuteRequest {
    #[serde(default)]
    input: Value,
    /// Deadline for this execution (default 5000, at most 60000).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/functions/{id}/execute",
    operation_id = "execute_function",
    tag = "functions",
    summary = "Seed 001: run a compiled function and wait for the result",
    params(("id" = String, Path, description = "function id or name")),
    request_body(content = Option<ExecuteRequest>, description = "empty for a null input"),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn execute(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: ExecuteRequest = if body.is_empty() {
        ExecuteRequest {
            input: Value::Null,
            timeout_ms: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{input}}: {e}")))?
    };
    let e = st
        .functions()?
        .execute(&id, &req.input, req.timeout_ms.map(Duration::from_millis))
        .await?;
    Ok(Json(execution_view(&e)))
}

#[utoipa::path(
    get,
    path = "/executions/{id}",
    operation_id = "get_function_execution",
    tag = "functions",
    summary = "Seed 001: one execution",
    params(("id" = String, Path, description = "execution id")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn execution(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(execution_view(&st.functions()?.execution(&id).await?)))
}

#[utoipa::path(
    get,
    path = "/functions/{id}/executions",
    operation_id = "list_function_executions",
    tag = "functions",
    summary = "Seed 001: executions of a compiled function",
    params(("id" = String, Path, description = "function id or name")),
    responses(
        (status = 200, description = "ok", body = Vec<serde_json::Value>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn executions(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(
        st.functions()?
            .executions(&id)
            .await?
            .iter()
            .map(execution_view)
            .collect(),
    ))
}
