//! Compiled (wasm) functions, seed 001: register → compile through the durable queues →
//! `READY`/`FAILED`; execute on a fresh wasm instance with every execution recorded.
//!
//! Decisions on seed 001's open points (also in the README):
//! - `POST /functions` answers 201 with `status: PENDING`; once the job is on
//!   `compilation_jobs` the function is `COMPILING`.
//! - `execute` answers HTTP 200 with the execution whatever its status (`COMPLETED`, `FAILED`,
//!   `TIMED_OUT`); only a function that is not `READY` (400) or unknown (404) is an HTTP error.
//! - `input` is any JSON value and reaches the guest as its JSON text (a JSON string stays a
//!   quoted string; it is not unwrapped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use morel_compiler::Language;
use morel_runtime_wasm::{WasmEngine, WasmError, WasmModule};
use morel_store::{
    CompileOutcome, ExecutionRow, ExecutionStatus, Store, WasmFunctionRow, WasmFunctionStatus,
};
use serde::{Deserialize, Serialize};

use crate::ApiError;

pub const JOBS_QUEUE: &str = "compilation_jobs";
pub const RESULTS_QUEUE: &str = "compilation_results";
/// Largest source accepted by `POST /functions` (413 beyond).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// `compilation_jobs` message.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompilationJob {
    pub function_id: String,
    pub language: Language,
    pub source: String,
}

/// `compilation_results` message.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompilationResult {
    pub function_id: String,
    pub success: bool,
    #[serde(default)]
    pub wasm_base64: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

pub struct Functions {
    store: Arc<dyn Store>,
    engine: WasmEngine,
    /// Loaded modules by function id. Filled on first execute; a READY function never changes.
    modules: Mutex<HashMap<String, WasmModule>>,
}

