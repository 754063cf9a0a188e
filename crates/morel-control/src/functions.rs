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
//!
//! A function's name is unique (the store refuses a second one), so everywhere a function is
//! named, its name or its id will do ([`Functions::resolve`]; ids are UUIDs, and a name may not
//! be one). Registering a name again replaces the function of that name only when it is
//! `FAILED`: that is how a failed function is recompiled, with the fixed source (or the same
//! one, once the missing toolchain is installed). Any other function of that name is a conflict:
//! it has to be deleted first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use morel_compiler::Language;
use morel_runtime_wasm::{WasmEngine, WasmError, WasmModule};
use morel_store::{
    CompileOutcome, ExecutionRow, ExecutionStatus, Store, StoreError, WasmFunctionRow,
    WasmFunctionStatus,
};
use serde::{Deserialize, Serialize};

pub const JOBS_QUEUE: &str = "compilation_jobs";
pub const RESULTS_QUEUE: &str = "compilation_results";
/// Largest source accepted by `POST /functions` (413 beyond).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest function name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// What the functions service refuses, and why; the API maps each to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("invalid function name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{0}")]
    UnknownLanguage(String),
    #[error("source is {size} bytes, over the limit of {MAX_SOURCE_BYTES}")]
    SourceTooLarge { size: usize },
    #[error("no function is named {0:?} or has that id (`morel fn ls` lists them)")]
    NotFound(String),
    #[error("execution {0} not found")]
    ExecutionNotFound(String),
    #[error(
        "function {name} ({id}) is {} and cannot be executed until it is READY",
        status.as_str()
    )]
    NotReady {
        name: String,
        id: String,
        status: WasmFunctionStatus,
    },
    /// The name belongs to a function that is not `FAILED` (one that is, is replaced);
    /// `holder` is that function's id and status, when it could be read.
    #[error(
        "a function named {name:?} already exists{}: delete it first (`morel fn rm {name}`) or choose another name",
        holder_text(holder.as_ref())
    )]
    NameTaken {
        name: String,
        holder: Option<(String, WasmFunctionStatus)>,
    },
    #[error("encoding a compile job")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn holder_text(holder: Option<&(String, WasmFunctionStatus)>) -> String {
    holder
        .map(|(id, status)| format!(" ({id}, {})", status.as_str()))
        .unwrap_or_default()
}

/// A function just registered, and the id of the `FAILED` one of the same name it replaced.
pub struct Created {
    pub function: WasmFunctionRow,
    pub replaced: Option<String>,
}

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
    /// Loaded modules by function id. Filled on first execute; a READY function never changes
    /// (a deleted one is removed, and a new one gets a new id).
    modules: Mutex<HashMap<String, WasmModule>>,
}

