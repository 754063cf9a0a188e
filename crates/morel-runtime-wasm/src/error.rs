//! Everything that can go wrong loading or calling a module.

use std::path::PathBuf;
use std::time::Duration;

/// Why a module could not be loaded or a call did not produce output.
///
/// The messages are written for the function's author (they end up in execution records); none
/// of them carries host paths except [`WasmError::Io`], which is an operator-side failure.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The bytes are neither binary wasm nor wat text, or the module fails validation.
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    /// The module fits neither guest ABI; the message names the missing or mistyped exports.
    #[error("bad exports: {0}")]
    BadExport(String),
    /// The module imports something the host does not provide.
    #[error("module imports {module}.{name}, which the host does not provide")]
    UnsupportedImport { module: String, name: String },
    /// The guest trapped; holds wasmtime's message (e.g. "wasm trap: wasm `unreachable`
    /// instruction executed") and, for WASI guests, the tail of stderr.
    #[error("{0}")]
    Trap(String),
    /// The call ran past its deadline and was interrupted.
    #[error("execution exceeded its deadline of {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The guest tried to grow its memory past the cap (or its input alone exceeds it).
    #[error("guest exceeded the memory limit of {limit} bytes")]
    MemoryLimit { limit: u64 },
    /// A WASI guest called `proc_exit` with a non-zero code; `stderr` is the tail it wrote.
    #[error("guest exited with code {code}{}", stderr_suffix(stderr))]
    Exit { code: i32, stderr: String },
    /// The output is not JSON or is too large.
    #[error("{0}")]
    BadOutput(String),
    /// A core ABI guest returned a pointer or length outside its memory (added to the brief's
    /// list: neither a trap nor bad output, but a broken contract).
    #[error("guest broke the core ABI: {0}")]
    Abi(String),
    /// The host could not read or write its own files (the cache directory).
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine itself failed: bad configuration, exhausted pool, a panicked call.
    #[error("wasm engine error: {0}")]
    Engine(String),
}

impl WasmError {
    /// The execution status this error records as: `TIMED_OUT` for [`WasmError::Timeout`],
    /// `FAILED` for everything else (seed 001's statuses).
    pub fn status(&self) -> &'static str {
        match self {
            WasmError::Timeout(_) => "TIMED_OUT",
            _ => "FAILED",
        }
    }
}

/// How much of stderr an error's one-line message repeats; the field keeps the whole tail.
const STDERR_IN_MESSAGE: usize = 1024;

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut start = trimmed.len().saturating_sub(STDERR_IN_MESSAGE);
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    let ellipsis = if start > 0 { "…" } else { "" };
    format!("; stderr: {ellipsis}{}", &trimmed[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_separates_timeouts_from_failures() {
        assert_eq!(
            WasmError::Timeout(Duration::from_secs(1)).status(),
            "TIMED_OUT"
        );
        assert_eq!(WasmError::Trap("wasm trap: x".into()).status(), "FAILED");
        assert_eq!(WasmError::MemoryLimit { limit: 1 }.status(), "FAILED");
    }

    #[test]
    fn exit_message_carries_the_stderr_tail() {
        let err = WasmError::Exit {
            code: 3,
            stderr: "boom\n".into(),
        };
        assert_eq!(err.to_string(), "guest exited with code 3; stderr: boom");
        let quiet = WasmError::Exit {
            code: 1,
            stderr: String::new(),
        };
        assert_eq!(quiet.to_string(), "guest exited with code 1");
        let long = WasmError::Exit {
            code: 2,
            stderr: "é".repeat(2000),
        };
        let msg = long.to_string();
        assert!(msg.contains("; stderr: …é"), "{msg}");
        assert!(msg.len() < 1200, "{}", msg.len());
    }

    #[test]
    fn memory_limit_message_names_the_limit() {
        let msg = WasmError::MemoryLimit { limit: 65536 }.to_string();
        assert!(msg.contains("memory limit"), "{msg}");
        assert!(msg.contains("65536"), "{msg}");
    }
}
