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
        /// The HTTP request, sent only to a function with a parameter of kind
        /// [`ParamKind::Request`] (see [`RequestInfo`]): `{"method", "path", "headers",
        /// "query"}`.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'a RawValue>,
    },
    Cancel {
        id: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionMeta {
    pub name: String,
    /// The parameters as shown to people (`a`, `*args`, `**kwargs`).
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub is_async: bool,
    /// The parameters in detail, when the runner could read them: the gateway checks a call's
    /// arguments against them before the call reaches the worker. `None`: passed on unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Vec<Param>>,
}

/// One parameter of a function, as a runner reports it in `MetaData`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    /// It may be left out (it has a default; in JavaScript every parameter may).
    #[serde(default)]
    pub default: bool,
}

impl Param {
    /// A parameter written short, for tests and the fuzz targets: `a`, `a=` (a default), `/a`
    /// (positional-only), `*a`, `**a`, `:a` (keyword-only), `@a` (the request).
    pub fn from_spec(spec: &str) -> Param {
        let (kind, name) = match spec {
            s if s.starts_with("**") => (ParamKind::VarKeyword, &s[2..]),
            s if s.starts_with('*') => (ParamKind::VarPositional, &s[1..]),
            s if s.starts_with('/') => (ParamKind::PositionalOnly, &s[1..]),
            s if s.starts_with(':') => (ParamKind::KeywordOnly, &s[1..]),
            s if s.starts_with('@') => (ParamKind::Request, &s[1..]),
            s => (ParamKind::PositionalOrKeyword, s),
        };
        Param {
            name: name.trim_end_matches('=').to_owned(),
            kind,
            default: name.ends_with('='),
        }
    }
}

/// How an argument reaches a parameter (Python's `inspect.Parameter` kinds, plus `request`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Only by position (an array body).
    PositionalOnly,
    /// By position or by name.
    PositionalOrKeyword,
    /// `*args`: any further positional arguments.
    VarPositional,
    /// Only by name.
    KeywordOnly,
    /// `**kwargs`: any further named arguments.
    VarKeyword,
    /// Not an argument: the runner fills it with the HTTP request ([`RequestInfo`]).
    Request,
    /// A kind this host does not know (a newer runner): the signature is not checked.
    #[serde(other)]
    Unknown,
}

/// The request a function with a [`ParamKind::Request`] parameter receives, as the `request`
/// of its `Invoke` frame. Header names are lowercase; both lists keep the order and
/// repetitions of the request.
#[derive(Debug, Serialize)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The path as the client sent it, without the query (percent-encoded).
    pub path: &'a str,
    /// A value that is not UTF-8 is read lossily.
    pub headers: Vec<(&'a str, std::borrow::Cow<'a, str>)>,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
}

/// What a function asked its answer to be, besides its body: an `InvokeResult` carries it as
/// `response` when the function returned an SDK `Response`. The result is then the body:
/// JSON, or, with `raw`, a JSON string whose text is sent as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResponseMeta {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub raw: bool,
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
    /// With a successful `InvokeResult`: the status and headers the function asked for
    /// ([`ResponseMeta`]). Read as a plain value, so that a malformed one fails its call
    /// rather than the whole frame.
    #[serde(default)]
    pub response: Option<serde_json::Value>,
}
