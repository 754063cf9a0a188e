//! Async jobs: `POST /{prefix}/{app}/{version}/run/{func}` answers 202 with an execution id at
//! once; a worker takes the job from the durable `jobs` queue and runs it on the function's
//! resource. At-least-once: a worker that dies mid-job leaves the message to be read again
//! after its visibility timeout; completion is idempotent (a finished or cancelled execution
//! is not run again), and a job read more than [`MAX_JOB_READS`] times is archived as dead.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use morel_core::ExecutionId;
use morel_store::{ExecutionRow, ExecutionStatus, FinishedJob, NewJob, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

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
    execution_id: ExecutionId,
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
    // On `morel server` the instances run on agents: the job is checked against what they run.
    let (release, env, known) = match (routes, st.deployer.remote.get()) {
        (Some(r), _) => (r.release, r.env.clone(), r.functions.contains_key(&func)),
        (None, Some(remote)) => match remote.table.get(&prefix, &app) {
            Some(r) => (r.release, r.env.clone(), r.functions.contains_key(&func)),
            None => {
                return Err(ApiError::not_found(format!(
                    "app {prefix}/{app} is not deployed"
                )));
            }
        },
        (None, None) => {
            return Err(ApiError::not_found(format!(
                "app {prefix}/{app} is not deployed"
            )));
        }
    };
    let version_ok = version == "latest"
        || version == env
        || version
            .strip_prefix('v')
            .and_then(|n| n.parse::<i64>().ok())
            == Some(release);
    if !version_ok {
        return Err(ApiError::not_found(format!(
            "version {version:?} of {app} is not active"
        )));
    }
    if !known {
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
        id: ExecutionId::new(),
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
    let id = row.id;
    let job = Job {
        execution_id: row.id,
        namespace: prefix,
        app,
        function: func,
        body: text,
    };
    let message =
        serde_json::to_value(&job).map_err(|e| ApiError::internal("encoding a job", &e))?;
    st.deployer
        .jobs
        .enqueue(NewJob {
            execution: row,
            message,
        })
        .await
        .map_err(|e| ApiError::internal_chain("queueing a job", &e))?;
    JOB_QUEUED.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "QUEUED" })),
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
    let not_found = || ApiError::not_found(format!("execution {id} not found"));
    let exec_id: ExecutionId = id.parse().map_err(|_| not_found())?;
    let e = st
        .deployer
        .store
        .get_execution(exec_id)
        .await?
        .ok_or_else(not_found)?;
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
    let not_found = || ApiError::not_found(format!("execution {id} not found"));
    let exec_id: ExecutionId = id.parse().map_err(|_| not_found())?;
    let e = store.get_execution(exec_id).await?.ok_or_else(not_found)?;
    if !store.cancel_execution(exec_id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("execution {id} already finished ({})", e.status.as_str()),
        ));
    }
    let e = store.get_execution(exec_id).await?.unwrap_or(e);
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
        for (msg_id, job) in claim(&deployer, msgs).await {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let d = deployer.clone();
            tokio::spawn(async move {
                run_one(&d, msg_id, job).await;
                drop(permit);
            });
        }
    }
}

/// The jobs of a read that are to run now: dead letters are archived, and every other job is
/// moved `QUEUED → RUNNING` in one statement for the whole read. A job that did not move is read
/// again only then: a redelivery finds it `RUNNING` (its worker died) and runs it again, while a
/// finished or cancelled one only needs its message dropped.
async fn claim(d: &Deployer, msgs: Vec<morel_store::QueueMessage>) -> Vec<(i64, Job)> {
    let store = &d.store;
    let mut jobs = Vec::with_capacity(msgs.len());
    for m in msgs {
        let Ok(job) = serde_json::from_value::<Job>(m.message) else {
            let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
            continue;
        };
        if m.read_ct > MAX_JOB_READS {
            let _ = store
                .finish_execution(
                    job.execution_id,
                    ExecutionStatus::Failed,
                    None,
                    Some(&format!(
                        "job was read {} times without finishing (dead-lettered)",
                        m.read_ct - 1
                    )),
                )
                .await;
            let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
            continue;
        }
        jobs.push((m.msg_id, job));
    }
    let ids: Vec<ExecutionId> = jobs.iter().map(|(_, j)| j.execution_id).collect();
    // On a store error nothing runs; the messages come back after their visibility timeout.
    let Ok(started) = store.start_executions(&ids).await else {
        return Vec::new();
    };
    let started: HashSet<ExecutionId> = started.into_iter().collect();
    let mut run = Vec::with_capacity(jobs.len());
    for (msg_id, job) in jobs {
        if !started.contains(&job.execution_id) {
            match store.get_execution(job.execution_id).await {
                Ok(Some(e)) if e.status == ExecutionStatus::Running => {}
                Ok(_) => {
                    let _ = store.queue_delete(JOBS_QUEUE, msg_id).await;
                    continue;
                }
                Err(_) => continue,
            }
        }
        run.push((msg_id, job));
    }
    run
}