/// Names are what users type after `morel fn exec`: printable, not padded, and never an id.
fn check_name(name: &str) -> Result<(), FunctionError> {
    let reason = if name.is_empty() || name.len() > MAX_NAME_BYTES {
        "it must be 1 to 128 bytes"
    } else if name.chars().any(char::is_control) {
        "it must not contain control characters"
    } else if name.trim() != name {
        "it must not start or end with whitespace"
    } else if name == "." || name == ".." {
        "it cannot be a URL path's `.` or `..`"
    } else if uuid::Uuid::try_parse(name).is_ok() {
        "a name cannot be a UUID, which is what function ids are"
    } else {
        return Ok(());
    };
    Err(FunctionError::InvalidName {
        name: name.to_owned(),
        reason,
    })
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

    /// Registers a function and queues its compile. A `FAILED` function of the same name is
    /// replaced (with a new id); one in any other state makes this a [`FunctionError::NameTaken`].
    pub async fn create(
        &self,
        name: &str,
        language: &str,
        source: &str,
    ) -> Result<Created, FunctionError> {
        check_name(name)?;
        let language: Language =
            language
                .parse()
                .map_err(|e: <Language as std::str::FromStr>::Err| {
                    FunctionError::UnknownLanguage(e.to_string())
                })?;
        if source.len() > MAX_SOURCE_BYTES {
            return Err(FunctionError::SourceTooLarge { size: source.len() });
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
        let replaced = match self.store.replace_failed_wasm_function(&row).await {
            Ok(replaced) => replaced,
            Err(StoreError::Duplicate { .. }) => return Err(self.name_taken(name).await),
            Err(e) => return Err(e.into()),
        };
        if let Some(old) = &replaced {
            tracing::info!(name, replaced = %old, id = %row.id, "recompiling a FAILED function");
        }
        let job = CompilationJob {
            function_id: row.id.clone(),
            language,
            source: source.to_owned(),
        };
        let msg = serde_json::to_value(&job).map_err(FunctionError::Encode)?;
        self.store.queue_send(JOBS_QUEUE, &msg).await?;
        self.store
            .set_wasm_function_status(&row.id, WasmFunctionStatus::Compiling)
            .await?;
        Ok(Created {
            function: row,
            replaced,
        })
    }

    /// The conflict for a name the store refused, naming the function that holds it.
    async fn name_taken(&self, name: &str) -> FunctionError {
        // Deleted meanwhile, or unreadable: the name was taken when it was tried all the same.
        let holder = match self.store.get_wasm_function_by_name(name).await {
            Ok(f) => f.map(|f| (f.id, f.status)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading the function that holds a name");
                None
            }
        };
        FunctionError::NameTaken {
            name: name.to_owned(),
            holder,
        }
    }

    /// The function with this id or, failing that, this name.
    pub async fn resolve(&self, reference: &str) -> Result<WasmFunctionRow, FunctionError> {
        if let Some(f) = self.store.get_wasm_function(reference, false).await? {
            return Ok(f);
        }
        self.store
            .get_wasm_function_by_name(reference)
            .await?
            .ok_or_else(|| FunctionError::NotFound(reference.to_owned()))
    }

    pub async fn list(&self) -> Result<Vec<WasmFunctionRow>, FunctionError> {
        Ok(self.store.list_wasm_functions().await?)
    }

    /// Deletes a function (by id or name) with its executions; returns what it was.
    pub async fn delete(&self, reference: &str) -> Result<WasmFunctionRow, FunctionError> {
        let f = self.resolve(reference).await?;
        if !self.store.delete_wasm_function(&f.id).await? {
            return Err(FunctionError::NotFound(reference.to_owned()));
        }
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&f.id);
        tracing::info!(name = %f.name, id = %f.id, "deleted a compiled function");
        Ok(f)
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

    /// Runs a READY function (by id or name) once, recording the execution `RUNNING` then its
    /// outcome.
    pub async fn execute(
        &self,
        reference: &str,
        input: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<ExecutionRow, FunctionError> {
        let f = self.resolve(reference).await?;
        if f.status != WasmFunctionStatus::Ready {
            return Err(FunctionError::NotReady {
                name: f.name,
                id: f.id,
                status: f.status,
            });
        }
        let deadline = timeout
            .unwrap_or(DEFAULT_EXEC_TIMEOUT)
            .min(MAX_EXEC_TIMEOUT);
        let input_text = input.to_string();
        let mut row = ExecutionRow {
            id: morel_core::ExecutionId::new(),
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
                row.id,
                row.status,
                row.output.as_deref(),
                row.error.as_deref(),
            )
            .await?;
        Ok(self.store.get_execution(row.id).await?.unwrap_or(row))
    }

    pub async fn execution(&self, id: &str) -> Result<ExecutionRow, FunctionError> {
        let not_found = || FunctionError::ExecutionNotFound(id.to_owned());
        let exec_id: morel_core::ExecutionId = id.parse().map_err(|_| not_found())?;
        self.store
            .get_execution(exec_id)
            .await?
            .ok_or_else(|| FunctionError::ExecutionNotFound(id.to_owned()))
    }

    /// A function's (by id or name) latest 100 executions, newest first.
    pub async fn executions(&self, reference: &str) -> Result<Vec<ExecutionRow>, FunctionError> {
        let f = self.resolve(reference).await?;
        Ok(self.store.list_executions(&f.id, 100).await?)
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

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_printable_unpadded_and_never_an_id() {
        for ok in ["echo", "Sum 2", "a/b", "ünï", "x.y", &"n".repeat(128)] {
            assert!(check_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            " echo",
            "echo ",
            "a\nb",
            "tab\t",
            ".",
            "..",
            "0190a000-0000-7000-8000-000000000001",
            &"n".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