impl Functions {
    pub fn new(store: Arc<dyn Store>, engine: WasmEngine) -> Arc<Self> {
        Arc::new(Functions {
            store,
            engine,
            modules: Mutex::default(),
        })
    }

    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    pub async fn create(
        &self,
        name: &str,
        language: &str,
        source: &str,
    ) -> Result<WasmFunctionRow, ApiError> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(ApiError::bad_request(
                "field `name` must be 1 to 128 characters",
            ));
        }
        let language: Language =
            language
                .parse()
                .map_err(|e: <Language as std::str::FromStr>::Err| {
                    ApiError::bad_request(e.to_string())
                })?;
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ApiError::too_large(format!(
                "source is {} bytes, over the limit of {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        let now = morel_core::time::now_ms();
        let row = WasmFunctionRow {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            language: serde_json::to_value(language)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            source: source.to_owned(),
            status: WasmFunctionStatus::Pending,
            compile_error: None,
            wasm: None,
            wasm_size: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_wasm_function(&row).await?;
        let job = CompilationJob {
            function_id: row.id.clone(),
            language,
            source: source.to_owned(),
        };
        let msg = serde_json::to_value(&job)
            .map_err(|e| ApiError::internal("encoding a compile job", &e))?;
        self.store.queue_send(JOBS_QUEUE, &msg).await?;
        self.store
            .set_wasm_function_status(&row.id, WasmFunctionStatus::Compiling)
            .await?;
        Ok(row)
    }

    pub async fn get(&self, id: &str) -> Result<WasmFunctionRow, ApiError> {
        self.store
            .get_wasm_function(id, false)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("function {id} not found")))
    }

    pub async fn list(&self) -> Result<Vec<WasmFunctionRow>, ApiError> {
        Ok(self.store.list_wasm_functions().await?)
    }

    async fn module(&self, f: &WasmFunctionRow) -> Result<WasmModule, WasmError> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&f.id)
        {
            return Ok(m.clone());
        }
        let row = self
            .store
            .get_wasm_function(&f.id, true)
            .await
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        let wasm = row
            .and_then(|r| r.wasm)
            .ok_or_else(|| WasmError::Engine("the function's wasm binary is missing".into()))?;
        let engine = self.engine.clone();
        let module = tokio::task::spawn_blocking(move || engine.load(&wasm))
            .await
            .map_err(|e| WasmError::Engine(e.to_string()))??;
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(f.id.clone(), module.clone());
        Ok(module)
    }

    /// Runs a READY function once, recording the execution `RUNNING` then its outcome.
    pub async fn execute(
        &self,
        id: &str,
        input: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<ExecutionRow, ApiError> {
        let f = self.get(id).await?;
        if f.status != WasmFunctionStatus::Ready {
            return Err(ApiError::bad_request(format!(
                "function {id} is {} and cannot be executed until it is READY",
                f.status.as_str()
            )));
        }
        let deadline = timeout
            .unwrap_or(DEFAULT_EXEC_TIMEOUT)
            .min(MAX_EXEC_TIMEOUT);
        let input_text = input.to_string();
        let mut row = ExecutionRow {
            id: uuid::Uuid::now_v7().to_string(),
            function_id: f.id.clone(),
            status: ExecutionStatus::Running,
            input: input_text.clone(),
            output: None,
            error: None,
            started_at: morel_core::time::now_ms(),
            completed_at: None,
        };
        self.store.insert_execution(&row).await?;
        let outcome = match self.module(&f).await {
            Ok(module) => {
                self.engine
                    .call(&module, input_text.as_bytes(), deadline)
                    .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(out) => {
                row.status = ExecutionStatus::Completed;
                row.output = Some(String::from_utf8_lossy(&out).into_owned());
            }
            Err(e) => {
                row.status = if matches!(e, WasmError::Timeout(_)) {
                    ExecutionStatus::TimedOut
                } else {
                    ExecutionStatus::Failed
                };
                row.error = Some(e.to_string());
            }
        }
        self.store
            .finish_execution(
                &row.id,
                row.status,
                row.output.as_deref(),
                row.error.as_deref(),
            )
            .await?;
        Ok(self.store.get_execution(&row.id).await?.unwrap_or(row))
    }

    pub async fn execution(&self, id: &str) -> Result<ExecutionRow, ApiError> {
        self.store
            .get_execution(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))
    }

    pub async fn executions(&self, function_id: &str) -> Result<Vec<ExecutionRow>, ApiError> {
        self.get(function_id).await?;
        Ok(self.store.list_executions(function_id, 100).await?)
    }

    /// Consumes `compilation_results` until `stop` is set. A result is validated by loading it
    /// into the engine (so a module importing what the host lacks is `FAILED` naming the
    /// import), then applied and deleted in one transaction. A crash between read and apply
    /// leaves the message to be read again after its visibility timeout; applying it twice
    /// changes nothing.
    pub async fn consume_results(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let Some(msgs) = next_batch(&*self.store, RESULTS_QUEUE, 30_000, 10, &mut stop).await
            else {
                return;
            };
            for m in msgs {
                let outcome = match serde_json::from_value::<CompilationResult>(m.message.clone()) {
                    Ok(r) => Some((r.function_id.clone(), self.validate(r).await)),
                    Err(e) => {
                        tracing::warn!(msg_id = m.msg_id, error = %e, "dead-lettering an unreadable compilation result");
                        let _ = self
                            .store
                            .queue_archive(RESULTS_QUEUE, m.msg_id, true)
                            .await;
                        None
                    }
                };
                if let Some((id, outcome)) = outcome {
                    match self
                        .store
                        .apply_compile_result(&id, &outcome, RESULTS_QUEUE, m.msg_id)
                        .await
                    {
                        // Counted once: a redelivered result changes nothing.
                        Ok(true) => morel_metrics::global().compile_job(match outcome {
                            CompileOutcome::Ready(_) => morel_metrics::Outcome::Ok,
                            CompileOutcome::Failed(_) => morel_metrics::Outcome::Failed,
                        }),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "applying a compilation result")
                        }
                    }
                }
            }
        }
    }

    async fn validate(&self, r: CompilationResult) -> CompileOutcome {
        if !r.success {
            return CompileOutcome::Failed(r.error.unwrap_or_else(|| "compilation failed".into()));
        }
        let Some(wasm) = r
            .wasm_base64
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        else {
            return CompileOutcome::Failed("compiler returned no wasm binary".into());
        };
        let engine = self.engine.clone();
        let checked = wasm.clone();
        match tokio::task::spawn_blocking(move || engine.load(&checked)).await {
            Ok(Ok(_)) => CompileOutcome::Ready(wasm),
            Ok(Err(e)) => CompileOutcome::Failed(format!("invalid module: {e}")),
            Err(e) => CompileOutcome::Failed(format!("validation crashed: {e}")),
        }
    }
}

