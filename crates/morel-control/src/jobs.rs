//! Async jobs: `POST /{prefix}/{app}/{version}/run/{func}` answers 202 with an execution id at
//! once; a worker takes the job from the durable `jobs` queue and runs it on the function's
//! resource. At-least-once: a worker that dies mid-job leaves the message to be read again
//! after its visibility timeout; completion is idempotent (a finished or cancelled execution
//! is not run again), and a job read more than [`MAX_JOB_READS`] times is archived as dead.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use morel_store::{ExecutionRow, ExecutionStatus, JobOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ApiError;
use crate::api::AppState;
use crate::deploy::Deployer;
use crate::views::execution_view;

pub const JOBS_QUEUE: &str = "jobs";
pub const MAX_JOB_READS: i64 = 5;
/// How long a job stays hidden while a worker runs it.
const JOB_VISIBILITY_MS: i64 = 10 * 60 * 1000;
const MAX_BODY: usize = 6 << 20;

#[derive(Serialize, Deserialize)]
struct Job {
    execution_id: String,
    namespace: String,
    app: String,
    function: String,
    /// The request body (JSON text).
    body: String,
}

#[utoipa::path(
    post,
    path = "/{prefix}/{app}/{version}/run/{func}",
    operation_id = "run_async",
    tag = "calls",
    summary = "Queue an async run of a function (no token needed)",
    params(("prefix" = String, Path, description = "namespace, `default`"), ("app" = String, Path, description = "App name"), ("version" = String, Path, description = "vN, latest or the environment name"), ("func" = String, Path, description = "function name")),
    request_body(content = serde_json::Value, description = "the arguments: an object of named arguments or a list of positional ones"),
    responses(
        (status = 202, description = "queued", body = serde_json::Value),
        (status = 400, description = "bad input, named in the body", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
        (status = 413, description = "too large", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn run(
    State(st): State<AppState>,
    Path((prefix, app, version, func)): Path<(String, String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    // A preview environment's jobs run on its host app (`{app}--{env}`).
    let table = &st.deployer.routes;
    let (app, routes) = match table.get(&prefix, &app).filter(|r| r.env == version) {
        None if table.get_env(&prefix, &app, &version).is_some() => (
            morel_gateway::environment_host(&app, &version),
            table.get_env(&prefix, &app, &version),
        ),
        found => (app.clone(), found.or_else(|| table.get(&prefix, &app))),
    };
    let routes =
        routes.ok_or_else(|| ApiError::not_found(format!("app {prefix}/{app} is not deployed")))?;
    let version_ok = version == "latest"
        || version == routes.env
        || version
            .strip_prefix('v')
            .and_then(|n| n.parse::<i64>().ok())
            == Some(routes.release);
    if !version_ok {
        return Err(ApiError::not_found(format!(
            "version {version:?} of {app} is not active"
        )));
    }
    if !routes.functions.contains_key(&func) {
        return Err(ApiError::not_found(format!(
            "app {app} has no function {func:?}"
        )));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!(
            "request body exceeds the limit of {MAX_BODY} bytes"
        ))
    })?;
    let text = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        String::new()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    if !text.is_empty() {
        serde_json::from_str::<Value>(&text)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    }
    let row = ExecutionRow {
        id: uuid::Uuid::now_v7().to_string(),
        function_id: format!("{prefix}/{app}/{func}"),
        status: ExecutionStatus::Queued,
        input: if text.is_empty() {
            "null".into()
        } else {
            text.clone()
        },
        output: None,
        error: None,
        started_at: morel_core::time::now_ms(),
        completed_at: None,
    };
    let job = Job {
        execution_id: row.id.clone(),
        namespace: prefix,
        app,
        function: func,
        body: text,
    };
    let message =
        serde_json::to_value(&job).map_err(|e| ApiError::internal("encoding a job", &e))?;
    st.deployer
        .store
        .enqueue_execution(&row, JOBS_QUEUE, &message)
        .await?;
    JOB_QUEUED.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": row.id, "status": "QUEUED" })),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/executions/{id}",
    tag = "calls",
    summary = "Status and result of an async run",
    params(("id" = String, Path, description = "execution id")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn get_execution(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = st
        .deployer
        .store
        .get_execution(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))?;
    Ok(Json(execution_view(&e)))
}

#[utoipa::path(
    post,
    path = "/api/executions/{id}/cancel",
    operation_id = "cancel_execution",
    tag = "calls",
    summary = "Cancel a queued async run",
    params(("id" = String, Path, description = "execution id")),
    responses(
        (status = 200, description = "ok", body = serde_json::Value),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "not found", body = crate::openapi::ErrorBody),
        (status = 409, description = "conflict", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = &st.deployer.store;
    let e = store
        .get_execution(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))?;
    if !store.cancel_execution(&id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("execution {id} already finished ({})", e.status.as_str()),
        ));
    }
    let e = store.get_execution(&id).await?.unwrap_or(e);
    Ok(Json(execution_view(&e)))
}