/// Longest a job of an app still being restored after a restart waits for it; past it the job
/// is left queued and comes back after its visibility timeout.
const RESTORE_WAIT: Duration = Duration::from_secs(120);

async fn run_one(d: &Deployer, msg_id: i64, job: Job) {
    let lookup = || {
        d.routes
            .get(&job.namespace, &job.app)
            .and_then(|r| r.functions.get(&job.function).cloned())
    };
    let waiting = tokio::time::Instant::now();
    let route = loop {
        match lookup() {
            None if d.routes.is_restoring(&job.namespace, &job.app) => {
                if waiting.elapsed() > RESTORE_WAIT {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            found => break found,
        }
    };
    let remote = d
        .remote
        .get()
        .filter(|r| r.table.get(&job.namespace, &job.app).is_some());
    let outcome = match (route, remote) {
        (Some(route), _) => morel_gateway::call_function(&route, job.body.as_bytes()).await,
        // On `morel server`: run it on an agent running the function.
        (None, Some(remote)) => {
            remote
                .call(&job.namespace, &job.app, &job.function, job.body.as_bytes())
                .await
        }
        (None, None) => Err(morel_gateway::CallFailure {
            id: None,
            status: StatusCode::NOT_FOUND,
            kind: "NotFound".into(),
            message: format!("{}/{} is no longer deployed", job.app, job.function),
        }),
    };
    let (status, output, error) = match outcome {
        Ok(out) => (
            ExecutionStatus::Completed,
            Some(String::from_utf8_lossy(&out).into_owned()),
            None,
        ),
        Err(f) => (
            if f.status == StatusCode::GATEWAY_TIMEOUT {
                ExecutionStatus::TimedOut
            } else {
                ExecutionStatus::Failed
            },
            None,
            Some(format!("{}: {}", f.kind, f.message)),
        ),
    };
    // The outcome and the message's deletion in one transaction: a failure leaves both, and
    // the message comes back after its visibility timeout.
    let _ = d
        .jobs
        .finish(FinishedJob {
            id: job.execution_id,
            status,
            output,
            error,
            msg_id,
        })
        .await;
}

/// Most jobs one store call writes.
const MAX_BATCH: usize = 64;

/// Writes jobs with group commit: the enqueues of concurrent requests, and the outcomes of
/// concurrent jobs, each go to the store as one transaction per batch (see [`Batcher`]).
/// Transactions, not rows, are what a job costs the store (on SQLite every write waits for the
/// one writer connection and commits the WAL; bench/NOTES.md).
pub struct JobWriter {
    store: Arc<dyn Store>,
    enqueue: OnceLock<Batcher<NewJob, i64>>,
    finish: OnceLock<Batcher<FinishedJob, ()>>,
}

impl JobWriter {
    pub fn new(store: Arc<dyn Store>) -> Self {
        JobWriter {
            store,
            enqueue: OnceLock::new(),
            finish: OnceLock::new(),
        }
    }

    /// Queues a job (its execution and message together); returns the message id.
    pub async fn enqueue(&self, job: NewJob) -> Result<i64, String> {
        let batcher = self.enqueue.get_or_init(|| {
            let store = self.store.clone();
            Batcher::start(move |jobs: Vec<NewJob>| {
                let store = store.clone();
                async move { store.enqueue_jobs(JOBS_QUEUE, &jobs).await }
            })
        });
        batcher.submit(job).await
    }

    /// Records a job's outcome and deletes its message.
    pub async fn finish(&self, job: FinishedJob) -> Result<(), String> {
        let batcher = self.finish.get_or_init(|| {
            let store = self.store.clone();
            Batcher::start(move |jobs: Vec<FinishedJob>| {
                let store = store.clone();
                async move {
                    let n = jobs.len();
                    store
                        .finish_jobs(JOBS_QUEUE, &jobs)
                        .await
                        .map(|()| vec![(); n])
                }
            })
        });
        batcher.submit(job).await
    }
}

type Reply<R> = oneshot::Sender<Result<R, String>>;

/// Group commit: callers hand items to one task, which writes as many per call as have queued
/// up while its previous call ran (at most [`MAX_BATCH`]). An idle batcher writes a lone item
/// at once, so batching adds no wait; under load one commit serves many callers. A failed call
/// fails every item in it.
struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    fn start<F, Fut>(write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, Reply<R>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut items = vec![first];
                while items.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
                let (batch, replies): (Vec<T>, Vec<Reply<R>>) = items.into_iter().unzip();
                match write(batch).await {
                    Ok(results) if results.len() == replies.len() => {
                        for (result, reply) in results.into_iter().zip(replies) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Ok(results) => {
                        let e =
                            format!("{} items written, {} results", replies.len(), results.len());
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        let e = crate::error::error_chain(&e);
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { tx }
    }

    async fn submit(&self, item: T) -> Result<R, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((item, reply))
            .map_err(|_| "the job writer has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the job writer has stopped".to_owned())?
    }
}