/// Polls `queue` until it yields messages (each hidden for `vt_ms`), or `stop` is set (`None`).
/// Every path works by polling; a read error is logged and retried.
async fn next_batch(
    store: &dyn Store,
    queue: &str,
    vt_ms: i64,
    qty: i64,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<morel_store::QueueMessage>> {
    loop {
        if *stop.borrow() {
            return None;
        }
        match store.queue_read(queue, vt_ms, qty).await {
            Ok(msgs) if !msgs.is_empty() => return Some(msgs),
            Ok(_) => {}
            Err(e) => tracing::warn!(queue, error = %format!("{e:#}"), "reading a queue"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Reads at most this many times before a job is dead-lettered.
pub const MAX_JOB_READS: i64 = 3;

/// The compiler service: consumes `compilation_jobs`, compiles, sends `compilation_results`.
/// Runs in `morel up` or alone as `morel compiler`.
pub async fn run_compiler(
    store: Arc<dyn Store>,
    toolchains: morel_compiler::Toolchains,
    limits: morel_compiler::CompileLimits,
    visibility: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let vt_ms = visibility
        .unwrap_or(limits.timeout + Duration::from_secs(30))
        .as_millis() as i64;
    loop {
        let Some(msgs) = next_batch(&*store, JOBS_QUEUE, vt_ms, 1, &mut stop).await else {
            return;
        };
        for m in msgs {
            let job: CompilationJob = match serde_json::from_value(m.message.clone()) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(msg_id = m.msg_id, error = %e, "dead-lettering an unreadable compilation job");
                    let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
                    continue;
                }
            };
            let result = if m.read_ct > MAX_JOB_READS {
                let _ = store.queue_archive(JOBS_QUEUE, m.msg_id, true).await;
                CompilationResult {
                    function_id: job.function_id,
                    success: false,
                    wasm_base64: None,
                    error: Some(format!(
                        "compile job was read {} times without finishing (dead-lettered)",
                        m.read_ct - 1
                    )),
                }
            } else {
                tracing::info!(function = %job.function_id, language = ?job.language, "compiling");
                match toolchains.compile(job.language, &job.source, &limits).await {
                    Ok(wasm) => CompilationResult {
                        function_id: job.function_id,
                        success: true,
                        wasm_base64: Some(base64::engine::general_purpose::STANDARD.encode(wasm)),
                        error: None,
                    },
                    Err(e) => CompilationResult {
                        function_id: job.function_id,
                        success: false,
                        wasm_base64: None,
                        error: Some(e.to_string()),
                    },
                }
            };
            let Ok(msg) = serde_json::to_value(&result) else {
                continue;
            };
            if let Err(e) = store.queue_send(RESULTS_QUEUE, &msg).await {
                tracing::warn!(error = %format!("{e:#}"), "sending a compilation result; the job will be redelivered");
                continue;
            }
            let _ = store.queue_delete(JOBS_QUEUE, m.msg_id).await;
        }
    }
}
