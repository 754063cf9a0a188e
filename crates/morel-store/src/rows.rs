//! Typed rows: exactly what is stored, nothing about how it is shown or sent.

use morel_core::{
    Digest, ExecutionId, InstanceId, InstanceState, NodeId, NodeState, PlacementState, ReleaseId,
    ReleaseStatus, ResourceStatus, Runtime,
};
pub use morel_core::{ExecutionStatus, WasmFunctionStatus};

use crate::AppKey;

#[derive(Clone, Debug, PartialEq)]
pub struct AppRow {
    pub key: AppKey,
    pub active_release: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseRow {
    pub id: ReleaseId,
    pub app: AppKey,
    pub number: i64,
    pub env: String,
    pub digest: Digest,
    pub manifest_json: String,
    /// Environment variables given at deploy time (seed 000's `env`), as a JSON object.
    pub config_json: String,
    pub status: ReleaseStatus,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Seed 002's persisted per-resource state.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceRow {
    pub app: AppKey,
    pub name: String,
    pub runtime: Runtime,
    pub config_hash: String,
    /// Hash of the files (all but `manifest.json`) of the bundle the resource last ran; with
    /// `config_hash` it decides "unchanged".
    pub digest: Digest,
    pub release: i64,
    pub status: ResourceStatus,
    pub error: Option<String>,
    pub endpoint_url: String,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunctionRow {
    pub name: String,
    pub resource: String,
    pub params: Vec<String>,
    pub is_async: bool,
    pub http_method: Option<String>,
    pub http_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub app: AppKey,
    pub resource: String,
    pub release: i64,
    pub digest: Digest,
    pub node: String,
    pub state: InstanceState,
    pub pid: Option<i64>,
    pub port: Option<i64>,
    pub restarts: i64,
    pub last_error: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A platform event (deploy step, instance state change, crash), not program output.
    Event,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            "event" => Some(LogStream::Event),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewLogLine {
    pub app: AppKey,
    pub ts: i64,
    pub stream: LogStream,
    /// Instance id, or `platform` for events.
    pub source: String,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub ts: i64,
    pub stream: LogStream,
    pub source: String,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: i64,
    /// `key_id:base64sig`, as in the upload header.
    pub signature: String,
    pub key_id: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyRow {
    pub key_id: String,
    pub public_key: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PackageRow {
    pub app: AppKey,
    pub digest: Digest,
    pub created_at: i64,
}

/// A message on a durable queue (pgmq's shape).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueMessage {
    pub msg_id: i64,
    /// How many times it has been read, this read included.
    pub read_ct: i64,
    pub enqueued_at: i64,
    /// Hidden from other readers until this time (ms since the epoch).
    pub vt: i64,
    pub message: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WasmFunctionRow {
    pub id: String,
    pub name: String,
    pub language: String,
    pub source: String,
    pub status: WasmFunctionStatus,
    pub compile_error: Option<String>,
    /// Set once `READY`; listing queries leave it out (`None`) to stay light.
    pub wasm: Option<Vec<u8>>,
    pub wasm_size: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How a compile ended, as carried by a `compilation_results` message.
#[derive(Clone, Debug, PartialEq)]
pub enum CompileOutcome {
    Ready(Vec<u8>),
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRow {
    pub id: ExecutionId,
    pub function_id: String,
    pub status: ExecutionStatus,
    /// JSON text.
    pub input: String,
    /// JSON text, when completed.
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_at: i64,
    pub completed_at: Option<i64>,
}

/// A job to queue: its execution (`QUEUED`) and the message a worker will read.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub execution: ExecutionRow,
    pub message: serde_json::Value,
}

/// A job that ran: its execution's outcome and the queue message to delete.
#[derive(Clone, Debug)]
pub struct FinishedJob {
    pub id: ExecutionId,
    pub status: ExecutionStatus,
    /// JSON text, when completed.
    pub output: Option<String>,
    pub error: Option<String>,
    pub msg_id: i64,
}

/// An app's budget (seed 004 SetBudget) and scale (PublishPlan's min/max), one row per app.
/// `None` means "not set". CPU is kept in thousandths of a core so the column stays an integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetRow {
    pub app: AppKey,
    pub max_instances: Option<i64>,
    pub cpu_millis: Option<i64>,
    pub memory_mb: Option<i64>,
    pub scale_min: Option<i64>,
    pub scale_max: Option<i64>,
    pub updated_at: i64,
}

/// A machine whose agent joined the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    /// The agent's node name (the `node` of its instances).
    pub id: NodeId,
    /// Where servers reach the agent (`http://host:port`).
    pub address: String,
    /// How many instances it may run.
    pub capacity: i64,
    pub state: NodeState,
    pub registered_at: i64,
    pub heartbeat_at: i64,
}

/// One instance of a resource placed on a node by the scheduler (many machines).
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementRow {
    /// The id of the instance placed.
    pub id: InstanceId,
    pub app: AppKey,
    pub release: i64,
    pub resource: String,
    pub node: NodeId,
    pub state: PlacementState,
    /// Where the agent serves the instance's calls (`http://host:port`), once ready.
    pub endpoint: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
