//! Typed rows: exactly what is stored, nothing about how it is shown or sent.

use morel_core::{
    Digest, InstanceId, InstanceState, ReleaseId, ReleaseStatus, ResourceStatus, Runtime,
};

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
    /// Digest of the bundle the resource last ran; with `config_hash` it decides "unchanged".
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
