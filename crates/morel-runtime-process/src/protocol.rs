//! The worker protocol's messages (DESIGN §5). Host → worker: `Load`, `Invoke`, `Cancel`.
//! Worker → host: `MetaData` or `LoadError`, then `InvokeResult`s.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Serialize)]
pub struct LoadFunction<'a> {
    pub name: &'a str,
    pub file: &'a str,
    pub attr: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum HostMessage<'a> {
    Load {
        app: &'a str,
        resource: &'a str,
        root: &'a str,
        concurrency: u32,
        functions: Vec<LoadFunction<'a>>,
    },
    Invoke {
        id: u64,
        name: &'a str,
        args: &'a RawValue,
        kwargs: &'a RawValue,
        timeout_ms: u64,
    },
    Cancel {
        id: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionMeta {
    pub name: String,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub is_async: bool,
}

#[derive(Debug, Deserialize)]
pub struct RaisedError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub traceback: Option<String>,
}

/// A worker → host frame. Read as one flat struct rather than a tagged enum: serde cannot
/// keep a result as raw JSON (`RawValue`, so it is never re-encoded) inside a tagged enum.
#[derive(Debug, Deserialize)]
pub struct WorkerFrame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    /// A string for `LoadError`, an object ([`RaisedError`]) for a failed `InvokeResult`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default)]
    pub functions: Vec<FunctionMeta>,
}