/// Wakes the job worker of this process when a job is queued here, so that a job does not wait
/// for the next poll. Jobs queued elsewhere (another process on the same store) are still found
/// by polling every [`JOB_POLL`].
static JOB_QUEUED: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);
/// How long the worker sleeps when the queue is empty and nothing wakes it.
const JOB_POLL: Duration = Duration::from_millis(50);

/// The job worker: runs queued jobs until `stop` is set, up to `concurrency` at once.
///
/// It waits for a free slot (never polls for one), then reads as many jobs as there are free
/// slots; with an empty queue it sleeps until a job is queued in this process or [`JOB_POLL`]
/// passes.
pub async fn run_jobs(
    deployer: Arc<Deployer>,
    concurrency: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    loop {
        if *stop.borrow() {
            return;
        }
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        // Registered before the read, so a job queued during the read is not missed.
        let queued = JOB_QUEUED.notified();
        let want = slots.available_permits() as i64 + 1;
        let msgs = deployer
            .store
            .queue_read(JOBS_QUEUE, JOB_VISIBILITY_MS, want)
            .await
            .unwrap_or_default();
        if msgs.is_empty() {
            drop(first);
            tokio::select! {
                _ = queued => {}
                _ = tokio::time::sleep(JOB_POLL) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let mut first = Some(first);
        for m in msgs {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let d = deployer.clone();
            tokio::spawn(async move {
                run_one(&d, m).await;
                drop(permit);
            });
        }
    }
}

async fn run_one(d: &Deployer, m: morel_store::QueueMessage) {
    let store = &d.store;
    let Ok(job) = serde_json::from_value::<Job>(m.message.clone()) else {
        let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
        return;
    };
    if m.read_ct > MAX_JOB_READS {
        let _ = store
            .finish_execution(
                &job.execution_id,
                ExecutionStatus::Failed,
                None,
                Some(&format!(
                    "job was read {} times without finishing (dead-lettered)",
                    m.read_ct - 1
                )),
            )
            .await;
        let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
        return;
    }
    // `QUEUED → RUNNING` says by itself whether the job is still to run; the row is read only
    // when it is not: a redelivery finds it `RUNNING` (its worker died) and runs it again, while
    // a finished or cancelled one only needs its message dropped.
    match store.start_execution(&job.execution_id).await {
        Ok(true) => {}
        Ok(false) => match store.get_execution(&job.execution_id).await {
            Ok(Some(e)) if e.status == ExecutionStatus::Running => {}
            Ok(_) => {
                let _ = store.queue_delete(JOBS_QUEUE, m.msg_id).await;
                return;
            }
            Err(_) => return,
        },
        Err(_) => return,
    }
    let outcome = match d
        .routes
        .get(&job.namespace, &job.app)
        .and_then(|r| r.functions.get(&job.function).cloned())
    {
        Some(route) => {
            morel_gateway::call_function(&route, &job.function, job.body.as_bytes()).await
        }
        None => Err(morel_gateway::CallFailure {
            status: StatusCode::NOT_FOUND,
            kind: "NotFound".into(),
            message: format!("{}/{} is no longer deployed", job.app, job.function),
        }),
    };
    // The outcome and the message's deletion in one transaction: a failure leaves both, and
    // the message comes back after its visibility timeout.
    let (output, error);
    let outcome = match outcome {
        Ok(out) => {
            output = String::from_utf8_lossy(&out).into_owned();
            JobOutcome {
                status: ExecutionStatus::Completed,
                output: Some(&output),
                error: None,
            }
        }
        Err(f) => {
            error = format!("{}: {}", f.kind, f.message);
            JobOutcome {
                status: if f.status == StatusCode::GATEWAY_TIMEOUT {
                    ExecutionStatus::TimedOut
                } else {
                    ExecutionStatus::Failed
                },
                output: None,
                error: Some(&error),
            }
        }
    };
    let _ = store
        .finish_job(&job.execution_id, outcome, JOBS_QUEUE, m.msg_id)
        .await;
}
